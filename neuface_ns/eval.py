"""Image metrics: nerfstudio's whole-image PSNR / SSIM and NeuFace's masked, colour-fitted
protocol (spec section 6): a least-squares 3x3 colour matrix from prediction to ground truth over
the ground-truth mask, PSNR with the MSE over mask pixels only, SSIM over the masked images."""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torchmetrics.functional import structural_similarity_index_measure

MAX_PSNR = 100.0  # a perfect fit has MSE 0; report this cap instead of infinity


def fit_color_matrix(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """3x3 M minimising |predicted @ M - target|^2 over the given pixels [P, 3]."""
    solution = torch.linalg.lstsq(predicted.double(), target.double()).solution
    return solution.to(predicted.dtype)


def psnr_from_mse(mse: torch.Tensor) -> float:
    if float(mse) <= 10 ** (-MAX_PSNR / 10):
        return MAX_PSNR
    return float(-10.0 * torch.log10(mse))


def _ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """SSIM of two [H, W, 3] images in [0, 1]."""
    return float(structural_similarity_index_measure(a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None], data_range=1.0))


def masked_image_metrics(
    predicted: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor]
) -> Dict[str, float]:
    """predicted, target [H, W, 3] in [0, 1]; mask [H, W, 1] bool (or None: whole-image metrics only)."""
    metrics = {
        "psnr": psnr_from_mse(((predicted - target) ** 2).mean()),
        "ssim": _ssim(predicted, target),
    }
    if mask is None or not bool(mask.any()):
        return metrics
    m = mask.reshape(-1)
    flat_pred, flat_target = predicted.reshape(-1, 3), target.reshape(-1, 3)
    matrix = fit_color_matrix(flat_pred[m], flat_target[m])
    fitted = (flat_pred @ matrix).clamp(0.0, 1.0).reshape(predicted.shape)
    mse = ((fitted.reshape(-1, 3)[m] - flat_target[m]) ** 2).mean()
    maskf = mask.to(predicted.dtype)
    metrics["psnr_masked"] = psnr_from_mse(mse)
    metrics["ssim_masked"] = _ssim(fitted * maskf, target * maskf)
    return metrics
