"""Pixel convention of both dataparsers, checked against OpenCV's own projection.

DTU's / IDR's ``world_mat = K [R | t]`` and FaceScape's ``<v>_K`` are OpenCV cameras: the centre of pixel (row r,
col c) is the image point (c, r). nerfstudio casts the ray of pixel (row r, col c) through (c + 0.5, r + 0.5) from
the image corner with its cx, cy. Each test writes one camera in the real file layout, puts a 3D point where
``cv2.projectPoints`` says a pixel centre sees it, and checks that the ray nerfstudio casts for that pixel (its
RayGenerator, what training uses, and Cameras.generate_rays with its default pixel grid) passes through the point,
at full size and after area downscaling (odd image sizes: the last rows / columns are cropped).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from nerfstudio.model_components.ray_generators import RayGenerator

from neuface_ns.data.dtu import NeuFaceDTUDataParserConfig
from neuface_ns.data.facescape import NeuFaceFaceScapeDataParserConfig

from helpers import rotation

REPO = Path(__file__).resolve().parents[2]
SCAN = REPO / "neuface_ns" / "data" / "sample" / "scan"

# a deliberately awkward OpenCV camera: fx != fy, principal point off-centre and not on a half-pixel
K = np.array([[52.3, 0.0, 17.8], [0.0, 49.1, 13.35], [0.0, 0.0, 1.0]])
WIDTH, HEIGHT = 37, 29  # odd: downscaling crops


R_CAM = rotation([0.3, -1.0, 0.2], 2.6)  # world -> camera
T_CAM = np.array([0.4, -0.3, 6.5])


def opencv_pixel(X):
    """cv2.projectPoints of world point(s) X with (K, R_CAM, T_CAM), no distortion."""
    rvec, _ = cv2.Rodrigues(R_CAM)
    uv, _ = cv2.projectPoints(np.asarray(X, dtype=np.float64).reshape(-1, 1, 3), rvec, T_CAM, K, None)
    return uv.reshape(-1, 2)


def point_seen_at(u, v, depth):
    """World point that the OpenCV camera sees at image point (u, v), at camera depth ``depth``."""
    x_cam = depth * np.linalg.solve(K, [u, v, 1.0])
    return R_CAM.T @ (x_cam - T_CAM)


def targets(factor, width=WIDTH, height=HEIGHT):
    """(row, col) of pixels of the downscaled image, and the OpenCV image point of their centres at full size:
    the small pixel (R, C) averages the full pixels f R .. f R + f - 1, whose centres average to f R + (f - 1) / 2."""
    small_w, small_h = width // factor, height // factor
    pixels = [(0, 0), (small_h - 1, small_w - 1), (small_h // 2, 1), (3, small_w - 2)]
    return [((r, c), (factor * c + (factor - 1) / 2, factor * r + (factor - 1) / 2)) for r, c in pixels]


def distance_to_ray(point, origin, direction):
    d = direction / np.linalg.norm(direction)
    w = point - origin
    return float(np.linalg.norm(w - (w @ d) * d)), float(w @ d)


def check_rays(cameras, cam_index, pixel, point, tol):
    """The RayGenerator's ray of pixel (row, col) and generate_rays' default-grid ray both pass through point."""
    r, c = pixel
    ray = RayGenerator(cameras)(torch.tensor([[cam_index, r, c]]))
    dist, along = distance_to_ray(point, ray.origins[0].double().numpy(), ray.directions[0].double().numpy())
    assert dist < tol and along > 0, (pixel, dist)
    grid = cameras.generate_rays(camera_indices=cam_index)  # nerfstudio's own pixel grid (centres at + 0.5)
    dist, along = distance_to_ray(point, grid.origins[r, c].double().numpy(), grid.directions[r, c].double().numpy())
    assert dist < tol and along > 0, (pixel, dist)


# ---------------------------------------------------------------------------------------------------------------
# IDR / NeuS cameras.npz
# ---------------------------------------------------------------------------------------------------------------


def write_idr_scan(root: Path, width=WIDTH, height=HEIGHT, camera_file="cameras.npz"):
    """One view in the IDR layout: world_mat_0 = K [R | t] (world units), scale_mat_0 (a similarity)."""
    S = np.eye(4)
    S[:3, :3] = 1.7 * rotation([1.0, 0.5, -0.3], 0.4)
    S[:3, 3] = [0.2, -0.5, 0.9]
    world_mat = np.eye(4)
    world_mat[:3, :4] = K @ np.concatenate([R_CAM, T_CAM[:, None]], axis=1)
    for sub in ("image", "mask"):
        (root / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(root / "image" / "000.png")
    Image.fromarray(np.full((height, width), 255, np.uint8)).save(root / "mask" / "000.png")
    np.savez(root / camera_file, world_mat_0=world_mat, scale_mat_0=S)
    return S


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_idr_ray_of_a_pixel_passes_through_what_opencv_projects_there(tmp_path, factor):
    S = write_idr_scan(tmp_path / "scan")
    out = NeuFaceDTUDataParserConfig(data=tmp_path / "scan", eval_mode="all", downscale_factor=factor).setup()
    cameras = out.get_dataparser_outputs("train").cameras
    assert int(cameras.width[0]) == WIDTH // factor and int(cameras.height[0]) == HEIGHT // factor
    for pixel, (u, v) in targets(factor):
        X_world = point_seen_at(u, v, depth=6.1)
        np.testing.assert_allclose(opencv_pixel(X_world)[0], [u, v], atol=1e-9)  # OpenCV agrees
        x_norm = np.linalg.solve(S, np.append(X_world, 1.0))[:3]  # the parser's frame: X_world = S x_norm
        check_rays(cameras, 0, pixel, x_norm, tol=2e-5)


def test_idr_half_pixel_error_would_be_caught(tmp_path):
    """The check above is sharp: the neighbouring half-pixel position is far off the ray."""
    S = write_idr_scan(tmp_path / "scan")
    cameras = NeuFaceDTUDataParserConfig(data=tmp_path / "scan", eval_mode="all").setup().get_dataparser_outputs().cameras
    X_world = point_seen_at(10.5, 7.5, depth=6.1)  # the corner between pixels, not the centre of (7, 10)
    x_norm = np.linalg.solve(S, np.append(X_world, 1.0))[:3]
    ray = RayGenerator(cameras)(torch.tensor([[0, 7, 10]]))
    dist, _ = distance_to_ray(x_norm, ray.origins[0].double().numpy(), ray.directions[0].double().numpy())
    assert dist > 100 * 2e-5


def test_idr_intrinsics_are_shifted_by_half_a_pixel(tmp_path):
    write_idr_scan(tmp_path / "scan")
    for factor in (1, 2, 3):
        cams = NeuFaceDTUDataParserConfig(data=tmp_path / "scan", eval_mode="all", downscale_factor=factor).setup()
        cams = cams.get_dataparser_outputs().cameras
        np.testing.assert_allclose(float(cams.fx[0]), K[0, 0] / factor, rtol=1e-6)
        np.testing.assert_allclose(float(cams.fy[0]), K[1, 1] / factor, rtol=1e-6)
        np.testing.assert_allclose(float(cams.cx[0]), (K[0, 2] + 0.5) / factor, rtol=1e-6)
        np.testing.assert_allclose(float(cams.cy[0]), (K[1, 2] + 0.5) / factor, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# FaceScape params.json
# ---------------------------------------------------------------------------------------------------------------

FS_SCALE, FS_RS, FS_TS = 2.2, rotation([0.1, 1.0, 0.3], -0.5), np.array([5.0, -7.0, 3.0])
NOSE_MM = np.array([2.0, -15.0, 80.0])


def write_facescape_tuple(root: Path, width=WIDTH, height=HEIGHT):
    """One training view (subject 1, expression 1) in the NeuFace FaceScape layout, K and Rt in params.json."""
    Rt = np.eye(4)
    Rt[:3, :3], Rt[:3, 3] = FS_RS, FS_TS
    root.mkdir(parents=True)
    (root / "Rt_scale_dict.json").write_text(json.dumps({"1": {"1": [FS_SCALE, Rt.tolist()]}}))
    np.savez(root / "landmark_indices.npz", v10=np.arange(68))
    (root / "imface_model" / "1").mkdir(parents=True)
    vertices = [NOSE_MM if k == 30 else np.array([k, 0.0, 0.0]) for k in range(31)]
    (root / "imface_model" / "1" / "1_neutral.obj").write_text("".join(f"v {a} {b} {c}\n" for a, b, c in vertices))
    image_dir = root / "imface_image" / "1" / "1_neutral"
    (image_dir / "train").mkdir(parents=True)
    (root / "imface_mask" / "1" / "1_neutral" / "train").mkdir(parents=True)
    params = {"0_K": K.tolist(), "0_Rt": np.concatenate([R_CAM, T_CAM[:, None]], axis=1).tolist(),
              "0_width": width, "0_height": height, "0_valid": True}
    (image_dir / "params.json").write_text(json.dumps(params))
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(image_dir / "train" / "0.jpg")
    Image.fromarray(np.full((height, width), 255, np.uint8)).save(root / "imface_mask" / "1" / "1_neutral" / "train" / "0.jpg")


def mview_to_face(X):
    """FaceScape multi-view frame -> TU mm (Rt_scale_dict) -> NeuFace face frame (nose tip at (0, 0, 0.4))."""
    X_tu = FS_RS @ (FS_SCALE * X) + FS_TS
    return (X_tu - NOSE_MM + np.array([0.0, 0.0, 40.0])) / 100.0


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_facescape_ray_of_a_pixel_passes_through_what_opencv_projects_there(tmp_path, factor):
    write_facescape_tuple(tmp_path / "fs")
    config = NeuFaceFaceScapeDataParserConfig(data=tmp_path / "fs", downscale_factor=factor)
    cameras = config.setup().get_dataparser_outputs("train").cameras
    assert int(cameras.width[0]) == WIDTH // factor and int(cameras.height[0]) == HEIGHT // factor
    np.testing.assert_allclose(float(cameras.cx[0]), (K[0, 2] + 0.5) / factor, rtol=1e-6)
    np.testing.assert_allclose(float(cameras.cy[0]), (K[1, 2] + 0.5) / factor, rtol=1e-6)
    for pixel, (u, v) in targets(factor):
        X_mview = point_seen_at(u, v, depth=5.3)
        np.testing.assert_allclose(opencv_pixel(X_mview)[0], [u, v], atol=1e-9)
        check_rays(cameras, 0, pixel, mview_to_face(X_mview), tol=2e-5)


# ---------------------------------------------------------------------------------------------------------------
# the bundled scan sample (Blender renders: true OpenCV K, principal point at the image centre)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not (SCAN / "cameras.npz").is_file(), reason="scan sample not bundled")
def test_scan_sample_principal_point_is_the_image_centre():
    """Blender renders with the principal point at the image centre; scripts/render_scan_scene.py stores it as the
    OpenCV K (cx = W/2 - 0.5), so both parsers put nerfstudio's cx, cy exactly at W/2, H/2."""
    dtu = NeuFaceDTUDataParserConfig(data=SCAN, eval_mode="all").setup().get_dataparser_outputs().cameras
    np.testing.assert_allclose(dtu.cx.numpy(), dtu.width.numpy() / 2.0, atol=1e-3)
    np.testing.assert_allclose(dtu.cy.numpy(), dtu.height.numpy() / 2.0, atol=1e-3)
    face_root = SCAN / "facescape"
    subject = next(p.name for p in (face_root / "imface_image").iterdir() if p.is_dir())
    fs = NeuFaceFaceScapeDataParserConfig(data=face_root, subject_id=int(subject), downscale_factor=1).setup()
    fs = fs.get_dataparser_outputs().cameras
    np.testing.assert_allclose(fs.cx.numpy(), fs.width.numpy() / 2.0, atol=1e-3)
    np.testing.assert_allclose(fs.cy.numpy(), fs.height.numpy() / 2.0, atol=1e-3)
