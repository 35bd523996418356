"""Normalised scene units <-> the dataset's world frame.

nerfstudio's dataparser maps world points into normalised scene units (the object in the unit
sphere) by a similarity, x_norm = scale * (R x + t), recorded as `dataparser_transform` ([3, 4]:
R | t) and `dataparser_scale`. Inverting it gives the dataset's own units: DTU's scan frame (the
inverse of `scale_mat`, i.e. the scan's millimetres), FaceScape's TU millimetres.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np


def normalised_to_world(points: np.ndarray, transform: np.ndarray, scale: float) -> np.ndarray:
    """Points [N, 3] in normalised scene units -> world frame [N, 3] (float64).

    Inverts x_norm = scale * (R x + t): x = R^T (x_norm / scale - t). `transform` is the [3, 4]
    (or [4, 4]) dataparser transform, `scale` the dataparser scale.
    """
    rotation, translation = transform[:3, :3], transform[:3, 3]
    return (np.asarray(points, dtype=np.float64) / scale - translation) @ rotation  # R^T (x/scale - t), row vectors


def world_to_normalised(points: np.ndarray, transform: np.ndarray, scale: float) -> np.ndarray:
    """World points [N, 3] -> normalised scene units [N, 3] (float64): scale * (R x + t)."""
    rotation, translation = transform[:3, :3], transform[:3, 3]
    return scale * (np.asarray(points, dtype=np.float64) @ rotation.T + translation)


def normals_to_world(normals: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Unit directions [N, 3] -> world frame [N, 3]. Directions follow the rotation only (the
    dataparser transform is a similarity: the scale and translation leave unit normals unchanged)."""
    return np.asarray(normals, dtype=np.float64) @ transform[:3, :3]


def world_frame(pipeline) -> Tuple[np.ndarray, float]:
    """(dataparser transform [3, 4] float64, dataparser scale) of a pipeline's training data."""
    outputs = pipeline.datamanager.train_dataparser_outputs
    return outputs.dataparser_transform.cpu().numpy().astype(np.float64), float(outputs.dataparser_scale)
