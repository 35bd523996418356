"""Rendering building blocks (neuface_ns/render/*) and mesh export (neuface_ns/export.py), checked
against closed forms, scipy and analytic spheres."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from neuface_ns.exporter import extract_mesh, normalised_to_world, sdf_grid
from neuface_ns.render.surface import differentiable_surface_points, idr_mask_loss
from neuface_ns.render.tracing import ray_sphere_intersection, sphere_trace, trace_interval
from neuface_ns.render.volume import (
    LaplaceDensity,
    composite,
    compositing_weights,
    laplace_density,
    near_surface_distances,
)

CENTRE = torch.tensor([0.1, -0.05, 0.2])
RADIUS = 0.5


def sphere_sdf(x: torch.Tensor) -> torch.Tensor:
    return (x - CENTRE.to(x)).norm(dim=-1) - RADIUS


def _analytic_hits(o: torch.Tensor, d: torch.Tensor, centre=CENTRE, radius=RADIUS):
    """First intersection of unit-direction rays with a sphere; also cos(angle to the normal)."""
    oc = (o - centre.to(o)).double()
    d = d.double()
    b = (oc * d).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - radius**2)
    hit = disc > 0
    t = -b - disc.clamp(min=0).sqrt()
    normal = (oc + t[:, None] * d) / radius
    cos = -(normal * d).sum(-1)
    closest = (oc - b[:, None] * d).norm(dim=-1)  # distance of the line to the centre
    return t, hit, cos, closest


def _random_rays(n: int, seed: int, camera_radius: float = 3.0, spread: float = 0.4):
    g = torch.Generator().manual_seed(seed)
    o = F.normalize(torch.randn(n, 3, generator=g), dim=-1) * camera_radius
    target = torch.randn(n, 3, generator=g) * spread
    return o, F.normalize(target - o, dim=-1)


# --------------------------------------------------------------------------- volume rendering
def test_laplace_density_matches_scipy_laplace_cdf():
    s = torch.cat([torch.linspace(-0.2, 0.2, 401, dtype=torch.float64), torch.tensor([0.0, -5.0, 5.0], dtype=torch.float64)])
    for beta in (0.01, 0.05, 1.0):
        expected = scipy.stats.laplace.cdf(-s.numpy(), scale=beta) / beta
        # (far outside, 1/2 - 1/2 (1 - exp(-s/beta)) cancels to ~0 in the code: absolute tolerance)
        np.testing.assert_allclose(laplace_density(s, beta).numpy(), expected, rtol=1e-12, atol=1e-13 / beta)
        np.testing.assert_allclose(
            laplace_density(s, torch.tensor(beta, dtype=torch.float64)).numpy(), expected, rtol=1e-12, atol=1e-13 / beta
        )
    assert float(laplace_density(torch.tensor(0.0), 0.1)) == pytest.approx(5.0)  # half of 1/beta on the surface


def test_laplace_density_module_beta_floor_and_gradient():
    density = LaplaceDensity(beta_init=0.01, beta_min=1e-4)
    assert float(density.beta) == pytest.approx(0.01, rel=1e-6)
    s = torch.linspace(-0.05, 0.05, 11)
    expected = scipy.stats.laplace.cdf(-s.numpy(), scale=0.01) / 0.01
    np.testing.assert_allclose(density(s).detach().numpy(), expected, rtol=1e-5)
    with torch.no_grad():
        density.beta_param.fill_(-0.5)  # abs() + beta_min keeps beta >= beta_min whatever the parameter does
    assert float(density.beta) == pytest.approx(0.5 + 1e-4)
    with torch.no_grad():
        density.beta_param.zero_()
    assert float(density.beta) == pytest.approx(1e-4)
    density.beta_param.data.fill_(0.02)
    density(torch.tensor([0.01])).sum().backward()
    assert density.beta_param.grad is not None and torch.isfinite(density.beta_param.grad).all()


def _hand_composite(sigma, t, infinite_last):
    """Plain-python alpha compositing of one ray."""
    weights, transmittance, finite_tau = [], 1.0, 0.0
    for i in range(len(t)):
        if i + 1 < len(t):
            delta = t[i + 1] - t[i]
            finite_tau += sigma[i] * delta
        else:
            delta = math.inf if infinite_last else 0.0
        alpha = 1.0 - math.exp(-sigma[i] * delta) if sigma[i] > 0 else 0.0
        weights.append(transmittance * alpha)
        transmittance *= 1.0 - alpha
    return weights, 1.0 - math.exp(-finite_tau)


def test_compositing_weights_match_a_hand_written_loop():
    sigma = torch.tensor([[0.5, 3.0, 20.0, 1.0, 0.2], [0.0, 0.0, 0.1, 0.0, 4.0], [50.0, 50.0, 50.0, 50.0, 50.0]], dtype=torch.float64)
    t = torch.tensor([[1.0, 1.1, 1.15, 1.3, 1.6], [0.0, 0.5, 0.7, 1.0, 1.01], [2.0, 2.01, 2.02, 2.03, 2.04]], dtype=torch.float64)
    for infinite_last in (True, False):
        weights, opacity = compositing_weights(sigma, t, infinite_last=infinite_last)
        assert weights.shape == (3, 5) and opacity.shape == (3, 1)
        for r in range(3):
            w_ref, op_ref = _hand_composite(sigma[r].tolist(), t[r].tolist(), infinite_last)
            np.testing.assert_allclose(weights[r].numpy(), w_ref, rtol=1e-9, atol=1e-12)
            assert float(opacity[r]) == pytest.approx(op_ref, rel=1e-9)
        if infinite_last:
            np.testing.assert_allclose(weights.sum(-1).numpy(), 1.0, atol=1e-9)  # infinite last interval
        else:
            np.testing.assert_allclose(weights.sum(-1, keepdim=True).numpy(), opacity.numpy(), atol=1e-12)
    # finite opacity is strictly below one for a ray that only sees a little density
    _, opacity = compositing_weights(sigma, t)
    assert 0.0 < float(opacity[1]) < 0.1 and float(opacity[2]) > 0.8
    values = torch.arange(15, dtype=torch.float64).reshape(1, 5, 3).expand(3, 5, 3)
    w, _ = compositing_weights(sigma, t)
    np.testing.assert_allclose(composite(values, w).numpy(), np.einsum("ns,nsc->nc", w.numpy(), values.numpy()))


def test_near_surface_distances():
    t_hit = torch.tensor([1.0, 2.0, 5.0])
    hit = torch.tensor([True, False, True])
    t_in = torch.tensor([0.5, 1.5, 4.0])
    t_out = torch.tensor([1.5, 2.5, 6.0])
    t = near_surface_distances(t_hit, hit, t_in, t_out, num_samples=32, half_width=0.005)
    assert t.shape == (3, 32)
    np.testing.assert_allclose(t[0].numpy(), np.linspace(0.995, 1.005, 32), atol=1e-6)
    np.testing.assert_allclose(t[1].numpy(), np.linspace(1.5, 2.5, 32), atol=1e-6)
    np.testing.assert_allclose(t[2].numpy(), np.linspace(4.995, 5.005, 32), atol=1e-6)


# --------------------------------------------------------------------------- tracing
def test_ray_sphere_intersection_matches_closed_form():
    g = torch.Generator().manual_seed(0)
    o = torch.randn(500, 3, generator=g, dtype=torch.float64) * 1.5
    d = torch.randn(500, 3, generator=g, dtype=torch.float64) * 2.0  # not unit length
    radius = 1.2
    t_in, t_out, hits = ray_sphere_intersection(o, d, radius)

    on, dn = o.numpy(), d.numpy()
    dlen = np.linalg.norm(dn, axis=-1)
    u = dn / dlen[:, None]
    t_mid = -(on * u).sum(-1)  # closest approach, in length units
    h2 = radius**2 - ((on + t_mid[:, None] * u) ** 2).sum(-1)
    crosses = h2 > 0
    half = np.sqrt(np.clip(h2, 0, None))
    near, far = (t_mid - half) / dlen, (t_mid + half) / dlen  # in units of |d|
    expected_hits = crosses & (far > 0)
    np.testing.assert_array_equal(hits.numpy(), expected_hits)
    np.testing.assert_allclose(t_in.numpy()[expected_hits], np.maximum(near, 0)[expected_hits], atol=1e-9)
    np.testing.assert_allclose(t_out.numpy()[expected_hits], far[expected_hits], atol=1e-9)
    inside = (np.linalg.norm(on, axis=-1) < radius)
    assert inside.any() and (~inside & expected_hits).any() and (~expected_hits).any()
    assert np.all(t_in.numpy()[inside] == 0.0)
    # a sphere entirely behind the ray is not intersected
    _, _, behind = ray_sphere_intersection(torch.tensor([[0.0, 0.0, 3.0]]), torch.tensor([[0.0, 0.0, 1.0]]))
    assert not bool(behind[0])


def test_trace_interval_respects_bundle_nears_and_fars():
    o = torch.tensor([[0.0, 0.0, 3.0]] * 4)
    d = torch.tensor([[0.0, 0.0, -1.0]] * 4)
    nears = torch.tensor([[0.0], [2.5], [0.0], [3.9]])
    fars = torch.tensor([[10.0], [3.5], [1.5], [10.0]])
    t_in, t_out, valid = trace_interval(o, d, 1.0, nears, fars)
    np.testing.assert_allclose(t_in.numpy(), [2.0, 2.5, 2.0, 3.9])
    np.testing.assert_allclose(t_out.numpy()[[0, 1, 3]], [4.0, 3.5, 4.0])
    assert valid.tolist() == [True, True, False, True]
    t_in, t_out, valid = trace_interval(o, d, 1.0)
    np.testing.assert_allclose(t_in.numpy(), 2.0)
    np.testing.assert_allclose(t_out.numpy(), 4.0)


def _trace_random(n, seed, **kwargs):
    o, d = _random_rays(n, seed)
    t_near, t_far, valid = ray_sphere_intersection(o, d, 1.0)
    t_near = torch.where(valid, t_near, torch.zeros_like(t_near))
    t_far = torch.where(valid, t_far, torch.zeros_like(t_far))
    result = sphere_trace(sphere_sdf, o, d, t_near, t_far, **kwargs)
    return o, d, t_near, t_far, result


@pytest.mark.parametrize("max_iterations", [10, 1])
def test_sphere_trace_hits_an_analytic_sphere(max_iterations):
    """max_iterations=1 sends almost every ray to the dense sampler + secant refinement."""
    o, d, t_near, t_far, result = _trace_random(1500, seed=1, max_iterations=max_iterations)
    t_true, hit_true, cos, closest = _analytic_hits(o, d)
    clear = (hit_true & (cos >= 0.1)) | (~hit_true & (closest > RADIUS + 1e-3))
    assert hit_true[clear].sum() > 400 and (~hit_true[clear]).sum() > 100
    np.testing.assert_array_equal(result.hit[clear].numpy(), hit_true[clear].numpy())
    good = hit_true & (cos >= 0.1)
    err = (result.t_hit.double()[good] - t_true[good]).abs()
    assert float(err.max()) < 1e-4
    hits = result.hit
    assert bool(((result.t_hit[hits] >= t_near[hits] - 1e-6) & (result.t_hit[hits] <= t_far[hits] + 1e-6)).all())


@pytest.mark.parametrize("gradient_norm", [1.2, 1.5])
def test_sphere_trace_with_an_overestimating_sdf(gradient_norm):
    """f = k (|x - c| - r) has the same zero level set as the sphere; tracing must find it for k > 1 too."""
    o, d = _random_rays(1500, seed=1)
    t_near, t_far, valid = ray_sphere_intersection(o, d, 1.0)
    t_near, t_far = torch.where(valid, t_near, 0 * t_near), torch.where(valid, t_far, 0 * t_far)
    t_true, hit_true, cos, closest = _analytic_hits(o, d)
    good = hit_true & (cos >= 0.1)
    clear = good | (~hit_true & (closest > RADIUS + 1e-3))
    for max_iterations in (10, 1):
        result = sphere_trace(lambda x: gradient_norm * sphere_sdf(x), o, d, t_near, t_far, max_iterations=max_iterations)
        np.testing.assert_array_equal(result.hit[clear].numpy(), hit_true[clear].numpy())
        assert float((result.t_hit.double()[good] - t_true[good]).abs().max()) < 1e-3


def test_sphere_trace_dense_fallback_is_what_resolves_unconverged_rays():
    # Without the dense sampler (dense_steps <= 1), one marching step resolves no ray ...
    _, _, _, _, none = _trace_random(300, seed=2, max_iterations=1, dense_steps=1)
    o, d, _, _, dense = _trace_random(300, seed=2, max_iterations=1, dense_steps=100, secant_steps=8)
    t_true, hit_true, cos, _ = _analytic_hits(o, d)
    good = hit_true & (cos >= 0.1)
    assert not bool(none.hit[good].any())
    # ... with it, every clear hit is found to 1e-4 after secant refinement.
    assert bool(dense.hit[good].all())
    assert float((dense.t_hit.double()[good] - t_true[good]).abs().max()) < 1e-4
    # Secant steps refine the linear interpolation between two dense samples.
    _, _, _, _, coarse = _trace_random(300, seed=2, max_iterations=1, dense_steps=8, secant_steps=0)
    _, _, _, _, refined = _trace_random(300, seed=2, max_iterations=1, dense_steps=8, secant_steps=8)
    both = good & coarse.hit & refined.hit
    err_coarse = (coarse.t_hit.double()[both] - t_true[both]).abs().max()
    err_refined = (refined.t_hit.double()[both] - t_true[both]).abs().max()
    assert float(err_refined) < 1e-4 < float(err_coarse)


def test_sphere_trace_surface_beyond_the_interval_and_empty_intervals():
    o = torch.tensor([[0.1, -0.05, 3.0]] * 3)
    d = torch.tensor([[0.0, 0.0, -1.0]] * 3)
    # the sphere's front surface is at t = 3 - 0.2 - 0.5 = 2.3
    t_near = torch.tensor([2.0, 2.0, 2.0])
    t_far = torch.tensor([2.25, 2.0, 4.0])  # ends before the surface / empty / reaches it
    for it in (10, 1):
        result = sphere_trace(sphere_sdf, o, d, t_near, t_far, max_iterations=it)
        assert result.hit.tolist() == [False, False, True]
        assert float(result.t_hit[2]) == pytest.approx(2.3, abs=1e-4)


def test_sphere_trace_min_sdf_of_missed_rays():
    o, d, t_near, t_far, result = _trace_random(400, seed=3, find_min_sdf=True, dense_steps=100)
    t_true, hit_true, _, closest = _analytic_hits(o, d)
    missed = ~result.hit & (t_near < t_far) & (closest > RADIUS + 1e-2)
    assert missed.sum() > 20
    oc = (o - CENTRE).double()
    t_closest = -(oc * d.double()).sum(-1)  # argmin of the SDF along the line ...
    t_closest = torch.minimum(torch.maximum(t_closest, t_near.double()), t_far.double())  # ... within the interval
    step = (t_far - t_near).double() / 99
    err = (result.t_min_sdf.double() - t_closest)[missed].abs()
    assert bool((err <= step[missed] + 1e-5).all())


def test_min_sdf_parabolic_search_beats_idr_uniform_search():
    """12 samples + 1 parabolic step find the closest approach of missed rays to a sphere (closed form: the SDF
    minimum is |oc x d| - r) far better than IDR's 100 uniform samples, at an eighth of the SDF evaluations."""
    o, d = _random_rays(1500, seed=5)
    t_near, t_far, valid = ray_sphere_intersection(o, d, 1.0)
    t_near, t_far = torch.where(valid, t_near, 0 * t_near), torch.where(valid, t_far, 0 * t_far)
    _, hit_true, _, closest = _analytic_hits(o, d)
    oc = (o - CENTRE).double()
    t_closest = -(oc * d.double()).sum(-1)
    inside = (t_closest > t_near.double()) & (t_closest < t_far.double())
    missed = valid & ~hit_true & (closest > RADIUS + 1e-2) & inside
    assert missed.sum() > 100
    true_min = closest.double() - RADIUS

    def excess(**kwargs):
        calls = []

        def counting_sdf(x):
            calls.append(x.shape[0])
            return sphere_sdf(x)

        result = sphere_trace(counting_sdf, o, d, t_near, t_far, find_min_sdf=True, **kwargs)
        assert not bool(result.hit[missed].any())
        x = o.double() + result.t_min_sdf.double()[:, None] * d.double()
        return ((x - CENTRE).norm(dim=-1) - RADIUS - true_min)[missed], sum(calls)

    uniform, uniform_evals = excess(dense_steps=100)
    parabolic, parabolic_evals = excess(dense_steps=100, min_sdf_steps=12, min_sdf_parabolic_steps=1)
    assert float(uniform.min()) >= -1e-6 and float(parabolic.min()) >= -1e-6  # samples never go below the minimum
    # (rays that the dense fallback resolved keep its uniform minimum in both runs)
    assert float(parabolic.quantile(0.95)) < 1e-6 < float(uniform.quantile(0.95))
    assert float(parabolic.max()) <= float(uniform.max()) + 1e-9
    assert float(parabolic.mean()) < 0.1 * float(uniform.mean())
    assert parabolic_evals < 0.5 * uniform_evals


def test_min_sdf_is_not_searched_twice_for_rays_the_dense_fallback_resolved():
    """With no marching iteration every ray goes to the dense fallback, which already yields its minimum: asking
    for the minimum then costs no SDF evaluation, and the minimum is the closed form's to one sample spacing."""
    o, d = _random_rays(300, seed=2)
    t_near, t_far, valid = ray_sphere_intersection(o, d, 1.0)
    t_near, t_far = torch.where(valid, t_near, 0 * t_near), torch.where(valid, t_far, 0 * t_far)
    runs = {}
    for find_min_sdf in (False, True):
        sizes = []

        def recording_sdf(x):
            sizes.append(x.shape[0])
            return sphere_sdf(x)

        result = sphere_trace(recording_sdf, o, d, t_near, t_far, max_iterations=0, dense_steps=50,
                              find_min_sdf=find_min_sdf)
        runs[find_min_sdf] = (result, sizes)
    assert runs[True][1] == runs[False][1]
    result = runs[True][0]
    _, hit_true, _, closest = _analytic_hits(o, d)
    missed = valid & ~hit_true & (closest > RADIUS + 1e-2)
    assert missed.sum() > 20 and not bool(result.hit[missed].any())
    t_closest = (-((o - CENTRE).double() * d.double()).sum(-1)).clamp(t_near.double(), t_far.double())
    spacing = (t_far - t_near).double() / 49
    assert bool(((result.t_min_sdf.double() - t_closest)[missed].abs() <= spacing[missed] + 1e-5).all())


# --------------------------------------------------------------------------- differentiable surface point
def _closed_form_point(o, d, centre, radius):
    oc = o - centre
    b = (oc * d).sum(-1, keepdim=True)
    disc = b * b - (oc * oc).sum(-1, keepdim=True) + radius**2
    return o + (-b - disc.sqrt()) * d


def test_differentiable_surface_point_derivative_matches_analytic_intersection():
    torch.manual_seed(0)
    o, d = _random_rays(64, seed=4, spread=0.2)
    o, d = o.double(), F.normalize(d.double(), dim=-1)
    centre = torch.tensor([0.05, 0.1, -0.1], dtype=torch.float64)
    radius0 = 0.5
    t_true, hit, cos, _ = _analytic_hits(o, d, centre, radius0)
    keep = hit & (cos > 0.2)
    o, d, t_true = o[keep], d[keep], t_true[keep]
    x0 = o + t_true[:, None] * d  # the (gradient-free) traced point

    def idr_point(params):
        c, r = params[:3], params[3]
        sdf = ((x0 - c).norm(dim=-1, keepdim=True) - r)
        grad = (x0 - c).detach() / (x0 - c).detach().norm(dim=-1, keepdim=True)
        return differentiable_surface_points(x0, d, sdf, grad)

    params = torch.cat([centre, torch.tensor([radius0], dtype=torch.float64)])
    value = idr_point(params)
    np.testing.assert_allclose(value.detach().numpy(), x0.numpy(), atol=1e-12)  # same point in value
    jac_idr = torch.autograd.functional.jacobian(idr_point, params)  # [M, 3, 4]
    jac_true = torch.autograd.functional.jacobian(lambda p: _closed_form_point(o, d, p[:3], p[3]), params)
    np.testing.assert_allclose(jac_idr.numpy(), jac_true.numpy(), atol=1e-9)
    # and d x / d r for the centred case is d * dt/dr = -d * r / sqrt(b^2 - |o|^2 + r^2) by hand
    b = (o - centre).mul(d).sum(-1)
    dt_dr = -radius0 / torch.sqrt(b * b - ((o - centre) ** 2).sum(-1) + radius0**2)
    np.testing.assert_allclose(jac_idr[:, :, 3].numpy(), (d * dt_dr[:, None]).numpy(), atol=1e-9)


def test_differentiable_surface_point_with_a_learnable_radius_parameter():
    r = torch.nn.Parameter(torch.tensor(0.6, dtype=torch.float64))
    o = torch.tensor([[0.3, 0.2, 2.0]], dtype=torch.float64)
    d = F.normalize(torch.tensor([[-0.1, -0.1, -1.0]], dtype=torch.float64), dim=-1)
    with torch.no_grad():
        x0 = _closed_form_point(o, d, torch.zeros(3, dtype=torch.float64), r)
    sdf = x0.norm(dim=-1, keepdim=True) - r
    x = differentiable_surface_points(x0, d, sdf, x0 / x0.norm(dim=-1, keepdim=True))
    for k in range(3):
        (g,) = torch.autograd.grad(x[0, k], r, retain_graph=True)
        b = float((o * d).sum())
        expected = float(d[0, k]) * (-0.6 / math.sqrt(b * b - float((o * o).sum()) + 0.36))
        assert float(g) == pytest.approx(expected, rel=1e-9)


def test_idr_mask_loss_matches_hand_bce():
    min_sdf = torch.tensor([[0.02], [-0.01], [0.3], [-0.2], [0.0]], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1], [0], [0], [1], [1]], dtype=torch.bool)
    selected = torch.tensor([True, True, False, True, True])
    alpha = 50.0
    total = 0.0
    for s, m, sel in zip(min_sdf.detach().reshape(-1).tolist(), mask.reshape(-1).tolist(), selected.tolist()):
        if not sel:
            continue
        p = 1.0 / (1.0 + math.exp(alpha * s))  # sigmoid(-alpha s)
        total += -(math.log(p) if m else math.log(1.0 - p))
    expected = total / (alpha * 5)
    loss = idr_mask_loss(min_sdf, mask, selected, alpha)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert float(min_sdf.grad[2]) == 0.0 and float(min_sdf.grad[0]) != 0.0
    none = idr_mask_loss(min_sdf, mask, torch.zeros(5, dtype=torch.bool), alpha)
    assert float(none) == 0.0 and none.requires_grad


# --------------------------------------------------------------------------- mesh export
def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = np.pi * (1.0 + 5**0.5) * i
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)


def test_extract_mesh_of_an_analytic_sphere():
    import trimesh

    mesh = extract_mesh(sphere_sdf, resolution=64)
    vertices = np.asarray(mesh.vertices)
    c = CENTRE.numpy()
    # mesh -> sphere: exact distance of each vertex to the true surface
    to_sphere = np.abs(np.linalg.norm(vertices - c, axis=-1) - RADIUS)
    # sphere -> mesh: true surface points to the closest point on the mesh
    truth = c + RADIUS * _fibonacci_sphere(2000)
    _, to_mesh, _ = trimesh.proximity.closest_point(mesh, truth)
    chamfer = 0.5 * (to_sphere.mean() + to_mesh.mean())
    assert chamfer < 0.01 * RADIUS
    assert to_sphere.max() < 0.02 * RADIUS and to_mesh.max() < 0.02 * RADIUS
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(4.0 / 3.0 * math.pi * RADIUS**3, rel=0.02)  # > 0: outward winding
    # the whole sphere is there (nothing lost by the coarse-to-fine pass)
    tree = cKDTree(vertices)
    assert tree.query(truth)[0].max() < 2.0 * 2.0 / 64


def test_extract_mesh_faces_point_outwards():
    mesh = extract_mesh(sphere_sdf, resolution=32)
    # trimesh's signed volume is positive for outward (counter-clockwise seen from outside) winding
    assert mesh.volume > 0
    radial = (mesh.triangles_center - CENTRE.numpy()) / RADIUS
    assert float((mesh.face_normals * radial).sum(-1).min()) > 0.5


def test_sdf_grid_is_exact_near_the_surface():
    values, lo, voxel = sdf_grid(sphere_sdf, resolution=40)
    n = values.shape[0]
    assert values.shape == (n, n, n) and (n - 1) % 4 == 0 and n >= 40
    np.testing.assert_allclose(lo, -1.0)
    np.testing.assert_allclose(voxel, 2.0 / (n - 1), rtol=1e-6)
    axis = np.linspace(-1.0, 1.0, n)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)
    exact = np.linalg.norm(grid - CENTRE.numpy(), axis=-1) - RADIUS
    near = np.abs(exact) < 2 * voxel[0]
    np.testing.assert_allclose(values[near], exact[near], atol=1e-5)
    off = np.abs(exact) > 1e-5  # (grid points lying on the sphere have SDF 0 up to rounding)
    np.testing.assert_array_equal(np.sign(values[off]), np.sign(exact[off]))  # signs right everywhere


def test_extract_mesh_keeps_the_largest_component():
    def two_spheres(x):
        a = (x - torch.tensor([-0.45, 0.0, 0.0])).norm(dim=-1) - 0.4
        b = (x - torch.tensor([0.55, 0.0, 0.0])).norm(dim=-1) - 0.2
        return torch.minimum(a, b)

    mesh = extract_mesh(two_spheres, resolution=48)
    centre = np.asarray(mesh.vertices).mean(0)
    assert centre[0] == pytest.approx(-0.45, abs=0.02)
    both = extract_mesh(two_spheres, resolution=48, keep_largest_component=False)
    assert len(both.split(only_watertight=False)) == 2
    with pytest.raises(RuntimeError, match="no zero crossing"):
        extract_mesh(lambda x: x.norm(dim=-1) + 1.0, resolution=16)


@pytest.mark.parametrize("rows", [3, 4])
def test_normalised_to_world_inverts_the_dataparser_transform(rows):
    rng = np.random.default_rng(0)
    rotation = Rotation.random(random_state=1).as_matrix()
    translation = rng.normal(size=3)
    scale = 0.37
    transform = np.eye(4)[:rows]
    transform[:3, :3], transform[:3, 3] = rotation, translation
    world = rng.normal(size=(100, 3)) * 5
    normalised = scale * (world @ rotation.T + translation)  # x_norm = s (R x + t)
    np.testing.assert_allclose(normalised_to_world(normalised, transform, scale), world, atol=1e-10)
