"""Real spherical harmonics up to order 10 and the learned environment light.

Convention (pinned by tests/test_lighting.py against scipy): the orthonormal real SH of
Wikipedia / graphics, no Condon-Shortley phase left over, index i = l*l + l + m:

    Y_l^0  = K_l^0 P_l^0(z)
    Y_l^m  = sqrt(2) K_l^m P_l^m(z) cos(m phi) (m > 0),   Y_l^-m = sqrt(2) K_l^m P_l^m(z) sin(m phi)

so Y_1^{-1,0,1} are proportional to (y, z, x). For l <= 2 this is exactly the basis the NeuFace
reference gets from e3nn (`normalize=False`, integral normalisation, input reordered (y, z, x)),
so the paper's initial light is used as is. Higher orders start at zero and only need *some*
orthonormal basis.

Evaluation is polynomial in (x, y, z): P_l^m(z) / sin^m(theta) by the usual three-term recurrence
and sin^m(theta) e^{i m phi} = (x + i y)^m, which is smooth everywhere (no pole singularities) and
differentiable for the specular reflection direction.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

MAX_SH_ORDER = 10

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


def num_sh_coefficients(order: int) -> int:
    return (order + 1) ** 2


def sh_degrees(order: int) -> torch.Tensor:
    """The degree l of every coefficient, in basis order (length (order+1)^2)."""
    return torch.tensor([l for l in range(order + 1) for _ in range(2 * l + 1)], dtype=torch.float32)


def lambertian_factors(order: int) -> torch.Tensor:
    """Funk-Hecke factors of the clamped cosine: Lambda_l = 2 pi int_0^1 t P_l(t) dt.

    Closed form: pi, 2pi/3, then 0 for odd l >= 3 and
    2pi (-1)^(l/2 - 1) (l-2)! / (2^l (l/2 - 1)! (l/2 + 1)!) for even l >= 2
    (pi/4, -pi/24, pi/64, -5pi/1024 ... as in the NeuFace table).
    """
    values = []
    for l in range(order + 1):
        if l == 0:
            values.append(math.pi)
        elif l == 1:
            values.append(2.0 * math.pi / 3.0)
        elif l % 2 == 1:
            values.append(0.0)
        else:
            half = l // 2
            values.append(
                2.0
                * math.pi
                * (-1) ** (half - 1)
                * math.factorial(l - 2)
                / (2**l * math.factorial(half - 1) * math.factorial(half + 1))
            )
    return torch.tensor(values, dtype=torch.float32)


def real_spherical_harmonics(directions: torch.Tensor, order: int = MAX_SH_ORDER) -> torch.Tensor:
    """Evaluate all real SH up to `order` at unit `directions` [..., 3] -> [..., (order+1)^2]."""
    x, y, z = directions[..., 0], directions[..., 1], directions[..., 2]
    # cos(m phi) sin^m(theta) and sin(m phi) sin^m(theta) as Re / Im of (x + iy)^m.
    cos_terms = [torch.ones_like(x)]
    sin_terms = [torch.zeros_like(x)]
    for _ in range(1, order + 1):
        c, s = cos_terms[-1], sin_terms[-1]
        cos_terms.append(x * c - y * s)
        sin_terms.append(x * s + y * c)

    # legendre[l][m] = P_l^m(z) / sin^m(theta), without the Condon-Shortley phase.
    legendre = [[None] * (order + 1) for _ in range(order + 1)]
    double_factorial = 1.0
    for m in range(order + 1):
        if m > 0:
            double_factorial *= 2 * m - 1
        legendre[m][m] = torch.full_like(z, double_factorial)
        if m + 1 <= order:
            legendre[m + 1][m] = (2 * m + 1) * z * legendre[m][m]
        for l in range(m + 2, order + 1):
            legendre[l][m] = ((2 * l - 1) * z * legendre[l - 1][m] - (l + m - 1) * legendre[l - 2][m]) / (l - m)

    basis = []
    for l in range(order + 1):
        for m in range(-l, l + 1):
            am = abs(m)
            norm = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - am) / math.factorial(l + am))
            if m == 0:
                basis.append(norm * legendre[l][0])
            elif m > 0:
                basis.append(math.sqrt(2.0) * norm * legendre[l][am] * cos_terms[am])
            else:
                basis.append(math.sqrt(2.0) * norm * legendre[l][am] * sin_terms[am])
    return torch.stack(basis, dim=-1)


def paper_initial_light(order: int = MAX_SH_ORDER) -> torch.Tensor:
    """[(order+1)^2, 3] coefficients: the paper's l <= 2 values, zeros above."""
    light = torch.zeros(num_sh_coefficients(order), 3)
    initial = torch.tensor(PAPER_INITIAL_LIGHT_L2)
    n = min(len(initial), len(light))
    light[:n] = initial[:n]
    return light


class SHEnvironmentLight(nn.Module):
    """One learned RGB environment light, shared by all images (spec section 3).

    `irradiance(n)` is the Lambertian convolution (diffuse), `specular_light(w_r, roughness)` the
    split-sum light integral with the exp(-l(l+1)/2 * rho) roughness attenuation.
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
