"""Stage 3, face landmarks: MediaPipe Face Mesh per image (478 points with the irises; its models ship in the
mediapipe wheel, nothing is downloaded), then a robust multi-view triangulation with the cameras.

Triangulation of each landmark: RANSAC over views. Every pair of views proposes a point (linear DLT); the
views whose detection lies within `threshold_px` of its projection are its inliers; the largest inlier set
(ties: smaller error) is re-triangulated with all its views (DLT, then Gauss-Newton on the reprojection error).
A detector's guess for a landmark hidden in a view (a profile view's far cheek) is an outlier there.

Pixel convention: MediaPipe's normalised coordinates span the image edges (0 and 1 are the outer borders), so
the OpenCV pixel position is u = x W - 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Dict, List, Optional

import numpy as np

#: MediaPipe Face Mesh indices used for the face frame and the checks. The nose tip (pronasale) lies between
#: MediaPipe's landmark 1 (the lower tip, towards the columella) and 4 (above it, on the dorsum): their midpoint.
NOSE_TIP_PAIR = (1, 4)
IRIS_CENTRES = (468, 473)  # the two iris centres (refine_landmarks=True)
MOUTH_CORNERS = (61, 291)
#: The face oval of MediaPipe's mesh, in order around the face (its FACEMESH_FACE_OVAL edges chained).
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)


@dataclass
class Detection:
    points: np.ndarray  # [478, 2] OpenCV pixel coordinates
    face_px: float  # face size: the diagonal of the landmarks' bounding box


@dataclass
class Landmarks3D:
    points: np.ndarray  # [L, 3] world (SfM units)
    inliers: np.ndarray  # [L, V] bool
    error_px: np.ndarray  # [L] mean reprojection error over the inliers
    views: List[str]
    per_view_error_px: Dict[str, float] = field(default_factory=dict)


def detect(rgb: np.ndarray, face_mesh) -> Optional[Detection]:
    result = face_mesh.process(rgb)
    if not result.multi_face_landmarks:
        return None
    height, width = rgb.shape[:2]
    # the largest face when there are several
    best = max(result.multi_face_landmarks, key=lambda f: np.ptp([p.x for p in f.landmark]) * np.ptp([p.y for p in f.landmark]))
    points = np.array([[p.x * width - 0.5, p.y * height - 0.5] for p in best.landmark], dtype=np.float64)
    return Detection(points, float(np.linalg.norm(points.max(0) - points.min(0))))


def face_mesh_detector():
    import mediapipe as mp

    return mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=2,
                                           min_detection_confidence=0.5)


def _dlt(P: np.ndarray, uv: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Batched linear triangulation. P [V, 3, 4], uv [L, V, 2], weight [L, V] (0 = unused) -> X [L, 3]."""
    rows_u = uv[..., 0:1] * P[None, :, 2, :] - P[None, :, 0, :]
    rows_v = uv[..., 1:2] * P[None, :, 2, :] - P[None, :, 1, :]
    A = np.concatenate([rows_u, rows_v], axis=1) * np.concatenate([weight, weight], axis=1)[..., None]
    _, _, vt = np.linalg.svd(A)
    X = vt[:, -1, :]
    return X[:, :3] / np.where(np.abs(X[:, 3:]) < 1e-12, 1e-12, X[:, 3:])


def project(P: np.ndarray, X: np.ndarray) -> np.ndarray:
    """P [V, 3, 4], X [L, 3] -> uv [L, V, 2] and depth [L, V]."""
    homogeneous = np.einsum("vij,lj->lvi", P[:, :, :3], X) + P[None, :, :, 3]
    depth = homogeneous[..., 2]
    return homogeneous[..., :2] / np.where(np.abs(depth) < 1e-12, 1e-12, depth)[..., None], depth


def _refine(P: np.ndarray, uv: np.ndarray, weight: np.ndarray, X: np.ndarray, iterations: int = 5) -> np.ndarray:
    """Gauss-Newton on the summed squared reprojection error of the weighted views (numerical Jacobian)."""
    for _ in range(iterations):
        base, _ = project(P, X)
        residual = ((base - uv) * weight[..., None]).reshape(len(X), -1)
        J = np.zeros((len(X), residual.shape[1], 3))
        step = 1e-6 * np.maximum(1.0, np.abs(X).max(axis=1, keepdims=True))
        for k in range(3):
            shifted = X.copy()
            shifted[:, k] += step[:, 0]
            moved, _ = project(P, shifted)
            J[:, :, k] = (((moved - uv) * weight[..., None]).reshape(len(X), -1) - residual) / step
        JtJ = np.einsum("lrk,lrm->lkm", J, J) + 1e-9 * np.eye(3)
        delta = np.linalg.solve(JtJ, -np.einsum("lrk,lr->lk", J, residual)[..., None])[..., 0]
        X = X + delta
    return X


def triangulate(projections: Dict[str, np.ndarray], detections: Dict[str, Detection], threshold_px: float,
                max_pairs: int = 300, seed: int = 0) -> Landmarks3D:
    views = [v for v in sorted(detections) if v in projections]
    P = np.stack([projections[v] for v in views])
    uv = np.stack([detections[v].points for v in views], axis=1)  # [L, V, 2]
    L, V = uv.shape[:2]
    pairs = list(combinations(range(V), 2))
    if len(pairs) > max_pairs:
        rng = np.random.default_rng(seed)
        pairs = [pairs[i] for i in rng.choice(len(pairs), max_pairs, replace=False)]
    best_count = np.full(L, -1)
    best_error = np.full(L, np.inf)
    best_inliers = np.zeros((L, V), dtype=bool)
    for a, b in pairs:
        weight = np.zeros((L, V))
        weight[:, [a, b]] = 1.0
        X = _dlt(P, uv, weight)
        projected, depth = project(P, X)
        error = np.linalg.norm(projected - uv, axis=-1)
        inliers = (error < threshold_px) & (depth > 0)
        count = inliers.sum(1)
        mean_error = np.where(count > 0, (error * inliers).sum(1) / np.maximum(count, 1), np.inf)
        better = (count > best_count) | ((count == best_count) & (mean_error < best_error))
        best_count = np.where(better, count, best_count)
        best_error = np.where(better, mean_error, best_error)
        best_inliers[better] = inliers[better]
    weight = best_inliers.astype(np.float64)
    X = _refine(P, uv, weight, _dlt(P, uv, weight))
    projected, _ = project(P, X)
    error = np.linalg.norm(projected - uv, axis=-1)
    inliers = error < threshold_px
    mean_error = (error * inliers).sum(1) / np.maximum(inliers.sum(1), 1)
    per_view = {v: float(np.median(error[:, i])) for i, v in enumerate(views)}
    return Landmarks3D(X, inliers, mean_error, views, per_view)
