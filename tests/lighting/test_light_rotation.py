"""Exact SH light rotation, light presets and the viewer's lighting controls (neuface_ns/lighting/,
scripts/make_light_presets.py, neuface_ns/viewer.py, the model hook, models/base.py).

The rotation references are independent of the least-squares construction: evaluating the original light
at the inversely rotated direction, the closed-form l = 1 block (Y_1 is proportional to (y, z, x)), and the
group properties (identity, composition, orthogonality).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfstudio.viewer.utils import parse_object
from nerfstudio.viewer.viewer_elements import ViewerControl, ViewerElement

from neuface_ns.lighting.light import SHEnvironmentLight
from neuface_ns.lighting.presets import LIGHT_PRESET_DIR, LIGHT_PRESETS, load_sh_light
from neuface_ns.lighting.settings import RelightSettings as LightSettings
from neuface_ns.lighting.sh import (
    MAX_SH_ORDER,
    num_sh_coefficients,
    real_spherical_harmonics,
    rotate_sh,
    rotation_matrix,
    sh_rotation_matrix,
)
from neuface_ns.viewer import LIGHTING_PANEL, LightingControls

_spec = importlib.util.spec_from_file_location(
    "make_light_presets", Path(__file__).resolve().parents[2] / "scripts" / "make_light_presets.py"
)
_make_light_presets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_make_light_presets)
build_light_preset = _make_light_presets.build_light_preset


def _random_rotation(generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _random_directions(n: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=generator, dtype=torch.float64), dim=-1).to(dtype)


# --------------------------------------------------------------------------- rotation
@pytest.mark.parametrize("order", [1, 2, 3, 6, MAX_SH_ORDER])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rotated_coefficients_evaluate_like_the_light_at_the_inverse_rotated_direction(order, seed):
    g = torch.Generator().manual_seed(seed)
    rotation = _random_rotation(g)
    coefficients = torch.randn(num_sh_coefficients(order), 3, generator=g, dtype=torch.float64)
    d = _random_directions(2000, g)
    rotated = rotate_sh(coefficients, rotation)
    lhs = real_spherical_harmonics(d, order) @ rotated
    rhs = real_spherical_harmonics(d @ rotation, order) @ coefficients  # rows: R^T d
    scale = rhs.abs().max()
    assert (lhs - rhs).abs().max() <= 1e-9 * scale


@pytest.mark.parametrize("seed", [3, 4])
def test_rotation_is_exact_to_1e5_in_float32_at_order_10(seed):
    g = torch.Generator().manual_seed(seed)
    rotation = _random_rotation(g)
    coefficients = torch.randn(num_sh_coefficients(MAX_SH_ORDER), 3, generator=g).float()
    d = _random_directions(4000, g)
    lhs = real_spherical_harmonics(d.float(), MAX_SH_ORDER) @ rotate_sh(coefficients, rotation)
    rhs = real_spherical_harmonics((d @ rotation).float(), MAX_SH_ORDER) @ coefficients
    assert (lhs - rhs).abs().max() <= 1e-5 * rhs.abs().max()


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_rotated_irradiance_and_specular_light(seed):
    g = torch.Generator().manual_seed(seed)
    light = SHEnvironmentLight(MAX_SH_ORDER).double()
    coefficients = torch.randn(num_sh_coefficients(MAX_SH_ORDER), 3, generator=g, dtype=torch.float64)
    coefficients[0] += 6.0  # mostly positive, so the relu does not hide the comparison
    rotation = _random_rotation(g)
    rotated = rotate_sh(coefficients, rotation)
    n = _random_directions(3000, g)
    roughness = torch.rand(3000, 1, generator=g, dtype=torch.float64) * 0.5
    with torch.no_grad():
        irr = light.irradiance(n, rotated)
        irr_ref = light.irradiance(n @ rotation, coefficients)
        spec = light.specular_light(n, roughness, rotated)
        spec_ref = light.specular_light(n @ rotation, roughness, coefficients)
    assert (irr_ref > 0).float().mean() > 0.9
    torch.testing.assert_close(irr, irr_ref, rtol=0, atol=1e-9 * irr_ref.abs().max().item())
    torch.testing.assert_close(spec, spec_ref, rtol=0, atol=1e-9 * spec_ref.abs().max().item())


def test_wigner_blocks_identity_composition_orthogonality_and_closed_form_l1():
    g = torch.Generator().manual_seed(8)
    r1, r2 = _random_rotation(g), _random_rotation(g)
    m1, m2, m12 = (sh_rotation_matrix(r, MAX_SH_ORDER) for r in (r1, r2, r1 @ r2))
    eye = torch.eye(num_sh_coefficients(MAX_SH_ORDER), dtype=torch.float64)
    assert (sh_rotation_matrix(torch.eye(3), MAX_SH_ORDER) - eye).abs().max() < 1e-12
    assert (m1 @ m1.T - eye).abs().max() < 1e-12
    assert (m1 @ m2 - m12).abs().max() < 1e-12
    # Only blocks within one degree.
    degree = torch.tensor([l for l in range(MAX_SH_ORDER + 1) for _ in range(2 * l + 1)])
    assert m1[degree[:, None] != degree[None, :]].abs().max() == 0
    # l = 1: Y_1 = k (y, z, x) = k P d, so the block is P R P^T.
    perm = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    assert (m1[1:4, 1:4] - perm @ r1 @ perm.T).abs().max() < 1e-12


def test_rotation_matrix_conventions():
    # yaw (about +y) moves a light in front (+z) to the subject's left (+x); pitch -90 lifts it to +y (up).
    front = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(rotation_matrix(yaw=90) @ front, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(rotation_matrix(pitch=-90) @ front, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(
        rotation_matrix(roll=90) @ torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64),
        torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64),
    )
    r = rotation_matrix(20, -35, 110)
    torch.testing.assert_close(r @ r.T, torch.eye(3, dtype=torch.float64))
    assert abs(torch.det(r).item() - 1.0) < 1e-12


def test_rotating_a_preset_moves_its_brightest_direction():
    light = load_sh_light("warm_side").double()
    d = _random_directions(20000, torch.Generator().manual_seed(9))
    peak = d[(real_spherical_harmonics(d, MAX_SH_ORDER) @ light).sum(-1).argmax()]
    rotation = rotation_matrix(yaw=-60, pitch=25)
    rotated = rotate_sh(light, rotation)
    peak_rotated = d[(real_spherical_harmonics(d, MAX_SH_ORDER) @ rotated).sum(-1).argmax()]
    assert torch.dot(peak_rotated, rotation @ peak) > math.cos(math.radians(3))


# --------------------------------------------------------------------------- presets
@pytest.mark.parametrize("name", LIGHT_PRESETS)
def test_presets_load_with_the_expected_shape_and_are_reproducible(name):
    raw = np.load(LIGHT_PRESET_DIR / f"{name}.npy")
    assert raw.shape == (num_sh_coefficients(MAX_SH_ORDER), 3) and raw.dtype == np.float32
    light = load_sh_light(name)
    assert light.shape == (121, 3) and light.dtype == torch.float32
    assert load_sh_light(name, order=2).shape == (9, 3)
    torch.testing.assert_close(light, build_light_preset(name), rtol=0, atol=1e-5)
    # A physically plausible light: positive irradiance everywhere, brightness close to the paper's light.
    n = _random_directions(5000, torch.Generator().manual_seed(10), dtype=torch.float32)
    irradiance = SHEnvironmentLight(MAX_SH_ORDER).irradiance(n, light)
    assert irradiance.min() > 0
    assert 3.0 < light[0].mean() < 4.0


def test_light_files_are_padded_and_validated(tmp_path):
    l2 = np.arange(27, dtype=np.float64).reshape(9, 3)
    np.save(tmp_path / "l2.npy", l2)
    light = load_sh_light(tmp_path / "l2.npy")
    assert light.shape == (121, 3)
    assert torch.equal(light[:9], torch.from_numpy(l2).float()) and light[9:].abs().max() == 0
    np.save(tmp_path / "bad.npy", np.zeros((10, 3)))
    with pytest.raises(ValueError, match="shape"):
        load_sh_light(tmp_path / "bad.npy")
    np.save(tmp_path / "nan.npy", np.full((4, 3), np.nan))
    with pytest.raises(ValueError, match="non-finite"):
        load_sh_light(tmp_path / "nan.npy")
    with pytest.raises(FileNotFoundError, match="studio_key"):
        load_sh_light("no_such_light")


# --------------------------------------------------------------------------- controls and the model hook
@pytest.fixture
def tiny_model(make_model, tiny_field_config):
    """A surface model with the smallest networks (3-channel specular), seeded."""
    return make_model("surface", num_train_data=2, sdf_field=tiny_field_config(specular_channels=3))


def _shade_inputs(n=256):
    g = torch.Generator().manual_seed(11)
    points = torch.rand(n, 3, generator=g) * 0.6 - 0.3
    normals = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    view = torch.nn.functional.normalize(normals + 0.5 * torch.randn(n, 3, generator=g), dim=-1)
    return points, normals, view


def test_controls_are_viewer_elements_under_the_lighting_panel_and_add_no_state(tiny_model):
    model = tiny_model
    assert not any(LIGHTING_PANEL in k for k in model.state_dict())
    assert not list(model.lighting_controls.parameters()) and not list(model.lighting_controls.buffers())
    elements = parse_object(model, ViewerElement, "Custom Elements/model")
    paths = [p for p, _ in elements]
    assert f"Custom Elements/model/{LIGHTING_PANEL}/c1_light" in paths
    names = [e.name for p, e in elements if p.startswith(f"Custom Elements/model/{LIGHTING_PANEL}/")]
    assert names == [
        "Light", "Match learned exposure", "Light yaw (deg)", "Light pitch (deg)", "Light roll (deg)",
        "Light intensity", "Diffuse", "Specular", "Reset lighting",
    ]  # fmt: skip
    assert len(parse_object(model, ViewerControl, "Custom Elements/model")) == 1


def test_default_controls_leave_the_learned_light_untouched_and_match_training_shading(tiny_model):
    model = tiny_model.eval()
    learned = model.light.coefficients
    assert model.lighting_controls.light_coefficients(learned) is learned
    points, normals, view = _shade_inputs()
    with torch.no_grad():
        eval_out = model._shade(points, normals, view)
        model.train()
        train_out = model._shade(points, normals, view)
    for key in ("raw", "diffuse", "specular"):
        assert torch.equal(eval_out[key], train_out[key])


def test_intensity_scales_diffuse_and_specular_linearly_and_toggles_switch_terms(tiny_model):
    model = tiny_model.eval()
    controls = model.lighting_controls
    points, normals, view = _shade_inputs()
    with torch.no_grad():
        base = model._shade(points, normals, view)
        assert base["diffuse"].abs().max() > 0 and base["specular"].abs().max() > 0
        for s in (0.0, 0.5, 2.5):
            controls.c6_intensity.value = s  # no viewer: sets the default value
            out = model._shade(points, normals, view)
            torch.testing.assert_close(out["diffuse"], s * base["diffuse"], rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(out["specular"], s * base["specular"], rtol=1e-5, atol=1e-7)
        controls.reset()
        controls.c7_diffuse.value = False
        out = model._shade(points, normals, view)
        assert out["diffuse"].abs().max() == 0
        torch.testing.assert_close(out["raw"], base["specular"])
        controls.c7_diffuse.value, controls.c8_specular.value = True, False
        out = model._shade(points, normals, view)
        assert out["specular"].abs().max() == 0
        torch.testing.assert_close(out["raw"], base["diffuse"])
        controls.reset()
        # Training ignores the controls.
        controls.c6_intensity.value = 3.0
        model.train()
        out = model._shade(points, normals, view)
        torch.testing.assert_close(out["raw"], base["raw"])


def test_rotation_and_presets_through_the_controls_and_the_model_is_never_modified(tiny_model):
    model = tiny_model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    controls = model.lighting_controls
    learned = model.light.coefficients.detach()
    settings = LightSettings(yaw=40.0, pitch=-10.0, roll=5.0, intensity=1.5)
    expected = 1.5 * rotate_sh(learned.double(), rotation_matrix(40.0, -10.0, 5.0)).float()
    torch.testing.assert_close(controls.light_coefficients(model.light.coefficients, settings), expected, atol=1e-5, rtol=1e-5)

    # Match learned exposure: the learned white balance (l=0 colour ratio) times one global scale that gives the
    # preset the learned light's peak irradiance.
    preset = controls.light_coefficients(model.light.coefficients, LightSettings(source="overcast"))
    raw = load_sh_light("overcast")
    balanced = raw * (learned[0] / learned[0].mean())
    gain = preset[0, 0] / balanced[0, 0]
    torch.testing.assert_close(preset, gain * balanced)
    n = _random_directions(40000, torch.Generator().manual_seed(12), dtype=torch.float32)
    peak = model.light.irradiance(n, preset).mean(-1).max()
    peak_learned = model.light.irradiance(n, learned).mean(-1).max()
    assert abs(peak / peak_learned - 1) < 0.02
    unmatched = controls.light_coefficients(model.light.coefficients, LightSettings(source="overcast", match_exposure=False))
    torch.testing.assert_close(unmatched, raw)

    from nerfstudio.cameras.cameras import Cameras

    camera = Cameras(
        camera_to_worlds=torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 2.5]])[None],
        fx=20.0, fy=20.0, cx=6.0, cy=6.0, width=12, height=12,
    )  # fmt: skip
    for source, yaw in (("learned", 0.0), ("studio_key", 90.0), ("learned", 30.0)):
        controls.c1_light.value, controls.c3_yaw.value = source, yaw
        with torch.no_grad():
            model.get_outputs_for_camera(camera)
    controls.fixed_settings = LightSettings(custom=load_sh_light("warm_side"), diffuse=False)
    with torch.no_grad():
        model.get_outputs_for_camera(camera)
    controls.fixed_settings = None
    controls.reset()
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert all(not p.grad_fn for p in model.parameters())
