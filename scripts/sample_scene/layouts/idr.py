"""The DTU "IDR layout" that the NeuFace DTU dataparser reads::

    <out>/image/000.png ...   RGB, 8 bit, one per view (background black)
    <out>/mask/000.png ...    8 bit, 255 = object, 0 = background
    <out>/cameras.npz         world_mat_i, scale_mat_i (4x4 float64) per view i
    <out>/gt_mesh.ply         ground-truth mesh in WORLD units (binary PLY)
    <out>/scene.json          independent ground truth for tests
"""

import json
from pathlib import Path
from typing import Dict

import numpy as np

from ..conventions import CAMERA_CONVENTION, NORMALISED_FRAME, PIXEL_CONVENTION, scale_matrix, to_normalised, to_world
from ..face import MATERIAL_PARAMETERS
from ..renderer import KEY_LIGHT_DIRECTION, KEY_LIGHT_IRRADIANCE, SH_BASIS, SH_COEFFS, to_u8
from ..scene import Scene


def scene_metadata(scene: Scene) -> Dict[str, object]:
    """JSON-serialisable ground truth (see module docstring for conventions)."""
    s, c = scene.scale, np.asarray(scene.centre, dtype=np.float64)
    cam0 = scene.cameras[0]
    views = []
    for i, (cam, lmv) in enumerate(zip(scene.cameras, scene.landmark_views)):
        Cw = cam.centre_world
        views.append(
            {
                "index": i,
                "image": f"image/{i:03d}.png",
                "mask": f"mask/{i:03d}.png",
                "K": cam.K.tolist(),
                "R": cam.R.tolist(),
                "t": cam.t.tolist(),
                "camera_centre_world": Cw.tolist(),
                "camera_centre_normalised": to_normalised(Cw, s, c).tolist(),
                "azimuth_deg": cam.azimuth_deg,
                "elevation_deg": cam.elevation_deg,
                "roll_deg": cam.roll_deg,
                "exposure": cam.exposure.tolist(),
                "mask_fraction": float(scene.renders[i].mask.mean()),
                "landmarks": lmv,
            }
        )
    return {
        "format": "idr",
        "generator": "scripts/make_sample_scene.py",
        "image_encoding": "linear",  # renderer.py adds no tone curve (read by camera_response.py's "auto")
        "seed": scene.seed,
        "num_views": len(scene.cameras),
        "width": cam0.width,
        "height": cam0.height,
        "scale": s,
        "centre": c.tolist(),
        "scale_mat": scale_matrix(s, c).tolist(),
        "normalised_frame": NORMALISED_FRAME,
        "object_radius_normalised": 0.8,
        "pixel_convention": PIXEL_CONVENTION,
        "camera_convention": CAMERA_CONVENTION,
        "supersampling": {"samples_per_axis": 2, "offsets_from_pixel_centre": [-0.25, 0.25],
                          "mask_rule": "coverage >= 0.5"},
        "image_formation": "pixel = clip(exposure @ (diffuse + specular), 0, 1); linear (no gamma); uint8 = round(255 * pixel); background = 0",
        "landmarks": {
            k: {
                "world": to_world(v["point"], s, c).tolist(),
                "normalised": v["point"].tolist(),
                "normal": v["normal"].tolist(),
            }
            for k, v in scene.landmarks.items()
        },
        "lighting": {
            "sh_basis": SH_BASIS,
            "sh_coefficients": SH_COEFFS.tolist(),
            "sh_irradiance": "Ramamoorthi & Hanrahan 2001 eq. 13, c1..c5 = 0.429043, 0.511664, 0.743125, 0.886227, 0.247708",
            "sh_frame": "normalised/world axes (y up, +z = face front)",
            "key_light_direction": KEY_LIGHT_DIRECTION.tolist(),
            "key_light_direction_meaning": "unit vector from the surface towards the light",
            "key_light_irradiance": KEY_LIGHT_IRRADIANCE.tolist(),
        },
        "material": MATERIAL_PARAMETERS,
        "exposure_matrices": [cam.exposure.tolist() for cam in scene.cameras],
        "views": views,
    }


OUTPUT_FILES = ("cameras.npz", "gt_mesh.ply", "scene.json")


def write_idr_layout(scene: Scene, out_dir) -> Path:
    """Write the DTU/IDR layout (image/, mask/, cameras.npz, gt_mesh.ply, scene.json)."""
    from PIL import Image

    out = Path(out_dir)
    (out / "image").mkdir(parents=True, exist_ok=True)
    (out / "mask").mkdir(parents=True, exist_ok=True)
    S = scale_matrix(scene.scale, scene.centre)
    npz = {}
    for i, (cam, r) in enumerate(zip(scene.cameras, scene.renders)):
        Image.fromarray(to_u8(r.rgb), mode="RGB").save(out / "image" / f"{i:03d}.png", optimize=True)
        Image.fromarray(np.where(r.mask, 255, 0).astype(np.uint8), mode="L").save(out / "mask" / f"{i:03d}.png", optimize=True)
        npz[f"world_mat_{i}"] = cam.world_mat()
        npz[f"scale_mat_{i}"] = S.copy()
    np.savez(out / "cameras.npz", **npz)
    if scene.mesh is not None:
        scene.mesh.export(out / "gt_mesh.ply", file_type="ply", encoding="binary")
    with open(out / "scene.json", "w") as f:
        json.dump(scene_metadata(scene), f, indent=1)
    return out


def _clear_previous_outputs(out: Path) -> None:
    """Remove only files this generator writes (so --overwrite never deletes foreign data)."""
    for sub in ("image", "mask"):
        d = out / sub
        if d.is_dir():
            for f in d.glob("[0-9][0-9][0-9].png"):
                f.unlink()
    for name in OUTPUT_FILES:
        if (out / name).is_file():
            (out / name).unlink()
