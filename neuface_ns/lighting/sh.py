"""The real spherical-harmonics basis (up to order 10), its Lambertian factors and exact rotations.

Everything that lights the model is a set of SH coefficients [(L+1)^2, C] in this basis: the learned light
(light.py), the bundled presets and HDR maps (presets.py, environment_map.py) and the relit lights of the viewer
and scripts (settings.py). This module is the maths they share; it imports nothing else of the package.

Convention (pinned by tests/lighting/test_lighting.py against scipy): the orthonormal real SH of
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

import torch

#: The highest SH degree the model's light uses (NeuFace: l <= 10, 121 coefficients).
MAX_SH_ORDER = 10


def num_sh_coefficients(order: int) -> int:
    """(order+1)^2: the number of real SH functions of degree <= order."""
    return (order + 1) ** 2


def sh_degrees(order: int) -> torch.Tensor:
    """The degree l of every coefficient, in basis order (length (order+1)^2)."""
    return torch.tensor([l for l in range(order + 1) for _ in range(2 * l + 1)], dtype=torch.float32)


def lambertian_factors(order: int) -> torch.Tensor:
    """Funk-Hecke factors of the clamped cosine: Lambda_l = 2 pi int_0^1 t P_l(t) dt.

    Closed form: pi, 2pi/3, then 0 for odd l >= 3 and
    2pi (-1)^(l/2 - 1) (l-2)! / (2^l (l/2 - 1)! (l/2 + 1)!) for even l >= 2
    (pi/4, -pi/24, pi/64, -pi/128, 7pi/1536 as in the NeuFace table).
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
    """Evaluate all real SH up to `order` at unit `directions` [..., 3] -> [..., (order+1)^2] (same dtype).

    The basis every light and every shading term is expressed in; polynomial in (x, y, z), so it is smooth and
    differentiable everywhere (the specular term differentiates through the reflected direction).
    """
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


# ---------------------------------------------------------------------------------------------
# Rotating an SH light exactly.
# ---------------------------------------------------------------------------------------------


def rotation_matrix(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0, degrees: bool = True) -> torch.Tensor:
    """3x3 float64 rotation R = R_y(yaw) R_x(pitch) R_z(roll) (world axes; y is up in the face frame).

    Rotating a light by R moves what came from direction u to come from R u.
    """
    if degrees:
        yaw, pitch, roll = (math.radians(a) for a in (yaw, pitch, roll))
    cy, sy, cp, sp, cr, sr = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch), math.cos(roll), math.sin(roll)
    r_y = torch.tensor([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]], dtype=torch.float64)
    r_x = torch.tensor([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]], dtype=torch.float64)
    r_z = torch.tensor([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return r_y @ r_x @ r_z


def fibonacci_directions(n: int) -> torch.Tensor:
    """n well-spread unit directions [n, 3] (float64) on the Fibonacci spiral, deterministic: the fixed sample set of
    the least-squares rotation fit, quadrature and the exposure matching's search for the brightest normal."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    r = torch.sqrt((1.0 - z * z).clamp(min=0.0))
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=-1)


def sh_rotation_matrix(rotation: torch.Tensor, order: int = MAX_SH_ORDER) -> torch.Tensor:
    """Block-diagonal real Wigner-D matrix M [(order+1)^2, (order+1)^2] (float64) of a 3x3 rotation R.

    For coefficients c (any trailing channels), c' = M c is the light rotated by R:
    sum_i c'_i Y_i(d) = sum_i c_i Y_i(R^T d) for every direction d. Rotations do not mix degrees, so each
    band l is a (2l+1) x (2l+1) orthogonal block D_l, the real Wigner-D matrix, defined by
    Y_l(R^T d) = D_l^T Y_l(d) (column vectors of the band's 2l+1 functions). Because that identity holds
    exactly for every d, D_l is recovered exactly (up to float64 round-off, ~1e-13) by solving it in the
    least-squares sense on a fixed set of well-spread directions (many more than 2l+1, well conditioned).
    """
    rotation = torch.as_tensor(rotation, dtype=torch.float64).cpu()
    if rotation.shape != (3, 3):
        raise ValueError(f"rotation must be 3x3, got {tuple(rotation.shape)}")
    directions = fibonacci_directions(max(64, 4 * num_sh_coefficients(order)))
    basis = real_spherical_harmonics(directions, order)  # [N, K]
    basis_rotated = real_spherical_harmonics(directions @ rotation, order)  # rows: Y(R^T d)
    size = num_sh_coefficients(order)
    matrix = torch.zeros(size, size, dtype=torch.float64)
    for l in range(order + 1):
        band = slice(l * l, (l + 1) * (l + 1))
        # basis[:, band] @ X = basis_rotated[:, band]  =>  X = D_l^T ... and c'_band = X c_band.
        solution = torch.linalg.lstsq(basis[:, band], basis_rotated[:, band]).solution
        matrix[band, band] = solution
    return matrix


def rotate_sh(coefficients: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate SH light coefficients [(L+1)^2, C] by a 3x3 rotation; returns a new tensor (same dtype/device)."""
    size = coefficients.shape[0]
    order = math.isqrt(size) - 1
    if (order + 1) ** 2 != size:
        raise ValueError(f"{size} is not a number of SH coefficients (L+1)^2")
    matrix = sh_rotation_matrix(rotation, order).to(device=coefficients.device, dtype=coefficients.dtype)
    return matrix @ coefficients


def resize_sh_light(coefficients: torch.Tensor, order: int) -> torch.Tensor:
    """Pad with zeros (higher orders) or truncate a [(L+1)^2, C] light to `order`: lights of any order can replace
    the model's (a zero coefficient adds nothing; dropped ones are detail the model cannot represent)."""
    size = num_sh_coefficients(order)
    out = torch.zeros(size, coefficients.shape[1], dtype=coefficients.dtype, device=coefficients.device)
    n = min(size, coefficients.shape[0])
    out[:n] = coefficients[:n]
    return out
