"""NeuFace's nerfstudio models: a shared base (field, light, calibration, shading, calibrated display, shared
losses) and one thin subclass per renderer.

    base.py     NeuFaceBaseModel[Config], TracedRays   (imports neither subclass)
    volume.py   NeuFaceVolumeModel[Config]             near-surface volume rendering (faces)
    surface.py  NeuFaceSurfaceModel[Config]            IDR surface rendering + mask loss (DTU)
    modes.py    with_render_mode: a config of the other renderer with the shared settings kept

neuface_ns/model.py keeps the pre-split single class for runs saved before the split (their config.yml).
"""

from neuface_ns.models.base import DISPLAY_OUTPUTS, NeuFaceBaseModel, NeuFaceBaseModelConfig, TracedRays
from neuface_ns.models.modes import MODEL_CONFIGS, with_render_mode
from neuface_ns.models.surface import NeuFaceSurfaceModel, NeuFaceSurfaceModelConfig
from neuface_ns.models.volume import NeuFaceVolumeModel, NeuFaceVolumeModelConfig

__all__ = [
    "DISPLAY_OUTPUTS",
    "MODEL_CONFIGS",
    "NeuFaceBaseModel",
    "NeuFaceBaseModelConfig",
    "NeuFaceSurfaceModel",
    "NeuFaceSurfaceModelConfig",
    "NeuFaceVolumeModel",
    "NeuFaceVolumeModelConfig",
    "TracedRays",
    "with_render_mode",
]
