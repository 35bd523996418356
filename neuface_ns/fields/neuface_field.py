"""The NeuFace field: SDF geometry (P + optional residual D) and the spatial BRDF networks.

It exposes `forward_geonetwork(x)` with the SDF in column 0, the hook nerfstudio's
`ns-export marching-cubes` uses on SDF models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple, Type

import torch
from torch import nn

from nerfstudio.configs.base_config import InstantiateConfig
from nerfstudio.fields.base_field import Field

from neuface_ns.brdf import IntegratedBasis, IntegratedBasisConfig
from neuface_ns.fields.appearance import SpatialAppearance, SpatialAppearanceConfig
from neuface_ns.fields.sdf import IDRSDFNetworkConfig, ResidualSDFConfig, ShapePriorConfig


@dataclass
class NeuFaceFieldConfig(InstantiateConfig):
    _target: Type = field(default_factory=lambda: NeuFaceField)
    sdf_network: ShapePriorConfig = field(default_factory=IDRSDFNetworkConfig)
    """Main SDF network P (IDR MLP; a pretrained face prior can be plugged in here)."""
    residual: Optional[ResidualSDFConfig] = None
    """Residual SDF D (faces); None for objects / DTU."""
    appearance: SpatialAppearanceConfig = field(default_factory=SpatialAppearanceConfig)
    integrated_basis: IntegratedBasisConfig = field(default_factory=IntegratedBasisConfig)


class NeuFaceField(Field):
    config: NeuFaceFieldConfig

    def __init__(self, config: NeuFaceFieldConfig):
        super().__init__()
        if config.appearance.num_basis != config.integrated_basis.num_basis:
            raise ValueError(
                f"appearance.num_basis ({config.appearance.num_basis}) must equal "
                f"integrated_basis.num_basis ({config.integrated_basis.num_basis})"
            )
        self.config = config
        self.sdf_network = config.sdf_network.setup()
        self.residual = config.residual.setup() if config.residual is not None else None
        self.appearance = config.appearance.setup()
        self.integrated_basis = config.integrated_basis.setup()

    def sdf_parts(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(P(x) + D(x), D(x)) as [N, 1] each (D is None without a residual)."""
        prior = self.sdf_network(x)
        if self.residual is None:
            return prior, None
        residual = self.residual(x)
        return prior + residual, residual

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        return self.sdf_parts(x)[0]

    @torch.no_grad()
    def forward_geonetwork(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3] -> [N, 1] with the SDF in column 0 (nerfstudio's marching-cubes contract; no graph,
        so a 512^3 export does not keep activations)."""
        return self.sdf(x)

    def sdf_and_gradient(
        self, x: torch.Tensor, create_graph: bool
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """SDF [N, 1], its spatial gradient [N, 3] (autograd) and the residual [N, 1] or None.

        Works under an outer `torch.no_grad()` (viewer, eval) by enabling grad locally.
        """
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            sdf, residual = self.sdf_parts(x)
            (gradient,) = torch.autograd.grad(sdf, x, torch.ones_like(sdf), create_graph=create_graph)
        return sdf, gradient, residual

    def material(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Roughness, BRDF coefficients, albedo, specular intensity at points [N, 3]."""
        return self.appearance(x)

    # nerfstudio's Field interface (density-based); NeuFace renders from the SDF instead.
    def get_density(self, ray_samples):  # pragma: no cover - not used by NeuFace
        raise NotImplementedError("NeuFaceField is an SDF field: use sdf() / forward_geonetwork().")

    def get_outputs(self, ray_samples, density_embedding=None):  # pragma: no cover
        raise NotImplementedError("NeuFaceField is an SDF field: use sdf() and material().")
