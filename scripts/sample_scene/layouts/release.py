"""A tiny FaceScape multi-view *release* layout (distorted images, one invalid view): the input of
scripts/prepare_facescape.py.
"""

import json
from pathlib import Path
from typing import Dict, Sequence

import numpy as np

from ..renderer import render_distorted_view, to_u8
from ..scene import Scene
from .facescape import (
    _facescape_common_metadata,
    _facescape_view_record,
    _mesh_in_tu,
    _save_jpeg,
    _write_face_support_files,
)
from .facescape_frames import axis_angle, expression_dirname, facescape_split, tu_to_mview


RELEASE_DISTORTION = (-0.8, 0.5, 0.01, -0.008, 0.2)  # k1 k2 p1 p2 k3 (OpenCV); strong, so that undistortion is measurable


def write_facescape_release(scene: Scene, out_dir, subject_id: int = 1, expression_id: int = 1,
                            invalid_views: Sequence[int] = (2,), distortion: Sequence[float] = RELEASE_DISTORTION,
                            jpeg_quality: int = 95, tu_mesh_resolution: int = 48) -> Path:
    """Write a tiny FaceScape multi-view *release* layout (the input of scripts/prepare_facescape.py).

    <out>/images/<id>/<e>_<expr>/{<v>.jpg, params.json}   distorted images; params: <v>_K (3x3), <v>_Rt (3x4),
                                                         <v>_distortion (k1 k2 p1 p2 k3), <v>_width, <v>_height,
                                                         <v>_valid, <v>_matches, <v>_sn, <v>_ori
    <out>/meshes/<id>/<e>_<expr>.ply                     multi-view mesh (multi-view frame)
    <out>/tu/<id>/models_reg/<e>_<expr>.obj              TU mesh (mm)
    <out>/Rt_scale_dict.json, <out>/landmark_indices.npz
    <out>/scene.json                                     ground truth (undistorted views, expected cameras)

    Views in ``invalid_views`` get ``_valid = False`` and a wrong Rt (as unreliable FaceScape views have).
    ``scene.renders`` are the *undistorted* reference images; the written images are rendered with distortion.
    """
    out = Path(out_dir)
    expr = expression_dirname(expression_id)
    image_dir = out / "images" / str(subject_id) / expr
    image_dir.mkdir(parents=True, exist_ok=True)
    (out / "meshes" / str(subject_id)).mkdir(parents=True, exist_ok=True)
    support = _write_face_support_files(scene, out, subject_id, expression_id,
                                        out / "tu" / str(subject_id) / "models_reg" / f"{expr}.obj",
                                        tu_mesh_resolution)
    nose_norm = scene.landmarks["nose_tip"]["point"]
    params: Dict[str, object] = {}
    views = []
    for i, cam in enumerate(scene.cameras):
        rec = _facescape_view_record(scene, i, nose_norm)
        valid = i not in invalid_views
        Rt = np.asarray(rec["Rt"])
        if not valid:
            Rt = np.concatenate([axis_angle((1.0, 0.2, 0.0), 0.5) @ Rt[:, :3], Rt[:, 3:] + 0.3], axis=1)
        params[f"{i}_K"] = rec["K"]
        params[f"{i}_Rt"] = Rt.tolist()
        params[f"{i}_distortion"] = list(distortion)
        params[f"{i}_width"] = cam.width
        params[f"{i}_height"] = cam.height
        params[f"{i}_matches"] = 1000 if valid else 3
        params[f"{i}_valid"] = valid
        params[f"{i}_sn"] = f"SYN{i:04d}"
        params[f"{i}_ori"] = f"IMG_{i:04d}.JPG"
        distorted = render_distorted_view(cam, distortion)
        _save_jpeg(to_u8(distorted.rgb), image_dir / f"{i}.jpg", jpeg_quality)
        rec.update({"valid": valid, "distorted_mask_fraction": float(distorted.mask.mean())})
        views.append(rec)
    with open(image_dir / "params.json", "w") as fh:
        json.dump(params, fh, indent=1)
    if scene.mesh is not None:
        mview_mesh = _mesh_in_tu(scene)
        mview_mesh.vertices = tu_to_mview(np.asarray(mview_mesh.vertices))
        mview_mesh.export(out / "meshes" / str(subject_id) / f"{expr}.ply", file_type="ply", encoding="binary")
    valid_ids = [i for i in range(len(scene.cameras)) if i not in invalid_views]
    train, test = facescape_split(valid_ids)
    meta = _facescape_common_metadata(scene, "facescape-release", subject_id, expression_id, support)
    meta.update({"distortion": list(distortion), "invalid_views": [str(v) for v in invalid_views],
                 "expected_train_views": [str(v) for v in train], "expected_test_views": [str(v) for v in test],
                 "views": views})
    with open(out / "scene.json", "w") as fh:
        json.dump(meta, fh, indent=1)
    return out
