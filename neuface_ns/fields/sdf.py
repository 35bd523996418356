"""Geometry: SDF(x) = P(x) + D(x) (docs/method.md section 1).

P is the main SDF network (IDR-style MLP here; a pretrained face prior can replace it through
`ShapePrior`), D an optional small residual SDF that starts at exactly zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Tuple, Type

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from nerfstudio.configs.base_config import InstantiateConfig

from neuface_ns.errors import ConfigError


class PositionalEncoding(nn.Module):
    """[x, sin(2^k x), cos(2^k x)] for k < num_frequencies (NeRF/IDR style, input kept)."""

    def __init__(self, num_frequencies: int):
        super().__init__()
        self.num_frequencies = num_frequencies
        self.register_buffer("scales", 2.0 ** torch.arange(num_frequencies, dtype=torch.float32), persistent=False)

    @property
    def output_dim(self) -> int:
        return 3 + 6 * self.num_frequencies

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_frequencies == 0:
            return x
        scaled = (x[..., None, :] * self.scales[:, None]).flatten(-2)
        return torch.cat([x, torch.sin(scaled), torch.cos(scaled)], dim=-1)


@dataclass
class ShapePriorConfig(InstantiateConfig):
    """Base config of the main SDF network P. Subclass it to plug in a pretrained prior."""

    _target: Type = field(default_factory=lambda: ShapePrior)


class ShapePrior(nn.Module):
    """Interface of P: `forward(x) -> sdf [N, 1]`, plus optional latents with their own lr.

    A pretrained face prior (e.g. ImFace with identity / expression latents) implements this,
    returns its latents from `latent_parameters()` (penalised by the latent loss) and the
    network weights from `network_parameters()`; the model gives them separate param groups.
    """

    config: ShapePriorConfig

    def __init__(self, config: ShapePriorConfig):
        super().__init__()
        self.config = config

    def latent_parameters(self) -> Dict[str, nn.Parameter]:
        return {}

    def network_parameters(self):
        latent_ids = {id(p) for p in self.latent_parameters().values()}
        return [p for p in self.parameters() if id(p) not in latent_ids]


@dataclass
class IDRSDFNetworkConfig(ShapePriorConfig):
    """IDR-style SDF MLP (docs/method.md section 1, DTU paper preset: 8 x 512, skip at 4, PE 6, bias 0.6)."""

    _target: Type = field(default_factory=lambda: IDRSDFNetwork)
    hidden_dim: int = 512
    num_layers: int = 8
    skip_layers: Tuple[int, ...] = (4,)
    num_frequencies: int = 6
    softplus_beta: float = 100.0
    sphere_init_radius: float = 0.6
    """Geometric initialisation: SDF starts as |x| - radius."""
    use_weight_norm: bool = True


class IDRSDFNetwork(ShapePrior):
    config: IDRSDFNetworkConfig

    def __init__(self, config: IDRSDFNetworkConfig):
        super().__init__(config)
        self.encoding = PositionalEncoding(config.num_frequencies)
        d_in = self.encoding.output_dim
        if config.skip_layers and config.hidden_dim <= d_in:
            raise ConfigError(
                f"sdf-network.hidden-dim={config.hidden_dim} is too narrow for a skip connection: it must exceed "
                f"the encoded input size {d_in} (3 + 6 x num-frequencies={config.num_frequencies})"
            )
        dims = [d_in] + [config.hidden_dim] * config.num_layers + [1]
        self.layers = nn.ModuleList()
        for i in range(len(dims) - 1):
            out_dim = dims[i + 1] - d_in if (i + 1) in config.skip_layers else dims[i + 1]
            layer = nn.Linear(dims[i], out_dim)
            self._geometric_init(layer, i, len(dims) - 2, d_in, out_dim)
            if config.use_weight_norm:
                layer = weight_norm(layer)
            self.layers.append(layer)
        self.activation = nn.Softplus(beta=config.softplus_beta)

    def _geometric_init(self, layer: nn.Linear, index: int, last: int, d_in: int, out_dim: int) -> None:
        """SAL/IDR initialisation so the network starts as the SDF of a sphere."""
        with torch.no_grad():
            if index == last:
                nn.init.normal_(layer.weight, mean=math.sqrt(math.pi) / math.sqrt(layer.in_features), std=1e-4)
                nn.init.constant_(layer.bias, -self.config.sphere_init_radius)
                return
            nn.init.constant_(layer.bias, 0.0)
            nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0) / math.sqrt(out_dim))
            if index == 0 and d_in > 3:
                layer.weight[:, 3:] = 0.0  # encoding frequencies start silent
            elif index in self.config.skip_layers and d_in > 3:
                layer.weight[:, -(d_in - 3) :] = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoded = self.encoding(x)
        h = encoded
        for i, layer in enumerate(self.layers):
            if i in self.config.skip_layers:
                h = torch.cat([h, encoded], dim=-1) / math.sqrt(2.0)
            h = layer(h)
            if i < len(self.layers) - 1:
                h = self.activation(h)
        return h


@dataclass
class ResidualSDFConfig(InstantiateConfig):
    """Residual SDF D (face paper preset: PE 6 -> 3 x 256 ReLU -> 128 -> 1)."""

    _target: Type = field(default_factory=lambda: ResidualSDF)
    hidden_dims: Tuple[int, ...] = (256, 256, 256, 128)
    num_frequencies: int = 6


class ResidualSDF(nn.Module):
    def __init__(self, config: ResidualSDFConfig):
        super().__init__()
        self.encoding = PositionalEncoding(config.num_frequencies)
        layers = []
        d = self.encoding.output_dim
        for width in config.hidden_dims:
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        head = nn.Linear(d, 1)
        nn.init.zeros_(head.weight)  # D starts at exactly 0 so P alone defines the initial shape
        nn.init.zeros_(head.bias)
        self.mlp = nn.Sequential(*layers, head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.encoding(x))
