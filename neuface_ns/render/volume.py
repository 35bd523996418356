"""Near-surface volume rendering (docs/method.md section 2, steps 2-4): VolSDF's Laplace density,
sample placement around the traced hit, and alpha compositing."""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn


def laplace_density(sdf: torch.Tensor, beta: torch.Tensor | float) -> torch.Tensor:
    """sigma(s) = (1/beta) (1/2 + 1/2 sign(s) (exp(-|s|/beta) - 1)), i.e. (1/beta) * Laplace CDF(-s)."""
    return (0.5 + 0.5 * torch.sign(sdf) * torch.expm1(-sdf.abs() / beta)) / beta


class LaplaceDensity(nn.Module):
    """Learnable beta (init 0.01, floor beta_min) so the surface sharpens as training goes."""

    def __init__(self, beta_init: float = 0.01, beta_min: float = 1e-4):
        super().__init__()
        self.beta_min = beta_min
        self.beta_param = nn.Parameter(torch.tensor(float(beta_init) - beta_min))

    @property
    def beta(self) -> torch.Tensor:
        return self.beta_param.abs() + self.beta_min

    def forward(self, sdf: torch.Tensor) -> torch.Tensor:
        return laplace_density(sdf, self.beta)


def near_surface_distances(
    t_hit: torch.Tensor, hit: torch.Tensor, t_in: torch.Tensor, t_out: torch.Tensor, num_samples: int, half_width: float
) -> torch.Tensor:
    """[N, S] sample distances: uniform in [t - w, t + w] for hits, in [t_in, t_out] for misses."""
    fractions = torch.linspace(0.0, 1.0, num_samples, device=t_hit.device)
    start = torch.where(hit, t_hit - half_width, t_in)
    end = torch.where(hit, t_hit + half_width, t_out)
    return start[:, None] + (end - start)[:, None] * fractions


def compositing_weights(
    densities: torch.Tensor, t: torch.Tensor, infinite_last: bool | torch.Tensor = True
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Alpha-compositing weights [N, S] and the finite-interval opacity [N, 1].

    delta_i = t_{i+1} - t_i; the last interval is infinite when `infinite_last` (docs/method.md section 2), so the
    weights always sum to one; the returned opacity excludes that last interval, which makes it a
    meaningful foreground `accumulation` for the viewer and exporters. `infinite_last` may be a
    per-ray bool tensor [N].
    """
    deltas = t[:, 1:] - t[:, :-1]
    infinite = torch.as_tensor(infinite_last, device=t.device).reshape(-1, 1).expand(t.shape[0], 1)
    last = torch.where(infinite, torch.full_like(t[:, :1], 1e10), torch.zeros_like(t[:, :1]))
    deltas = torch.cat([deltas, last], dim=-1)
    tau = densities * deltas
    alpha = 1.0 - torch.exp(-tau)
    # Transmittance before each sample: exp(-sum_{j<i} tau_j).
    transmittance = torch.exp(-torch.cumsum(torch.cat([torch.zeros_like(tau[:, :1]), tau[:, :-1]], dim=-1), dim=-1))
    weights = alpha * transmittance
    opacity = 1.0 - torch.exp(-tau[:, :-1].sum(-1, keepdim=True))
    return weights, opacity


def composite(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_i w_i v_i: values [N, S, C], weights [N, S] -> [N, C]."""
    return (weights[..., None] * values).sum(dim=1)
