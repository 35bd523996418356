"""IDR surface rendering (docs/method.md section 2, DTU variant): the differentiable surface point and
the mask loss that supervises the silhouette."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def differentiable_surface_points(
    points: torch.Tensor, directions: torch.Tensor, sdf: torch.Tensor, gradients: torch.Tensor
) -> torch.Tensor:
    """x(theta) = x0 - v / (grad f(x0) . v) * (f(x0; theta) - f(x0; theta0)).

    Equal to x0 in value; its derivative w.r.t. the SDF parameters is the implicit-function
    derivative of the ray/surface intersection, which lets colour gradients move the surface.
    `sdf` [N, 1] carries the graph, `gradients` [N, 3] are treated as constants.
    """
    normal_dot_dir = (gradients.detach() * directions).sum(-1, keepdim=True)
    normal_dot_dir = torch.where(normal_dot_dir.abs() < 1e-6, torch.full_like(normal_dot_dir, -1e-6), normal_dot_dir)
    return points.detach() - directions * (sdf - sdf.detach()) / normal_dot_dir


def idr_mask_loss(min_sdf: torch.Tensor, object_mask: torch.Tensor, selected: torch.Tensor, alpha: float) -> torch.Tensor:
    """IDR's mask loss: BCE(sigmoid(-alpha * sdf_min), mask) summed over `selected` rays, divided by
    alpha and by the number of rays (IDR's normalisation).

    `selected` are the rays that are not both inside the object mask and hit by the network.
    """
    n = max(object_mask.shape[0], 1)
    if not bool(selected.any()):
        return min_sdf.sum() * 0.0
    logits = -alpha * min_sdf[selected].reshape(-1)
    target = object_mask[selected].reshape(-1).float()
    return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / (alpha * n)
