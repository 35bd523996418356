"""The camera's response: how linear radiance becomes the stored pixel value.

Photos (JPEG / PNG from a camera, Blender's "Standard" view) store sRGB-encoded values, so their pixel values are
not proportional to radiance. The paper's model fits its shading (albedo x irradiance + specular, linear in the light)
directly to those values. On the path-traced scan sample that model cannot fit the photos even with the true albedo,
normals and light (22.3 dB under the training light, scripts/relight_ceiling.py), while the same decomposition
rendered linearly and then encoded as the camera did scores 26.1 dB (29.7 dB with a specular lobe).
`image_encoding="srgb"` renders linear radiance and encodes it so; "linear" is the paper's model.
"""

from __future__ import annotations

from typing import Literal

import torch

ImageEncoding = Literal["linear", "srgb"]

# IEC 61966-2-1: the linear segment below this value, the 1/2.4 power above it.
_SRGB_LINEAR_LIMIT = 0.0031308


def srgb_encode(linear: torch.Tensor) -> torch.Tensor:
    """sRGB transfer function of values in [0, 1]; finite gradient everywhere (the power branch never sees a value
    below the break point, so no inf / NaN flows back from the unused branch)."""
    power = 1.055 * torch.pow(torch.clamp(linear, min=_SRGB_LINEAR_LIMIT), 1.0 / 2.4) - 0.055
    return torch.where(linear <= _SRGB_LINEAR_LIMIT, 12.92 * linear, power)


def encode(values: torch.Tensor, encoding: ImageEncoding) -> torch.Tensor:
    """Clamped linear values in [0, 1] -> stored pixel values."""
    if encoding == "linear":
        return values
    if encoding == "srgb":
        return srgb_encode(values)
    raise ValueError(f"unknown image encoding {encoding!r} (expected 'linear' or 'srgb')")
