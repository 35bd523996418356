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
from pathlib import Path
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
    """One learned RGB environment light, shared by all images (docs/method.md section 3).

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


# ---------------------------------------------------------------------------------------------
# Rotating an SH light exactly, and the bundled environment-light presets (viewer / relighting).
# ---------------------------------------------------------------------------------------------

#: Bundled environment lights (neuface_ns/lights/<name>.npy), in the basis above, [(10+1)^2, 3].
LIGHT_PRESET_DIR = Path(__file__).parent / "lights"
LIGHT_PRESETS = ("studio_key", "overcast", "warm_side")

#: How the presets are made: a constant ambient term plus smooth lobes exp(k (d.u - 1)) around the
#: direction u *towards* the light, in the face frame of the bundled data (y up, the face looks
#: towards +z, the subject's left at +x); projected onto the SH up to order 10 by quadrature and
#: scaled so that the mean l = 0 coefficient equals the paper's initial light's (about 3.47).
#: Entries: ambient RGB, then (direction, sharpness k, RGB) per lobe.
LIGHT_PRESET_DEFINITIONS = {
    # Key light above and to the camera's left of the face, a dim fill from the other side, dim ambient.
    "studio_key": ((0.03, 0.03, 0.03), (((-0.55, 0.55, 0.65), 12.0, (1.0, 0.97, 0.92)), ((0.8, 0.0, 0.6), 6.0, (0.25, 0.26, 0.3)))),
    # Soft, slightly blue sky dome from above plus a bright ambient (low contrast, weak highlights).
    "overcast": ((0.35, 0.37, 0.40), (((0.0, 1.0, 0.15), 1.5, (0.55, 0.58, 0.65)),)),
    # Warm low sun from the subject's left (+x), cool dim ambient.
    "warm_side": ((0.015, 0.02, 0.035), (((1.0, 0.15, 0.25), 8.0, (1.0, 0.62, 0.30)),)),
}


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
    """n well-spread unit directions (float64), deterministic."""
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


def fit_sh_light(radiance_fn, order: int = MAX_SH_ORDER, num_directions: int = 20000) -> torch.Tensor:
    """Project radiance_fn(directions [N, 3] float64) -> [N, C] onto the real SH up to `order`."""
    directions = fibonacci_directions(num_directions)
    basis = real_spherical_harmonics(directions, order)
    return (4.0 * math.pi / num_directions) * basis.T @ radiance_fn(directions)


def build_light_preset(name: str, order: int = MAX_SH_ORDER) -> torch.Tensor:
    """The preset `name` from LIGHT_PRESET_DEFINITIONS as float32 [(order+1)^2, 3] coefficients."""
    ambient, lobes = LIGHT_PRESET_DEFINITIONS[name]

    def radiance(d: torch.Tensor) -> torch.Tensor:
        value = torch.tensor(ambient, dtype=torch.float64).expand(d.shape[0], 3).clone()
        for direction, sharpness, colour in lobes:
            u = torch.nn.functional.normalize(torch.tensor(direction, dtype=torch.float64), dim=0)
            value = value + torch.exp(sharpness * (d @ u - 1.0))[:, None] * torch.tensor(colour, dtype=torch.float64)
        return value

    coefficients = fit_sh_light(radiance, order)
    target_dc = torch.tensor(PAPER_INITIAL_LIGHT_L2[0], dtype=torch.float64).mean()
    coefficients = coefficients * (target_dc / coefficients[0].mean())
    return coefficients.float()


def resize_sh_light(coefficients: torch.Tensor, order: int) -> torch.Tensor:
    """Pad with zeros (higher orders) or truncate a [(L+1)^2, 3] light to `order`."""
    size = num_sh_coefficients(order)
    out = torch.zeros(size, coefficients.shape[1], dtype=coefficients.dtype, device=coefficients.device)
    n = min(size, coefficients.shape[0])
    out[:n] = coefficients[:n]
    return out


def load_sh_light(source: str | Path, order: int = MAX_SH_ORDER) -> torch.Tensor:
    """A bundled preset name, a .npy file of shape [(L+1)^2, 3], or an equirectangular .exr / .hdr environment
    map (projected to SH, see environment_map.py) -> float32 [(order+1)^2, 3].

    Lights of a lower order are padded with zeros, higher orders are dropped.
    """
    import numpy as np

    path = LIGHT_PRESET_DIR / f"{source}.npy" if str(source) in LIGHT_PRESETS else Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"no light '{source}': give one of {', '.join(LIGHT_PRESETS)}, a .npy file or an .exr / .hdr map"
        )
    if path.suffix.lower() in (".exr", ".hdr"):
        from neuface_ns.environment_map import load_environment_map_light

        return load_environment_map_light(path, order)
    array = np.load(path, allow_pickle=False)
    if array.ndim != 2 or array.shape[1] != 3 or math.isqrt(array.shape[0]) ** 2 != array.shape[0]:
        raise ValueError(f"{path}: an SH light must have shape [(L+1)^2, 3], got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{path}: the light has non-finite values")
    return resize_sh_light(torch.from_numpy(array.astype(np.float32)), order)
