"""FaceScape frames, names and split, shared by the NeuFace FaceScape layout and the release layout.

Frames.  TU millimetres: X_TU = 100 * x_norm + TU_ORIGIN_MM (same axes as the
normalised frame: y up, face towards +z).  The "multi-view" frame of the
FaceScape cameras and meshes is tied to TU space by the Rt_scale_dict entry
[scale, Rt]: X_TU = R_s @ (scale * X_mview) + t_s.  The NeuFace face frame is
x_face = (X_TU - nose_tip_TU + (0, 0, 40)) / 100 = x_norm - nose_norm + (0, 0, 0.4).
FaceScape cameras are OpenCV cameras in the multi-view frame:
x_cam = R_mv @ X_mview + t_mv with R_mv = R @ R_s (R: the generator's rotation).
"""

import math
from typing import List, Sequence, Tuple

import numpy as np

from ..conventions import Camera, to_normalised


FACESCAPE_EXPRESSIONS = (
    "neutral", "smile", "mouth_stretch", "anger", "jaw_left", "jaw_right", "jaw_forward", "mouth_left",
    "mouth_right", "dimpler", "chin_raiser", "lip_puckerer", "lip_funneler", "sadness", "lip_roll", "grin",
    "cheek_blowing", "eye_closed", "brow_raiser", "brow_lower",
)
TU_MM_PER_UNIT = 100.0
TU_ORIGIN_MM = (4.0, -18.0, -55.0)
MVIEW_SCALE = 180.0  # mm per multi-view unit (FaceScape's are of the order of 100-500)
MVIEW_ROTATION_AXIS = (0.3, 1.0, -0.2)
MVIEW_ROTATION_ANGLE = 0.35  # radians
MVIEW_TRANSLATION_MM = (12.0, -30.0, 25.0)
FACE_FRAME_Z_OFFSET_MM = 40.0
NOSE_TIP_LANDMARK = 30
FACESCAPE_TEST_EVERY = 8
FACESCAPE_SPLIT_RULE = (
    "test = every 8th valid view in ascending view-id order, starting with the first "
    "(positions 0, 8, 16, ... of the sorted valid views); train = the other valid views"
)


def axis_angle(axis: Sequence[float], angle: float) -> np.ndarray:
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    x, y, z = a
    c, s_ = math.cos(angle), math.sin(angle)
    cross = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return c * np.eye(3) + s_ * cross + (1 - c) * np.outer(a, a)


def mview_transform() -> Tuple[float, np.ndarray, np.ndarray]:
    """(scale, R_s, t_s) of the Rt_scale_dict entry: X_TU = R_s @ (scale * X_mview) + t_s."""
    return MVIEW_SCALE, axis_angle(MVIEW_ROTATION_AXIS, MVIEW_ROTATION_ANGLE), np.asarray(MVIEW_TRANSLATION_MM)


def normalised_to_tu(x_norm: np.ndarray) -> np.ndarray:
    return TU_MM_PER_UNIT * np.asarray(x_norm, dtype=np.float64) + np.asarray(TU_ORIGIN_MM)


def tu_to_mview(x_tu: np.ndarray) -> np.ndarray:
    scale, R_s, t_s = mview_transform()
    return ((np.asarray(x_tu, dtype=np.float64) - t_s) @ R_s) / scale  # row vectors: R_s^T (X - t) / s


def mview_camera(cam: Camera) -> Tuple[np.ndarray, np.ndarray]:
    """(R_mv, t_mv): the camera as an OpenCV camera of the multi-view frame."""
    _, R_s, _ = mview_transform()
    R_mv = cam.R @ R_s
    C_mv = tu_to_mview(normalised_to_tu(to_normalised(cam.centre_world)))
    return R_mv, -R_mv @ C_mv


def face_frame(x_norm: np.ndarray, nose_norm: np.ndarray) -> np.ndarray:
    """Normalised generator frame -> NeuFace face frame (nose tip at (0, 0, 0.4), 100 mm per unit)."""
    return np.asarray(x_norm, dtype=np.float64) - nose_norm + np.array([0.0, 0.0, FACE_FRAME_Z_OFFSET_MM / TU_MM_PER_UNIT])


def facescape_split(view_ids: Sequence[int], test_every: int = FACESCAPE_TEST_EVERY) -> Tuple[List[int], List[int]]:
    """(train, test) view ids by FACESCAPE_SPLIT_RULE."""
    ordered = sorted(view_ids)
    test = [v for k, v in enumerate(ordered) if k % test_every == 0]
    return [v for v in ordered if v not in test], test


def expression_dirname(expression_id: int) -> str:
    return f"{expression_id}_{FACESCAPE_EXPRESSIONS[expression_id - 1]}"
