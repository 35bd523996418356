"""Stage 4b, the nose tip's depth from photo-consistency.

The triangulated landmarks put the nose tip 1.6-3.3 mm in front of the skin on the rendered captures, almost all
of it along the face's z axis (MediaPipe's mesh has its own nose, which a subject's need not match), and that
error moves NeuFace's face sphere by as much. The skin itself decides the depth: a small patch on the plane
through the candidate point, facing the cameras (the skin at the nose tip faces +z), is projected into every view
within `max_angle_deg` of the face axis; at the right depth those views agree. The candidate moves along z only
(the landmarks place the tip well across the face, where parallax would not help anyway); the score at each
depth is the mean normalised cross-correlation (Gaussian-weighted) of each view's patch with the mean patch of the
other views, the best depth refined by a parabola through its neighbours.

Patch size: 3 mm half-width measured best on both rendered captures (2.0 / 3.25 mm found against 1.6 / 3.3 mm
true); larger patches bend over the nose's curvature and pull the match behind the tip (5 mm: 2.75 / 3.5,
8 mm: 4.5 / 6.0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np


@dataclass
class NoseDepth:
    offset_mm: float  # along the face's z axis (out of the face); 0 when not applied
    score: float  # the best mean correlation
    score_at_landmarks: float  # the same at the triangulated point
    views: List[str]
    applied: bool
    why: str


def _grey(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))


def photo_consistency(images: Dict[str, np.ndarray], cameras: Dict[str, Tuple[np.ndarray, np.ndarray, np.ndarray]],
                      centre: np.ndarray, u: np.ndarray, v: np.ndarray, half: float, samples: int = 15) -> float:
    """Mean weighted NCC of each view's samples of the square patch centre + a u + b v (a, b in [-half, half])
    against the other views' mean patch. cameras: name -> (K, R, t) world -> camera; images: name -> [H, W] grey float32."""
    import cv2

    grid = np.linspace(-half, half, samples)
    a, b = np.meshgrid(grid, grid)
    points = centre[None] + a.reshape(-1, 1) * u[None] + b.reshape(-1, 1) * v[None]
    sigma = half / 2.0
    weight = np.exp(-(a**2 + b**2).reshape(-1) / (2 * sigma**2))
    weight /= weight.sum()
    patches = []
    for name, (K, R, t) in cameras.items():
        x = (points @ R.T + t) @ K.T
        uv = (x[:, :2] / x[:, 2:3]).astype(np.float32).reshape(samples, samples, 2)
        patch = cv2.remap(images[name], uv[..., 0], uv[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        patch = patch.reshape(-1).astype(np.float64)
        patch -= weight @ patch
        patches.append(patch / max(np.sqrt(weight @ (patch * patch)), 1e-6))
    stack = np.stack(patches)
    others = (stack.sum(0)[None] - stack) / (len(stack) - 1)  # each view against the others (noise scores ~0)
    others /= np.maximum(np.sqrt((others * others) @ weight), 1e-6)[:, None]
    return float(np.mean((stack * others) @ weight))


def refine_nose_depth(images: Dict[str, np.ndarray], cameras: Dict[str, Tuple[np.ndarray, np.ndarray, np.ndarray]],
                      nose: np.ndarray, rotation: np.ndarray, mm_per_world: float, half_mm: float = 3.0,
                      search_mm: float = 8.0, step_mm: float = 0.25, max_angle_deg: float = 45.0,
                      min_score: float = 0.3) -> NoseDepth:
    """The nose tip's offset along the face z axis (rotation[:, 2], world) that makes the views agree.

    images: name -> RGB; cameras: name -> (K, R, t) world -> camera (SfM units); nose [3] world. Not applied (offset
    0, `why` says so) with fewer than 3 views within `max_angle_deg`, a best score below `min_score` (a skin
    without texture, a blurred capture) or a best depth at the end of the search range."""
    x_axis, y_axis, z_axis = rotation[:, 0], rotation[:, 1], rotation[:, 2]
    chosen = {}
    for name, (K, R, t) in cameras.items():
        direction = -R.T @ t - nose
        angle = np.degrees(np.arccos(np.clip(direction @ z_axis / np.linalg.norm(direction), -1.0, 1.0)))
        if angle < max_angle_deg and name in images:
            chosen[name] = (K, R, t)
    views = sorted(chosen)
    if len(views) < 3:
        return NoseDepth(0.0, float("nan"), float("nan"), views, False, f"only {len(views)} views face the nose")
    grey = {n: _grey(images[n]) for n in views}
    unit = 1.0 / mm_per_world  # world units per mm
    offsets = np.arange(-search_mm, search_mm + step_mm / 2, step_mm)
    scores = np.array([photo_consistency(grey, chosen, nose + z_axis * d * unit, x_axis, y_axis, half_mm * unit)
                       for d in offsets])
    best = int(np.argmax(scores))
    at_zero = float(scores[int(np.argmin(np.abs(offsets)))])
    if best in (0, len(offsets) - 1):
        return NoseDepth(0.0, float(scores[best]), at_zero, views, False,
                         f"the best depth is at the end of the +-{search_mm:g} mm search")
    if scores[best] < min_score:
        return NoseDepth(0.0, float(scores[best]), at_zero, views, False,
                         f"the views agree too little anywhere (best correlation {scores[best]:.2f} < {min_score:g})")
    left, centre, right = scores[best - 1: best + 2]
    curvature = left - 2 * centre + right
    shift = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
    offset = float(offsets[best] + np.clip(shift, -0.5, 0.5) * step_mm)
    return NoseDepth(offset, float(scores[best]), at_zero, views, True, "photo-consistency")
