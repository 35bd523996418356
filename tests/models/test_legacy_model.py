"""Runs saved before the volume / surface model split still load: their config.yml names the single pre-split
class (`neuface_ns.model.NeuFaceModelConfig` with a `render_mode` field, `_target: neuface_ns.model.NeuFaceModel`),
their surface checkpoints hold the (never trained) density beta, and their "fields" optimiser state counts it.
The end-to-end check (ns-eval, --load-dir resume of runs trained with the old code) is in the commit message."""

from __future__ import annotations

import pytest
import torch
import yaml
from nerfstudio.data.scene_box import SceneBox

from neuface_ns.models import (
    NeuFaceSurfaceModel,
    NeuFaceSurfaceModelConfig,
    NeuFaceVolumeModel,
    NeuFaceVolumeModelConfig,
    with_render_mode,
)
from neuface_ns.stress import set_config_fields

# The `pipeline.model` section of the config.yml that `ns-train neuface-dtu` (tiny networks on the CLI) wrote at
# commit d98cd99, before the split, verbatim.
OLD_MODEL_YAML = """\
    !!python/object:neuface_ns.model.NeuFaceModelConfig
    _target: !!python/name:neuface_ns.model.NeuFaceModel ''
    beta_init: 0.01
    beta_min: 0.0001
    bounding_sphere_radius: 1.0
    calibration_latent_dim: 50
    collider_params:
      far_plane: 6.0
      near_plane: 2.0
    color_loss_mult: 1.0
    dense_steps: 16
    eikonal_loss_mult: 0.1
    enable_collider: true
    eval_latent: mean
    eval_mask: gt
    eval_min_sample_weight: 0.0001
    eval_num_rays_per_chunk: 4096
    eval_ssim: masked-image
    infinite_last_interval: true
    latent_loss_mult: 1000.0
    loss_coefficients:
      rgb_loss_coarse: 1.0
      rgb_loss_fine: 1.0
    mask_alpha: 50.0
    mask_alpha_milestones: !!python/tuple
    - 500
    - 1000
    - 1500
    - 2000
    - 2500
    mask_loss_mult: 100.0
    milestone_unit: steps
    min_sdf_parabolic_steps: 1
    min_sdf_steps: 12
    near_surface_half_width: 0.005
    num_samples: 32
    prompt: null
    render_mode: surface
    residual_loss_mult: 0.001
    sdf_field: !!python/object:neuface_ns.fields.neuface_field.NeuFaceFieldConfig
      _target: !!python/name:neuface_ns.fields.neuface_field.NeuFaceField ''
      appearance: !!python/object:neuface_ns.fields.appearance.TriplaneAppearanceConfig
        _target: !!python/name:neuface_ns.fields.appearance.TriplaneAppearance ''
        features_per_level: 8
        first_omega: 30.0
        hidden_dim: 16
        init_scale: 0.1
        num_basis: 3
        num_layers: 2
        param_group: appearance_grid
        resolutions: !!python/tuple
        - 64
        - 256
        skip_layers: !!python/tuple []
        specular_channels: 3
      integrated_basis: !!python/object:neuface_ns.brdf.IntegratedBasisConfig
        _target: !!python/name:neuface_ns.brdf.IntegratedBasis ''
        hidden_dim: 16
        num_basis: 3
        num_layers: 3
      residual: null
      sdf_network: !!python/object:neuface_ns.fields.sdf.IDRSDFNetworkConfig
        _target: !!python/name:neuface_ns.fields.sdf.IDRSDFNetwork ''
        hidden_dim: 64
        num_frequencies: 6
        num_layers: 4
        skip_layers: !!python/tuple
        - 2
        softplus_beta: 100.0
        sphere_init_radius: 0.6
        use_weight_norm: true
    secant_steps: 8
    sh_order: 10
    specular_energy_loss_mult: 0.008
    trace_iterations: 16
    trace_threshold: 0.0005
    white_light_loss_mult: 0.005
"""

SCENE_BOX = SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3]))


def _old_config(render_mode: str):
    text = OLD_MODEL_YAML.replace("render_mode: surface", f"render_mode: {render_mode}")
    return yaml.load(text, Loader=yaml.Loader)


@pytest.mark.parametrize("render_mode, model_class", [("surface", NeuFaceSurfaceModel), ("volume", NeuFaceVolumeModel)])
def test_old_config_yaml_builds_the_renderers_class_with_its_settings(render_mode, model_class):
    old = _old_config(render_mode)
    assert type(old).__module__ == "neuface_ns.model" and old.render_mode == render_mode
    torch.manual_seed(0)
    model = old.setup(scene_box=SCENE_BOX, num_train_data=3)
    assert type(model) is model_class
    config = model.config
    assert config.render_mode == render_mode
    # the settings written in the text, not the new classes' defaults
    assert config.trace_iterations == 16 and config.dense_steps == 16 and config.eval_num_rays_per_chunk == 4096
    assert config.sdf_field.sdf_network.hidden_dim == 64 and config.sdf_field.appearance.hidden_dim == 16
    if render_mode == "surface":
        assert config.min_sdf_steps == 12 and config.min_sdf_parabolic_steps == 1
        assert config.mask_alpha_milestones == (500, 1000, 1500, 2000, 2500) and config.milestone_unit == "steps"
        assert not hasattr(config, "num_samples") and not hasattr(model, "density")
    else:
        assert config.num_samples == 32 and config.near_surface_half_width == 0.005
        assert not hasattr(config, "mask_loss_mult")
        assert float(model.density.beta) == pytest.approx(0.01)


def test_old_surface_checkpoint_and_optimiser_state_load():
    """The pre-split surface model's state: the new keys plus density.beta_param; its "fields" Adam state has one
    parameter more (the beta, last, never stepped)."""
    torch.manual_seed(0)
    model = _old_config("surface").setup(scene_box=SCENE_BOX, num_train_data=3)
    state = {k: v.clone() + 0.5 for k, v in model.state_dict().items() if v.is_floating_point() and v.numel()}
    old_state = {**model.state_dict(), **state, "density.beta_param": torch.tensor(0.0099)}
    torch.manual_seed(1)
    loaded = _old_config("surface").setup(scene_box=SCENE_BOX, num_train_data=3)
    loaded.load_state_dict(old_state)  # strict: no missing or unexpected key
    for key, value in state.items():
        assert torch.equal(loaded.state_dict()[key], value), key

    fields = model.get_param_groups()["fields"]
    beta = torch.nn.Parameter(torch.tensor(0.0099))
    old_adam = torch.optim.Adam(fields + [beta], lr=1e-3)
    for p in fields:
        p.grad = torch.ones_like(p)
    old_adam.step()
    old_adam.step()
    saved = old_adam.state_dict()
    assert len(saved["param_groups"][0]["params"]) == len(fields) + 1 and len(saved["state"]) == len(fields)

    new_fields = loaded.get_param_groups()["fields"]
    adam = torch.optim.Adam(new_fields, lr=1e-3)
    with pytest.raises(ValueError):  # what a resume did without the upgrade
        adam.load_state_dict(saved)
    adam.load_state_dict(loaded.upgrade_optimizer_state("fields", saved, len(new_fields)))
    assert [int(adam.state[p]["step"]) for p in new_fields] == [2] * len(new_fields)
    # other groups and states that already fit pass through unchanged
    light = loaded.get_param_groups()["light"]
    light_state = torch.optim.Adam(light).state_dict()
    assert loaded.upgrade_optimizer_state("light", light_state, len(light)) is light_state


def test_render_mode_is_the_class_and_switching_keeps_the_shared_settings():
    surface = NeuFaceSurfaceModelConfig(trace_iterations=16, sh_order=4, mask_loss_mult=7.0)
    with pytest.raises(AttributeError, match="with_render_mode"):
        surface.render_mode = "volume"
    volume = with_render_mode(surface, "volume", num_samples=8)
    assert type(volume) is NeuFaceVolumeModelConfig and volume.render_mode == "volume"
    assert (volume.trace_iterations, volume.sh_order, volume.num_samples) == (16, 4, 8)
    back = with_render_mode(volume, "surface")
    assert back.trace_iterations == 16 and back.mask_loss_mult == NeuFaceSurfaceModelConfig().mask_loss_mult
    assert back.sdf_field == surface.sdf_field and back.sdf_field is not surface.sdf_field
    with pytest.raises(ValueError, match="render_mode='points'"):
        with_render_mode(surface, "points")
    with pytest.raises(ValueError, match="num_samples"):
        with_render_mode(volume, "surface", num_samples=4)


def test_dotted_override_switches_the_renderer():
    """`benchmark.py --set pipeline.model.render_mode=volume` and the stress grid: the model config is replaced."""
    from neuface_ns.configs import dtu

    config = dtu.cpu_default()
    set_config_fields(config, {"pipeline.model.render_mode": "volume", "pipeline.model.num_samples": 8})
    model = config.pipeline.model
    assert type(model) is NeuFaceVolumeModelConfig and model.num_samples == 8
    assert model.trace_iterations == dtu.cpu_default().pipeline.model.trace_iterations
    with pytest.raises(AttributeError, match="no field 'min_sdf_steps'"):
        set_config_fields(config, {"pipeline.model.min_sdf_steps": 3})
