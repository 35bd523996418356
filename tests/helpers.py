"""Plain helpers that tests import (fixtures are in conftest.py)."""

from __future__ import annotations

import math

import numpy as np


def rotation(axis, angle: float) -> np.ndarray:
    """The 3 x 3 rotation by `angle` radians about `axis` (any length): Rodrigues' formula."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    x, y, z = axis
    c, s = math.cos(angle), math.sin(angle)
    cross = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return c * np.eye(3) + s * cross + (1 - c) * np.outer(axis, axis)
