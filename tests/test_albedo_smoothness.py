"""The albedo-smoothness prior (losses.albedo_smoothness_loss and the models' term): closed forms for the loss and,
on a sphere with a painted linear albedo a(x) = x G, the Gaussian expectation E|g . delta| = sigma sqrt(2/pi) |g|."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nerfstudio.cameras.rays import RayBundle

from neuface_ns import losses

GRADIENT = torch.tensor([[0.3, 0.0, -0.2], [0.4, 0.1, 0.0], [0.0, 0.2, 0.5]])  # a(x) = x @ GRADIENT


def test_loss_closed_forms():
    a = torch.tensor([[0.2, 0.4, 0.6], [0.5, 0.5, 0.5]])
    b = torch.tensor([[0.3, 0.4, 0.3], [0.5, 0.1, 0.5]])
    assert float(losses.albedo_smoothness_loss(a, b)) == pytest.approx((0.1 + 0.0 + 0.3 + 0.0 + 0.4 + 0.0) / 6)
    w = torch.tensor([[3.0], [1.0]])  # weighted: (3 x 0.4 + 1 x 0.4) / (4 x 3)
    assert float(losses.albedo_smoothness_loss(a, b, w)) == pytest.approx((3 * 0.4 + 1 * 0.4) / 12)
    assert float(losses.albedo_smoothness_loss(a, a)) == 0.0
    # degenerate: no points, or all weights zero (every sample in empty space) -> 0, never NaN
    empty = torch.zeros(0, 3)
    assert float(losses.albedo_smoothness_loss(empty, empty)) == 0.0
    assert float(losses.albedo_smoothness_loss(a, b, torch.zeros(2, 1))) == 0.0


def _rays_at_sphere(n: int) -> RayBundle:
    g = torch.Generator().manual_seed(3)
    origins = F.normalize(torch.randn(n, 3, generator=g), dim=-1) * 2.5
    directions = F.normalize(torch.randn(n, 3, generator=g) * 0.1 - origins, dim=-1)
    return RayBundle(origins=origins, directions=directions, pixel_area=torch.full((n, 1), 1e-4),
                     camera_indices=torch.zeros(n, 1, dtype=torch.long), metadata={"directions_norm": torch.ones(n, 1)})


@pytest.mark.parametrize("mode", ["surface", "volume"])
def test_model_term_matches_the_gaussian_expectation(make_model, tiny_field_config, sphere_sdf_config,
                                                     painted_appearance_config, mode):
    sigma, mult = 0.03, 2.0
    appearance = painted_appearance_config(hidden_dim=16, num_layers=2, skip_layers=(), num_basis=3,
                                           specular_channels=1, albedo=lambda x: x @ GRADIENT)
    field = tiny_field_config(sdf_network=sphere_sdf_config(radius=0.5), appearance=appearance)
    model = make_model(mode, sdf_field=field, albedo_smoothness_loss_mult=mult, albedo_smoothness_radius=sigma)
    model.train()
    torch.manual_seed(0)
    n = 4096
    outputs = model(_rays_at_sphere(n))
    batch = {"image": torch.rand(n, 3), "fg_mask": torch.ones(n, 1)}
    loss = model.get_loss_dict(outputs, batch)["albedo_smoothness_loss"]
    # per channel c: a_c(x + delta) - a_c(x) = G[:, c] . delta ~ N(0, sigma^2 |G[:, c]|^2), E|.| = sigma sqrt(2/pi) |G[:, c]|
    expected = mult * sigma * math.sqrt(2 / math.pi) * float(GRADIENT.norm(dim=0).mean())
    assert float(loss.detach()) == pytest.approx(expected, rel=0.06)


@pytest.mark.parametrize("mode", ["surface", "volume"])
def test_term_trains_the_albedo_never_the_geometry(make_model, mode):
    model = make_model(mode, residual=(mode == "volume"), albedo_smoothness_loss_mult=1.0)
    model.train()
    n = 256
    outputs = model(_rays_at_sphere(n))
    loss = model.get_loss_dict(outputs, {"image": torch.rand(n, 3), "fg_mask": torch.ones(n, 1)})
    loss["albedo_smoothness_loss"].backward()
    appearance = [p.grad for p in model.field.appearance.parameters()]
    assert any(g is not None and float(g.abs().sum()) > 0 for g in appearance)
    for name, p in model.field.named_parameters():
        if not name.startswith("appearance."):
            assert p.grad is None or float(p.grad.abs().sum()) == 0.0, name
    assert model.light.coefficients.grad is None or float(model.light.coefficients.grad.abs().sum()) == 0.0


@pytest.mark.parametrize("mode", ["surface", "volume"])
def test_term_is_off_by_default_and_outside_training(make_model, mode):
    model = make_model(mode)
    model.train()
    n = 64
    outputs = model(_rays_at_sphere(n))
    assert "albedo_pairs" not in outputs
    assert "albedo_smoothness_loss" not in model.get_loss_dict(outputs, {"image": torch.rand(n, 3),
                                                                       "fg_mask": torch.ones(n, 1)})
    model = make_model(mode, albedo_smoothness_loss_mult=1.0)
    model.eval()
    with torch.no_grad():
        assert "albedo_pairs" not in model(_rays_at_sphere(n))


@pytest.mark.parametrize("mode", ["surface", "volume"])
def test_tangent_offsets_measure_only_the_albedo_along_the_surface(make_model, tiny_field_config, sphere_sdf_config,
                                                                   painted_appearance_config, mode):
    """With albedo_smoothness_tangent the offset is delta - (delta . n) n, so for a(x) = x G the expected term is
    sigma sqrt(2/pi) |(I - n n^T) G[:, c]| at a point of normal n (a Gaussian projected on a plane is Gaussian in
    it); n is the sphere's radial direction at each shaded point, not the model's normal."""
    sigma, mult = 0.03, 2.0
    appearance = painted_appearance_config(hidden_dim=16, num_layers=2, skip_layers=(), num_basis=3,
                                           specular_channels=1, albedo=lambda x: x @ GRADIENT)
    field = tiny_field_config(sdf_network=sphere_sdf_config(radius=0.5), appearance=appearance)
    model = make_model(mode, sdf_field=field, albedo_smoothness_loss_mult=mult, albedo_smoothness_radius=sigma,
                       albedo_smoothness_tangent=True)
    model.train()
    shaded_points = []
    shade = model._shade

    def recording_shade(points, normals, view_out):
        shaded_points.append(points.detach())
        return shade(points, normals, view_out)

    model._shade = recording_shade
    torch.manual_seed(0)
    n = 4096
    outputs = model(_rays_at_sphere(n))
    loss = model.get_loss_dict(outputs, {"image": torch.rand(n, 3), "fg_mask": torch.ones(n, 1)})["albedo_smoothness_loss"]
    radial = F.normalize(torch.cat(shaded_points), dim=-1)  # [P, 3]
    weights = outputs["albedo_pairs"][:, 6].detach() if mode == "volume" else torch.ones(radial.shape[0])
    projected = GRADIENT[None] - radial[:, :, None] * (radial @ GRADIENT)[:, None, :]  # (I - n n^T) G, [P, 3, 3]
    per_point = projected.norm(dim=1).mean(dim=-1)  # mean over channels of |(I - n n^T) G[:, c]|
    expected = mult * sigma * math.sqrt(2 / math.pi) * float((weights * per_point).sum() / weights.sum())
    isotropic = mult * sigma * math.sqrt(2 / math.pi) * float(GRADIENT.norm(dim=0).mean())
    assert expected < 0.9 * isotropic  # the projection matters for this G
    assert float(loss.detach()) == pytest.approx(expected, rel=0.06)
