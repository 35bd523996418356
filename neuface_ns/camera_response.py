"""The camera's response: how linear radiance becomes the stored pixel value.

Photos (JPEG / PNG from a camera, Blender's "Standard" view) store sRGB-encoded values, so their pixel values are
not proportional to radiance. The paper's model fits its shading (albedo x irradiance + specular, linear in the light)
directly to those values. On the path-traced scan sample that model cannot fit the photos even with the true albedo,
normals and light (22.3 dB under the training light, scripts/relight_ceiling.py), while the same decomposition
rendered linearly and then encoded as the camera did scores 26.1 dB (29.7 dB with a specular lobe).
`image_encoding="srgb"` renders linear radiance and encodes it so; "linear" is the paper's model; "auto" takes what
the data declare (`"image_encoding"` in the data folder's scene.json: the bundled synthetic samples are rendered
linearly and say so) and sRGB for data that declare nothing (photos).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Mapping, Optional

import torch

from neuface_ns.errors import NeuFaceInputError

ImageEncoding = Literal["linear", "srgb"]
ENCODINGS = ("linear", "srgb")
#: What "auto" means for data that declare nothing: photos are sRGB-encoded.
UNDECLARED_ENCODING = "srgb"

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


def declared_image_encoding(data_dir: Path) -> Optional[str]:
    """The "image_encoding" that <data_dir>/scene.json declares, or None (no such file, or it does not say)."""
    path = Path(data_dir) / "scene.json"
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise NeuFaceInputError(path, "not valid JSON") from None
    if not isinstance(content, dict):
        raise NeuFaceInputError(path, "not a JSON object")
    declared = content.get("image_encoding")
    if declared is not None and declared not in ENCODINGS:
        raise NeuFaceInputError(path, f"image_encoding must be one of {', '.join(ENCODINGS)}, got {declared!r}")
    return declared


def encoding_metadata(data_dir: Path) -> dict:
    """A dataparser's metadata entry: {"image_encoding": ...} when the data declare one, else {}."""
    declared = declared_image_encoding(data_dir)
    return {} if declared is None else {"image_encoding": declared}


def resolve_image_encoding(setting: str, metadata: Optional[Mapping] = None) -> ImageEncoding:
    """The model's setting ("auto", "linear", "srgb"), "auto" resolved from the dataparser's metadata."""
    if setting in ENCODINGS:
        return setting  # type: ignore[return-value]
    if setting != "auto":
        raise ValueError(f"image_encoding must be 'auto', 'linear' or 'srgb', got {setting!r}")
    return (metadata or {}).get("image_encoding") or UNDECLARED_ENCODING
