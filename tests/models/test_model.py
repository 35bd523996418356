"""The NeuFace models end to end on random rays (volume and surface rendering), photometric calibration, the loss
terms, the mask-alpha schedule and the masked colour-fitted image metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation

from neuface_ns import losses
from neuface_ns.calibration import PhotometricCalibration
from neuface_ns.eval import MAX_PSNR, fit_color_matrix, masked_image_metrics
from neuface_ns.models import DISPLAY_OUTPUTS

MODES = ["volume", "surface"]
THREE_CHANNEL = ("rgb", "albedo", "diffuse", "specular", "normal")


def _rays(n: int, seed: int = 0, num_cameras: int = 4, camera_indices=None) -> RayBundle:
    """Rays from a sphere of radius 2.5 aimed near the origin: most hit the initial SDF sphere."""
    g = torch.Generator().manual_seed(seed)
    origins = F.normalize(torch.randn(n, 3, generator=g), dim=-1) * 2.5
    targets = torch.randn(n, 3, generator=g) * 0.35
    directions = F.normalize(targets - origins, dim=-1)
    if camera_indices is None:
        camera_indices = torch.randint(0, num_cameras, (n, 1), generator=g)
    return RayBundle(
        origins=origins,
        directions=directions,
        pixel_area=torch.full((n, 1), 1e-4),
        camera_indices=camera_indices,
        metadata={"directions_norm": torch.ones(n, 1)},
    )


def _batch(n: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(n, 3, generator=g), "fg_mask": (torch.rand(n, 1, generator=g) > 0.5).float()}


def _camera(width: int = 10, height: int = 8) -> Cameras:
    """A pinhole camera 2.5 units up the +z axis looking at the origin (OpenGL convention)."""
    c2w = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 2.5]])
    return Cameras(
        camera_to_worlds=c2w[None],
        fx=12.0,
        fy=12.0,
        cx=width / 2.0,
        cy=height / 2.0,
        width=width,
        height=height,
        camera_type=CameraType.PERSPECTIVE,
    )


# --------------------------------------------------------------------------- forward / backward
@pytest.mark.parametrize("mode", MODES)
def test_training_forward_backward_reaches_every_parameter(make_model, mode):
    model = make_model(mode, residual=(mode == "volume"))
    with torch.no_grad():  # the paper light saturates rgb = clamp(raw A, 0, 1) at init: dim it
        model.light.coefficients.mul_(0.25)
    model.train()
    n = 48
    outputs = model(_rays(n))
    assert list(outputs)[0] == "rgb"
    assert set(DISPLAY_OUTPUTS) <= set(outputs)
    for name in DISPLAY_OUTPUTS:
        value = outputs[name].detach()
        assert value.shape[0] == n and value.ndim == 2, name
        assert torch.isfinite(value).all(), name
    for name in THREE_CHANNEL:
        value = outputs[name].detach()
        assert value.shape == (n, 3), name
        assert float(value.min()) >= 0.0 and float(value.max()) <= 1.0, name
    assert outputs["depth"].shape == (n, 1) and outputs["accumulation"].shape == (n, 1)
    assert float(outputs["accumulation"].detach().max()) > 0.1  # the rays do see the initial sphere

    loss_dict = model.get_loss_dict(outputs, _batch(n))
    expected_terms = {"color_loss", "eikonal_loss", "white_light_loss", "specular_energy_loss"}
    expected_terms |= {"mask_loss"} if mode == "surface" else {"residual_loss"}
    assert set(loss_dict) == expected_terms
    total = sum(loss_dict.values())
    assert torch.isfinite(total)
    total.backward()

    # every parameter trains in both modes: surface rendering owns no density (so DDP needs no unused-parameter search)
    assert mode == "volume" or not any(name.startswith("density.") for name, _ in model.named_parameters())
    unused = {"device_indicator_param"}
    for name, p in model.named_parameters():
        if name in unused or not p.requires_grad:
            continue
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    # the things the paper learns all move
    for name in ("light.coefficients", "calibration.latents", "field.integrated_basis.mlp.0.weight"):
        assert float(dict(model.named_parameters())[name].grad.abs().sum()) > 0, name
    if mode == "volume":
        assert float(model.density.beta_param.grad.abs()) > 0

    metrics = model.get_metrics_dict(outputs, _batch(n))
    assert "psnr" in metrics
    if mode == "volume":
        assert "beta" in metrics
    if mode == "surface":
        assert "mask_alpha" in metrics and "beta" not in metrics  # no density in surface rendering


def test_colour_loss_has_a_gradient_at_init_with_the_paper_light(make_model):
    model = make_model("surface")
    model.train()
    n = 64
    outputs = model(_rays(n))
    batch = {"image": torch.full((n, 3), 0.4), "fg_mask": torch.ones(n, 1)}
    model.get_loss_dict(outputs, batch)["color_loss"].backward()
    for name in ("field.appearance.head.weight", "light.coefficients", "calibration.latents"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and float(grad.abs().sum()) > 0, name


@pytest.mark.parametrize("mode", MODES)
def test_param_groups_cover_every_parameter_once(make_model, mode):
    model = make_model(mode, residual=True)
    groups = model.get_param_groups()
    assert {"fields", "light", "calibration"} <= set(groups)
    ids = [id(p) for group in groups.values() for p in group]
    assert len(ids) == len(set(ids)), "a parameter is in two optimiser groups"
    expected = {id(p) for n, p in model.named_parameters() if n != "device_indicator_param"}
    assert set(ids) == expected
    assert [id(p) for p in groups["light"]] == [id(model.light.coefficients)]
    if mode == "volume":
        assert id(model.density.beta_param) in {id(p) for p in groups["fields"]}
    else:
        assert not hasattr(model, "density")


@pytest.mark.parametrize("mode", MODES)
def test_eval_outputs_are_detached_and_work_under_no_grad(make_model, mode):
    model = make_model(mode)
    model.eval()
    with torch.no_grad():
        outputs = model(_rays(32))
    assert list(outputs) == list(DISPLAY_OUTPUTS)  # only display outputs, rgb first
    for name, value in outputs.items():
        assert not value.requires_grad and value.grad_fn is None, name
    # without an outer no_grad too (nerfstudio's eval loops differ)
    outputs = model(_rays(32))
    assert all(not v.requires_grad for v in outputs.values())
    # the viewer path: a camera, chunked, [H, W, C]
    model.config.eval_num_rays_per_chunk = 37  # not a divisor of 80
    with torch.no_grad():
        image = model.get_outputs_for_camera(_camera(10, 8))
    assert list(image)[0] == "rgb"
    for name in DISPLAY_OUTPUTS:
        assert image[name].shape[:2] == (8, 10), name
        assert not image[name].requires_grad
    for name in THREE_CHANNEL:
        assert image[name].shape == (8, 10, 3)
        assert 0.0 <= float(image[name].min()) and float(image[name].max()) <= 1.0
    # the object is in the middle of the view, the corners are empty
    assert float(image["accumulation"][4, 5]) > 0.1
    assert float(image["accumulation"][0, 0]) == 0.0 and float(image["rgb"][0, 0].abs().sum()) == 0.0


def _axis_rays(fars, nears=None):
    n = len(fars)
    return RayBundle(
        origins=torch.tensor([[0.0, 0.0, 3.0]] * n),
        directions=torch.tensor([[0.0, 0.0, -1.0]] * n),
        pixel_area=torch.full((n, 1), 1e-4),
        camera_indices=torch.zeros(n, 1, dtype=torch.long),
        nears=torch.zeros(n, 1) if nears is None else torch.tensor(nears).reshape(n, 1),
        fars=torch.tensor(fars).reshape(n, 1),
    )


def _surface_distance(model) -> float:
    """Distance along the axis ray from (0, 0, 3) to the model's zero level set, by bisection."""
    lo, hi = 2.0, 3.0  # outside at t = 2 (|x| = 1), inside at t = 3 (origin)
    with torch.no_grad():
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            if float(model.field.sdf(torch.tensor([[0.0, 0.0, 3.0 - mid]]))) > 0:
                lo = mid
            else:
                hi = mid
    return 0.5 * (lo + hi)


@pytest.mark.parametrize("mode", MODES)
def test_rays_respect_bundle_nears_and_fars(make_model, mode):
    model = make_model(mode)
    model.eval()
    t_surface = _surface_distance(model)
    assert 2.1 < t_surface < 2.9
    # full ray / ends before the bounding sphere / ends 0.3 before the surface / starts past the bounding sphere
    rays = _axis_rays([100.0, 1.5, t_surface - 0.3, 100.0], nears=[0.0, 0.0, 0.0, 4.5])
    with torch.no_grad():
        out = model(rays)
    assert float(out["accumulation"][0]) > 0.3 and float(out["rgb"][0].sum()) > 0.1
    assert float(out["depth"][0]) == pytest.approx(t_surface, abs=0.05)  # (tracer accuracy: test_render.py)
    for i in (1, 2, 3):
        assert float(out["accumulation"][i]) < 1e-3, i
        assert float(out["rgb"][i].max()) < 1e-2, i


@pytest.mark.parametrize(
    "mode",
    [
        "volume",
        "surface",
    ],
)
def test_short_ray_ending_just_before_the_surface_renders_nothing(make_model, mode):
    model = make_model(mode)
    model.eval()
    t_surface = _surface_distance(model)
    with torch.no_grad():
        out = model(_axis_rays([t_surface - 0.05]))
    assert float(out["accumulation"][0]) < 1e-2
    assert float(out["rgb"][0].max()) < 1e-2


# --------------------------------------------------------------------------- calibration
def test_calibration_starts_at_identity_over_pi_and_applies_row_vectors():
    torch.manual_seed(0)
    calib = PhotometricCalibration(num_images=6)
    assert calib.latents.shape == (6, 50)
    assert 0.05 < float(calib.latents.std()) < 0.15  # N(0, 0.1)
    matrices = calib.matrices(torch.arange(6), None)
    assert matrices.shape == (6, 3, 3)
    # I / pi: Lambert's 1/pi, so the paper light's first renders are not clamped white (see calibration.py)
    np.testing.assert_allclose(matrices.detach().numpy(), np.broadcast_to(np.eye(3) / np.pi, (6, 3, 3)), atol=0.02)
    a = torch.tensor([[[1.0, 2.0, 0.0], [0.0, 1.0, 0.5], [3.0, 0.0, 1.0]]])
    colors = torch.tensor([[0.1, 0.2, 0.3], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(PhotometricCalibration.apply(colors, a).numpy(), colors.numpy() @ a[0].numpy(), atol=1e-7)


def test_calibration_max_norm_and_fixed_latents():
    torch.manual_seed(0)
    calib = PhotometricCalibration(num_images=3, latent_dim=5, hidden_dim=8)
    with torch.no_grad():
        calib.latents.copy_(torch.tensor([[3.0, 4.0, 0.0, 0.0, 0.0], [0.1, 0.0, 0.2, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 2.0]]))
        for p in calib.mlp.parameters():
            p.normal_()  # make the MLP sensitive to its input
    renormed = torch.tensor([[0.6, 0.8, 0.0, 0.0, 0.0], [0.1, 0.0, 0.2, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]])
    expected = calib.mlp(renormed).reshape(3, 3, 3)
    got = calib.matrices(torch.tensor([0, 1, 2]), None)
    np.testing.assert_allclose(got.detach().numpy(), expected.detach().numpy(), atol=1e-6)
    # fixed latents for held-out views: an index, or the mean of the (renormalised) latents
    np.testing.assert_allclose(calib.matrices(None, 2).detach().numpy(), expected[2:3].detach().numpy(), atol=1e-6)
    mean = calib.mlp(renormed.mean(0, keepdim=True)).reshape(1, 3, 3)
    np.testing.assert_allclose(calib.matrices(None, None).detach().numpy(), mean.detach().numpy(), atol=1e-6)
    assert float(calib.fixed_latent(0).norm()) == pytest.approx(1.0)


def test_white_balance_calibration_is_positive_per_channel_gains():
    torch.manual_seed(0)
    calib = PhotometricCalibration(num_images=4, latent_dim=5, hidden_dim=8, form="white_balance")
    np.testing.assert_allclose(calib.matrices(torch.arange(4), None).detach().numpy(),
                               np.broadcast_to(np.eye(3) / np.pi, (4, 3, 3)), atol=0.01)  # starts at I / pi too
    with torch.no_grad():  # an MLP pushed hard enough that a linear head would give negative entries
        calib.latents.normal_(0.0, 2.0)
        for p in calib.mlp.parameters():
            p.normal_(0.0, 3.0)
    matrices = calib.matrices(torch.arange(4), None).detach().numpy()
    gains = np.log1p(np.exp(calib.mlp(calib._renormed(calib.latents)).detach().numpy()))  # numpy softplus
    np.testing.assert_allclose(matrices, np.stack([np.diag(g) for g in gains]), rtol=1e-5, atol=1e-7)
    assert (np.diagonal(matrices, axis1=1, axis2=2) > 0).all()
    # so a positive radiance stays positive in every channel whatever the light's colour (no clipping to black)
    colors = torch.rand(50, 3) + 1e-3
    calibrated = PhotometricCalibration.apply(colors, calib.matrices(None, None))
    np.testing.assert_allclose(calibrated.detach().numpy(), colors.numpy() * np.diag(calib.matrices(None, None)[0].detach().numpy()),
                               rtol=1e-5)
    assert (calibrated > 0).all()
    with pytest.raises(ValueError, match="calibration form"):
        PhotometricCalibration(num_images=2, form="affine")


def test_model_renders_through_the_white_balance_calibration(make_model):
    model = make_model("surface", calibration_form="white_balance")
    with torch.no_grad():
        model.calibration.mlp[-1].bias.copy_(torch.tensor([0.0, -50.0, 2.0]))  # gains ~0.69, ~0, ~2.13
    model.eval()
    with torch.no_grad():
        out = model(_rays(30))
    hit = out["accumulation"][:, 0] > 0.5
    assert int(hit.sum()) > 5
    assert float(out["rgb"][hit, 1].max()) < 1e-6  # the green gain is ~0: green is dark, red / blue are not
    assert float(out["rgb"][hit, 0].min()) > 0 and float(out["rgb"][hit, 2].min()) > 0


@pytest.mark.parametrize("mode, eval_latent", [("volume", "mean"), ("surface", "2"), ("volume", "2")])
def test_eval_uses_the_fixed_latent_and_ignores_camera_indices(make_model, mode, eval_latent):
    # every sample shaded at eval too (volume), so eval and training renders of the same rays compare to 1e-5
    model = make_model(mode, eval_latent=eval_latent, **({"eval_min_sample_weight": 0.0} if mode == "volume" else {}))
    with torch.no_grad():  # distinct latents and a sensitive calibration MLP: cameras differ visibly
        model.calibration.latents.normal_(0.0, 0.5)
        model.calibration.mlp[-1].weight.normal_(0.0, 0.3)
    n = 40
    model.eval()
    with torch.no_grad():
        a = model(_rays(n, camera_indices=torch.zeros(n, 1, dtype=torch.long)))["rgb"]
        b = model(_rays(n, camera_indices=torch.full((n, 1), 3, dtype=torch.long)))["rgb"]
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    model.train()
    cameras = (0, 3, 2)
    rays = _rays(3 * n, camera_indices=torch.tensor(cameras).repeat_interleave(n)[:, None])
    base = _rays(n)  # the same n rays three times, one camera index each
    rays.origins, rays.directions = base.origins.repeat(3, 1), base.directions.repeat(3, 1)
    rgb = model(rays)["rgb"].detach()
    per_camera = {c: rgb[i * n : (i + 1) * n] for i, c in enumerate(cameras)}
    assert float((per_camera[0] - per_camera[3]).abs().max()) > 1e-3  # training does use the indices
    if eval_latent == "2":
        np.testing.assert_allclose(a.numpy(), per_camera[2].numpy(), atol=1e-5)
    else:
        latent = model.calibration.fixed_latent(None)
        lat = model.calibration.latents.detach()
        lat = lat * torch.clamp(1.0 / lat.norm(dim=-1, keepdim=True), max=1.0)
        np.testing.assert_allclose(latent.detach().numpy(), lat.mean(0).numpy(), atol=1e-6)


def test_eval_latent_out_of_range_is_an_error(make_model):
    model = make_model("surface", eval_latent="7", num_train_data=4)
    model.eval()
    with pytest.raises(ValueError, match="eval_latent"):
        with torch.no_grad():
            model(_rays(4))


# --------------------------------------------------------------------------- losses and schedule
def test_loss_terms_by_hand():
    pred = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.5, 0.5]])
    obs = torch.tensor([[0.0, 0.4, 0.3], [1.0, 0.5, 0.0]])
    assert float(losses.color_loss(pred, obs)) == pytest.approx((0.1 + 0.2 + 0.0 + 0.5 + 0.0 + 0.5) / 6)
    sel = torch.tensor([False, True])
    assert float(losses.color_loss(pred, obs, sel)) == pytest.approx((0.5 + 0.0 + 0.5) / 6)
    g = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.5, 0.0]])
    assert float(losses.eikonal_loss(g)) == pytest.approx((16.0 + 0.0 + 0.25) / 3)
    v = torch.tensor([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
    assert float(losses.white_light_loss(v)) == pytest.approx((1 + 0 + 1 + 0 + 0 + 0) / 6)
    assert float(losses.specular_energy_loss(torch.tensor([[0.2], [0.4]]))) == pytest.approx(0.3)
    assert float(losses.residual_loss(torch.tensor([[-0.2], [0.4]]))) == pytest.approx(0.3)
    z = [torch.tensor([1.0, 3.0]), torch.tensor([2.0])]
    assert float(losses.latent_loss(z)) == pytest.approx(5.0 + 4.0)
    assert float(losses.latent_loss([])) == 0.0


@pytest.mark.parametrize("mode", MODES)
def test_loss_weights_and_switches(make_model, mode):
    model = make_model(mode, eikonal_loss_mult=0.3, white_light_loss_mult=0.0)
    model.train()
    outputs = model(_rays(32))
    loss_dict = model.get_loss_dict(outputs, _batch(32))
    assert "white_light_loss" not in loss_dict
    assert float(loss_dict["eikonal_loss"]) == pytest.approx(
        0.3 * float(losses.eikonal_loss(outputs["eikonal_gradients"])), rel=1e-6
    )


def _outputs_with_uncertain_rays(model, n: int):
    """Training outputs for n rays and their batch, whose loss mask marks every third ray uncertain."""
    model.train()
    outputs = model(_rays(n))
    batch = _batch(n)
    counted = torch.arange(n) % 3 != 0
    batch["loss_mask"] = counted[:, None].float()
    return outputs, batch, counted


@pytest.mark.parametrize("mode", MODES)
def test_rays_outside_the_loss_mask_teach_nothing(make_model, mode):
    """A capture's uncertain mask edge ("loss_mask" 0): whatever the image and the object mask say there, the
    photometric terms are the same; volume mode averages over the counted rays only; all rays skipped gives 0."""
    model = make_model(mode, **({"uncertain_pixels": "ignore"} if mode == "volume" else {}))
    n = 48
    outputs, batch, counted = _outputs_with_uncertain_rays(model, n)
    reference = model.get_loss_dict(outputs, batch)
    garbled = dict(batch)
    garbled["image"] = torch.where(counted[:, None], batch["image"], 1.0 - batch["image"])
    garbled["fg_mask"] = torch.where(counted[:, None], batch["fg_mask"], 1.0 - batch["fg_mask"])
    for name, value in model.get_loss_dict(outputs, garbled).items():
        assert float(value) == pytest.approx(float(reference[name]), rel=1e-6), name
    rgb, image = outputs["rgb"].detach(), batch["image"]
    if mode == "volume":
        expected = (rgb[counted] - image[counted]).abs().mean()
    else:
        selected = counted & outputs["network_hit"].reshape(-1) & (batch["fg_mask"].reshape(-1) > 0.5)
        expected = (rgb[selected] - image[selected]).abs().sum() / (3 * n)
    assert float(reference["color_loss"]) == pytest.approx(model.config.color_loss_mult * float(expected), rel=1e-5)
    batch["loss_mask"] = torch.zeros(n, 1)
    assert float(model.get_loss_dict(outputs, batch)["color_loss"]) == 0.0


def test_black_or_image_colour_loss_closed_form():
    """Counted rays: L1 to the image; uncertain rays: L1 to black or to the image, whichever is smaller."""
    predicted = torch.tensor([[0.2, 0.2, 0.2], [0.5, 0.5, 0.5], [0.1, 0.0, 0.2], [0.6, 0.9, 0.3]])
    observed = torch.tensor([[0.3, 0.3, 0.3], [0.9, 0.9, 0.9], [0.8, 0.8, 0.8], [0.7, 0.7, 0.7]])
    counted = torch.tensor([True, False, False, False])
    # ray 0: 0.1; ray 1: min(0.4, 0.5); ray 2: min(0.7, 0.1); ray 3: min((0.1 + 0.2 + 0.4) / 3, 0.6)
    expected = (0.1 + 0.4 + 0.1 + 0.7 / 3) / 4
    assert float(losses.black_or_image_color_loss(predicted, observed, counted)) == pytest.approx(expected, rel=1e-6)
    assert float(losses.black_or_image_color_loss(predicted, observed, torch.ones(4, dtype=torch.bool))) == (
        pytest.approx(float((predicted - observed).abs().mean()), rel=1e-6))


def test_volume_model_uses_black_or_image_on_uncertain_pixels(make_model):
    model = make_model("volume")  # the default
    outputs, batch, counted = _outputs_with_uncertain_rays(model, 48)
    rgb, image = outputs["rgb"].detach(), batch["image"]
    per_ray = torch.where(counted, (rgb - image).abs().mean(-1), torch.minimum((rgb - image).abs().mean(-1), rgb.abs().mean(-1)))
    loss = model.get_loss_dict(outputs, batch)["color_loss"]
    assert float(loss) == pytest.approx(model.config.color_loss_mult * float(per_ray.mean()), rel=1e-5)


def test_mask_alpha_doubles_at_milestones(make_model):
    model = make_model("surface", num_train_data=4)  # milestones in epochs: x 4 images
    attrs = TrainingCallbackAttributes(optimizers=None, grad_scaler=None, pipeline=None, trainer=None)
    callbacks = model.get_training_callbacks(attrs)
    expected = {0: 50.0, 999: 50.0, 1000: 100.0, 2500: 200.0, 4999: 800.0, 5000: 1600.0, 100000: 1600.0}
    for step, alpha in expected.items():
        for cb in callbacks:
            cb.run_callback_at_location(step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        assert model.current_mask_alpha == alpha, step
    steps_model = make_model("surface", milestone_unit="steps", mask_alpha_milestones=(10, 20))
    for cb in steps_model.get_training_callbacks(attrs):
        cb.run_callback_at_location(15, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
    assert steps_model.current_mask_alpha == 100.0


def test_light_first_loss_recovers_the_light_direction_and_leaves_the_rest_alone(make_model):
    # The loss reads only per-ray outputs both renderers give (normal_vector, accumulation); the surface renderer
    # covers most test rays from the start (the tiny volume model's first renders are mostly translucent).
    torch.manual_seed(0)
    model = make_model("surface", light_first_steps=5)
    attrs = TrainingCallbackAttributes(optimizers=None, grad_scaler=None, pipeline=None, trainer=None)
    model.train()
    for cb in model.get_training_callbacks(attrs):
        cb.run_callback_at_location(0, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
    rays = _rays(200, camera_indices=torch.zeros(200, 1, dtype=torch.long))
    outputs = {k: v.detach() for k, v in model(rays).items()}
    covered = outputs["accumulation"][:, 0] > 0.5
    assert int(covered.sum()) > 40
    # the pixels of a constant-albedo object lit from +x, on the rendered normals
    normals = F.normalize(outputs["normal_vector"], dim=-1)
    lambert = normals[:, 0].clamp(min=0)  # reference: 0.3 + x-cosine shading, independent of the SH code
    image = torch.zeros(200, 3)
    image[covered] = (0.3 + 0.5 * lambert[covered, None]).expand(-1, 3)
    batch = {"image": image, "fg_mask": covered[:, None].float()}
    loss = model.get_loss_dict(outputs, batch)["light_first_loss"]
    loss.backward()
    assert float(model.light.coefficients.grad.abs().sum()) > 0 and model.light_first_albedo.grad is not None
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in model.field.parameters())
    optimiser = torch.optim.Adam([model.light.coefficients, model.light_first_albedo], lr=0.05)
    for _ in range(300):
        optimiser.zero_grad()
        model._light_first_loss(outputs, batch, image).backward()
        optimiser.step()
    l1 = model.light.coefficients.detach()[1:4].mean(-1)  # (y, z, x)
    assert float(l1[2]) > 0 and float(l1[2]) > 3 * float(l1[:2].abs().max())  # lit from +x, as the images
    nothing_covered = outputs | {"accumulation": torch.zeros_like(outputs["accumulation"])}  # an all-miss batch
    assert float(model._light_first_loss(nothing_covered, batch, image)) == 0.0
    for cb in model.get_training_callbacks(attrs):
        cb.run_callback_at_location(5, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
    # off from the step named: a zero term that only keeps the constant albedo in the graph (for DDP)
    model.light.coefficients.grad = model.light_first_albedo.grad = None
    after = model.get_loss_dict(outputs, batch)["light_first_loss"]
    after.backward()
    assert float(after) == 0.0 and float(model.light_first_albedo.grad.abs().sum()) == 0.0
    assert model.light.coefficients.grad is None


# --------------------------------------------------------------------------- image metrics
def test_masked_metrics_recover_a_colour_transform():
    g = torch.Generator().manual_seed(0)
    pred = 0.1 + 0.5 * torch.rand(12, 16, 3, generator=g, dtype=torch.float64)
    m = torch.tensor([[0.9, 0.1, 0.0], [0.05, 0.7, 0.1], [0.0, 0.15, 0.8]], dtype=torch.float64)
    target = (pred.reshape(-1, 3) @ m).reshape(12, 16, 3)
    assert float(target.max()) <= 1.0
    mask = torch.rand(12, 16, 1, generator=g) > 0.4
    target[~mask[..., 0]] = torch.rand(int((~mask).sum()), 3, generator=g, dtype=torch.float64)  # garbage outside
    np.testing.assert_allclose(fit_color_matrix(pred.reshape(-1, 3)[mask.reshape(-1)], target.reshape(-1, 3)[mask.reshape(-1)]).numpy(), m.numpy(), atol=1e-10)
    metrics = masked_image_metrics(pred, target, mask)
    assert metrics["psnr_masked"] == MAX_PSNR == 100.0
    assert metrics["ssim_masked"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["psnr"] < 40.0  # the unfitted whole-image PSNR sees the colour change and the garbage


def test_masked_psnr_by_hand():
    # 2 x 3 image; mask pixels (row-major) 0, 1, 2, 4 predict e1, e2, e3, e1 -> M = [mean(t0, t4); t1; t2]
    pred = torch.tensor(
        [[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [[0.3, 0.3, 0.3], [1.0, 0.0, 0.0], [0.9, 0.9, 0.9]]],
        dtype=torch.float64,
    )
    target = torch.tensor(
        [[[0.2, 0.4, 0.6], [0.7, 0.1, 0.2], [0.3, 0.3, 0.9]], [[0.0, 1.0, 0.0], [0.4, 0.4, 0.3], [0.5, 0.1, 0.5]]],
        dtype=torch.float64,
    )
    mask = torch.tensor([[True, True, True], [False, True, False]])[..., None]
    diff = np.array([0.2, 0.4, 0.6]) - np.array([0.4, 0.4, 0.3])
    mse = 2 * float((diff / 2) @ (diff / 2)) / (4 * 3)  # pixels 0 and 4 are off by -+diff/2
    metrics = masked_image_metrics(pred, target, mask)
    assert metrics["psnr_masked"] == pytest.approx(-10 * math.log10(mse), abs=1e-6)
    whole = float(((pred - target) ** 2).mean())
    assert metrics["psnr"] == pytest.approx(-10 * math.log10(whole), abs=1e-4)
    assert set(masked_image_metrics(pred, target, None)) == {"psnr", "ssim"}


def test_model_image_metrics_and_images(make_model):
    model = make_model("surface")
    model.eval()
    with torch.no_grad():
        outputs = model.get_outputs_for_camera(_camera(12, 10))
    batch = {"image": torch.rand(10, 12, 3), "fg_mask": (torch.rand(10, 12, 1) > 0.5).float()}
    metrics, images = model.get_image_metrics_and_images(outputs, batch)
    assert {"psnr", "ssim", "psnr_masked", "ssim_masked"} <= set(metrics)
    assert all(isinstance(v, float) for v in metrics.values())
    assert images["img"].shape == (10, 24, 3)
    for name, image in images.items():
        assert image.shape[:2] in {(10, 12), (10, 24)} and image.shape[-1] in (1, 3), name
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0, name


def test_eval_skips_shading_negligible_samples_without_changing_the_image(make_model):
    """At eval, volume samples whose compositing weight is below eval_min_sample_weight are not shaded: the image
    matches shading every sample to well under one 8-bit level, with far fewer appearance evaluations."""
    images, material_points = {}, {}
    for min_weight in (0.0, 1e-4):
        model = make_model("volume", seed=4, eval_min_sample_weight=min_weight)
        model.eval()
        calls = []  # points per appearance evaluation (the material of the shaded samples)
        model.field.appearance.register_forward_hook(
            lambda module, inputs, output, calls=calls: calls.append(inputs[0].shape[0])
        )
        with torch.no_grad():
            images[min_weight] = model.get_outputs_for_camera(_camera(24, 20))
        material_points[min_weight] = sum(calls)
    visible = images[0.0]["accumulation"] > 1e-2
    assert visible.any() and (~visible).any()
    for name in DISPLAY_OUTPUTS:
        exact, fast = images[0.0][name], images[1e-4][name]
        if name == "normal":
            # the displayed normal is a direction: at pixels with ~no opacity it is set by negligible weights
            exact, fast = exact * visible, fast * visible
        np.testing.assert_allclose(fast.numpy(), exact.numpy(), atol=2e-3, err_msg=name)
    assert material_points[1e-4] < 0.5 * material_points[0.0]


@pytest.mark.parametrize("mode", MODES)
def test_specular_energy_can_leave_the_light_alone(make_model, mode):
    """specular_energy_trains_light=False: the same loss value (the mean specular radiance), no gradient on the SH
    light from it, still one on the specular material; the paper's default does train the light."""
    grads = {}
    for trains_light in (True, False):
        torch.manual_seed(0)
        model = make_model(mode, specular_energy_trains_light=trains_light)
        model.train()
        outputs = model(_rays(64))
        term = model.get_loss_dict(outputs, _batch(64))["specular_energy_loss"]
        assert float(term) == pytest.approx(model.config.specular_energy_loss_mult
                                            * float(outputs["specular_radiance"].mean()), rel=1e-6)
        term.backward()
        light = model.light.coefficients.grad
        grads[trains_light] = 0.0 if light is None else float(light.abs().sum())
        material = [p.grad for n, p in model.field.appearance.named_parameters()]
        assert any(g is not None and float(g.abs().sum()) > 0 for g in material)
    assert grads[True] > 0 and grads[False] == 0.0
