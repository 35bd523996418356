"""Spatial appearance network (spec section 3): a SIREN on xyz -> roughness, BRDF coefficients,
albedo and specular intensity."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Tuple, Type

import torch
from torch import nn

from nerfstudio.configs.base_config import InstantiateConfig


@dataclass
class SpatialAppearanceConfig(InstantiateConfig):
    """Paper preset: 8 hidden layers x 256, sin(30 Wx), xyz concatenated again at layer 4."""

    _target: Type = field(default_factory=lambda: SpatialAppearance)
    hidden_dim: int = 256
    num_layers: int = 8
    skip_layers: Tuple[int, ...] = (4,)
    first_omega: float = 30.0
    num_basis: int = 3
    """k, the number of low-rank BRDF coefficients (3 for faces)."""
    specular_channels: int = 1
    """1 for faces, 3 for DTU."""


class SineLayer(nn.Module):
    """sin(omega * (W x + b)) with SIREN's initialisation (Sitzmann et al. 2020)."""

    def __init__(self, in_dim: int, out_dim: int, omega: float, is_first: bool):
        super().__init__()
        self.omega = omega
        self.linear = nn.Linear(in_dim, out_dim)
        bound = 1.0 / in_dim if is_first else math.sqrt(6.0 / in_dim) / omega
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega * self.linear(x))


class SpatialAppearance(nn.Module):
    config: SpatialAppearanceConfig

    def __init__(self, config: SpatialAppearanceConfig):
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList()
        in_dim = 3
        for i in range(config.num_layers):
            if i in config.skip_layers:
                in_dim += 3
            # Hidden SIREN layers use omega = 30 too, with their weights scaled down by 1/30.
            self.layers.append(SineLayer(in_dim, config.hidden_dim, config.first_omega, is_first=(i == 0)))
            in_dim = config.hidden_dim
        self.output_dim = 1 + config.num_basis + 3 + config.specular_channels
        self.head = nn.Linear(in_dim, self.output_dim)
        bound = math.sqrt(6.0 / in_dim) / config.first_omega
        with torch.no_grad():
            self.head.weight.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        h = x
        for i, layer in enumerate(self.layers):
            if i in self.config.skip_layers:
                h = torch.cat([h, x], dim=-1)
            h = layer(h)
        raw = self.head(h)
        k = self.config.num_basis
        return {
            "roughness": nn.functional.softplus(raw[..., :1]),
            "brdf_coefficients": raw[..., 1 : 1 + k],
            "albedo": torch.sigmoid(raw[..., 1 + k : 4 + k]),
            "specular_intensity": torch.sigmoid(raw[..., 4 + k :]),
        }
