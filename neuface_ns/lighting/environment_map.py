"""Equirectangular HDR environment maps (.exr / .hdr) as SH lights.

A map is projected onto the real SH basis of sh.py up to l = 10 by summing radiance x Y_lm over every
pixel, weighted by the pixel's exact solid angle (2 pi / W) (cos theta_top - cos theta_bottom); the result can
replace the learned light (scripts/relight.py --light, presets.load_sh_light).

Map convention (latitude-longitude, as seen from the subject looking out): the top row is straight up (+y of the
scene frame), the bottom row straight down; the centre column is the direction the face looks (+z), and moving
right in the image turns towards -x (the subject's right, which is the viewer's left). Rotate it with the
relighting yaw / pitch / roll when a map was made for another orientation.

Files are read with OpenCV (Radiance .hdr natively, OpenEXR with OPENCV_IO_ENABLE_OPENEXR, which is set here).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from neuface_ns.lighting.sh import MAX_SH_ORDER, real_spherical_harmonics

ENVIRONMENT_MAP_SUFFIXES = (".exr", ".hdr")


def read_environment_map(path: str | Path) -> np.ndarray:
    """Linear RGB radiance [H, W, 3] float32 of an equirectangular .exr / .hdr file (one-line errors)."""
    path = Path(path)
    if path.suffix.lower() not in ENVIRONMENT_MAP_SUFFIXES:
        raise ValueError(f"{path}: an environment map must be a .exr or .hdr file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: environment map not found")
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # read lazily by OpenCV's EXR decoder
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable HDR image")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = image[..., :3][..., ::-1].astype(np.float32)  # OpenCV's BGR(A) -> RGB
    height, width = image.shape[:2]
    if width != 2 * height:
        raise ValueError(f"{path}: an equirectangular map is twice as wide as high, got {width}x{height}")
    if not np.all(np.isfinite(image)):
        raise ValueError(f"{path}: the map has non-finite pixels")
    return np.ascontiguousarray(image)


def equirectangular_directions(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit directions [H, W, 3] of the pixel centres in the scene frame (module convention) and each
    pixel's solid angle [H, W] (float64; they sum to 4 pi)."""
    theta_edges = torch.linspace(0.0, math.pi, height + 1, dtype=torch.float64)  # polar angle from +y
    theta = 0.5 * (theta_edges[:-1] + theta_edges[1:])
    phi = 2.0 * math.pi * ((torch.arange(width, dtype=torch.float64) + 0.5) / width - 0.5)  # 0 at the centre
    sin_t, cos_t = torch.sin(theta)[:, None], torch.cos(theta)[:, None]
    directions = torch.stack(
        [-sin_t * torch.sin(phi)[None], cos_t.expand(height, width), sin_t * torch.cos(phi)[None]], dim=-1
    )
    band = torch.cos(theta_edges[:-1]) - torch.cos(theta_edges[1:])
    solid_angle = (2.0 * math.pi / width) * band[:, None].expand(height, width)
    return directions, solid_angle


def project_environment_map(radiance: np.ndarray | torch.Tensor, order: int = MAX_SH_ORDER) -> torch.Tensor:
    """SH coefficients [(order+1)^2, C] (float32) of an equirectangular radiance map [H, W, C]."""
    radiance = torch.as_tensor(np.asarray(radiance), dtype=torch.float64)
    height, width, channels = radiance.shape
    directions, solid_angle = equirectangular_directions(height, width)
    coefficients = torch.zeros((order + 1) ** 2, channels, dtype=torch.float64)
    for row in range(0, height, 64):  # bands of rows keep the [pixels, 121] basis small for large maps
        basis = real_spherical_harmonics(directions[row : row + 64].reshape(-1, 3), order)
        weighted = (radiance[row : row + 64] * solid_angle[row : row + 64, :, None]).reshape(-1, channels)
        coefficients += basis.T @ weighted
    return coefficients.float()


def load_environment_map_light(path: str | Path, order: int = MAX_SH_ORDER) -> torch.Tensor:
    """Read and project a .exr / .hdr map: float32 [(order+1)^2, 3]."""
    return project_environment_map(read_environment_map(path), order)
