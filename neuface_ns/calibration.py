"""Per-image photometric calibration (docs/method.md section 3).

Each training image owns a 50-d latent (N(0, 0.1) init, max-norm 1); an MLP maps it to a 3x3
colour matrix A and the output colour is clamp(raw @ A, 0, 1) (row vector times A). This absorbs
exposure / white-balance differences between cameras. At evaluation (held-out views, viewer)
one fixed latent is used: the mean of the training latents, or a chosen index.

form="white_balance" (not in the paper) restricts A to a diagonal of positive per-channel gains (softplus).
The paper's full matrix can mix channels with negative weights; on the path-traced scan it learned a first row
(-0.56, -0.39, -0.20), which fits the training light but clips most of the face to black under any redder
light, so relighting (viewer, neuface-eval-relight) collapses (10 dB). A camera's exposure and white balance
are per-channel gains, which is all the diagonal keeps.

A starts at I / pi. That is Lambert's 1/pi (diffuse radiance = albedo / pi x irradiance), so with
the paper's initial light the first renders are mid-grey instead of clamped white (a clamped
colour has no gradient), and the "albedo x pi through A" display (docs/method.md section 3) shows the albedo itself.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn


CALIBRATION_FORMS = ("matrix", "white_balance")


class PhotometricCalibration(nn.Module):
    def __init__(self, num_images: int, latent_dim: int = 50, hidden_dim: int = 128, max_norm: float = 1.0,
                 form: str = "matrix"):
        super().__init__()
        if form not in CALIBRATION_FORMS:
            raise ValueError(f"calibration form {form!r} is not one of {CALIBRATION_FORMS}")
        self.form = form
        self.max_norm = max_norm
        self.latents = nn.Parameter(torch.randn(max(num_images, 1), latent_dim) * 0.1)
        outputs = 9 if form == "matrix" else 3
        self.mlp = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, outputs))
        with torch.no_grad():
            # Start near I / pi: the bias carries it, the weights start small.
            nn.init.normal_(self.mlp[-1].weight, std=1e-3)
            if form == "matrix":
                self.mlp[-1].bias.copy_(torch.eye(3).flatten() / math.pi)
            else:  # softplus(bias) = 1 / pi
                self.mlp[-1].bias.fill_(math.log(math.expm1(1.0 / math.pi)))

    def _renormed(self, latents: torch.Tensor) -> torch.Tensor:
        norms = latents.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        return latents * torch.clamp(self.max_norm / norms, max=1.0)

    def fixed_latent(self, index: Optional[int]) -> torch.Tensor:
        """The latent used for held-out views: a training image's (index) or the mean (None)."""
        latents = self._renormed(self.latents)
        return latents.mean(0) if index is None else latents[index]

    def matrices(self, camera_indices: Optional[torch.Tensor], fixed_index: Optional[int]) -> torch.Tensor:
        """[N, 3, 3] per ray from the rays' training camera indices, or [1, 3, 3] for a fixed latent."""
        if camera_indices is None:
            latent = self.fixed_latent(fixed_index)[None]
        else:
            latent = self._renormed(self.latents[camera_indices.reshape(-1).long()])
        if self.form == "matrix":
            return self.mlp(latent).reshape(-1, 3, 3)
        return torch.diag_embed(nn.functional.softplus(self.mlp(latent)))

    @staticmethod
    def apply(colors: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
        """Row vector times A: [N, 3] x [N or 1, 3, 3] -> [N, 3] (not clamped)."""
        return torch.einsum("ni,nij->nj", colors, matrices.expand(colors.shape[0], 3, 3))
