"""Spatial appearance network (docs/method.md section 3): a SIREN on xyz -> roughness, BRDF coefficients,
albedo and specular intensity."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple, Type

import torch
import torch.nn.functional as F
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
        return split_material(self.head(h), self.config.num_basis)

    def grid_parameters(self):
        """Parameters that want the grid learning rate (none: a SIREN is all MLP weights)."""
        return []


# ---------------------------------------------------------------------------------------------------- tri-plane


@dataclass
class TriplaneAppearanceConfig(SpatialAppearanceConfig):
    """Faster-converging CPU alternative to the paper's SIREN (not in the paper): multi-resolution tri-plane
    features plus xyz, decoded by a small ReLU MLP into the same material outputs.

    Why: a SIREN on xyz learns a face's texture slowly (blurry colour after the CPU schedule); a tri-plane lookup
    is two `grid_sample` calls per level, cheap on a CPU, and a texel of the finest level (2 / resolution scene
    units, 0.8 mm for a face at 256) matches a pixel's footprint at 320 x 240. The plane features get their own
    param group (`appearance_grid`) because grids want a ~20x higher learning rate than MLP weights."""

    _target: Type = field(default_factory=lambda: TriplaneAppearance)
    hidden_dim: int = 64
    num_layers: int = 2
    skip_layers: Tuple[int, ...] = ()
    resolutions: Tuple[int, ...] = (64, 256)
    """Plane resolution per level over [-1, 1] (the bounding sphere's cube)."""
    features_per_level: int = 8
    init_scale: float = 0.1
    param_group: str = "appearance_grid"
    initial_roughness: Optional[float] = None
    """Roughness where training starts (the head's bias), or None: the head's default init, softplus(~0) = 0.69,
    a lobe so wide that the light's orders above 2 get no gradient from the specular term."""


class MultiResolutionTriplane(nn.Module):
    """Sum over the xy, xz and yz planes of bilinearly sampled features, concatenated over resolutions.

    Unlike nerfstudio's TriplaneEncoding it keeps the gradient with respect to the sample position, which IDR's
    surface rendering needs: the colour loss moves the differentiable surface point through the appearance."""

    def __init__(self, resolutions: Tuple[int, ...], features: int, init_scale: float):
        super().__init__()
        self.planes = nn.ParameterList(
            [nn.Parameter(init_scale * torch.randn(3, features, r, r)) for r in resolutions]
        )
        self.output_dim = features * len(resolutions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, 3] in [-1, 1] (outside: clamped to the border) -> features [N, features x levels]."""
        coords = torch.stack([x[:, [0, 1]], x[:, [0, 2]], x[:, [1, 2]]], dim=0)[:, :, None, :]  # [3, N, 1, 2]
        levels = []
        for plane in self.planes:
            sampled = F.grid_sample(plane, coords, mode="bilinear", padding_mode="border", align_corners=True)
            levels.append(sampled.sum(0)[:, :, 0].T)  # [N, features]
        return torch.cat(levels, dim=-1)


class TriplaneAppearance(nn.Module):
    config: TriplaneAppearanceConfig

    def __init__(self, config: TriplaneAppearanceConfig):
        super().__init__()
        self.config = config
        self.grid = MultiResolutionTriplane(config.resolutions, config.features_per_level, config.init_scale)
        layers, in_dim = [], self.grid.output_dim + 3
        for _ in range(config.num_layers):
            layers += [nn.Linear(in_dim, config.hidden_dim), nn.ReLU()]
            in_dim = config.hidden_dim
        self.mlp = nn.Sequential(*layers)
        self.output_dim = 1 + config.num_basis + 3 + config.specular_channels
        self.head = nn.Linear(in_dim, self.output_dim)
        if config.initial_roughness is not None:
            with torch.no_grad():  # softplus(bias) = initial_roughness
                self.head.bias[0] = math.log(math.expm1(config.initial_roughness))

    def grid_parameters(self):
        return list(self.grid.parameters())

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        raw = self.head(self.mlp(torch.cat([self.grid(x), x], dim=-1)))
        return split_material(raw, self.config.num_basis)


def split_material(raw: torch.Tensor, num_basis: int) -> Dict[str, torch.Tensor]:
    """Raw network outputs -> roughness (softplus), BRDF coefficients, albedo and specular (sigmoid)."""
    k = num_basis
    return {
        "roughness": nn.functional.softplus(raw[..., :1]),
        "brdf_coefficients": raw[..., 1 : 1 + k],
        "albedo": torch.sigmoid(raw[..., 1 + k : 4 + k]),
        "specular_intensity": torch.sigmoid(raw[..., 4 + k :]),
    }
