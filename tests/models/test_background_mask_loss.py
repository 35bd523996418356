"""The volume model's background mask loss (not in the paper): IDR's mask loss on the rays the tracer hits although
their mask says background. Checked against the closed form on an exact sphere, and by what training does."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from nerfstudio.cameras.rays import RayBundle


def _rays_towards_origin(n: int, spread: float, seed: int = 0) -> RayBundle:
    """Rays from radius 2.5 aimed at points within `spread` of the origin."""
    g = torch.Generator().manual_seed(seed)
    origins = F.normalize(torch.randn(n, 3, generator=g), dim=-1) * 2.5
    directions = F.normalize(torch.randn(n, 3, generator=g) * spread - origins, dim=-1)
    return RayBundle(origins=origins, directions=directions, pixel_area=torch.full((n, 1), 1e-4),
                     camera_indices=torch.zeros(n, 1, dtype=torch.long), metadata={"directions_norm": torch.ones(n, 1)})


def test_loss_on_an_exact_sphere_is_log2_per_background_hit(make_model, tiny_field_config, sphere_sdf_config):
    """The tracer stops where |SDF| < its threshold, so every background ray that hits the sphere contributes
    BCE(sigmoid(0), 0) = log 2 (IDR's normalisation: / (alpha n)); foreground hits and misses contribute nothing."""
    mult, alpha = 3.0, 50.0
    field = tiny_field_config(sdf_network=sphere_sdf_config(radius=0.5))
    model = make_model("volume", sdf_field=field, background_mask_loss_mult=mult, background_mask_alpha=alpha)
    model.train()
    n = 256
    outputs = model(_rays_towards_origin(n, spread=0.4))
    hit = outputs["network_hit"].reshape(-1)
    assert 0 < int(hit.sum()) < n  # some rays hit the sphere, some miss it
    fg_mask = (torch.arange(n) % 2 == 0).float()[:, None]
    loss = model.get_loss_dict(outputs, {"image": torch.zeros(n, 3), "fg_mask": fg_mask})["background_mask_loss"]
    background_hits = int((hit & (fg_mask.reshape(-1) < 0.5)).sum())
    expected = mult * background_hits * math.log(2.0) / (alpha * n)
    assert float(loss) == pytest.approx(expected, rel=0.02)
    # uncertain pixels (a capture's loss mask) are left out
    batch = {"image": torch.zeros(n, 3), "fg_mask": fg_mask, "loss_mask": torch.zeros(n, 1)}
    assert float(model.get_loss_dict(outputs, batch)["background_mask_loss"]) == 0.0


def test_training_on_background_rays_removes_the_surface_they_hit(make_model):
    """All rays marked background and only this loss on: a few Adam steps must leave fewer of them hitting, and
    a foreground-only batch gives no such term (nothing to remove)."""
    model = make_model("volume", background_mask_loss_mult=100.0, color_loss_mult=0.0, eikonal_loss_mult=0.0,
                       white_light_loss_mult=0.0, specular_energy_loss_mult=0.0, residual_loss_mult=0.0)
    model.train()
    n = 128
    rays = _rays_towards_origin(n, spread=0.2)
    background = {"image": torch.zeros(n, 3), "fg_mask": torch.zeros(n, 1)}
    before = int(model(rays)["network_hit"].sum())
    assert before > n // 2
    optimiser = torch.optim.Adam(model.field.parameters(), lr=2e-3)
    for _ in range(40):
        optimiser.zero_grad()
        sum(model.get_loss_dict(model(rays), background).values()).backward()
        optimiser.step()
    after = int(model(rays)["network_hit"].sum())
    assert after < before // 2, (before, after)
    foreground = {"image": torch.zeros(n, 3), "fg_mask": torch.ones(n, 1)}
    assert float(model.get_loss_dict(model(rays), foreground)["background_mask_loss"]) == 0.0
