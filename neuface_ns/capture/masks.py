"""Stage 5, the face masks as NeuFace uses them: the pixels whose first visible surface lies inside the unit
face sphere (100 mm around the point 40 mm behind the nose tip), consistent across views.

1. Foreground per image, at the image's resolution: MediaPipe's selfie segmentation (the person against the
   room; shipped in the mediapipe wheel) joined with the landmarks' face oval, extended over the forehead (the
   oval's upper half pushed up by 25 % of the face height), which is always foreground.
2. One 3D occupancy shared by all views: the visual hull of the foregrounds in a voxel grid over the face
   sphere (a voxel survives unless more than `max_votes_against` views that see it call it background).
3. Per view, each pixel's ray is marched through that hull; the first occupied voxel is where the ray meets the
   head. The mask is foreground and (first hit inside the sphere, or inside the face oval). A point of the head
   inside the sphere is thus masked in every view whose ray reaches it first, and the mask's edge on the neck,
   the hair and the ears is where the sphere cuts the head, the same in every view.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from neuface_ns.capture.landmarks import FACE_OVAL, Detection


def segmentation_model():
    import mediapipe as mp

    return mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)


def foreground_probability(rgb: np.ndarray, model) -> np.ndarray:
    """[H, W] float in [0, 1]: MediaPipe selfie segmentation at the image's resolution."""
    return np.asarray(model.process(rgb).segmentation_mask, dtype=np.float32)


def face_oval_mask(detection: Detection, width: int, height: int, forehead: float = 0.25) -> np.ndarray:
    """The face oval polygon, its points above the eyes moved up by `forehead` x the face height."""
    import cv2

    oval = detection.points[list(FACE_OVAL)].copy()
    eyes = detection.points[[468, 473]].mean(0)
    chin = detection.points[152]
    up = eyes - chin
    face_height = np.linalg.norm(up)
    up = up / max(face_height, 1e-9)
    above = (oval - eyes) @ up > 0
    oval[above] += up * forehead * face_height * np.clip(((oval[above] - eyes) @ up) / (0.6 * face_height), 0, 1)[:, None]
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(oval).astype(np.int32)], 1)
    return mask.astype(bool)


def _sample(image: np.ndarray, uv: np.ndarray, outside: float) -> np.ndarray:
    """Nearest-pixel lookup of image [H, W] at OpenCV pixel positions uv [N, 2]; `outside` off the image."""
    height, width = image.shape
    u = np.round(uv[:, 0]).astype(np.int64)
    v = np.round(uv[:, 1]).astype(np.int64)
    valid = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    out = np.full(len(uv), outside, dtype=np.float32)
    out[valid] = image[v[valid], u[valid]]
    return out


def visual_hull(projections: Dict[str, np.ndarray], foregrounds: Dict[str, np.ndarray], resolution: int = 80,
                extent: float = 1.25, max_votes_against: int = 1) -> np.ndarray:
    """Occupancy [R, R, R] (index order x, y, z) over [-extent, extent]^3 in face units. projections: 3x4 maps
    from face units to OpenCV pixels."""
    axis = (np.arange(resolution) + 0.5) / resolution * 2 * extent - extent
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    homogeneous = np.concatenate([grid, np.ones((len(grid), 1))], 1)
    against = np.zeros(len(grid), dtype=np.int32)
    for name, P in projections.items():
        x = homogeneous @ P.T
        uv = x[:, :2] / x[:, 2:3]
        value = _sample(foregrounds[name], uv, outside=1.0)  # off-image: no vote
        against += ((value < 0.5) & (x[:, 2] > 0)).astype(np.int32)
    return (against <= max_votes_against).reshape(resolution, resolution, resolution)


def first_hit_inside_sphere(occupancy: np.ndarray, extent: float, K: np.ndarray, R: np.ndarray, t: np.ndarray,
                            width: int, height: int, work_size: int = 400) -> np.ndarray:
    """[H, W] bool: the ray of the pixel meets the hull first inside the unit sphere (face units; R, t map face
    units to the camera). Marched at a working resolution (long side `work_size`), then resized."""
    import cv2

    resolution = occupancy.shape[0]
    scale = min(1.0, work_size / max(width, height))
    w, h = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
    j, i = np.meshgrid((np.arange(w) + 0.5) / scale - 0.5, (np.arange(h) + 0.5) / scale - 0.5)
    rays = np.stack([j, i, np.ones_like(j)], -1).reshape(-1, 3) @ np.linalg.inv(K).T @ R  # world = R^T d
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    centre = -R.T @ t
    distance = np.linalg.norm(centre)
    voxel = 2 * extent / resolution
    steps = np.arange(max(distance - extent * 1.8, 0.0), distance + extent * 1.8, voxel * 0.5)
    hit = np.full(len(rays), np.inf)
    inside = np.zeros(len(rays), dtype=bool)
    for start in range(0, len(rays), 8192):
        d = rays[start:start + 8192]
        points = centre[None, None] + d[:, None] * steps[None, :, None]  # [n, S, 3]
        index = np.floor((points + extent) / voxel).astype(np.int64)
        valid = np.all((index >= 0) & (index < resolution), -1)
        index = np.clip(index, 0, resolution - 1)
        occupied = valid & occupancy[index[..., 0], index[..., 1], index[..., 2]]
        any_hit = occupied.any(1)
        first = np.argmax(occupied, axis=1)
        point = points[np.arange(len(d)), first]
        inside[start:start + 8192] = any_hit & (np.linalg.norm(point, axis=-1) < 1.0)
        hit[start:start + 8192] = np.where(any_hit, steps[first], np.inf)
    small = inside.reshape(h, w).astype(np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)


def face_masks(images: Dict[str, np.ndarray], detections: Dict[str, Optional[Detection]],
               cameras_unit: Dict[str, tuple], resolution: int = 80, extent: float = 1.25,
               max_votes_against: Optional[int] = None) -> Dict[str, np.ndarray]:
    """images: name -> RGB; cameras_unit: name -> (K, R, t) with R, t mapping face units to the camera."""
    model = segmentation_model()
    try:
        foregrounds: Dict[str, np.ndarray] = {}
        ovals: Dict[str, np.ndarray] = {}
        for name, rgb in images.items():
            height, width = rgb.shape[:2]
            probability = foreground_probability(rgb, model)
            oval = (face_oval_mask(detections[name], width, height) if detections.get(name) is not None
                    else np.zeros((height, width), bool))
            probability[oval] = 1.0
            foregrounds[name], ovals[name] = probability, oval
    finally:
        model.close()
    projections = {n: K @ np.concatenate([R, t[:, None]], 1) for n, (K, R, t) in cameras_unit.items()}
    votes = max(1, len(images) // 10) if max_votes_against is None else max_votes_against
    occupancy = visual_hull(projections, foregrounds, resolution, extent, votes)
    masks: Dict[str, np.ndarray] = {}
    for name, rgb in images.items():
        K, R, t = cameras_unit[name]
        height, width = rgb.shape[:2]
        inside = first_hit_inside_sphere(occupancy, extent, K, R, t, width, height)
        masks[name] = (foregrounds[name] > 0.5) & (inside | ovals[name])
    return masks


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def mask_summary(masks: Dict[str, np.ndarray]) -> List[int]:
    return [int(m.sum()) for m in masks.values()]
