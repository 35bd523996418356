"""The two renderers' config classes by name, and the conversion of a config to the other renderer."""

from __future__ import annotations

import copy
import dataclasses
from typing import Dict, Type

from neuface_ns.models.base import NeuFaceBaseModelConfig
from neuface_ns.models.surface import NeuFaceSurfaceModelConfig
from neuface_ns.models.volume import NeuFaceVolumeModelConfig

MODEL_CONFIGS: Dict[str, Type[NeuFaceBaseModelConfig]] = {
    "volume": NeuFaceVolumeModelConfig,
    "surface": NeuFaceSurfaceModelConfig,
}


def with_render_mode(config: NeuFaceBaseModelConfig, render_mode: str, **changes) -> NeuFaceBaseModelConfig:
    """A config of `render_mode`'s class ("volume" / "surface") with every setting of `config` that class has
    (the shared ones; the renderer's own ones too when `config` has them, as the pre-split config does) and the
    class's defaults for the rest; `changes` are then applied as field values."""
    if render_mode not in MODEL_CONFIGS:
        raise ValueError(f"render_mode={render_mode!r}: must be one of {sorted(MODEL_CONFIGS)}")
    target = MODEL_CONFIGS[render_mode]
    values = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(target)
        if f.init and f.name != "_target" and hasattr(config, f.name)
    }
    unknown = set(changes) - {f.name for f in dataclasses.fields(target)}
    if unknown:
        raise ValueError(f"{target.__name__} has no field(s) {sorted(unknown)}")
    values = {k: v for k, v in values.items() if k not in changes}
    return target(**copy.deepcopy(values), **changes)
