"""Shared fixtures: small NeuFace networks and models for fast CPU tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple, Type

import pytest
import torch

from neuface_ns.brdf import IntegratedBasisConfig
from neuface_ns.fields.appearance import SpatialAppearance, SpatialAppearanceConfig
from neuface_ns.fields.neuface_field import NeuFaceFieldConfig
from neuface_ns.fields.sdf import IDRSDFNetworkConfig, ResidualSDFConfig, ShapePrior, ShapePriorConfig

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


def _tiny_field_config(specular_channels: int = 1, sdf_network: Optional[ShapePriorConfig] = None,
                       appearance: Optional[SpatialAppearanceConfig] = None) -> NeuFaceFieldConfig:
    """The smallest networks (16 wide, 2 layers, no residual): for tests of tools around a model, not of its
    training. `sdf_network` / `appearance` replace the SDF MLP / the SIREN (e.g. by SphereSDFConfig)."""
    return NeuFaceFieldConfig(
        sdf_network=sdf_network or IDRSDFNetworkConfig(hidden_dim=16, num_layers=2, skip_layers=(), num_frequencies=2),
        residual=None,
        appearance=appearance or SpatialAppearanceConfig(
            hidden_dim=16, num_layers=2, skip_layers=(), num_basis=3, specular_channels=specular_channels
        ),
        integrated_basis=IntegratedBasisConfig(hidden_dim=16, num_layers=2, num_basis=3),
    )


@pytest.fixture
def tiny_field_config() -> Callable[..., NeuFaceFieldConfig]:
    """Factory: a NeuFaceFieldConfig with the smallest networks (see _tiny_field_config)."""
    return _tiny_field_config


# ------------------------------------------------------------------------------------------ test shape and paint
@dataclass
class SphereSDFConfig(ShapePriorConfig):
    """A test shape prior: the exact SDF of a sphere, |x - center| - radius, with no parameters. Plugged into
    the field as its SDF network P, it gives a model with known geometry without patching the field."""

    _target: Type = field(default_factory=lambda: SphereSDF)
    center: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    radius: float = 0.5


class SphereSDF(ShapePrior):
    config: SphereSDFConfig

    def __init__(self, config: SphereSDFConfig):
        super().__init__(config)
        self.register_buffer("center", torch.tensor(config.center, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.center).norm(dim=-1, keepdim=True) - self.config.radius


@dataclass
class PaintedAppearanceConfig(SpatialAppearanceConfig):
    """The SIREN appearance with its albedo replaced by `albedo(x)` ([N, 3] -> [N, 3]): a model with a known
    albedo (the other material outputs stay the network's)."""

    _target: Type = field(default_factory=lambda: PaintedAppearance)
    albedo: Optional[Callable[[torch.Tensor], torch.Tensor]] = None


class PaintedAppearance(SpatialAppearance):
    config: PaintedAppearanceConfig

    def forward(self, x: torch.Tensor):
        return {**super().forward(x), "albedo": self.config.albedo(x)}


@pytest.fixture
def sphere_sdf_config() -> Callable[..., SphereSDFConfig]:
    return SphereSDFConfig


@pytest.fixture
def painted_appearance_config() -> Callable[..., PaintedAppearanceConfig]:
    return PaintedAppearanceConfig


@pytest.fixture
def small_field_config() -> Callable[..., NeuFaceFieldConfig]:
    """Factory: a NeuFaceFieldConfig with tiny networks (optionally with the residual SDF)."""
    return _small_field_config


@pytest.fixture
def make_model():
    """Factory: a NeuFace model of `render_mode` ("volume" / "surface") with tiny networks, seeded, on the CPU."""
    from nerfstudio.data.scene_box import SceneBox

    from neuface_ns.models import MODEL_CONFIGS

    def build(render_mode: str = "volume", num_train_data: int = 4, residual: bool = False, seed: int = 0, **overrides):
        """`overrides` are config fields; `sdf_field=` replaces the small networks (e.g. tiny_field_config())."""
        torch.manual_seed(seed)
        volume = render_mode == "volume"
        settings = {
            "sdf_field": _small_field_config(residual=residual, specular_channels=1 if volume else 3),
            "dense_steps": 24,
            **({"num_samples": 16} if volume else {}),
        }
        config = MODEL_CONFIGS[render_mode](**{**settings, **overrides})
        scene_box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
        return config.setup(scene_box=scene_box, num_train_data=num_train_data)

    return build


def _load_script(name: str):
    """scripts/<name>.py loaded by path (the developer tools are scripts, not package modules)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_script() -> Callable:
    """Factory: load a developer script (e.g. make_sample_scene) as a module."""
    return _load_script


@pytest.fixture(scope="session")
def save_tiny_dtu_run() -> Callable:
    """Factory: `save(root)` writes a 6-view 24 x 18 generated scene to root/scene and an untrained neuface-dtu run with
    tiny networks on it (config.yml + a step-0 checkpoint, the layout `ns-eval` and `eval_setup` read); returns
    (trainer config, pipeline). For tests of tools that load a saved run, without training one."""
    import copy

    def save(root):
        from neuface_ns.configs.methods import neuface_dtu

        scene = root / "scene"
        assert _load_script("make_sample_scene").main(
            ["--output-dir", str(scene), "--num-views", "6", "--width", "24", "--height", "18", "--mesh-resolution", "0"]
        ) == 0
        config = copy.deepcopy(neuface_dtu.config)
        config.data = scene
        config.pipeline.datamanager.data = scene
        config.output_dir = root / "out"
        config.experiment_name = "tiny"
        config.timestamp = "t0"
        config.machine.device_type = "cpu"
        config.pipeline.model.sdf_field = _tiny_field_config()
        config.pipeline.model.sh_order = 2
        config.pipeline.model.dense_steps = 16
        config.save_config()
        torch.manual_seed(0)
        pipeline = config.pipeline.setup(device="cpu", test_mode="test")
        checkpoints = config.get_checkpoint_dir()
        checkpoints.mkdir(parents=True)
        torch.save({"step": 0, "pipeline": pipeline.state_dict()}, checkpoints / "step-000000000.ckpt")
        return config, pipeline

    return save
