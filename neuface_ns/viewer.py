"""The "NeuFace lighting" panel of nerfstudio's viewer, and the light the renderer uses outside training.

`LightingControls` is a parameter-free `nn.Module` that the model registers under the name
``"NeuFace lighting"`` (see `NeuFaceModel.populate_modules`). nerfstudio's viewer collects every public
`ViewerElement` attribute of modules under the pipeline and shows it in the Control tab under
"Custom Elements" / "model" / "NeuFace lighting" (the attribute path; public attributes are installed in
alphabetical order, hence the numbered names). A change of any control re-renders the view (the viewer
wraps each element's callback with its re-render trigger).

What the controls do (only when the model is not training, i.e. viewer, ns-render, ns-eval, relight):
- Light: the learned environment light, one of the bundled SH presets (neuface_ns/lights/*.npy), or an HDR
  environment map / SH file listed in NEUFACE_LIGHTS (files or folders of .exr / .hdr / .npy, separated by
  the path separator, e.g. `NEUFACE_LIGHTS=~/hdri ns-viewer --load-config ...`).
- Match learned exposure: give a preset the learned light's white balance (its l = 0 colour ratio) and
  peak irradiance; the learned light's colour and scale are only defined together with the learned albedo
  and colour calibration (they trade against each other), so a preset's absolute values mean little.
- Yaw / pitch / roll: rotate the light exactly (per-band real Wigner-D matrices, `lighting.rotate_sh`),
  R = R_y(yaw) R_x(pitch) R_z(roll) about the world axes (y is up in the face frame).
- Intensity: multiplies the light (diffuse and specular are both linear in it).
- Diffuse / Specular: switch the two terms of the shading on or off (rgb = diffuse + specular).

The effective light is a new tensor computed from `SHEnvironmentLight.coefficients`; nothing here writes to
the model's parameters, and the module holds no parameters or buffers, so checkpoints are unchanged. With the
defaults the learned coefficients are returned as they are (bit-identical renders and metrics).

Scripts (scripts/relight.py) set `LightingControls.fixed_settings` instead of the GUI.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional, Tuple

import torch
from torch import nn

from nerfstudio.viewer.viewer_elements import (
    ViewerButton,
    ViewerCheckbox,
    ViewerControl,
    ViewerDropdown,
    ViewerSlider,
)

from neuface_ns.lighting import (
    LIGHT_PRESETS,
    fibonacci_directions,
    lambertian_factors,
    load_sh_light,
    num_sh_coefficients,
    real_spherical_harmonics,
    rotation_matrix,
    sh_degrees,
    sh_rotation_matrix,
)

if TYPE_CHECKING:
    from nerfstudio.viewer.viewer import Viewer

#: Environment variable listing extra lights for the viewer's light list (files or folders, os.pathsep-separated).
EXTRA_LIGHTS_VARIABLE = "NEUFACE_LIGHTS"
EXTRA_LIGHT_SUFFIXES = (".exr", ".hdr", ".npy")


def extra_light_files() -> Dict[str, Path]:
    """{file name: path} of the .exr / .hdr / .npy lights named by NEUFACE_LIGHTS (folders are listed, sorted)."""
    found: Dict[str, Path] = {}
    for entry in filter(None, os.environ.get(EXTRA_LIGHTS_VARIABLE, "").split(os.pathsep)):
        path = Path(entry).expanduser()
        candidates = sorted(path.iterdir()) if path.is_dir() else [path]
        for candidate in candidates:
            if candidate.suffix.lower() in EXTRA_LIGHT_SUFFIXES and candidate.is_file():
                found.setdefault(candidate.name, candidate)
    return found


#: Name of the panel (the module name under the model, shown as the viewer folder).
LIGHTING_PANEL = "NeuFace lighting"
LEARNED_LIGHT = "learned"


@dataclass(frozen=True)
class LightSettings:
    """One lighting state. `custom` (coefficients [(L+1)^2, 3]) replaces `source` when given."""

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


class _StartAtTrainingView(ViewerControl):
    """Moves a newly connected browser's camera to the first training camera (once per connection).

    viser's default camera sits inside NeuFace's unit bounding sphere, where nothing sensible is visible;
    this is the same camera move as clicking that training camera's frustum in the viewer. The first time,
    it also presses the viewer's own "Hide Train Cams" (the training image drawn in that camera's frustum
    would otherwise cover the render); "Show Train Cams" brings them back.
    """

    def _setup(self, viewer: "Viewer"):
        super()._setup(viewer)
        self._hid_cameras = False
        self.viser_server.on_client_connect(self._on_connect)

    def _on_connect(self, client) -> None:
        done = {"started": False}

        @client.camera.on_update
        def _(camera) -> None:
            # The first camera message says the browser is ready; the training cameras may not be drawn yet
            # (a browser can connect while the viewer is still loading them), so wait for them off this thread.
            if not done["started"]:
                done["started"] = True
                threading.Thread(target=self._move_to_start, args=(client,), daemon=True).start()

    def _move_to_start(self, client, timeout: float = 300.0) -> None:
        deadline = time.time() + timeout
        while not getattr(self.viewer, "camera_handles", None):
            if time.time() > deadline:
                return
            time.sleep(0.1)
        handles = self.viewer.camera_handles
        if not self._hid_cameras and getattr(self.viewer, "hide_images", None) is not None:
            self._hid_cameras = True
            if self.viewer.hide_images.visible:  # same as clicking "Hide Train Cams"
                self.viewer.set_camera_visibility(False)
                self.viewer.toggle_cameravis_button()
        start = handles[min(handles)]
        try:
            with client.atomic():
                client.camera.position = start.position
                client.camera.wxyz = start.wxyz
        except Exception:  # the browser went away meanwhile: nothing to move
            pass


class LightingControls(nn.Module):
    """The "NeuFace lighting" viewer panel; `shading(learned)` gives the light the renderer uses."""

    def __init__(self, order: int):
        super().__init__()
        self.order = order
        self.fixed_settings: Optional[LightSettings] = None
        """When set (scripts), used instead of the GUI values."""
        self._rotation_cache: Dict[Tuple[float, float, float], torch.Tensor] = {}
        self._preset_cache: Dict[str, torch.Tensor] = {}
        self._directions_basis: Optional[torch.Tensor] = None
        self.extra_lights = extra_light_files()

        self.c1_light = ViewerDropdown(
            "Light",
            LEARNED_LIGHT,
            [LEARNED_LIGHT, *LIGHT_PRESETS, *self.extra_lights],
            hint="The learned environment light, a bundled SH environment light, or a map listed in NEUFACE_LIGHTS.",
        )
        self.c2_match_exposure = ViewerCheckbox(
            "Match learned exposure",
            True,
            hint="Give a preset the learned light's white balance (l=0 colour) and peak irradiance.",
        )
        self.c3_yaw = ViewerSlider("Light yaw (deg)", 0.0, -180.0, 180.0, 1.0, hint="Rotation about the world y (up) axis.")
        self.c4_pitch = ViewerSlider("Light pitch (deg)", 0.0, -90.0, 90.0, 1.0, hint="Rotation about the world x axis.")
        self.c5_roll = ViewerSlider("Light roll (deg)", 0.0, -180.0, 180.0, 1.0, hint="Rotation about the world z axis.")
        self.c6_intensity = ViewerSlider("Light intensity", 1.0, 0.0, 4.0, 0.05, hint="Multiplies the light.")
        self.c7_diffuse = ViewerCheckbox("Diffuse", True, hint="Show the diffuse (albedo x irradiance) term.")
        self.c8_specular = ViewerCheckbox("Specular", True, hint="Show the specular term.")
        self.c9_reset = ViewerButton("Reset lighting", cb_hook=lambda _: self.reset())
        self.viewer_control = _StartAtTrainingView()

    # -------------------------------------------------------------------- state
    def gui_settings(self) -> LightSettings:
        """The settings shown in the viewer (their defaults when there is no viewer)."""
        return LightSettings(
            source=str(self.c1_light.value),
            yaw=float(self.c3_yaw.value),
            pitch=float(self.c4_pitch.value),
            roll=float(self.c5_roll.value),
            intensity=float(self.c6_intensity.value),
            match_exposure=bool(self.c2_match_exposure.value),
            diffuse=bool(self.c7_diffuse.value),
            specular=bool(self.c8_specular.value),
        )

    def settings(self) -> LightSettings:
        return self.fixed_settings if self.fixed_settings is not None else self.gui_settings()

    def reset(self) -> None:
        """Back to the learned light (each assignment also re-renders through the viewer's hooks)."""
        defaults = LightSettings()
        self.c1_light.value = defaults.source
        self.c2_match_exposure.value = defaults.match_exposure
        self.c3_yaw.value = defaults.yaw
        self.c4_pitch.value = defaults.pitch
        self.c5_roll.value = defaults.roll
        self.c6_intensity.value = defaults.intensity
        self.c7_diffuse.value = defaults.diffuse
        self.c8_specular.value = defaults.specular

    # -------------------------------------------------------------------- light
    def _rotation(self, yaw: float, pitch: float, roll: float) -> torch.Tensor:
        key = (yaw, pitch, roll)
        matrix = self._rotation_cache.get(key)
        if matrix is None:  # ~0.1 s for order 10; slider values repeat, so keep a few
            matrix = sh_rotation_matrix(rotation_matrix(yaw, pitch, roll), self.order)
            if len(self._rotation_cache) >= 64:
                self._rotation_cache.clear()
            self._rotation_cache[key] = matrix
        return matrix

    def _preset(self, name: str) -> torch.Tensor:
        if name not in self._preset_cache:
            self._preset_cache[name] = load_sh_light(name, self.order)
        return self._preset_cache[name]

    def light_coefficients(self, learned: torch.Tensor, settings: Optional[LightSettings] = None) -> torch.Tensor:
        """The effective light [(L+1)^2, 3] for `settings` (default: the current ones); never in place."""
        settings = self.settings() if settings is None else settings
        if settings.is_identity:
            return learned
        learned = learned.detach()
        if settings.custom is not None:
            base = torch.as_tensor(settings.custom, dtype=torch.float32)
        elif settings.source == LEARNED_LIGHT:
            base = learned
        elif settings.source in LIGHT_PRESETS:
            base = self._preset(settings.source)
        elif settings.source in self.extra_lights:  # an HDR map or SH file from NEUFACE_LIGHTS, projected once
            base = self._preset(str(self.extra_lights[settings.source]))
        else:
            raise ValueError(f"unknown light '{settings.source}' (use {LEARNED_LIGHT} or {', '.join(LIGHT_PRESETS)})")
        if base.shape != (num_sh_coefficients(self.order), 3):
            raise ValueError(f"light must have shape {(num_sh_coefficients(self.order), 3)}, got {tuple(base.shape)}")
        base = base.to(device=learned.device, dtype=learned.dtype)
        scale = float(settings.intensity)
        if base is not learned and settings.match_exposure:
            base = self._match_exposure(base, learned)
        rotated = base
        if (settings.yaw, settings.pitch, settings.roll) != (0.0, 0.0, 0.0):
            matrix = self._rotation(settings.yaw, settings.pitch, settings.roll)
            rotated = matrix.to(device=base.device, dtype=base.dtype) @ base
        return rotated * scale

    def _match_exposure(self, light: torch.Tensor, learned: torch.Tensor) -> torch.Tensor:
        """Give `light` the learned light's white balance and peak irradiance.

        The learned light's colour and absolute scale are only defined together with the learned albedo and the
        colour calibration, so a replacement light is expressed relative to it: each channel is multiplied by the
        learned light's l = 0 colour ratio (a neutral preset then renders neutral), and the whole light is scaled
        so that its brightest irradiance (mean of RGB, over all normals) equals the learned light's.
        """
        learned_dc = learned[0]
        if bool((learned_dc > 0).all()):
            light = light * (learned_dc / learned_dc.mean())
        if self._directions_basis is None:
            directions = fibonacci_directions(2048)
            self._directions_basis = real_spherical_harmonics(directions, self.order).float() * lambertian_factors(
                self.order
            )[sh_degrees(self.order).long()]
        basis = self._directions_basis.to(device=light.device, dtype=light.dtype)
        peak_learned = torch.relu(basis @ learned).mean(-1).max()
        peak = torch.relu(basis @ light).mean(-1).max()
        if peak > 0 and peak_learned > 0:
            light = light * (peak_learned / peak)
        return light

    def shading(self, learned: torch.Tensor) -> Tuple[torch.Tensor, bool, bool]:
        """(light coefficients, diffuse on, specular on) for one forward pass."""
        settings = self.settings()
        return self.light_coefficients(learned, settings), settings.diffuse, settings.specular
