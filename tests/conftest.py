"""Shared fixtures: small NeuFace networks and models for fast CPU tests."""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from neuface_ns.brdf import IntegratedBasisConfig
from neuface_ns.fields.appearance import SpatialAppearanceConfig
from neuface_ns.fields.neuface_field import NeuFaceFieldConfig
from neuface_ns.fields.sdf import IDRSDFNetworkConfig, ResidualSDFConfig

# The tests use tiny networks: one intra-op thread is as fast, and on a shared, oversubscribed CPU it
# avoids OpenMP spin-waiting that made small forward passes 10-50x slower.
torch.set_num_threads(1)


def _small_field_config(residual: bool = False, specular_channels: int = 3) -> NeuFaceFieldConfig:
    return NeuFaceFieldConfig(
        sdf_network=IDRSDFNetworkConfig(hidden_dim=64, num_layers=4, skip_layers=(2,), num_frequencies=4),
        residual=ResidualSDFConfig(hidden_dims=(32, 16), num_frequencies=2) if residual else None,
        appearance=SpatialAppearanceConfig(
            hidden_dim=32, num_layers=4, skip_layers=(2,), num_basis=3, specular_channels=specular_channels
        ),
        integrated_basis=IntegratedBasisConfig(hidden_dim=16, num_layers=2, num_basis=3),
    )


@pytest.fixture
def small_field_config() -> Callable[..., NeuFaceFieldConfig]:
    """Factory: a NeuFaceFieldConfig with tiny networks (optionally with the residual SDF)."""
    return _small_field_config


@pytest.fixture
def make_model():
    """Factory: a NeuFaceModel with tiny networks, seeded, on the CPU."""
    from nerfstudio.data.scene_box import SceneBox

    from neuface_ns.model import NeuFaceModelConfig

    def build(render_mode: str = "volume", num_train_data: int = 4, residual: bool = False, seed: int = 0, **overrides):
        torch.manual_seed(seed)
        config = NeuFaceModelConfig(
            render_mode=render_mode,
            sdf_field=_small_field_config(residual=residual, specular_channels=1 if render_mode == "volume" else 3),
            dense_steps=24,
            num_samples=16,
            **overrides,
        )
        scene_box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
        return config.setup(scene_box=scene_box, num_train_data=num_train_data)

    return build
