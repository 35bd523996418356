"""NeuFace image metrics (docs/method.md section 6): colour-fitted masked PSNR / SSIM and LPIPS.

Expected values are computed by hand from the definitions, independent of the code under test.
No test downloads anything: the LPIPS tests run against an empty torch hub cache or a SEEDED
STAND-IN AlexNet written by the test (random weights, not ImageNet: its numbers are not LPIPS).
"""

from __future__ import annotations

import math

import pytest
import torch

from neuface_ns import eval as metrics
from neuface_ns.eval import ALEXNET_WEIGHTS_NAME, MAX_PSNR, fit_color_matrix, masked_image_metrics


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub cache for the test (no AlexNet weights unless the test writes them), and
    any attempt to download weights fails the test."""
    import torchvision.models._api

    def no_download(*args, **kwargs):
        raise AssertionError(f"tried to download {args[:1]}")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_download)
    metrics.reset_lpips_cache()
    yield tmp_path / "hub"
    metrics.reset_lpips_cache()


def _write_seeded_standin_alexnet(hub) -> None:
    """SEEDED STAND-IN, NOT the ImageNet weights: a randomly initialised torchvision AlexNet
    (seed 0) saved under the file name LPIPS expects, so the code path runs offline. Numbers
    computed with it are not LPIPS values."""
    import torchvision

    torch.manual_seed(0)
    state = torchvision.models.alexnet(weights=None).state_dict()
    (hub / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(state, hub / "checkpoints" / ALEXNET_WEIGHTS_NAME)


def test_colour_fit_recovers_known_matrix_and_psnr_is_capped(hub_dir):
    g = torch.Generator().manual_seed(0)
    h, w = 24, 32
    predicted = 0.1 + 0.5 * torch.rand(h, w, 3, generator=g)
    matrix = torch.tensor([[0.9, 0.1, 0.05], [0.05, 1.1, -0.1], [0.1, -0.05, 0.8]])
    target = predicted @ matrix
    assert float(target.min()) > 0 and float(target.max()) < 1
    mask = torch.zeros(h, w, 1, dtype=torch.bool)
    mask[4:20, 5:27] = True
    target[~mask[..., 0]] = torch.rand(int((~mask).sum()), 3, generator=g)  # outside the mask: ignored by the fit

    m = mask.reshape(-1)
    fitted = fit_color_matrix(predicted.reshape(-1, 3)[m], target.reshape(-1, 3)[m])
    assert torch.allclose(fitted, matrix, atol=1e-5)

    result = masked_image_metrics(predicted, target, mask, lpips=False)
    assert result["psnr_masked"] == MAX_PSNR  # exact fit: MSE 0, capped instead of infinite
    assert result["ssim_masked"] == pytest.approx(1.0, abs=1e-4)
    assert result["psnr"] < 30  # unfitted, whole image


def test_masked_psnr_equals_hand_computed_value(hub_dir):
    # Six mask pixels: two pure red with targets 0.2 / 0.4 (grey), two green -> 0.5, two blue -> 0.6.
    # The least-squares fit maps red to 0.3 (the mean), green and blue exactly: residual 0.1 in three
    # channels for two pixels, MSE = 2 * 3 * 0.01 / (6 * 3) = 1 / 300, PSNR = 10 log10(300).
    predicted = torch.zeros(3, 3, 3)
    target = torch.zeros(3, 3, 3)
    mask = torch.zeros(3, 3, 1, dtype=torch.bool)
    cells = [((0, 0), (1, 0, 0), 0.2), ((0, 1), (1, 0, 0), 0.4), ((1, 0), (0, 1, 0), 0.5),
             ((1, 1), (0, 1, 0), 0.5), ((2, 0), (0, 0, 1), 0.6), ((2, 1), (0, 0, 1), 0.6)]
    for (i, j), colour, grey in cells:
        predicted[i, j] = torch.tensor(colour, dtype=torch.float32)
        target[i, j] = grey
        mask[i, j] = True
    predicted[:, 2] = 0.9  # outside the mask: must not change anything
    target[:, 2] = 0.0
    result = masked_image_metrics(predicted, target, mask, lpips=False)
    assert result["psnr_masked"] == pytest.approx(10 * math.log10(300), abs=1e-3)


def test_no_mask_gives_whole_image_metrics_only(hub_dir):
    a = torch.rand(8, 8, 3)
    result = masked_image_metrics(a, a, None)
    assert set(result) == {"psnr", "ssim"}


def test_lpips_absent_weights_reported_once_and_key_missing(hub_dir, capsys):
    a, b = torch.rand(40, 48, 3), torch.rand(40, 48, 3)
    mask = torch.ones(40, 48, 1, dtype=torch.bool)
    first = masked_image_metrics(a, b, mask)
    second = masked_image_metrics(b, a, mask)
    assert "lpips_masked" not in first and "lpips_masked" not in second
    assert {"psnr_masked", "ssim_masked"} <= set(first)
    out = capsys.readouterr().out
    assert out.count("lpips_masked not computed") == 1
    assert ALEXNET_WEIGHTS_NAME in out
    assert not (hub_dir / "checkpoints" / ALEXNET_WEIGHTS_NAME).exists()  # nothing was downloaded


def test_lpips_with_locally_supplied_weights(hub_dir):
    _write_seeded_standin_alexnet(hub_dir)
    g = torch.Generator().manual_seed(1)
    a = torch.rand(40, 48, 3, generator=g)
    b = (a + 0.3 * torch.rand(40, 48, 3, generator=g)).clamp(0, 1)
    mask = torch.zeros(40, 48, 1, dtype=torch.bool)
    mask[5:35, 6:42] = True
    same = masked_image_metrics(a, a, mask)
    different = masked_image_metrics(a, b, mask)
    assert same["lpips_masked"] == pytest.approx(0.0, abs=1e-7)
    assert different["lpips_masked"] > 0.0
    assert metrics.get_lpips() is metrics.get_lpips()  # constructed once


def test_model_image_metrics_report_the_protocol(hub_dir, make_model, tiny_field_config):
    """NeuFace model's get_image_metrics_and_images: protocol keys present, images in [0, 1]."""
    model = make_model("surface", num_train_data=2, sh_order=2, sdf_field=tiny_field_config())
    h, w = 12, 16
    rgb = torch.rand(h, w, 3)
    outputs = {
        "rgb": rgb, "albedo": rgb, "diffuse": rgb, "specular": rgb, "normal": rgb,
        "depth": torch.rand(h, w, 1), "accumulation": torch.ones(h, w, 1),
    }
    mask = torch.zeros(h, w, 1)
    mask[2:10, 3:13] = 1.0
    batch = {"image": torch.rand(h, w, 3), "fg_mask": mask}
    result, images = model.get_image_metrics_and_images(outputs, batch)
    assert {"psnr", "ssim", "psnr_masked", "ssim_masked"} <= set(result)
    assert all(isinstance(v, float) for v in result.values())
    for image in images.values():
        assert image.dim() == 3 and float(image.min()) >= 0 and float(image.max()) <= 1


# ---------------------------------------------------------------------------------------------------- protocols


def test_pixel_list_ssim_matches_skimage_on_the_reference_shaped_arrays():
    """The reference's SSIM: skimage's structural_similarity of the [P, 3] mask-pixel lists, channel axis last,
    defaults otherwise, which for float arrays before skimage 0.20 meant data_range = 2 (passed explicitly here,
    as skimage >= 0.20 requires)."""
    import numpy as np
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(3)
    h, w = 20, 24
    a = torch.rand(h, w, 3, generator=g)
    b = (0.7 * a + 0.3 * torch.rand(h, w, 3, generator=g)).clamp(0, 1)
    mask = torch.zeros(h, w, 1, dtype=torch.bool)
    mask[3:17, 4:11] = True
    mask[6:12, 15:22] = True
    mask[0, 0] = True
    # As the reference builds them: images multiplied by the mask, then the mask pixels, row-major, float32.
    m = mask.numpy()[..., 0]
    a_list = (a.numpy() * m[..., None])[m == 1].astype(np.float32)
    b_list = (b.numpy() * m[..., None])[m == 1].astype(np.float32)
    assert a_list.shape == (int(m.sum()), 3)
    expected = structural_similarity(a_list, b_list, channel_axis=-1, data_range=2.0)
    assert metrics.ssim_pixel_list(a, b, mask) == pytest.approx(float(expected), abs=1e-6)
    # the same data range 1 value differs: data_range is part of the reference's choice
    assert abs(float(expected) - structural_similarity(a_list, b_list, channel_axis=-1, data_range=1.0)) > 1e-3
    # fewer than 7 pixels: the reference's call would fail; NaN here
    tiny = torch.zeros(h, w, 1, dtype=torch.bool)
    tiny[0, :6] = True
    assert math.isnan(metrics.ssim_pixel_list(a, b, tiny))


def test_pixel_list_ssim_is_what_masked_image_metrics_reports(hub_dir):
    g = torch.Generator().manual_seed(4)
    a, b = torch.rand(16, 16, 3, generator=g), torch.rand(16, 16, 3, generator=g)
    mask = torch.zeros(16, 16, 1, dtype=torch.bool)
    mask[2:14, 3:12] = True
    fitted, _ = metrics.color_fitted(a, b, mask)
    reference = masked_image_metrics(a, b, mask, lpips=False, ssim_mode="pixel-list")
    ours = masked_image_metrics(a, b, mask, lpips=False)
    assert reference["ssim_masked"] == pytest.approx(metrics.ssim_pixel_list(fitted, b, mask), abs=1e-12)
    assert reference["ssim_masked"] != pytest.approx(ours["ssim_masked"], abs=1e-3)
    assert reference["psnr_masked"] == ours["psnr_masked"]  # same fit, same PSNR
    with pytest.raises(ValueError):
        masked_image_metrics(a, b, mask, ssim_mode="flat")


def _two_mask_scene():
    """3 x 3 image. Ground-truth mask: six pure-colour pixels (red -> grey 0.2 / 0.4, green -> 0.5, blue -> 0.6).
    The network's mask: the same six plus (0, 2), a red prediction over background 0.0.

    GT mask: red maps to 0.3, residual 0.1 in 3 channels of 2 pixels: MSE = 0.06 / 18, PSNR = 10 log10(300).
    Predicted mask: red maps to (0.2 + 0.4 + 0.0) / 3 = 0.2, residuals 0, 0.2, 0.2: MSE = 0.24 / 21,
    PSNR = 10 log10(87.5)."""
    predicted = torch.zeros(3, 3, 3)
    target = torch.zeros(3, 3, 3)
    gt_mask = torch.zeros(3, 3, 1)
    cells = [((0, 0), (1, 0, 0), 0.2), ((0, 1), (1, 0, 0), 0.4), ((1, 0), (0, 1, 0), 0.5),
             ((1, 1), (0, 1, 0), 0.5), ((2, 0), (0, 0, 1), 0.6), ((2, 1), (0, 0, 1), 0.6)]
    for (i, j), colour, grey in cells:
        predicted[i, j] = torch.tensor(colour, dtype=torch.float32)
        target[i, j] = grey
        gt_mask[i, j] = 1.0
    accumulation = gt_mask.clone()
    predicted[0, 2] = torch.tensor([1.0, 0.0, 0.0])
    accumulation[0, 2] = 0.9
    accumulation[1, 2] = 0.4  # below 0.5: not in the predicted mask
    predicted[1, 2] = torch.tensor([0.0, 0.3, 0.0])
    return predicted, target, gt_mask, accumulation


def test_predicted_mask_variant_gives_the_hand_computed_psnr(hub_dir):
    predicted, target, gt_mask, accumulation = _two_mask_scene()
    network_mask = metrics.predicted_mask(accumulation)
    assert int(network_mask.sum()) == 7 and bool(network_mask[0, 2]) and not bool(network_mask[1, 2])
    on_gt = masked_image_metrics(predicted, target, gt_mask > 0.5, lpips=False)
    on_predicted = masked_image_metrics(predicted, target, network_mask, lpips=False)
    assert on_gt["psnr_masked"] == pytest.approx(10 * math.log10(300), abs=1e-3)
    assert on_predicted["psnr_masked"] == pytest.approx(10 * math.log10(87.5), abs=1e-3)


def test_model_metrics_follow_the_configured_protocol_and_say_which(hub_dir, capsys, make_model, tiny_field_config):
    predicted, target, gt_mask, accumulation = _two_mask_scene()
    outputs = {
        "rgb": predicted, "albedo": predicted, "diffuse": predicted, "specular": predicted, "normal": predicted,
        "depth": torch.rand(3, 3, 1), "accumulation": accumulation,
    }
    batch = {"image": target, "fg_mask": gt_mask}

    def tiny_surface_model(**overrides):
        return make_model("surface", num_train_data=2, sh_order=2, sdf_field=tiny_field_config(), **overrides)

    default, _ = tiny_surface_model().get_image_metrics_and_images(outputs, batch)
    out = capsys.readouterr().out
    assert "protocol neuface-ns" in out and "ground-truth mask" in out and "mean of the training latents" in out
    assert default["psnr_masked"] == pytest.approx(10 * math.log10(300), abs=1e-3)

    model = tiny_surface_model(eval_mask="predicted", eval_ssim="pixel-list", eval_latent="1")
    reference, _ = model.get_image_metrics_and_images(outputs, batch)
    model.get_image_metrics_and_images(outputs, batch)
    out = capsys.readouterr().out
    assert out.count("protocol reference") == 1  # once per model, not per image
    assert "predicted mask" in out and "list of mask pixels" in out and "training image 1" in out
    assert reference["psnr_masked"] == pytest.approx(10 * math.log10(87.5), abs=1e-3)
    network_mask = metrics.predicted_mask(accumulation)
    fitted, _ = metrics.color_fitted(predicted, target, network_mask)
    assert reference["ssim_masked"] == pytest.approx(metrics.ssim_pixel_list(fitted, target, network_mask), abs=1e-9)
    assert all(isinstance(v, float) for v in reference.values())
