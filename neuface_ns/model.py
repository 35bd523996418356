"""The pre-split NeuFace model config, kept so that runs saved before the volume / surface split still load.

Their config.yml stores ``!!python/object:neuface_ns.model.NeuFaceModelConfig`` with a ``render_mode`` field and
``_target: !!python/name:neuface_ns.model.NeuFaceModel``; `ns-viewer`, `ns-eval`, `ns-render`, `ns-export` and a
``--load-config`` resume build the model from it. Its `setup()` builds the renderer's class of today
(neuface_ns/models/) from the same settings; the state-dict keys are unchanged (a surface checkpoint's unused
density beta is dropped on load, models/surface.py), so the old checkpoints load too. New code and presets use
neuface_ns.models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Type

from neuface_ns.models.base import DISPLAY_OUTPUTS, NeuFaceBaseModel
from neuface_ns.models.modes import with_render_mode
from neuface_ns.models.surface import NeuFaceSurfaceModelConfig
from neuface_ns.models.volume import NeuFaceVolumeModelConfig

__all__ = ["DISPLAY_OUTPUTS", "NeuFaceModel", "NeuFaceModelConfig"]

#: The class path that old config.yml files name as `_target`: any NeuFace model is one.
NeuFaceModel = NeuFaceBaseModel


@dataclass
class NeuFaceModelConfig(NeuFaceVolumeModelConfig, NeuFaceSurfaceModelConfig):
    """The pre-split config: every setting of both renderers and `render_mode` choosing one. Loads old runs;
    `setup()` builds NeuFaceVolumeModel or NeuFaceSurfaceModel (`current()` is the config it builds from)."""

    _target: Type = field(default_factory=lambda: NeuFaceModel)
    render_mode: Literal["volume", "surface"] = "volume"
    """volume: near-surface volume rendering (faces); surface: IDR surface rendering + mask loss (DTU)."""

    def current(self):
        """The config of today's class for `render_mode`, with the same settings."""
        return with_render_mode(self, self.render_mode)

    def setup(self, **kwargs):
        return self.current().setup(**kwargs)
