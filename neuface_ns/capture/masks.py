"""Stage 5, the face masks as NeuFace uses them: the pixels whose first visible surface lies inside the unit
face sphere (100 mm around the point 40 mm behind the nose tip), consistent across views.

1. Foreground per image, at the image's resolution: MediaPipe's selfie segmentation (the person against the
   room; shipped in the mediapipe wheel) joined with the landmarks' face oval, extended over the forehead (the
   oval's upper half pushed up by 25 % of the face height).
2. One 3D occupancy shared by all views: the visual hull of the foregrounds in a 96^3 voxel grid over
   [-1.25, 1.25]^3 (a voxel that any view sees as background is carved; `max_votes_against` tolerates some).
   Then the lines of sight of structure from motion carve it further: a point that a camera sees (an SfM point
   with its track) means the segment between them is empty, which removes what a silhouette cannot: the
   hollow under the chin in front of the neck, the sides of the nose. Few SfM points land on skin, so the
   hollow under the chin is also carved with a prior: below the triangulated jaw line, the 35 mm behind it
   are empty (the front of the neck lies 40-60 mm behind the chin; on the rendered capture this took the
   mean mask IoU from 0.90 to 0.94).
3. Per view, each foreground pixel's ray is marched through that hull; the first occupied voxel is where the
   ray meets the head. The mask is: foreground and first hit inside the sphere, except where the hull leaves
   the sphere cut open (`sphere_cut_of_first_hit`'s uncertain pixels: on the rendered capture only a third of
   them are face). A point of the head inside the sphere is thus masked in every view whose ray reaches it
   first, and the mask's edge on the forehead, the neck and the ears is where the sphere cuts the head, decided
   once in 3D for every view. (The face oval is not forced into the mask: the sphere can cut the forehead below
   the oval's extension.)

Foreground is a segmentation probability above 0.8 (`FOREGROUND_THRESHOLD`), not 0.5: the selfie model, run at
256 px, spreads the person over 1-3 px of background at the profile's concavities (between the nose, the lips
and the chin), which no other view carves. On the rendered capture (three SfM runs) 0.8 and the uncertain pixels
out of the mask took the masks' IoU with the true face region from 0.937 / 0.890 (mean / min) to 0.950 / 0.907
with the default scale and from 0.942 / 0.898 to 0.948 / 0.913 with the true one.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from neuface_ns.capture.landmarks import FACE_OVAL, Detection

#: Segmentation probability above which a pixel is foreground (for the hull and the masks); see above.
FOREGROUND_THRESHOLD = 0.8


def segmentation_model():
    import mediapipe as mp

    return mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)


def foreground_probability(rgb: np.ndarray, model) -> np.ndarray:
    """[H, W] float in [0, 1]: MediaPipe selfie segmentation at the image's resolution."""
    return np.array(model.process(rgb).segmentation_mask, dtype=np.float32)  # a writable copy


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


def visual_hull(projections: Dict[str, np.ndarray], foregrounds: Dict[str, np.ndarray], resolution: int = 96,
                extent: float = 1.25, max_votes_against: int = 0,
                threshold: float = FOREGROUND_THRESHOLD) -> np.ndarray:
    """Occupancy [R, R, R] (index order x, y, z) over [-extent, extent]^3 in face units. projections: 3x4 maps
    from face units to OpenCV pixels; foregrounds: probabilities, background below `threshold`."""
    axis = (np.arange(resolution) + 0.5) / resolution * 2 * extent - extent
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    homogeneous = np.concatenate([grid, np.ones((len(grid), 1))], 1)
    against = np.zeros(len(grid), dtype=np.int32)
    for name, P in projections.items():
        x = homogeneous @ P.T
        uv = x[:, :2] / x[:, 2:3]
        value = _sample(foregrounds[name], uv, outside=1.0)  # off-image: no vote
        against += ((value < threshold) & (x[:, 2] > 0)).astype(np.int32)
    return (against <= max_votes_against).reshape(resolution, resolution, resolution)


def carve_lines_of_sight(occupancy: np.ndarray, extent: float, points: np.ndarray, centres: List[np.ndarray],
                         margin_voxels: float = 2.0) -> np.ndarray:
    """Empty every voxel on the segment from each camera centre to the point it sees, up to `margin_voxels`
    before the point (face units). points [P, 3]; centres: per point, an array [k, 3] of its cameras."""
    resolution = occupancy.shape[0]
    voxel = 2 * extent / resolution
    occupancy = occupancy.copy()
    starts, ends = [], []
    for point, cams in zip(points, centres):
        if np.abs(point).max() >= extent:
            continue
        for centre in cams:
            starts.append(centre)
            ends.append(point)
    if not starts:
        return occupancy
    starts, ends = np.array(starts), np.array(ends)
    direction = ends - starts
    length = np.linalg.norm(direction, axis=1)
    direction /= length[:, None]
    steps = np.arange(0.0, length.max(), voxel * 0.5)
    for chunk in range(0, len(starts), 2048):
        s0, d, n = starts[chunk:chunk + 2048], direction[chunk:chunk + 2048], length[chunk:chunk + 2048]
        samples = s0[:, None] + d[:, None] * steps[None, :, None]
        keep = (steps[None, :] < (n[:, None] - margin_voxels * voxel)) & np.all(np.abs(samples) < extent, -1)
        index = np.floor((samples[keep] + extent) / voxel).astype(np.int64)
        occupancy[index[:, 0], index[:, 1], index[:, 2]] = False
    return occupancy


#: The lower face oval of MediaPipe's mesh, from one jaw angle over the chin to the other.
JAW = (132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361)


def carve_under_the_jaw(occupancy: np.ndarray, extent: float, jaw: np.ndarray, depth: float = 0.35,
                        below: float = 0.02) -> np.ndarray:
    """Empty the hollow under the chin that no silhouette of a frontal capture removes: voxels more than `below`
    under the jaw line (face units, the jaw landmarks [J, 3] in the face frame) and less than `depth` behind it
    (the front of the neck lies 40-60 mm behind the chin)."""
    resolution = occupancy.shape[0]
    axis = (np.arange(resolution) + 0.5) / resolution * 2 * extent - extent
    order = np.argsort(jaw[:, 0])
    jx, jy, jz = jaw[order, 0], jaw[order, 1], jaw[order, 2]
    inside_x = (axis >= jx[0]) & (axis <= jx[-1])
    y_jaw = np.interp(axis, jx, jy)  # per x
    z_jaw = np.interp(axis, jx, jz)
    X, Y, Z = np.meshgrid(axis, axis, axis, indexing="ij")
    carve = (inside_x[:, None, None] & (Y < y_jaw[:, None, None] - below) & (Z > z_jaw[:, None, None] - depth))
    return occupancy & ~carve


def sphere_cut_of_first_hit(occupancy: np.ndarray, extent: float, K: np.ndarray, R: np.ndarray, t: np.ndarray,
                            width: int, height: int, depth_margin: float, work_size: int = 400,
                            candidates: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """([H, W] inside, [H, W] uncertain), both bool; R, t map face units to the camera.

    inside: the pixel's ray meets the hull first inside the unit sphere. uncertain: the head lies somewhere inside
    the hull behind its first hit, and within `depth_margin` (face units) behind it the ray's hull points fall on
    both sides of the sphere, so the hull does not decide that pixel's sphere cut (where the hull is looser than
    the head: the rim of the cheeks and the ears, the top of the forehead). Marched at a working resolution (long
    side `work_size`), then resized; only the pixels where `candidates` [H, W] is true are marched."""
    import cv2

    resolution = occupancy.shape[0]
    scale = min(1.0, work_size / max(width, height))
    w, h = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
    j, i = np.meshgrid((np.arange(w) + 0.5) / scale - 0.5, (np.arange(h) + 0.5) / scale - 0.5)
    pixels = np.stack([j, i, np.ones_like(j)], -1).reshape(-1, 3)
    if candidates is not None:
        small = cv2.resize(candidates.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).reshape(-1) > 0
    else:
        small = np.ones(len(pixels), dtype=bool)
    rays = pixels[small] @ np.linalg.inv(K).T @ R  # world = R^T d
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    centre = -R.T @ t
    distance = np.linalg.norm(centre)
    voxel = 2 * extent / resolution
    step = voxel * 0.5
    steps = np.arange(max(distance - extent * 1.8, 0.0), distance + extent * 1.8, step)
    behind = int(np.ceil(depth_margin / step))  # samples within the margin behind the first hit
    rays = rays.astype(np.float32)
    inside = np.zeros(len(rays), dtype=bool)
    uncertain = np.zeros(len(rays), dtype=bool)
    for start in range(0, len(rays), 4096):
        d = rays[start:start + 4096]
        points = centre.astype(np.float32)[None, None] + d[:, None] * steps.astype(np.float32)[None, :, None]
        index = np.floor((points + extent) / voxel).astype(np.int64)
        valid = np.all((index >= 0) & (index < resolution), -1)
        index = np.clip(index, 0, resolution - 1)
        occupied = valid & occupancy[index[..., 0], index[..., 1], index[..., 2]]
        any_hit = occupied.any(1)
        first = np.argmax(occupied, axis=1)
        rows = np.arange(len(d))
        inside_first = any_hit & (np.linalg.norm(points[rows, first], axis=-1) < 1.0)
        inside[start:start + 4096] = inside_first
        if behind > 0:
            later = np.clip(first[:, None] + np.arange(1, behind + 1)[None], 0, len(steps) - 1)
            candidates_behind = occupied[rows[:, None], later]
            inside_behind = np.linalg.norm(points[rows[:, None], later], axis=-1) < 1.0
            uncertain[start:start + 4096] = any_hit & (candidates_behind & (inside_behind != inside_first[:, None])).any(1)
    outputs = []
    for values in (inside, uncertain):
        image = np.zeros(w * h, dtype=np.uint8)
        image[small] = values
        outputs.append(cv2.resize(image.reshape(h, w), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool))
    return outputs[0], outputs[1]


def face_masks(images: Dict[str, np.ndarray], detections: Dict[str, Optional[Detection]],
               cameras_unit: Dict[str, tuple], resolution: int = 96, extent: float = 1.25,
               max_votes_against: int = 0, points: Optional[np.ndarray] = None,
               observers: Optional[List[List[str]]] = None, jaw: Optional[np.ndarray] = None,
               jaw_depth: float = 0.35, depth_margin: float = 0.0,
               foreground_threshold: float = FOREGROUND_THRESHOLD) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """(masks, uncertain): name -> [H, W] bool each. images: name -> RGB; cameras_unit: name -> (K, R, t) with
    R, t mapping face units to the camera; points [P, 3] (face units) with their observers (frame names): the SfM
    lines of sight; uncertain: the foreground pixels whose sphere cut the hull leaves open within `depth_margin`
    (`sphere_cut_of_first_hit`), left out of the masks."""
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
    occupancy = visual_hull(projections, foregrounds, resolution, extent, max_votes_against, foreground_threshold)
    if points is not None and len(points):
        centre_of = {n: -R.T @ t for n, (K, R, t) in cameras_unit.items()}
        centres = [np.array([centre_of[n] for n in names if n in centre_of]).reshape(-1, 3) for names in observers]
        occupancy = carve_lines_of_sight(occupancy, extent, points, centres)
    if jaw is not None:
        occupancy = carve_under_the_jaw(occupancy, extent, jaw, jaw_depth)
    masks: Dict[str, np.ndarray] = {}
    uncertain: Dict[str, np.ndarray] = {}
    for name, rgb in images.items():
        K, R, t = cameras_unit[name]
        height, width = rgb.shape[:2]
        foreground = foregrounds[name] > foreground_threshold
        inside, open_cut = sphere_cut_of_first_hit(occupancy, extent, K, R, t, width, height, depth_margin,
                                                   candidates=foreground)
        masks[name], uncertain[name] = foreground & inside & ~open_cut, foreground & open_cut
    return masks, uncertain


def uncertain_band(mask: np.ndarray, width_px: int) -> np.ndarray:
    """[H, W] bool: the pixels within `width_px` of the mask's edge (chessboard distance), on both sides. The
    edges come from a voxel hull and a segmentation and are off by about a pixel in places; the scene marks this
    band "don't care" for the photometric loss (imface_loss_mask/) rather than teach a wrong edge. The image
    border is not an edge."""
    if width_px <= 0:
        return np.zeros(mask.shape, dtype=bool)
    import cv2

    kernel = np.ones((2 * width_px + 1, 2 * width_px + 1), np.uint8)
    m = mask.astype(np.uint8)
    return cv2.dilate(m, kernel).astype(bool) & ~cv2.erode(m, kernel, borderValue=1).astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def mask_summary(masks: Dict[str, np.ndarray]) -> List[int]:
    return [int(m.sum()) for m in masks.values()]
