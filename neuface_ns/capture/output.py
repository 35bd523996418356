"""Stage 6, the scene: NeuFace's FaceScape layout (subject 1, expression 1_neutral) at the root, the IDR layout
under idr/, a contact sheet and the JSON report.

    <scene>/Rt_scale_dict.json             identity: the cameras are already in the face frame's millimetres
    <scene>/landmark_indices.npz           'v10': 68 ids into the landmark mesh, [30] = the nose tip (the only
                                           one the dataparser reads; the others are -1)
    <scene>/imface_model/1/1_neutral.obj   the triangulated MediaPipe landmarks, face frame mm
    <scene>/imface_image/1/1_neutral/params.json, {train,test}/<v>.jpg   (black outside the mask, except on
                                           the uncertain pixels of the loss mask, which keep the photo's colour)
    <scene>/imface_mask/1/1_neutral/{train,test}/<v>.jpg
    <scene>/imface_loss_mask/1/1_neutral/{train,test}/<v>.png   (when given: 0 where the mask is uncertain, its
                                           edge band and open sphere cuts: the photometric loss asks for black
                                           or the photo there, see NeuFaceVolumeModelConfig.uncertain_pixels)
    <scene>/idr/image/<v>.png, idr/mask/<v>.png, idr/cameras.npz   (world_mat = K [R | t] in mm, scale_mat =
                                           the face sphere: 100 mm around the frame's origin), idr/scene.json
    <scene>/contact_sheet.png, <scene>/capture_report.json

The FaceScape files are written with neuface-prepare-facescape's own writers and split rule
(neuface_ns/tools/prepare_facescape.py: `split_views`, `_write_jpeg`), so the two tools agree on the layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from neuface_ns.tools.prepare_facescape import _write_jpeg, split_views

SUBJECT, EXPRESSION = "1", "1_neutral"


def write_scene(out: Path, names: List[str], images: Dict[str, np.ndarray], masks: Dict[str, np.ndarray],
                cameras_mm: Dict[str, tuple], landmarks_mm: np.ndarray, nose_index: int,
                test_every: int = 8, jpeg_quality: int = 95,
                loss_masks: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, List[str]]:
    """cameras_mm: name -> (K, R, t), world->camera in the face frame's millimetres (origin 40 mm behind the
    nose tip). loss_masks: name -> [H, W] bool, the pixels that count in the photometric loss (lossless PNG).
    Returns the train / test split (view names)."""
    import cv2

    views = [str(int(n)) for n in names]  # FaceScape view ids are numbers: 000 -> 0
    train, test = split_views(views, test_every)
    image_dir = out / "imface_image" / SUBJECT / EXPRESSION
    mask_dir = out / "imface_mask" / SUBJECT / EXPRESSION
    idr = out / "idr"
    (idr / "image").mkdir(parents=True, exist_ok=True)
    (idr / "mask").mkdir(parents=True, exist_ok=True)
    params: Dict[str, object] = {}
    arrays: Dict[str, np.ndarray] = {}
    scale_mat = np.diag([100.0, 100.0, 100.0, 1.0])
    # the frame's origin is 40 mm behind the nose tip; the FaceScape dataparser re-derives it from the nose
    # vertex, so the mesh is written with the nose at (0, 0, 40)
    for name, view in zip(names, views):
        K, R, t = cameras_mm[name]
        mask = masks[name]
        bgr = cv2.cvtColor(images[name], cv2.COLOR_RGB2BGR)
        split = "test" if view in test else "train"
        shown = mask if loss_masks is None else mask | ~loss_masks[name]  # uncertain pixels: black or the photo
        _write_jpeg(image_dir / split / f"{view}.jpg", bgr * shown[..., None].astype(np.uint8), jpeg_quality)
        _write_jpeg(mask_dir / split / f"{view}.jpg", mask.astype(np.uint8) * 255, jpeg_quality)
        if loss_masks is not None:
            loss_path = out / "imface_loss_mask" / SUBJECT / EXPRESSION / split / f"{view}.png"
            loss_path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(loss_path), loss_masks[name].astype(np.uint8) * 255)
        params[f"{view}_K"] = K.tolist()
        params[f"{view}_Rt"] = np.concatenate([R, t[:, None]], 1).tolist()
        params[f"{view}_height"], params[f"{view}_width"] = int(mask.shape[0]), int(mask.shape[1])
        cv2.imwrite(str(idr / "image" / f"{int(view):03d}.png"), bgr * mask[..., None].astype(np.uint8))
        cv2.imwrite(str(idr / "mask" / f"{int(view):03d}.png"), mask.astype(np.uint8) * 255)
        world = np.eye(4)
        world[:3] = K @ np.concatenate([R, t[:, None]], 1)
        arrays[f"world_mat_{int(view)}"], arrays[f"scale_mat_{int(view)}"] = world, scale_mat
    (image_dir / "params.json").write_text(json.dumps(params, indent=1))
    np.savez(idr / "cameras.npz", **arrays)
    (idr / "scene.json").write_text(json.dumps({"generator": "neuface-process-data",
                                                "held_out_views": [int(v) for v in test],
                                                "pixel_convention": "opencv"}, indent=1) + "\n")
    (out / "Rt_scale_dict.json").write_text(json.dumps({SUBJECT: {"1": [1.0, np.eye(4).tolist()]}}))
    v10 = np.full(68, -1, dtype=np.int64)
    v10[30] = nose_index
    np.savez(out / "landmark_indices.npz", v10=v10)
    model = out / "imface_model" / SUBJECT / f"{EXPRESSION}.obj"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_text("".join(f"v {x:.4f} {y:.4f} {z:.4f}\n" for x, y, z in landmarks_mm))
    return {"train": train, "test": test}


def contact_sheet(path: Path, names: List[str], images: Dict[str, np.ndarray], masks: Dict[str, np.ndarray],
                  landmarks: Dict[str, Optional[np.ndarray]], labels: Dict[str, str], tile: int = 240) -> None:
    """Every view: the image, its mask tinted green with its outline, the landmarks as dots, a label."""
    import cv2

    tiles = []
    for name in names:
        rgb = images[name].astype(np.float32)
        mask = masks.get(name)
        if mask is not None:
            rgb[mask] = 0.6 * rgb[mask] + 0.4 * np.array([0, 255, 0])
        picture = np.clip(rgb, 0, 255).astype(np.uint8)
        if mask is not None:
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(picture, contours, -1, (0, 255, 0), max(1, picture.shape[1] // 400))
        points = landmarks.get(name)
        if points is not None:
            for u, v in points[::3]:
                cv2.circle(picture, (int(round(u)), int(round(v))), max(1, picture.shape[1] // 500), (255, 0, 0), -1)
        scale = tile / max(picture.shape[:2])
        small = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        canvas = np.zeros((tile, tile, 3), np.uint8)
        canvas[:small.shape[0], :small.shape[1]] = small
        cv2.putText(canvas, labels.get(name, name), (3, tile - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
        tiles.append(canvas)
    columns = int(np.ceil(np.sqrt(len(tiles))))
    rows = int(np.ceil(len(tiles) / columns))
    sheet = np.zeros((rows * tile, columns * tile, 3), np.uint8)
    for k, canvas in enumerate(tiles):
        r, c = divmod(k, columns)
        sheet[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = canvas
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
