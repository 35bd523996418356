"""Accuracy of a processed scene against the true cameras of a rendered capture (tests and the benchmark).

The recovered cameras live in the recovered face frame; the true ones in the scan's millimetres. A similarity
(Umeyama's least squares: scale, rotation, translation) maps the recovered camera centres onto the true ones;
after it: each camera's rotation error (angle of R_true^T R_aligned), its centre error relative to its distance
from the true face-sphere centre, the nose tip error (the recovered frame puts the nose tip at (0, 0, 40) mm),
and each view's mask IoU against the true face region.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np


def umeyama(source: np.ndarray, target: np.ndarray) -> Tuple[float, np.ndarray, np.ndarray]:
    """s, R, t minimising sum || s R source_i + t - target_i ||^2 (Umeyama 1991). source, target [N, 3]."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    a, b = source - mu_s, target - mu_t
    covariance = b.T @ a / len(source)
    U, D, Vt = np.linalg.svd(covariance)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0
    R = U @ S @ Vt
    variance = (a**2).sum() / len(source)
    s = float(np.trace(np.diag(D) @ S) / variance)
    return s, R, mu_t - s * R @ mu_s


def rotation_angle_deg(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))


def read_scene_cameras(scene: Path) -> Dict[int, Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """view id -> (K, R_c2w, centre_mm) from <scene>/imface_image/1/1_neutral/params.json."""
    params = json.loads((scene / "imface_image" / "1" / "1_neutral" / "params.json").read_text())
    cameras = {}
    for key in params:
        if key.endswith("_K"):
            view = key[:-2]
            Rt = np.asarray(params[f"{view}_Rt"], dtype=np.float64)
            R, t = Rt[:, :3], Rt[:, 3]
            cameras[int(view)] = (np.asarray(params[key]), R.T, -R.T @ t)
    return cameras


def read_scene_masks(scene: Path) -> Dict[int, np.ndarray]:
    from PIL import Image

    masks = {}
    for path in (scene / "imface_mask" / "1" / "1_neutral").glob("*/*.jpg"):
        masks[int(path.stem)] = np.asarray(Image.open(path).convert("L")) > 127
    return masks


def evaluate(scene: Path, truth_path: Path, truth_index: Optional[Dict[int, int]] = None) -> dict:
    """truth_index: scene view id -> index in truth.npz (default: the same number)."""
    truth = dict(np.load(truth_path))
    cameras = read_scene_cameras(scene)
    masks = read_scene_masks(scene)
    if truth_index is not None:
        cameras = {truth_index[v]: c for v, c in cameras.items()}
        masks = {truth_index[v]: m for v, m in masks.items()}
    views = sorted(cameras)
    estimated = np.stack([cameras[v][2] for v in views])
    true_centres = truth["centres_mm"][views]
    s, R, t = umeyama(estimated, true_centres)
    aligned = (s * (R @ estimated.T)).T + t
    distance = np.linalg.norm(true_centres - truth["sphere_centre_mm"], axis=1)
    centre_error = np.linalg.norm(aligned - true_centres, axis=1) / distance
    rotation_error = np.array([rotation_angle_deg(truth["R_c2w"][v].T @ R @ cameras[v][1]) for v in views])
    nose = s * R @ np.array([0.0, 0.0, 40.0]) + t
    ious = {}
    for v, mask in masks.items():
        true_mask = truth["masks"][v]
        if mask.shape != true_mask.shape:  # e.g. a render upscaled to a video: compare at the truth's size
            from PIL import Image

            small = Image.fromarray(mask.astype(np.uint8) * 255).resize(true_mask.shape[::-1], Image.BOX)
            mask = np.asarray(small) > 127
        union = np.logical_or(mask, true_mask).sum()
        ious[v] = float(np.logical_and(mask, true_mask).sum() / union) if union else 1.0
    width_true = truth["masks"].shape[2]
    focal_true = float(truth["K"][0, 0])
    focal_error = [abs(cameras[v][0][0, 0] * width_true / masks[v].shape[1] - focal_true) / focal_true
                   if v in masks else 0.0 for v in views]
    return {
        "views_registered": len(views), "views_total": int(len(truth["centres_mm"])),
        "scale_estimated_over_true": 1.0 / s,
        "rotation_error_deg": {"max": float(rotation_error.max()), "mean": float(rotation_error.mean())},
        "centre_error_fraction": {"max": float(centre_error.max()), "mean": float(centre_error.mean())},
        "focal_error_fraction": float(np.max(focal_error)),
        "nose_tip_error_mm": float(np.linalg.norm(nose - truth["nose_tip_mm"])),
        "mask_iou": {"min": float(min(ious.values())), "mean": float(np.mean(list(ious.values()))),
                     "per_view": {str(k): round(v, 4) for k, v in sorted(ious.items())}},
    }
