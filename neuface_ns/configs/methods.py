"""nerfstudio method registrations (entry points `nerfstudio.method_configs`)."""

from __future__ import annotations

from nerfstudio.plugins.types import MethodSpecification

from neuface_ns.configs import dtu, facescape

neuface_dtu = MethodSpecification(
    config=dtu.cpu_default(),
    description="NeuFace on DTU / objects (IDR layout): SDF + relightable BRDF; CPU-friendly default.",
)

neuface_dtu_paper = MethodSpecification(
    config=dtu.paper(),
    description="NeuFace DTU paper preset (8x512 SDF, surface rendering + mask loss, 2000 epochs); GPU.",
)

neuface_facescape = MethodSpecification(
    config=facescape.cpu_default(),
    description="NeuFace on FaceScape (NeuFace layout): volume rendering, residual SDF; CPU-friendly default.",
)

neuface_facescape_relight = MethodSpecification(
    config=facescape.relightable(),
    description="neuface-facescape tuned for relighting real photos: sRGB-aware, white balance, light fitted first.",
)

neuface_facescape_paper = MethodSpecification(
    config=facescape.paper(),
    description="NeuFace face paper preset (volume rendering, 2048 rays/image, 3000 epochs, downscale 4); GPU.",
)
