"""Relight settings: which light replaces the learned one, and how it is turned, exposed and scaled.

`RelightSettings` is plain data, produced by the viewer's "NeuFace lighting" panel (viewer.py) or built directly
by scripts (scripts/relight.py, neuface_ns/relight_eval.py). `relight_coefficients` turns it, together with the
learned light, into the SH light the shading equation uses (render/shading.py); `diffuse` / `specular` switch the
two terms of that equation. Nothing here writes to the model: every result is a new tensor, and the defaults
return the learned coefficients themselves (bit-identical renders and metrics).

Scripts that render through the model (get_outputs_for_camera) scope their settings with `relight_override`; the
model's shading reads `active_override()` first, then the viewer panel.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import torch

from neuface_ns.lighting.presets import LIGHT_PRESETS, load_sh_light
from neuface_ns.lighting.sh import (
    fibonacci_directions,
    lambertian_factors,
    num_sh_coefficients,
    real_spherical_harmonics,
    rotation_matrix,
    sh_degrees,
    sh_rotation_matrix,
)

#: `RelightSettings.source` of the model's own (learned) light.
LEARNED_LIGHT = "learned"


@dataclass(frozen=True)
class RelightSettings:
    """One lighting state (all angles in degrees).

    source: LEARNED_LIGHT, a bundled preset name (presets.LIGHT_PRESETS), or the path of a .npy SH file or an
        .exr / .hdr map; `custom` (coefficients [(L+1)^2, 3]) replaces it when given.
    yaw / pitch / roll: R = R_y(yaw) R_x(pitch) R_z(roll) about the world axes (y is up in the face frame),
        applied exactly to the SH coefficients (sh.sh_rotation_matrix).
    intensity: multiplies the light (diffuse and specular are both linear in it).
    match_exposure: give a replacement light the learned light's white balance and peak irradiance
        (`match_exposure` below); ignored for the learned light itself.
    diffuse / specular: keep the two terms of the shading (rgb = diffuse + specular).
    """

    source: str = LEARNED_LIGHT
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    intensity: float = 1.0
    match_exposure: bool = True
    diffuse: bool = True
    specular: bool = True
    custom: Optional[torch.Tensor] = None

    @property
    def is_identity(self) -> bool:
        """True when the learned light is used unchanged."""
        return (
            self.custom is None
            and self.source == LEARNED_LIGHT
            and self.yaw == 0.0
            and self.pitch == 0.0
            and self.roll == 0.0
            and self.intensity == 1.0
        )


# ------------------------------------------------------------------------------------------- the relit light
@functools.lru_cache(maxsize=64)
def _sh_rotation(yaw: float, pitch: float, roll: float, order: int) -> torch.Tensor:
    # ~0.1 s for order 10; slider values repeat, so a few are kept (float64, never modified in place).
    return sh_rotation_matrix(rotation_matrix(yaw, pitch, roll), order)


@functools.lru_cache(maxsize=32)
def _load_light(source: str, order: int, modified: Optional[int]) -> torch.Tensor:
    # A preset, SH file or HDR map, read (and projected) once per version of the file; never modified in place.
    return load_sh_light(source, order)


def _source_light(source: str, order: int) -> torch.Tensor:
    modified = None
    if source not in LIGHT_PRESETS:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"unknown light '{source}' (use {LEARNED_LIGHT} or {', '.join(LIGHT_PRESETS)})")
        modified = path.stat().st_mtime_ns
    return _load_light(source, order, modified)


@functools.lru_cache(maxsize=4)
def _irradiance_basis(order: int) -> torch.Tensor:
    # [2048, (order+1)^2] float32: the Lambertian-convolved SH at well-spread normals (irradiance = basis @ c).
    directions = fibonacci_directions(2048)
    return real_spherical_harmonics(directions, order).float() * lambertian_factors(order)[sh_degrees(order).long()]


def match_exposure(light: torch.Tensor, learned: torch.Tensor) -> torch.Tensor:
    """Give `light` [(L+1)^2, 3] the learned light's white balance and peak irradiance (a new tensor).

    The learned light's colour and absolute scale are only defined together with the learned albedo and the
    colour calibration, so a replacement light is expressed relative to it: each channel is multiplied by the
    learned light's l = 0 colour ratio (a neutral preset then renders neutral), and the whole light is scaled
    so that its brightest irradiance (mean of RGB, over all normals) equals the learned light's.
    """
    order = math.isqrt(learned.shape[0]) - 1
    learned_dc = learned[0]
    if bool((learned_dc > 0).all()):
        light = light * (learned_dc / learned_dc.mean())
    basis = _irradiance_basis(order).to(device=light.device, dtype=light.dtype)
    peak_learned = torch.relu(basis @ learned).mean(-1).max()
    peak = torch.relu(basis @ light).mean(-1).max()
    if peak > 0 and peak_learned > 0:
        light = light * (peak_learned / peak)
    return light


def relight_coefficients(learned: torch.Tensor, settings: RelightSettings) -> torch.Tensor:
    """The light [(L+1)^2, 3] that `settings` make of the learned coefficients `learned` (same shape, device, dtype).

    Returns `learned` itself when the settings are the identity (so renders stay bit-identical and, in training,
    differentiable); otherwise a new, detached tensor: the chosen light, exposure-matched, rotated, scaled.
    """
    if settings.is_identity:
        return learned
    order = math.isqrt(learned.shape[0]) - 1
    learned = learned.detach()
    if settings.custom is not None:
        base = torch.as_tensor(settings.custom, dtype=torch.float32)
    elif settings.source == LEARNED_LIGHT:
        base = learned
    else:
        base = _source_light(str(settings.source), order)
    if base.shape != (num_sh_coefficients(order), 3):
        raise ValueError(f"light must have shape {(num_sh_coefficients(order), 3)}, got {tuple(base.shape)}")
    base = base.to(device=learned.device, dtype=learned.dtype)
    scale = float(settings.intensity)
    if base is not learned and settings.match_exposure:
        base = match_exposure(base, learned)
    rotated = base
    if (settings.yaw, settings.pitch, settings.roll) != (0.0, 0.0, 0.0):
        matrix = _sh_rotation(settings.yaw, settings.pitch, settings.roll, order)
        rotated = matrix.to(device=base.device, dtype=base.dtype) @ base
    return rotated * scale


# ------------------------------------------------------------------------------------------- scripted settings
_OVERRIDE: contextvars.ContextVar[Optional[RelightSettings]] = contextvars.ContextVar("relight_override", default=None)


@contextlib.contextmanager
def relight_override(settings: Optional[RelightSettings]) -> Iterator[None]:
    """Render with `settings` inside the block (this thread / context only; None: no override).

    For scripts that render through a model outside training: they take precedence over the viewer panel, and
    the viewer's own render thread never sees them.
    """
    token = _OVERRIDE.set(settings)
    try:
        yield
    finally:
        _OVERRIDE.reset(token)


def active_override() -> Optional[RelightSettings]:
    """The settings of the innermost enclosing `relight_override` block, or None."""
    return _OVERRIDE.get()
