"""The initial lights a model config can name: the paper's, and a uniform ("ambient") one, whose irradiance is the
closed form of a constant radiance L over a hemisphere, E = pi L, for every normal."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from neuface_ns.lighting.light import PAPER_INITIAL_LIGHT_L2, SHEnvironmentLight, ambient_initial_light


def test_ambient_light_is_uniform_with_the_papers_mean_brightness():
    light = SHEnvironmentLight(10, ambient_initial_light(10))
    normals = F.normalize(torch.randn(500, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    c0 = sum(PAPER_INITIAL_LIGHT_L2[0]) / 3
    radiance = c0 / math.sqrt(4 * math.pi)  # Y_00 with integral normalisation
    torch.testing.assert_close(light.irradiance(normals), torch.full((500, 3), math.pi * radiance), rtol=1e-5, atol=0)


@pytest.mark.parametrize("mode", ["surface", "volume"])
def test_model_config_picks_the_initial_light(make_model, mode):
    paper = make_model(mode).light.coefficients.detach()
    ambient = make_model(mode, initial_light="ambient").light.coefficients.detach()
    torch.testing.assert_close(paper[:9], torch.tensor(PAPER_INITIAL_LIGHT_L2))
    assert float(ambient[1:].abs().max()) == 0.0 and float(ambient[0].std()) == 0.0
