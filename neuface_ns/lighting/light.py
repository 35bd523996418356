"""The learned environment light: one RGB SH light shared by all images (docs/method.md section 3).

Its only state is `coefficients` [(L+1)^2, 3] (the checkpoint key `light.coefficients`); the shading equation
(render/shading.py) reads it through `irradiance` (diffuse) and `specular_light` (specular), either as learned or
replaced by a relit light of the same shape (settings.py).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from neuface_ns.lighting.sh import (
    MAX_SH_ORDER,
    lambertian_factors,
    num_sh_coefficients,
    real_spherical_harmonics,
    sh_degrees,
)

#: Paper preset initial light for l <= 2 (rows: the 9 coefficients, columns: RGB).
PAPER_INITIAL_LIGHT_L2 = (
    (2.9861e00, 3.4646e00, 3.9559e00),
    (1.0013e-01, -6.7589e-02, -3.1161e-01),
    (-8.2520e-01, -5.2738e-01, -9.7385e-02),
    (2.2311e-03, 4.3553e-03, 4.9501e-03),
    (-6.4355e-03, 9.7476e-03, -2.3863e-02),
    (1.1078e-01, -6.0607e-02, -1.9541e-01),
    (7.9123e-01, 7.6916e-01, 5.6288e-01),
    (6.5793e-02, 4.3270e-02, -1.7002e-01),
    (-7.2674e-02, 4.5177e-02, 2.2858e-01),
)


def paper_initial_light(order: int = MAX_SH_ORDER) -> torch.Tensor:
    """[(order+1)^2, 3] coefficients: the paper's l <= 2 values, zeros above."""
    light = torch.zeros(num_sh_coefficients(order), 3)
    initial = torch.tensor(PAPER_INITIAL_LIGHT_L2)
    n = min(len(initial), len(light))
    light[:n] = initial[:n]
    return light


def ambient_initial_light(order: int = MAX_SH_ORDER) -> torch.Tensor:
    """[(order+1)^2, 3]: a uniform grey light (l = 0 only) as bright on average as the paper's initial light. It
    favours no direction: the paper's l = 1 term lights the face frame from -z, i.e. from behind the face (z points
    out of the face), and a short training keeps much of whatever direction it starts from."""
    light = torch.zeros(num_sh_coefficients(order), 3)
    light[0] = float(torch.tensor(PAPER_INITIAL_LIGHT_L2[0]).mean())
    return light


#: The initial lights a model config can name.
INITIAL_LIGHTS = {"paper": paper_initial_light, "ambient": ambient_initial_light}


class SHEnvironmentLight(nn.Module):
    """One learned RGB environment light, shared by all images (docs/method.md section 3).

    `irradiance(n)` is the Lambertian convolution (diffuse), `specular_light(w_r, roughness)` the
    split-sum light integral with the exp(-l(l+1)/2 * rho) roughness attenuation. Both take optional
    `coefficients` that replace the learned ones (relighting) without touching the parameter.
    """

    def __init__(self, order: int = MAX_SH_ORDER, initial: Sequence | torch.Tensor | None = None):
        super().__init__()
        self.order = order
        coefficients = paper_initial_light(order) if initial is None else torch.as_tensor(initial, dtype=torch.float32)
        if coefficients.shape != (num_sh_coefficients(order), 3):
            raise ValueError(f"SH light must have shape {(num_sh_coefficients(order), 3)}, got {tuple(coefficients.shape)}")
        self.coefficients = nn.Parameter(coefficients.clone())
        self.register_buffer("lambertian", lambertian_factors(order)[sh_degrees(order).long()], persistent=False)
        self.register_buffer("degree_term", sh_degrees(order) * (sh_degrees(order) + 1) / 2, persistent=False)

    def irradiance(self, normals: torch.Tensor, coefficients: torch.Tensor | None = None) -> torch.Tensor:
        """relu(sum_l Lambda_l sum_m c_lm Y_lm(n)): [..., 3] normals -> [..., 3] irradiance."""
        c = self.coefficients if coefficients is None else coefficients
        basis = real_spherical_harmonics(normals, self.order)
        return torch.relu((basis * self.lambertian) @ c)

    def specular_light(
        self, reflected: torch.Tensor, roughness: torch.Tensor, coefficients: torch.Tensor | None = None
    ) -> torch.Tensor:
        """relu(sum_l exp(-l(l+1)/2 rho) sum_m c_lm Y_lm(w_r)): roughness [..., 1] -> [..., 3]."""
        c = self.coefficients if coefficients is None else coefficients
        basis = real_spherical_harmonics(reflected, self.order)
        attenuation = torch.exp(-self.degree_term * roughness)
        return torch.relu((basis * attenuation) @ c)
