"""The "NeuFace lighting" panel of nerfstudio's viewer: widgets that produce `RelightSettings`.

`LightingControls` is a parameter-free `nn.Module` that the model registers under the name
``"NeuFace lighting"`` (see `NeuFaceBaseModel.populate_modules`, models/base.py). nerfstudio's viewer collects every public
`ViewerElement` attribute of modules under the pipeline and shows it in the Control tab under
"Custom Elements" / "model" / "NeuFace lighting" (the attribute path; public attributes are installed in
alphabetical order, hence the numbered names). A change of any control re-renders the view (the viewer
wraps each element's callback with its re-render trigger).

The controls only describe a lighting state (lighting/settings.py, `RelightSettings`); what it means is computed
there and applied by the shading (render/shading.py), only when the model is not training (viewer, ns-render,
ns-eval):
- Light: the learned environment light, one of the bundled SH presets (neuface_ns/lights/*.npy), or an HDR
  environment map / SH file listed in NEUFACE_LIGHTS (files or folders of .exr / .hdr / .npy, separated by
  the path separator, e.g. `NEUFACE_LIGHTS=~/hdri ns-viewer --load-config ...`).
- Match learned exposure: give a preset the learned light's white balance and peak irradiance.
- Yaw / pitch / roll: rotate the light exactly about the world axes (y is up in the face frame).
- Intensity: multiplies the light.
- Diffuse / Specular: switch the two terms of the shading on or off (rgb = diffuse + specular).

The module holds no parameters or buffers, so checkpoints are unchanged; with the defaults the learned light is
used as it is (bit-identical renders and metrics). Scripts build `RelightSettings` themselves and render under
`lighting.settings.relight_override` (scripts/relight.py); `fixed_settings` here also replaces the GUI values.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import TYPE_CHECKING, Optional

import torch
from torch import nn

from nerfstudio.viewer.viewer_elements import (
    ViewerButton,
    ViewerCheckbox,
    ViewerControl,
    ViewerDropdown,
    ViewerSlider,
)

from neuface_ns.lighting.presets import LIGHT_PRESETS, extra_light_files
from neuface_ns.lighting.settings import LEARNED_LIGHT, RelightSettings, relight_coefficients

if TYPE_CHECKING:
    from nerfstudio.viewer.viewer import Viewer

#: Name of the panel (the module name under the model, shown as the viewer folder).
LIGHTING_PANEL = "NeuFace lighting"


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
        # nerfstudio's init_scene adds the frustums one by one and sets `train_state` after the last one: hiding
        # them while it is still adding them raised "dictionary changed size during iteration" in this thread,
        # and the browser never got its first frame (CI, 2026-11-28).
        while getattr(self.viewer, "train_state", None) is None or not getattr(self.viewer, "camera_handles", None):
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
    """The "NeuFace lighting" viewer panel; `settings()` gives the `RelightSettings` the renderer uses."""

    def __init__(self, order: int):
        super().__init__()
        self.order = order
        self.fixed_settings: Optional[RelightSettings] = None
        """When set, used instead of the GUI values."""
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

    def gui_settings(self) -> RelightSettings:
        """The settings shown in the viewer (their defaults when there is no viewer)."""
        return RelightSettings(
            source=str(self.c1_light.value),
            yaw=float(self.c3_yaw.value),
            pitch=float(self.c4_pitch.value),
            roll=float(self.c5_roll.value),
            intensity=float(self.c6_intensity.value),
            match_exposure=bool(self.c2_match_exposure.value),
            diffuse=bool(self.c7_diffuse.value),
            specular=bool(self.c8_specular.value),
        )

    def settings(self) -> RelightSettings:
        """`fixed_settings` or the GUI's, with a NEUFACE_LIGHTS entry's name replaced by its path."""
        return self._with_paths(self.fixed_settings if self.fixed_settings is not None else self.gui_settings())

    def _with_paths(self, settings: RelightSettings) -> RelightSettings:
        # The panel lists NEUFACE_LIGHTS files by name; the settings it hands out name the file itself.
        if settings.custom is None and settings.source in self.extra_lights:
            return dataclasses.replace(settings, source=str(self.extra_lights[settings.source]))
        return settings

    def reset(self) -> None:
        """Back to the learned light (each assignment also re-renders through the viewer's hooks)."""
        defaults = RelightSettings()
        self.c1_light.value = defaults.source
        self.c2_match_exposure.value = defaults.match_exposure
        self.c3_yaw.value = defaults.yaw
        self.c4_pitch.value = defaults.pitch
        self.c5_roll.value = defaults.roll
        self.c6_intensity.value = defaults.intensity
        self.c7_diffuse.value = defaults.diffuse
        self.c8_specular.value = defaults.specular

    def light_coefficients(self, learned: torch.Tensor, settings: Optional[RelightSettings] = None) -> torch.Tensor:
        """The light [(L+1)^2, 3] that `settings` (default: the panel's) make of `learned`; never in place
        (lighting.settings.relight_coefficients, with this panel's light names)."""
        return relight_coefficients(learned, self.settings() if settings is None else self._with_paths(settings))
