"""The NeuFace FaceScape layout (the bundled sample), and the support files it shares with the
release layout (Rt_scale_dict.json, landmark_indices.npz, the TU mesh, the per-view ground truth).
"""

import json
from pathlib import Path
from typing import Dict

import numpy as np

from ..conventions import PIXEL_CONVENTION, to_normalised
from ..face import extract_gt_mesh
from ..renderer import to_u8
from ..scene import Scene
from .facescape_frames import (
    FACESCAPE_SPLIT_RULE,
    FACESCAPE_TEST_EVERY,
    NOSE_TIP_LANDMARK,
    TU_MM_PER_UNIT,
    TU_ORIGIN_MM,
    expression_dirname,
    face_frame,
    facescape_split,
    mview_camera,
    mview_transform,
    normalised_to_tu,
)


def tu_mesh(resolution: int, nose_norm: np.ndarray):
    """Mesh of the face in TU millimetres with one vertex exactly at the nose tip; (mesh, nose vertex id)."""
    mesh = extract_gt_mesh(resolution, scale=TU_MM_PER_UNIT, centre=TU_ORIGIN_MM)
    nose_tu = normalised_to_tu(nose_norm)
    vertices = np.asarray(mesh.vertices, dtype=np.float64).copy()
    vid = int(np.argmin(np.linalg.norm(vertices - nose_tu, axis=1)))
    vertices[vid] = nose_tu
    mesh.vertices = vertices
    return mesh, vid


def landmark_vertex_ids(mesh, landmarks_norm: Dict[str, np.ndarray], nose_vid: int) -> np.ndarray:
    """68 'v10' ids (iBUG order): the nose tip exactly at 30, the other known landmarks near their iBUG slots."""
    vertices = np.asarray(mesh.vertices)

    def nearest(name: str) -> int:
        return int(np.argmin(np.linalg.norm(vertices - normalised_to_tu(landmarks_norm[name]), axis=1)))

    ids = np.full(68, nearest("chin"), dtype=np.int64)  # 0-16: jaw line (chin at 8)
    ids[17:27] = nearest("left_eye")  # brows: no analytic landmark, placeholder
    ids[27:36] = nose_vid
    ids[36:42] = nearest("right_eye")
    ids[42:48] = nearest("left_eye")
    ids[48:68] = nearest("mouth_centre")
    ids[NOSE_TIP_LANDMARK] = nose_vid
    return ids


def write_obj(mesh, path: Path) -> None:
    """Plain Wavefront OBJ (vertex order kept; faces 1-based)."""
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces, dtype=np.int64) + 1
    with open(path, "w") as fh:
        fh.write("# synthetic TU mesh (millimetres), scripts/make_sample_scene.py\n")
        fh.write("".join(f"v {a:.5f} {b:.5f} {c:.5f}\n" for a, b, c in v))
        fh.write("".join(f"f {a} {b} {c}\n" for a, b, c in f))


def _save_jpeg(arr: np.ndarray, path: Path, quality: int) -> None:
    from PIL import Image

    mode = "RGB" if arr.ndim == 3 else "L"
    Image.fromarray(arr, mode=mode).save(path, quality=quality, subsampling=0)


def _mesh_in_tu(scene: Scene):
    mesh = scene.mesh.copy()
    mesh.vertices = normalised_to_tu(to_normalised(np.asarray(mesh.vertices), scene.scale, scene.centre))
    return mesh


def _write_face_support_files(scene: Scene, root: Path, subject_id: int, expression_id: int,
                              tu_path: Path, tu_mesh_resolution: int) -> Dict[str, object]:
    """Rt_scale_dict.json, landmark_indices.npz and the TU mesh; returns facts for scene.json."""
    nose_norm = scene.landmarks["nose_tip"]["point"]
    mesh, nose_vid = tu_mesh(tu_mesh_resolution, nose_norm)
    tu_path.parent.mkdir(parents=True, exist_ok=True)
    write_obj(mesh, tu_path)
    ids = landmark_vertex_ids(mesh, {k: v["point"] for k, v in scene.landmarks.items()}, nose_vid)
    np.savez(root / "landmark_indices.npz", v10=ids)
    scale, R_s, t_s = mview_transform()
    Rt = np.eye(4)
    Rt[:3, :3], Rt[:3, 3] = R_s, t_s
    with open(root / "Rt_scale_dict.json", "w") as fh:
        json.dump({str(subject_id): {str(expression_id): [scale, Rt.tolist()]}}, fh, indent=1)
    return {"nose_vertex_id": nose_vid, "nose_tip_tu_mm": normalised_to_tu(nose_norm).tolist(),
            "mview_scale": scale, "mview_Rt": Rt.tolist(), "tu_mesh_vertices": int(len(mesh.vertices))}


def _facescape_view_record(scene: Scene, i: int, nose_norm: np.ndarray) -> Dict[str, object]:
    cam = scene.cameras[i]
    R_mv, t_mv = mview_camera(cam)
    centre_norm = to_normalised(cam.centre_world, scene.scale, scene.centre)
    return {
        "view": str(i),
        "K": cam.K.tolist(),
        "Rt": np.concatenate([R_mv, t_mv[:, None]], axis=1).tolist(),
        "camera_centre_face": face_frame(centre_norm, nose_norm).tolist(),
        "camera_centre_tu_mm": normalised_to_tu(centre_norm).tolist(),
        "rotation_c2w_face_opencv": cam.R.T.tolist(),
        "exposure": cam.exposure.tolist(),
        "landmarks": scene.landmark_views[i],
    }


def _facescape_common_metadata(scene: Scene, fmt: str, subject_id: int, expression_id: int,
                               support: Dict[str, object]) -> Dict[str, object]:
    nose_norm = scene.landmarks["nose_tip"]["point"]
    cam0 = scene.cameras[0]
    return {
        "format": fmt,
        "generator": "scripts/make_sample_scene.py",
        "image_encoding": "linear",  # renderer.py adds no tone curve (read by camera_response.py's "auto")
        "seed": scene.seed,
        "subject_id": subject_id,
        "expression_id": expression_id,
        "expression": expression_dirname(expression_id),
        "num_views": len(scene.cameras),
        "width": cam0.width,
        "height": cam0.height,
        "tu_frame": f"X_TU_mm = {TU_MM_PER_UNIT} * x_norm + {list(TU_ORIGIN_MM)} (generator normalised frame x_norm)",
        "face_frame": "x_face = (X_TU - nose_tip_TU + (0, 0, 40)) / 100  (one unit = 100 mm, nose tip at (0, 0, 0.4))",
        "mview_frame": "X_TU = R_s @ (scale * X_mview) + t_s  (Rt_scale_dict.json)",
        "split_rule": FACESCAPE_SPLIT_RULE,
        "pixel_convention": PIXEL_CONVENTION,
        "landmarks": {
            k: {
                "face": face_frame(v["point"], nose_norm).tolist(),
                "tu_mm": normalised_to_tu(v["point"]).tolist(),
                "normal": v["normal"].tolist(),
            }
            for k, v in scene.landmarks.items()
        },
        **support,
    }


def write_facescape_layout(scene: Scene, out_dir, subject_id: int = 1, expression_id: int = 1,
                           test_every: int = FACESCAPE_TEST_EVERY, jpeg_quality: int = 95,
                           tu_mesh_resolution: int = 64) -> Path:
    """Write the NeuFace FaceScape layout (docs/method.md section 7) of a rendered scene.

    <out>/Rt_scale_dict.json, landmark_indices.npz, imface_image/<id>/<e>_<expr>/{params.json, train/, test/},
    imface_mask/<id>/<e>_<expr>/{train,test}/<v>.jpg, imface_model/<id>/<e>_<expr>.obj, gt_mesh.ply (TU mm),
    scene.json.  Views are named by their index; the split follows FACESCAPE_SPLIT_RULE.
    """
    out = Path(out_dir)
    expr = expression_dirname(expression_id)
    image_dir = out / "imface_image" / str(subject_id) / expr
    mask_dir = out / "imface_mask" / str(subject_id) / expr
    for d in (image_dir / "train", image_dir / "test", mask_dir / "train", mask_dir / "test"):
        d.mkdir(parents=True, exist_ok=True)
    support = _write_face_support_files(scene, out, subject_id, expression_id,
                                        out / "imface_model" / str(subject_id) / f"{expr}.obj", tu_mesh_resolution)
    nose_norm = scene.landmarks["nose_tip"]["point"]
    train, test = facescape_split(list(range(len(scene.cameras))), test_every)
    params: Dict[str, object] = {}
    views = []
    for i, (cam, r) in enumerate(zip(scene.cameras, scene.renders)):
        split = "test" if i in test else "train"
        rec = _facescape_view_record(scene, i, nose_norm)
        params[f"{i}_K"] = rec["K"]
        params[f"{i}_Rt"] = rec["Rt"]
        params[f"{i}_width"] = cam.width
        params[f"{i}_height"] = cam.height
        params[f"{i}_valid"] = True
        _save_jpeg(to_u8(r.rgb), image_dir / split / f"{i}.jpg", jpeg_quality)
        _save_jpeg(np.where(r.mask, 255, 0).astype(np.uint8), mask_dir / split / f"{i}.jpg", jpeg_quality)
        rec.update({"split": split, "image": f"imface_image/{subject_id}/{expr}/{split}/{i}.jpg",
                    "mask": f"imface_mask/{subject_id}/{expr}/{split}/{i}.jpg",
                    "mask_fraction": float(r.mask.mean())})
        views.append(rec)
    with open(image_dir / "params.json", "w") as fh:
        json.dump(params, fh, indent=1)
    if scene.mesh is not None:
        _mesh_in_tu(scene).export(out / "gt_mesh.ply", file_type="ply", encoding="binary")
    meta = _facescape_common_metadata(scene, "facescape-neuface", subject_id, expression_id, support)
    meta.update({"train_views": [str(v) for v in train], "test_views": [str(v) for v in test],
                 "gt_mesh": "gt_mesh.ply (TU millimetres)", "views": views})
    with open(out / "scene.json", "w") as fh:
        json.dump(meta, fh, indent=1)
    return out


FACESCAPE_OUTPUTS = ("imface_image", "imface_mask", "imface_model", "images", "meshes", "tu",
                     "Rt_scale_dict.json", "landmark_indices.npz", "gt_mesh.ply", "scene.json")


def _clear_facescape_outputs(out: Path) -> None:
    """Remove only the folders / files the FaceScape writers create."""
    import shutil

    for name in FACESCAPE_OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.is_file():
            path.unlink()
