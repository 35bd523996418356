"""The albedo-orientation prior (losses.albedo_orientation_loss and the models' term), against closed forms on the
sphere of directions and numpy's least squares: the loss is the variance of log(albedo) that the degree 1-2 real
SH of the normal explain."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import sph_harm_y

from nerfstudio.cameras.rays import RayBundle

from neuface_ns import losses

SLOPES = torch.tensor([0.8, 0.4, 0.0])  # log albedo_c = SLOPES[c] * n_z + const in the model test


def _uniform_directions(n: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=-1)


def _explained_variance_scipy(log_albedo: np.ndarray, normals: np.ndarray) -> float:
    """Independent reference: least squares of log albedo on 1 + the complex SH (scipy) of degree 1-2, split into
    real and imaginary parts (they span the same space as the real SH), fitted variance averaged over channels."""
    theta = np.arccos(np.clip(normals[:, 2], -1, 1))
    phi = np.arctan2(normals[:, 1], normals[:, 0])
    columns = [np.ones(len(normals))]
    for l in (1, 2):
        for m in range(0, l + 1):
            y = sph_harm_y(l, m, theta, phi)
            columns.append(y.real)
            if m > 0:
                columns.append(y.imag)
    design = np.stack(columns, axis=1)
    coefficients, *_ = np.linalg.lstsq(design, log_albedo, rcond=None)
    fitted = design @ coefficients
    return float(((fitted - fitted.mean(0)) ** 2).mean())


def test_loss_is_the_variance_a_function_of_the_normal_explains():
    normals = _uniform_directions(4000)
    rng = np.random.default_rng(1)
    texture = rng.normal(0.0, 0.3, size=(4000, 3))  # albedo variation that has nothing to do with the normal
    shading = 0.7 * normals[:, 2:3].numpy() + 0.4 * normals[:, 0:1].numpy() * normals[:, 1:2].numpy()
    log_albedo = np.log(0.4) + shading + texture
    albedo = torch.from_numpy(np.exp(log_albedo))
    loss = float(losses.albedo_orientation_loss(albedo, normals, ridge=0.0))
    assert loss == pytest.approx(_explained_variance_scipy(log_albedo, normals.numpy()), rel=1e-6)
    # the closed form on the uniform sphere: var(0.7 z + 0.4 x y) = 0.49 / 3 + 0.16 / 15, plus the fit's noise
    assert loss == pytest.approx(0.49 / 3 + 0.16 / 15, rel=0.05)
    # the default ridge only shrinks the fit a little
    assert float(losses.albedo_orientation_loss(albedo, normals)) == pytest.approx(loss, rel=0.05)


def test_weights_count_a_point_that_many_times():
    normals = _uniform_directions(300)
    albedo = torch.exp(0.5 * normals[:, 2:3] + 0.1 * torch.randn(300, 3, generator=torch.Generator().manual_seed(4),
                                                                  dtype=torch.float64))
    weights = torch.cat([torch.full((100, 1), 2.0), torch.zeros(100, 1), torch.ones(100, 1)]).double()
    repeated = torch.cat([albedo[:100], albedo[:100], albedo[200:]]), torch.cat([normals[:100], normals[:100], normals[200:]])
    assert float(losses.albedo_orientation_loss(albedo, normals, weights)) == pytest.approx(
        float(losses.albedo_orientation_loss(*repeated)), rel=1e-9)
    assert float(losses.albedo_orientation_loss(albedo, normals, torch.zeros(300, 1).double())) == 0.0


def test_an_albedo_that_ignores_the_normal_costs_almost_nothing():
    normals = _uniform_directions(4000)
    texture = torch.exp(torch.randn(4000, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.3)
    # 8 fitted functions on 4000 points pick up about 8 / 4000 of the texture's variance (0.09)
    assert float(losses.albedo_orientation_loss(texture * 0.3, normals)) < 0.09 * 8 / 4000 * 3
    # a constant factor (a brighter albedo) changes nothing: the loss is on log(albedo) less its mean
    a = float(losses.albedo_orientation_loss(texture * 0.3, normals))
    b = float(losses.albedo_orientation_loss(texture * 0.6, normals))
    assert a == pytest.approx(b, rel=1e-9)


def test_degenerate_batches_give_zero_never_nan():
    # a flat patch: every normal the same, nothing to fit (the ridge keeps the solve defined)
    normals = torch.tensor([[0.0, 0.0, 1.0]]).expand(100, 3)
    albedo = torch.rand(100, 3, generator=torch.Generator().manual_seed(0))
    assert float(losses.albedo_orientation_loss(albedo, normals)) == pytest.approx(0.0, abs=1e-10)
    # no points, fewer points than basis functions, a black albedo (log of the floor)
    assert float(losses.albedo_orientation_loss(torch.zeros(0, 3), torch.zeros(0, 3))) == 0.0
    few = _uniform_directions(5).float()
    assert float(losses.albedo_orientation_loss(torch.rand(5, 3), few)) == 0.0
    normals = _uniform_directions(200).float()
    black = torch.zeros(200, 3, requires_grad=True)
    loss = losses.albedo_orientation_loss(black, normals)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-12) and torch.isfinite(black.grad).all()


def _rays_at_sphere(n: int) -> RayBundle:
    g = torch.Generator().manual_seed(3)
    origins = F.normalize(torch.randn(n, 3, generator=g), dim=-1) * 2.5
    directions = F.normalize(torch.randn(n, 3, generator=g) * 0.1 - origins, dim=-1)
    return RayBundle(origins=origins, directions=directions, pixel_area=torch.full((n, 1), 1e-4),
                     camera_indices=torch.zeros(n, 1, dtype=torch.long), metadata={"directions_norm": torch.ones(n, 1)})


@pytest.mark.parametrize("mode", ["surface", "volume"])
def test_model_term_on_a_sphere_painted_with_shading(make_model, tiny_field_config, sphere_sdf_config,
                                                     painted_appearance_config, mode):
    """A sphere of radius 0.5 whose albedo is exp(SLOPES * z / 0.5) x 0.3, i.e. shading by n_z baked into the
    albedo: the term is mult x mean_c SLOPES_c^2 var(n_z) over the rays that hit (n_z of the sphere's own radial
    direction at the ray's hit point, computed here from the geometry, not from the model)."""
    mult = 2.0
    appearance = painted_appearance_config(hidden_dim=16, num_layers=2, skip_layers=(), num_basis=3,
                                           specular_channels=1,
                                           albedo=lambda x: 0.3 * torch.exp(x[:, 2:3] / 0.5 * SLOPES))
    field = tiny_field_config(sdf_network=sphere_sdf_config(radius=0.5), appearance=appearance)
    model = make_model(mode, sdf_field=field, albedo_orientation_loss_mult=mult)
    model.train()
    n = 4096
    bundle = _rays_at_sphere(n)
    outputs = model(bundle)
    loss = model.get_loss_dict(outputs, {"image": torch.rand(n, 3), "fg_mask": torch.ones(n, 1)})
    # the exact hit points of the rays on the sphere |o + t d| = 0.5
    o, d = bundle.origins, bundle.directions
    b = (o * d).sum(-1)
    disc = b**2 - ((o * o).sum(-1) - 0.25)
    hits = disc > 1e-4
    t = -b[hits] - disc[hits].sqrt()
    z = ((o[hits] + t[:, None] * d[hits])[:, 2] / 0.5).double()
    expected = mult * float((SLOPES.double() ** 2).mean() * z.var(unbiased=False))
    assert float(loss["albedo_orientation_loss"].detach()) == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("mode", ["surface", "volume"])
def test_term_trains_the_albedo_never_the_geometry_or_the_light(make_model, mode):
    model = make_model(mode, residual=(mode == "volume"), albedo_orientation_loss_mult=1.0)
    model.train()
    n = 256
    outputs = model(_rays_at_sphere(n))
    loss = model.get_loss_dict(outputs, {"image": torch.rand(n, 3), "fg_mask": torch.ones(n, 1)})
    loss["albedo_orientation_loss"].backward()
    appearance = [p.grad for p in model.field.appearance.parameters()]
    assert any(g is not None and float(g.abs().sum()) > 0 for g in appearance)
    for name, p in model.field.named_parameters():
        if not name.startswith("appearance."):
            assert p.grad is None or float(p.grad.abs().sum()) == 0.0, name
    assert model.light.coefficients.grad is None or float(model.light.coefficients.grad.abs().sum()) == 0.0


@pytest.mark.parametrize("mode", ["surface", "volume"])
def test_term_is_off_by_default(make_model, mode):
    model = make_model(mode)
    model.train()
    n = 64
    outputs = model(_rays_at_sphere(n))
    assert "albedo_orientation_loss" not in model.get_loss_dict(outputs, {"image": torch.rand(n, 3),
                                                                        "fg_mask": torch.ones(n, 1)})
