"""Low-rank neural BRDF: the Integrated Basis MLP and the split-sum specular term (docs/method.md section 3).

specular = rho_s * LT(w_r, roughness) * sigmoid(c . B(w_o, n, roughness)),
where LT is the SH light integral (lighting.py) and B the learned material integral basis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

import torch
from torch import nn

from nerfstudio.configs.base_config import InstantiateConfig


@dataclass
class IntegratedBasisConfig(InstantiateConfig):
    """Paper preset: input [n.w_o, w_o, n, rho] (8 values), 8 x 256 ReLU, linear head -> k."""

    _target: Type = field(default_factory=lambda: IntegratedBasis)
    hidden_dim: int = 256
    num_layers: int = 8
    num_basis: int = 3


class IntegratedBasis(nn.Module):
    def __init__(self, config: IntegratedBasisConfig):
        super().__init__()
        layers = []
        in_dim = 8
        for _ in range(config.num_layers):
            layers += [nn.Linear(in_dim, config.hidden_dim), nn.ReLU()]
            in_dim = config.hidden_dim
        layers.append(nn.Linear(in_dim, config.num_basis))
        self.mlp = nn.Sequential(*layers)

    def forward(self, view_out: torch.Tensor, normals: torch.Tensor, roughness: torch.Tensor) -> torch.Tensor:
        """view_out = w_o (towards the camera), normals n, roughness rho [..., 1] -> B [..., k]."""
        cos = (normals * view_out).sum(-1, keepdim=True)
        return self.mlp(torch.cat([cos, view_out, normals, roughness], dim=-1))


def reflect(view_out: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """w_r = 2 (n . w_o) n - w_o."""
    return 2.0 * (normals * view_out).sum(-1, keepdim=True) * normals - view_out


def material_integral(coefficients: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """sigmoid(sum_j c_j B_j) -> [..., 1]."""
    return torch.sigmoid((coefficients * basis).sum(-1, keepdim=True))
