"""Real spherical harmonics, Funk-Hecke factors and the SH environment light (neuface_ns/lighting/sh.py, light.py).

Every reference here is independent of the code under test: scipy's complex spherical harmonics,
hand-written closed forms (e3nn's l <= 2 table), scipy quadrature of the Legendre integral and
numerical quadrature of the irradiance integral over the hemisphere.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.special
import torch

from neuface_ns.brdf import material_integral, reflect
from neuface_ns.lighting.light import PAPER_INITIAL_LIGHT_L2, SHEnvironmentLight, paper_initial_light
from neuface_ns.lighting.sh import (
    MAX_SH_ORDER,
    lambertian_factors,
    num_sh_coefficients,
    real_spherical_harmonics,
    sh_degrees,
)

L = MAX_SH_ORDER
N_COEF = (L + 1) ** 2

# Spec section 3: Lambda_l for l = 0..10.
SPEC_LAMBDA = [math.pi, 2 * math.pi / 3, math.pi / 4, 0.0, -0.1309, 0.0, 0.04909, 0.0, -0.02454, 0.0, 0.01432]


# --------------------------------------------------------------------------- references
def _angles_to_dirs(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    return np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], axis=-1)


def _random_angles(n: int, seed: int):
    rng = np.random.default_rng(seed)
    theta = np.arccos(rng.uniform(-1.0, 1.0, n))  # polar
    phi = rng.uniform(0.0, 2.0 * np.pi, n)  # azimuth
    return theta, phi


def _scipy_real_sh(theta: np.ndarray, phi: np.ndarray, order: int = L) -> np.ndarray:
    """[..., (order+1)^2] real SH from scipy's complex ones (Condon-Shortley phase included there):

    m > 0: sqrt(2) (-1)^m Re Y_l^m,  m < 0: sqrt(2) (-1)^m Im Y_l^|m|,  m = 0: Y_l^0.
    """
    out = []
    for l in range(order + 1):
        for m in range(-l, l + 1):
            y = scipy.special.sph_harm_y(l, abs(m), theta, phi)
            if m == 0:
                out.append(y.real)
            elif m > 0:
                out.append(math.sqrt(2.0) * (-1) ** m * y.real)
            else:
                out.append(math.sqrt(2.0) * (-1) ** m * y.imag)
    return np.stack(out, axis=-1)


def _scipy_real_sh_dirs(dirs: np.ndarray, order: int = L) -> np.ndarray:
    dirs = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
    theta = np.arccos(np.clip(dirs[..., 2], -1.0, 1.0))
    phi = np.mod(np.arctan2(dirs[..., 1], dirs[..., 0]), 2.0 * np.pi)
    return _scipy_real_sh(theta, phi, order)


def _e3nn_l2_integral(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """e3nn's `o3.spherical_harmonics([0, 1, 2], (a, b, c), normalize=False, normalization="integral")`,
    written out by hand (component normalisation divided by sqrt(4 pi))."""
    s = 1.0 / math.sqrt(4.0 * math.pi)
    sh0 = [np.ones_like(a)]
    sh1 = [math.sqrt(3.0) * a, math.sqrt(3.0) * b, math.sqrt(3.0) * c]
    sh2 = [
        math.sqrt(15.0) * a * c,
        math.sqrt(15.0) * a * b,
        math.sqrt(5.0) * (b**2 - 0.5 * (a**2 + c**2)),
        math.sqrt(15.0) * b * c,
        math.sqrt(15.0) / 2.0 * (c**2 - a**2),
    ]
    return s * np.stack(sh0 + sh1 + sh2, axis=-1)


def _standard_table_l2(x, y, z) -> np.ndarray:
    """The usual table of real SH (Wikipedia), in the order m = -l..l."""
    return np.stack(
        [
            np.full_like(x, 0.5 / math.sqrt(math.pi)),
            math.sqrt(3.0 / (4.0 * math.pi)) * y,
            math.sqrt(3.0 / (4.0 * math.pi)) * z,
            math.sqrt(3.0 / (4.0 * math.pi)) * x,
            0.5 * math.sqrt(15.0 / math.pi) * x * y,
            0.5 * math.sqrt(15.0 / math.pi) * y * z,
            0.25 * math.sqrt(5.0 / math.pi) * (3.0 * z**2 - 1.0),
            0.5 * math.sqrt(15.0 / math.pi) * x * z,
            0.25 * math.sqrt(15.0 / math.pi) * (x**2 - y**2),
        ],
        axis=-1,
    )


def _sphere_quadrature(n_theta: int, n_phi: int):
    """Gauss-Legendre in cos(theta) x uniform in phi: exact for band-limited products up to degree
    min(2 n_theta - 1, n_phi - 1)."""
    u, wu = np.polynomial.legendre.leggauss(n_theta)
    phi = (np.arange(n_phi) + 0.5) * 2.0 * np.pi / n_phi
    theta = np.arccos(u)
    T, P = np.meshgrid(theta, phi, indexing="ij")
    W = wu[:, None] * np.full(n_phi, 2.0 * np.pi / n_phi)[None, :]
    return T.ravel(), P.ravel(), W.ravel()


def _hemisphere_frame(n: np.ndarray) -> np.ndarray:
    """Rotation matrix whose third column is the unit vector n."""
    n = n / np.linalg.norm(n)
    helper = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    t1 = np.cross(n, helper)
    t1 /= np.linalg.norm(t1)
    t2 = np.cross(n, t1)
    return np.stack([t1, t2, n], axis=1)


def _clamped_cosine_convolution(values_fn, n: np.ndarray, n_mu: int = 24, n_phi: int = 48) -> np.ndarray:
    """int_{S^2} f(w) max(n.w, 0) dw by quadrature on the hemisphere around n (exact for polynomial f
    of degree <= 2 n_mu - 2 and < n_phi): values_fn maps directions [M, 3] -> [M, K]."""
    mu, w_mu = np.polynomial.legendre.leggauss(n_mu)
    mu = 0.5 * (mu + 1.0)  # cos of the angle to n, in [0, 1]
    w_mu = 0.5 * w_mu
    phi = (np.arange(n_phi) + 0.5) * 2.0 * np.pi / n_phi
    MU, PHI = np.meshgrid(mu, phi, indexing="ij")
    sin = np.sqrt(1.0 - MU**2)
    local = np.stack([sin * np.cos(PHI), sin * np.sin(PHI), MU], axis=-1).reshape(-1, 3)
    weights = (w_mu[:, None] * np.full(n_phi, 2.0 * np.pi / n_phi)[None, :]).reshape(-1) * MU.reshape(-1)
    world = local @ _hemisphere_frame(n).T
    return (values_fn(world) * weights[:, None]).sum(0)


def _torch_sh(dirs: np.ndarray, order: int = L, dtype=torch.float64) -> np.ndarray:
    return real_spherical_harmonics(torch.as_tensor(dirs, dtype=dtype), order).double().numpy()


# --------------------------------------------------------------------------- basis
def test_sh_basis_matches_scipy_convention_all_orders():
    theta, phi = _random_angles(300, seed=0)
    # include the poles and the seam phi = 0 where a naive atan2 implementation would break
    theta = np.concatenate([theta, [0.0, np.pi, np.pi / 2, 0.3]])
    phi = np.concatenate([phi, [0.0, 1.0, 0.0, 2 * np.pi - 1e-9]])
    reference = _scipy_real_sh(theta, phi)
    dirs = _angles_to_dirs(theta, phi)
    assert reference.shape == (len(theta), N_COEF)

    got64 = _torch_sh(dirs, dtype=torch.float64)
    np.testing.assert_allclose(got64, reference, rtol=0, atol=1e-10)

    got32 = _torch_sh(dirs, dtype=torch.float32)
    np.testing.assert_allclose(got32, reference, rtol=0, atol=2e-4)


def test_sh_index_is_l2_plus_l_plus_m_and_lower_orders_are_prefixes():
    theta, phi = _random_angles(50, seed=1)
    dirs = torch.as_tensor(_angles_to_dirs(theta, phi))
    full = real_spherical_harmonics(dirs, L)
    assert full.shape == (50, num_sh_coefficients(L)) == (50, 121)
    for order in (0, 1, 2, 5):
        np.testing.assert_allclose(real_spherical_harmonics(dirs, order).numpy(), full[:, : (order + 1) ** 2].numpy())
    # Y_l^m with m = +-l uses only cos(l phi) / sin(l phi): check a couple of indices by hand.
    x, y, z = dirs.unbind(-1)
    i = 3 * 3 + 3 + (-3)  # l = 3, m = -3: (1/4) sqrt(35 / (2 pi)) (3x^2 - y^2) y
    np.testing.assert_allclose(full[:, i].numpy(), (0.25 * math.sqrt(35 / (2 * math.pi)) * (3 * x**2 - y**2) * y).numpy(), atol=1e-12)
    i = 3 * 3 + 3 + 2  # l = 3, m = 2: (1/4) sqrt(105 / pi) (x^2 - y^2) z
    np.testing.assert_allclose(full[:, i].numpy(), (0.25 * math.sqrt(105 / math.pi) * (x**2 - y**2) * z).numpy(), atol=1e-12)
    degrees = sh_degrees(L)
    assert degrees.tolist() == [l for l in range(L + 1) for _ in range(2 * l + 1)]


def test_sh_basis_is_orthonormal_by_quadrature():
    theta, phi, w = _sphere_quadrature(n_theta=16, n_phi=32)  # exact for degree <= 2 * 10 = 20
    basis = _torch_sh(_angles_to_dirs(theta, phi))
    gram = (basis * w[:, None]).T @ basis
    np.testing.assert_allclose(gram, np.eye(N_COEF), atol=1e-10)
    assert abs(w.sum() - 4 * math.pi) < 1e-12


def test_sh_l2_matches_e3nn_on_yzx_input_and_standard_table():
    rng = np.random.default_rng(2)
    dirs = rng.normal(size=(200, 3))
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    x, y, z = dirs.T
    got = _torch_sh(dirs, order=2)
    np.testing.assert_allclose(got, _e3nn_l2_integral(y, z, x), atol=1e-12)
    np.testing.assert_allclose(got, _standard_table_l2(x, y, z), atol=1e-12)
    np.testing.assert_allclose(got[:, 0], 1.0 / (2.0 * math.sqrt(math.pi)), atol=1e-14)
    np.testing.assert_allclose(got[:, 1:4], math.sqrt(3.0 / (4.0 * math.pi)) * np.stack([y, z, x], -1), atol=1e-12)


def test_sh_is_differentiable_at_the_poles():
    dirs = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [1e-9, 0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    basis = real_spherical_harmonics(dirs, L)
    (grad,) = torch.autograd.grad(basis.sum(), dirs)
    assert torch.isfinite(grad).all()


def test_paper_initial_light_is_shipped_as_is():
    light = paper_initial_light(L)
    assert light.shape == (N_COEF, 3)
    np.testing.assert_allclose(light[:9].numpy(), np.array(PAPER_INITIAL_LIGHT_L2), rtol=1e-6)
    assert light[0].tolist() == pytest.approx([2.9861, 3.4646, 3.9559], rel=1e-5)
    assert light[6].tolist() == pytest.approx([0.79123, 0.76916, 0.56288], rel=1e-5)
    assert torch.count_nonzero(light[9:]) == 0
    module = SHEnvironmentLight()
    np.testing.assert_allclose(module.coefficients.detach().numpy(), light.numpy())
    with pytest.raises(ValueError):
        SHEnvironmentLight(order=2, initial=torch.zeros(10, 3))


# --------------------------------------------------------------------------- Lambertian factors
def test_lambertian_factors_against_spec_table_and_legendre_integral():
    got = lambertian_factors(L).double().numpy()
    assert got.shape == (L + 1,)
    np.testing.assert_allclose(got, SPEC_LAMBDA, atol=5e-5)
    for l in range(L + 1):
        value, _ = scipy.integrate.quad(lambda t: t * scipy.special.eval_legendre(l, t), 0.0, 1.0, epsabs=1e-13)
        assert got[l] == pytest.approx(2.0 * math.pi * value, abs=1e-6), l


@pytest.mark.parametrize("seed", [3, 4])
def test_funk_hecke_numerical_convolution_of_each_basis_function(seed):
    """int Y_lm(w) max(n.w, 0) dw == Lambda_l Y_lm(n) for every l <= 10, m, with Y from scipy."""
    rng = np.random.default_rng(seed)
    lam = lambertian_factors(L).double().numpy()[sh_degrees(L).long().numpy()]
    for _ in range(3):
        n = rng.normal(size=3)
        n /= np.linalg.norm(n)
        numeric = _clamped_cosine_convolution(_scipy_real_sh_dirs, n)
        expected = lam * _scipy_real_sh_dirs(n[None])[0]
        np.testing.assert_allclose(numeric, expected, rtol=1e-6, atol=1e-7)


def test_irradiance_equals_relu_of_numerical_convolution():
    torch.manual_seed(0)
    coefficients = torch.randn(N_COEF, 3, dtype=torch.float64) / (1.0 + sh_degrees(L).double()[:, None])
    coefficients[0] += torch.tensor([0.5, 0.0, -0.5], dtype=torch.float64)  # mixed signs of the result
    coefficients = coefficients.float().double()  # the module stores its light in float32
    light = SHEnvironmentLight(L, initial=coefficients).double()
    rng = np.random.default_rng(5)
    normals = rng.normal(size=(12, 3))
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)

    c = coefficients.numpy()
    expected = np.stack(
        [_clamped_cosine_convolution(lambda w: _scipy_real_sh_dirs(w) @ c, n) for n in normals]
    )
    got = light.irradiance(torch.as_tensor(normals)).detach().numpy()
    # (Lambda_l is stored in float32: relative 1e-7)
    np.testing.assert_allclose(got, np.maximum(expected, 0.0), rtol=1e-6, atol=1e-8)
    assert (expected < 0).any() and (expected > 0).any(), "test light must exercise the relu"

    # passing coefficients explicitly overrides the module's own
    other = light.irradiance(torch.as_tensor(normals), coefficients=2.0 * coefficients).detach().numpy()
    np.testing.assert_allclose(other, np.maximum(2.0 * expected, 0.0), rtol=1e-6, atol=1e-7)


def test_irradiance_of_the_paper_light_float32():
    light = SHEnvironmentLight()  # float32, paper initial light
    rng = np.random.default_rng(6)
    normals = rng.normal(size=(8, 3))
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    c = paper_initial_light(L).double().numpy()
    expected = np.stack([_clamped_cosine_convolution(lambda w: _scipy_real_sh_dirs(w) @ c, n) for n in normals])
    got = light.irradiance(torch.as_tensor(normals, dtype=torch.float32)).detach().double().numpy()
    np.testing.assert_allclose(got, np.maximum(expected, 0), rtol=1e-5, atol=1e-5)


def test_specular_light_roughness_zero_is_the_light_itself():
    torch.manual_seed(1)
    coefficients = torch.randn(N_COEF, 3, dtype=torch.float64) * 0.3
    coefficients[0] += 1.0
    coefficients = coefficients.float().double()  # the module stores its light in float32
    light = SHEnvironmentLight(L, initial=coefficients).double()
    rng = np.random.default_rng(7)
    w_r = rng.normal(size=(100, 3))
    w_r /= np.linalg.norm(w_r, axis=-1, keepdims=True)
    radiance = _scipy_real_sh_dirs(w_r) @ coefficients.numpy()  # L(w_r)
    got = light.specular_light(torch.as_tensor(w_r), torch.zeros(100, 1, dtype=torch.float64)).detach().numpy()
    np.testing.assert_allclose(got, np.maximum(radiance, 0.0), atol=1e-9)
    assert (radiance < 0).any() and (radiance > 0).mean() > 0.3


def test_specular_light_attenuates_each_band_by_exp_l_l1_rho():
    rng = np.random.default_rng(8)
    w_r = rng.normal(size=(60, 3))
    w_r /= np.linalg.norm(w_r, axis=-1, keepdims=True)
    rho = rng.uniform(0.0, 0.5, size=(60, 1))
    basis = _scipy_real_sh_dirs(w_r)
    degrees = np.array([l for l in range(L + 1) for _ in range(2 * l + 1)])
    torch.manual_seed(2)
    coefficients = torch.randn(N_COEF, 3, dtype=torch.float64) * 0.5
    coefficients[0] += 2.0
    coefficients = coefficients.float().double()  # the module stores its light in float32
    light = SHEnvironmentLight(L, initial=coefficients).double()
    attenuation = np.exp(-degrees * (degrees + 1) / 2.0 * rho)  # [60, 121]
    expected = np.maximum((basis * attenuation) @ coefficients.numpy(), 0.0)
    got = light.specular_light(torch.as_tensor(w_r), torch.as_tensor(rho)).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-9)

    # single band: the response scales exactly by exp(-l(l+1)/2 rho)
    for l in (1, 4, 10):
        c = torch.zeros(N_COEF, 3, dtype=torch.float64)
        c[l * l : (l + 1) ** 2] = torch.randn(2 * l + 1, 3, dtype=torch.float64)
        band = SHEnvironmentLight(L, initial=c).double()
        rough = torch.full((60, 1), 0.1, dtype=torch.float64)
        sharp = band.specular_light(torch.as_tensor(w_r), torch.zeros_like(rough))
        blurred = band.specular_light(torch.as_tensor(w_r), rough)
        np.testing.assert_allclose(blurred.detach().numpy(), sharp.detach().numpy() * math.exp(-l * (l + 1) / 2 * 0.1), atol=1e-12)
        assert (sharp > 0).any()


def test_light_coefficients_are_the_only_parameter_and_get_gradients():
    light = SHEnvironmentLight()
    assert [name for name, _ in light.named_parameters()] == ["coefficients"]
    assert set(light.state_dict()) == {"coefficients"}  # derived buffers are not checkpointed
    n = torch.nn.functional.normalize(torch.randn(32, 3), dim=-1)
    (light.irradiance(n).sum() + light.specular_light(n, torch.rand(32, 1)).sum()).backward()
    assert light.coefficients.grad is not None and torch.isfinite(light.coefficients.grad).all()
    assert light.coefficients.grad[100:].abs().sum() > 0  # high orders are learnable too


# --------------------------------------------------------------------------- BRDF helpers used with the light
def test_reflect_is_the_mirror_direction():
    rng = np.random.default_rng(9)
    n = rng.normal(size=(50, 3))
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    w_o = rng.normal(size=(50, 3))
    w_o /= np.linalg.norm(w_o, axis=-1, keepdims=True)
    w_r = reflect(torch.as_tensor(w_o), torch.as_tensor(n)).numpy()
    # Householder: w_r = -(I - 2 n n^T) w_o
    expected = -np.einsum("nij,nj->ni", np.eye(3)[None] - 2 * n[:, :, None] * n[:, None, :], w_o)
    np.testing.assert_allclose(w_r, expected, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(w_r, axis=-1), 1.0, atol=1e-12)
    np.testing.assert_allclose((w_r * n).sum(-1), (w_o * n).sum(-1), atol=1e-12)


def test_material_integral_is_sigmoid_of_dot():
    c = torch.tensor([[1.0, -2.0, 0.5]])
    b = torch.tensor([[0.3, 0.1, 2.0]])
    expected = 1.0 / (1.0 + math.exp(-(0.3 - 0.2 + 1.0)))
    assert material_integral(c, b).shape == (1, 1)
    assert float(material_integral(c, b)) == pytest.approx(expected, rel=1e-6)
