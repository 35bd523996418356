"""Face shape priors P for the FaceScape presets (docs/method.md section 1).

Two kinds of P plug into `NeuFaceFieldConfig.sdf_network`:

- `FaceIDRSDFNetworkConfig` (the default when no pretrained prior is available): the IDR SDF MLP with its
  geometric initialisation moved to a head-sized sphere in the FaceScape face frame. That frame (docs/method.md section 7)
  puts the nose tip at (0, 0, 0.4) and measures 100 mm per unit, face looking towards +z. IDR's init sphere
  |x| - 0.6 around the origin would start 20 mm in front of the nose and 60 mm short of the back of the face
  region; `FaceIDRSDFNetwork` evaluates the IDR network at x - c instead, so it starts as |x - c| - r with
  c = (0, 0, -0.25), r = 0.7: a 140 mm ball whose front lies 5 mm in front of the nose tip and whose whole extent
  stays inside the unit bounding sphere (|c| + r = 0.95), so sphere tracing starts outside the surface
  everywhere. The shift is a fixed reparametrisation (x - c into the same network), nothing else changes.
  ``param_group`` chooses its optimiser group: "fields" (with the other networks) or "prior" (the FaceScape
  presets: P keeps the prior's role and its own, lower lr; the residual D does the fine fitting).
- `LatentFacePriorConfig`: the base for a pretrained ImFace-like prior. It owns an identity and an expression
  latent (penalised by the latent loss through `latent_parameters()`) and network weights that are fine-tuned
  in their own optimiser group "prior" (`param_group = "prior"`; the face paper preset gives it lr / 100 =
  1e-6, and the latents the group "prior_latents"). A concrete prior subclasses it, builds its decoder in
  `build_network`, implements `decode(x, z_id, z_exp)`, and loads its checkpoint (a plain state dict loaded
  with `weights_only=True`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple, Type

import torch
from torch import nn

from neuface_ns.fields.sdf import IDRSDFNetwork, IDRSDFNetworkConfig, ShapePrior, ShapePriorConfig

FACE_INIT_CENTRE = (0.0, 0.0, -0.25)
"""Centre of the initial head sphere in the FaceScape face frame (scene units, 100 mm)."""
FACE_INIT_RADIUS = 0.7
"""Radius of the initial head sphere (70 mm)."""


@dataclass
class FaceIDRSDFNetworkConfig(IDRSDFNetworkConfig):
    """IDR SDF MLP initialised as a head-sized sphere in the FaceScape face frame."""

    _target: Type = field(default_factory=lambda: FaceIDRSDFNetwork)
    sphere_init_radius: float = FACE_INIT_RADIUS
    """Radius of the initial sphere (scene units; 0.7 = 70 mm)."""
    init_centre: Tuple[float, float, float] = FACE_INIT_CENTRE
    """Centre of the initial sphere; the network is evaluated at x - init_centre."""
    param_group: str = "fields"
    """Optimiser group of P's weights: "fields" (with the other networks) or "prior" (its own lr)."""


class FaceIDRSDFNetwork(IDRSDFNetwork):
    config: FaceIDRSDFNetworkConfig

    def __init__(self, config: FaceIDRSDFNetworkConfig):
        super().__init__(config)
        self.register_buffer("init_centre", torch.tensor(config.init_centre, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x - self.init_centre.to(x.dtype))


@dataclass
class LatentFacePriorConfig(ShapePriorConfig):
    """Base config of a pretrained ImFace-like prior (identity + expression latents, own lr)."""

    _target: Type = field(default_factory=lambda: LatentFacePrior)
    param_group: str = "prior"
    """Optimiser group of the network weights (the face paper preset: lr / 100)."""
    checkpoint: Optional[Path] = None
    """State dict of the pretrained decoder (loaded with weights_only=True); None leaves it untrained."""
    identity_dim: int = 128
    expression_dim: int = 128
    latent_init_std: float = 0.0
    """Initial latents ~ N(0, std) (0: the mean face)."""


class LatentFacePrior(ShapePrior):
    """P(x) = decode(x, z_id, z_exp) with learnable latents; subclasses provide the decoder."""

    config: LatentFacePriorConfig

    def __init__(self, config: LatentFacePriorConfig):
        super().__init__(config)
        self.z_id = nn.Parameter(torch.randn(config.identity_dim) * config.latent_init_std)
        self.z_exp = nn.Parameter(torch.randn(config.expression_dim) * config.latent_init_std)
        self.decoder = self.build_network()
        if config.checkpoint is not None:
            state = torch.load(config.checkpoint, map_location="cpu", weights_only=True)
            self.decoder.load_state_dict(state)

    def build_network(self) -> nn.Module:
        raise NotImplementedError("a pretrained face prior builds its decoder here")

    def decode(self, x: torch.Tensor, z_id: torch.Tensor, z_exp: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("a pretrained face prior evaluates its SDF here: [N, 3] -> [N, 1]")

    def latent_parameters(self) -> Dict[str, nn.Parameter]:
        return {"z_id": self.z_id, "z_exp": self.z_exp}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(x, self.z_id, self.z_exp)
