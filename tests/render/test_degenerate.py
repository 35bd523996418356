"""Degenerate cases on purpose: exact SDF zeros in the secant bracket, SDFs flat along the ray, grazing
rays, hits exactly on the bounding sphere, and what the tools do with a model that returns NaN.

The first test reproduces the cause of `ns-train neuface-dtu`'s intermittent NaN: a learned SDF now and then
returns exactly 0.0 at a dense-fallback sample, the bracket's outside end is then 0, the secant step evaluates
the same point again (0 again) and the next step divided 0 by 0. Before the fix `sphere_trace` returned a NaN hit
distance for such a ray, which made every loss term of that ray NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Type

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nerfstudio.cameras.rays import RayBundle

from neuface_ns.eval import masked_image_metrics
from neuface_ns.exporter import extract_mesh
from neuface_ns.fields.appearance import SpatialAppearance, SpatialAppearanceConfig
from neuface_ns.fields.sdf import IDRSDFNetwork, IDRSDFNetworkConfig
from neuface_ns.render.surface import differentiable_surface_points
from neuface_ns.render.tracing import ray_sphere_intersection, sphere_trace

ROOT_Z = 0.25  # the plane z = ROOT_Z


def plane_sdf(x: torch.Tensor) -> torch.Tensor:
    """Signed distance to the plane z = 0.25, positive on the camera's side (z < 0.25)."""
    return ROOT_Z - x[:, 2]


def _axis_rays(n: int = 1):
    origins = torch.tensor([[0.0, 0.0, -1.0]]).expand(n, 3).clone()
    directions = torch.tensor([[0.0, 0.0, 1.0]]).expand(n, 3).clone()
    return origins, directions


@pytest.mark.parametrize("dense_steps", [9, 17, 33])
def test_exact_zero_sdf_at_a_dense_sample_is_the_hit(dense_steps):
    """Dense search on [0, 2] puts a sample exactly on the root t = 1.25 (plane at z = 0.25); the tracer
    must return that root, not NaN. (max_iterations=0: every ray goes to the dense fallback.)"""
    origins, directions = _axis_rays()
    t_near, t_far = torch.tensor([0.0]), torch.tensor([2.0])
    grid = torch.linspace(0.0, 2.0, dense_steps)
    assert bool((plane_sdf(origins + grid[:, None] * directions) == 0).any())  # the premise: an exact zero sample
    result = sphere_trace(plane_sdf, origins, directions, t_near, t_far, max_iterations=0, dense_steps=dense_steps)
    assert bool(result.hit[0])
    assert torch.isfinite(result.t_hit).all()
    assert float(result.t_hit[0]) == pytest.approx(1.0 + ROOT_Z, abs=1e-6)


def test_sdf_that_is_zero_along_a_segment_gives_a_root_not_nan():
    """Two equal (zero) ends of the secant bracket: the SDF is exactly 0 for z in [0.25, 0.5]."""

    def flat_zero(x):
        z = x[:, 2]
        return torch.where(z < 0.25, 0.25 - z, torch.where(z > 0.5, 0.5 - z, torch.zeros_like(z)))

    origins, directions = _axis_rays()
    for steps in (9, 24, 48):
        result = sphere_trace(flat_zero, origins, directions, torch.tensor([0.0]), torch.tensor([2.0]),
                              max_iterations=0, dense_steps=steps)
        assert torch.isfinite(result.t_hit).all(), steps
        t = float(result.t_hit[0])
        assert bool(result.hit[0]) and 1.25 - 1e-6 <= t <= 1.5 + 1e-6, (steps, t)  # a point of the zero segment


def test_sdf_returning_exact_zeros_everywhere_near_the_surface():
    """A quantised SDF (steps of 1/64, as a network's rounding does at a much finer scale) has many exact
    zeros: sphere tracing, the secant and the dense fallback must all return finite roots."""

    def quantised_sphere(x):
        return torch.round((x.norm(dim=-1) - 0.5) * 64.0) / 64.0

    g = torch.Generator().manual_seed(0)
    origins = F.normalize(torch.randn(500, 3, generator=g), dim=-1) * 2.0
    directions = F.normalize(torch.randn(500, 3, generator=g) * 0.3 - origins, dim=-1)
    t_in, t_out, valid = ray_sphere_intersection(origins, directions, 1.0)
    for iterations in (0, 1, 10):
        result = sphere_trace(quantised_sphere, origins, directions, torch.where(valid, t_in, 0 * t_in),
                              torch.where(valid, t_out, 0 * t_out), max_iterations=iterations, dense_steps=24,
                              find_min_sdf=True, min_sdf_steps=12, min_sdf_parabolic_steps=1)
        assert torch.isfinite(result.t_hit).all() and torch.isfinite(result.t_min_sdf).all(), iterations
        hits = result.hit & valid
        assert int(hits.sum()) > 100
        radius = (origins[hits] + result.t_hit[hits, None] * directions[hits]).norm(dim=-1)
        assert float((radius - 0.5).abs().max()) < 1.5 / 64.0, iterations


def test_sdf_flat_along_the_ray_is_a_miss_or_a_finite_hit():
    """A constant SDF (no gradient along the ray, no zero) is a miss; a constant exactly 0 is a hit at t_near."""
    origins, directions = _axis_rays(2)
    t_near, t_far = torch.tensor([0.2, 0.2]), torch.tensor([1.8, 1.8])
    for value, expect_hit in ((0.3, False), (1e-9, True), (0.0, True), (-0.2, True)):
        result = sphere_trace(lambda x: torch.full_like(x[:, 0], value), origins, directions, t_near, t_far,
                              find_min_sdf=True)
        assert torch.isfinite(result.t_hit).all() and torch.isfinite(result.t_min_sdf).all(), value
        assert result.hit.tolist() == [expect_hit] * 2, value
        if expect_hit:
            assert torch.allclose(result.t_hit, t_near), value


def test_hit_exactly_on_the_bounding_sphere():
    """The object fills the bounding sphere (radius 1): the SDF is 0 at t_near itself."""
    sdf = lambda x: x.norm(dim=-1) - 1.0  # noqa: E731
    g = torch.Generator().manual_seed(1)
    origins = F.normalize(torch.randn(64, 3, generator=g), dim=-1) * 3.0
    directions = F.normalize(torch.randn(64, 3, generator=g) * 0.2 - origins, dim=-1)
    t_in, t_out, valid = ray_sphere_intersection(origins, directions, 1.0)
    result = sphere_trace(sdf, origins, directions, t_in, t_out)
    assert torch.isfinite(result.t_hit).all()
    assert bool(result.hit[valid].all())
    assert torch.allclose(result.t_hit[valid], t_in[valid], atol=1e-5)


def _grazing_rays(radius: float, offsets):
    """Rays along +z passing the sphere's centre at distance radius + offset (tangent for offset 0)."""
    b = torch.tensor([radius + o for o in offsets], dtype=torch.float32)
    origins = torch.stack([b, torch.zeros_like(b), torch.full_like(b, -2.0)], dim=-1)
    directions = torch.tensor([[0.0, 0.0, 1.0]]).expand(len(offsets), 3).clone()
    return origins, directions


def test_grazing_rays_trace_and_differentiate_finitely():
    """Tangent and nearly tangent rays at a sphere: finite hits near the tangent point, and the IDR surface
    point's derivative (which divides by n . v, zero at grazing) stays finite."""
    radius = 0.5
    offsets = [-1e-3, -1e-5, -1e-7, 0.0, 1e-7, 1e-5]
    origins, directions = _grazing_rays(radius, offsets)
    r = torch.tensor(radius, requires_grad=True)
    sdf = lambda x: x.norm(dim=-1) - r.detach()  # noqa: E731
    t_in, t_out, valid = ray_sphere_intersection(origins, directions, 1.0)
    result = sphere_trace(sdf, origins, directions, t_in, t_out)
    assert torch.isfinite(result.t_hit).all()
    hit = result.hit & valid
    assert bool(hit[0])  # 1e-3 inside the silhouette: a true hit
    x0 = origins[hit] + result.t_hit[hit, None] * directions[hit]
    assert float((x0.norm(dim=-1) - radius).abs().max()) < 2e-3
    assert float(x0[:, 2].abs().max()) < 0.05  # at the tangent point z ~ 0
    x = x0.clone().requires_grad_(True)
    value = x.norm(dim=-1, keepdim=True) - r
    (gradient,) = torch.autograd.grad(value.sum(), x, retain_graph=True)
    points = differentiable_surface_points(x0, directions[hit], value, gradient)
    points.sum().backward()
    assert r.grad is not None and torch.isfinite(r.grad)


MODES = ["volume", "surface"]


@pytest.mark.parametrize("mode", MODES)
def test_model_step_on_grazing_and_boundary_rays_is_finite(make_model, mode):
    """The whole training step (forward, every loss, backward) on rays that graze the initial SDF sphere
    (radius 0.6), rays that touch the bounding sphere, and rays that miss everything."""
    model = make_model(mode, residual=(mode == "volume"))
    model.train()
    origins, directions = _grazing_rays(0.6, [-1e-2, -1e-4, -1e-6, 0.0, 1e-6, 1e-4, 0.39, 0.4, 0.4 + 1e-7, 0.5])
    n = origins.shape[0]
    bundle = RayBundle(origins=origins, directions=directions, pixel_area=torch.full((n, 1), 1e-4),
                       camera_indices=torch.zeros(n, 1, dtype=torch.long),
                       metadata={"directions_norm": torch.ones(n, 1)})
    outputs = model(bundle)
    batch = {"image": torch.rand(n, 3), "fg_mask": (torch.arange(n) % 2).float()[:, None]}
    loss_dict = model.get_loss_dict(outputs, batch)
    for name, value in loss_dict.items():
        assert torch.isfinite(value), name
    sum(loss_dict.values()).backward()
    for name, p in model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name


# --------------------------------------------------------------------------- a model that returns NaN


def _nan_where_positive_x(x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    return torch.where(x[:, :1] > 0, torch.full_like(value, float("nan")), value)


class _PartlyNaNSDF(IDRSDFNetwork):
    """The IDR SDF network, NaN for points with x > 0, like a partly diverged network."""

    def forward(self, x):
        return _nan_where_positive_x(x, super().forward(x))


@dataclass
class _PartlyNaNSDFConfig(IDRSDFNetworkConfig):
    _target: Type = field(default_factory=lambda: _PartlyNaNSDF)


class _PartlyNaNAppearance(SpatialAppearance):
    """The SIREN appearance, every material output NaN for points with x > 0."""

    def forward(self, x):
        return {k: _nan_where_positive_x(x, v) for k, v in super().forward(x).items()}


@dataclass
class _PartlyNaNAppearanceConfig(SpatialAppearanceConfig):
    _target: Type = field(default_factory=lambda: _PartlyNaNAppearance)


def _same_settings(config_class, config):
    """`config`'s settings in `config_class` (a subclass with another network)."""
    return config_class(**{f.name: getattr(config, f.name) for f in fields(config) if f.init and f.name != "_target"})


def _camera(width: int = 16, height: int = 12):
    from nerfstudio.cameras.cameras import Cameras, CameraType

    c2w = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 2.5]])
    return Cameras(camera_to_worlds=c2w[None], fx=14.0, fy=14.0, cx=width / 2.0, cy=height / 2.0,
                   width=width, height=height, camera_type=CameraType.PERSPECTIVE)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("network", ["sdf_network", "appearance"])
def test_rays_with_nan_outputs_render_as_counted_misses(make_model, small_field_config, mode, network, capsys):
    sdf_field = small_field_config(specular_channels=1 if mode == "volume" else 3)
    if network == "sdf_network":
        sdf_field.sdf_network = _same_settings(_PartlyNaNSDFConfig, sdf_field.sdf_network)
    else:
        sdf_field.appearance = _same_settings(_PartlyNaNAppearanceConfig, sdf_field.appearance)
    model = make_model(mode, sdf_field=sdf_field)
    model.eval()
    with torch.no_grad():
        outputs = model.get_outputs_for_camera(_camera())
    for name, value in outputs.items():
        assert torch.isfinite(value).all(), name
    # columns 8.. look at x > 0 (the NaN half): misses, black, no surface; columns 5-7 see the finite half
    # (up to samples whose compositing weight is below eval_min_sample_weight: those are not shaded at all)
    assert float(outputs["accumulation"][:, 8:].max()) < 1e-3
    assert float(outputs["rgb"][:, 8:].abs().max()) < 1e-3
    assert float(outputs["accumulation"][4:8, 5:8].min()) > 0.1  # volume mode at init: ~0.38
    if mode == "surface" and network == "sdf_network":
        return  # the tracer never converges on NaN: those rays are plain misses, nothing non-finite is rendered
    assert model.non_finite_rays > 0
    printed = capsys.readouterr().out
    assert "non-finite" in printed and "misses" in printed
    assert len([line for line in printed.splitlines() if "non-finite" in line]) == 1


def test_masked_metrics_ignore_non_finite_pixels_in_the_colour_fit():
    """Half the prediction is NaN: the fit over the finite half is exact (a known colour matrix), the NaN half
    scores as black; nothing raises (torch.linalg.lstsq rejects NaN input)."""
    g = torch.Generator().manual_seed(0)
    target = torch.rand(8, 8, 3, generator=g) * 0.5 + 0.25
    matrix = torch.tensor([[0.9, 0.1, 0.0], [0.0, 1.1, 0.05], [0.02, 0.0, 0.8]])
    predicted = (target.reshape(-1, 3) @ torch.linalg.inv(matrix)).reshape(8, 8, 3)
    mask = torch.ones(8, 8, 1, dtype=torch.bool)
    clean = masked_image_metrics(predicted, target, mask, lpips=False)
    assert clean["psnr_masked"] > 60.0
    broken = predicted.clone()
    broken[:, 4:] = float("nan")
    metrics = masked_image_metrics(broken, target, mask, lpips=False)
    for key, value in metrics.items():
        assert math.isfinite(value), key
    # the finite half is fitted exactly, the NaN half counts as black: MSE = mean(target[:, 4:]^2) / 2
    expected_mse = float((target[:, 4:] ** 2).mean()) / 2.0
    assert metrics["psnr_masked"] == pytest.approx(-10.0 * math.log10(expected_mse), abs=0.05)
    all_nan = torch.full_like(predicted, float("nan"))
    assert math.isfinite(masked_image_metrics(all_nan, target, mask, lpips=False)["psnr_masked"])


def test_mesh_export_treats_nan_sdf_as_empty_space(capsys):
    """An SDF that is NaN for x > 0.3 (a cap of the sphere): marching cubes meshes the finite part only and one
    line says how many grid values were not finite."""

    def partly_nan_sphere(x):
        value = x.norm(dim=-1) - 0.6
        return torch.where(x[:, 0] > 0.3, torch.full_like(value, float("nan")), value)

    mesh = extract_mesh(partly_nan_sphere, resolution=40, keep_largest_component=False)
    vertices = np.asarray(mesh.vertices)
    assert np.isfinite(vertices).all() and len(mesh.faces) > 100
    assert vertices[:, 0].max() < 0.3 + 0.1
    radius = np.linalg.norm(vertices, axis=-1)
    away_from_cut = vertices[:, 0] < 0.2
    assert np.abs(radius[away_from_cut] - 0.6).max() < 0.03
    printed = capsys.readouterr().out
    assert len([line for line in printed.splitlines() if "not finite" in line]) == 1
