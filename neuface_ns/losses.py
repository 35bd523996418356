"""NeuFace's loss terms (docs/method.md section 4), one function each. Weights live in the model config."""

from __future__ import annotations

from typing import Iterable

import torch

from neuface_ns.render.surface import idr_mask_loss

__all__ = [
    "color_loss",
    "eikonal_loss",
    "white_light_loss",
    "specular_energy_loss",
    "residual_loss",
    "latent_loss",
    "albedo_smoothness_loss",
    "idr_mask_loss",
]


def _mean(values: torch.Tensor) -> torch.Tensor:
    """Mean that is 0 (still in the graph) for an empty tensor: a batch where no ray hits the surface has no
    eikonal points or light values on hits, and torch's mean of nothing is NaN."""
    return values.mean() if values.numel() > 0 else values.sum() * 0.0


def color_loss(predicted: torch.Tensor, observed: torch.Tensor, selected: torch.Tensor | None = None) -> torch.Tensor:
    """Mean L1. With `selected` (IDR surface mode) the sum over those rays is divided by all rays."""
    if selected is None:
        return _mean((predicted - observed).abs())
    n = max(predicted.shape[0], 1)
    return (predicted[selected] - observed[selected]).abs().sum() / (n * predicted.shape[-1])


def black_or_image_color_loss(predicted: torch.Tensor, observed: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    """Mean L1 over all rays; on the rays not `counted` ([N] bool) the L1 to black or to the observed colour,
    whichever is smaller (a pixel whose mask value is unsure is one or the other, nothing in between)."""
    to_image = (predicted - observed).abs().mean(-1)
    to_black = predicted.abs().mean(-1)
    return _mean(torch.where(counted, to_image, torch.minimum(to_image, to_black)))


def eikonal_loss(gradients: torch.Tensor) -> torch.Tensor:
    """mean (|grad SDF| - 1)^2."""
    return _mean((gradients.norm(dim=-1) - 1.0) ** 2)


def white_light_loss(light_values: torch.Tensor) -> torch.Tensor:
    """mean |v - mean_rgb(v)| over RGB light values (specular light integral and irradiance):
    pushes the light towards white so colour lives in the albedo."""
    return _mean((light_values - light_values.mean(dim=-1, keepdim=True)).abs())


def specular_energy_loss(specular: torch.Tensor) -> torch.Tensor:
    """mean specular radiance: keeps the specular term from explaining diffuse colour."""
    return _mean(specular)


def residual_loss(residual: torch.Tensor) -> torch.Tensor:
    """mean |D(x)|: the residual SDF stays a small correction of the prior."""
    return _mean(residual.abs())


def latent_loss(latents: Iterable[torch.Tensor]) -> torch.Tensor:
    """sum of mean squares of the shape-prior latents (z_id, z_exp)."""
    terms = [z.pow(2).mean() for z in latents]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def albedo_smoothness_loss(
    albedo: torch.Tensor, neighbour_albedo: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """mean |a(x) - a(x + delta)| over points and channels, delta a small random offset (an L1 / total-variation
    prior); with `weights` [P, 1] (volume rendering's compositing weights) the weighted mean. With one training
    light, albedo x irradiance(normal) is ambiguous: a free albedo can hold the shading and leave the light wrong;
    penalising the albedo's variation makes the light explain the smooth shading, while L1 still lets real albedo
    edges (lips, brows) through."""
    difference = (albedo - neighbour_albedo).abs()
    if weights is None:
        return _mean(difference)
    total = (weights * difference).sum()
    return total / (weights.sum() * difference.shape[-1]).clamp(min=1e-12)
