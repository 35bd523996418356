"""Tests for the mask bounding-box pixel sampler (neuface_ns/data/sampling.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from neuface_ns.data.sampling import MaskBBoxPixelSamplerConfig, mask_bbox


def _batch(masks, as_list=False, image_idx=None):
    images = [torch.rand(m.shape[0], m.shape[1], 3) for m in masks]
    fg = [m.float()[..., None] for m in masks]
    idx = torch.tensor(image_idx if image_idx is not None else list(range(len(masks))))
    if as_list:
        return {"image_idx": idx, "image": images, "fg_mask": fg}
    return {"image_idx": idx, "image": torch.stack(images), "fg_mask": torch.stack(fg)}


def _blob(h, w, rows, cols, rng):
    """Irregular mask whose bounding box is exactly rows x cols (half-open)."""
    m = torch.zeros(h, w, dtype=torch.bool)
    r0, r1 = rows
    c0, c1 = cols
    inner = torch.from_numpy(rng.random((r1 - r0, c1 - c0)) > 0.6)
    inner[0, rng.integers(c1 - c0)] = True
    inner[-1, rng.integers(c1 - c0)] = True
    inner[rng.integers(r1 - r0), 0] = True
    inner[rng.integers(r1 - r0), -1] = True
    m[r0:r1, c0:c1] = inner
    return m


def _expected_box(rows, cols, d, h, w):
    return max(rows[0] - d, 0), min(rows[1] + d, h), max(cols[0] - d, 0), min(cols[1] + d, w)


def test_mask_bbox_dilates_and_clips():
    rng = np.random.default_rng(0)
    m = _blob(100, 120, (40, 60), (50, 70), rng)
    assert mask_bbox(m[..., None].float(), 30) == (10, 90, 20, 100)
    m = _blob(100, 120, (5, 60), (100, 118), rng)  # near the borders
    assert mask_bbox(m, 30) == (0, 90, 70, 120)
    assert mask_bbox(torch.zeros(7, 9), 30) == (0, 7, 0, 9)
    assert mask_bbox(torch.full((7, 9), 0.5), 0) == (0, 7, 0, 9)  # 0.5 is not foreground


@pytest.mark.parametrize("as_list", [False, True])
@pytest.mark.parametrize("one_image", [True, False])
def test_never_outside_the_dilated_box_and_covers_it(as_list, one_image):
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    if as_list:
        shapes = [(60, 80), (90, 50), (70, 70)]
    else:
        shapes = [(60, 80)] * 3
    boxes_src = [((20, 35), (30, 50)), ((10, 30), (5, 25)), ((50, 60), (55, 66))]
    masks = [_blob(h, w, r, c, rng) for (h, w), (r, c) in zip(shapes, boxes_src)]
    d = 7
    boxes = [_expected_box(r, c, d, h, w) for (h, w), (r, c) in zip(shapes, boxes_src)]
    sampler = MaskBBoxPixelSamplerConfig(dilation=d, one_image_per_step=one_image).setup(num_rays_per_batch=512)
    batch = _batch(masks, as_list=as_list, image_idx=[4, 7, 9])
    hits = [np.zeros(s, dtype=np.int64) for s in shapes]
    images_per_step = []
    for _ in range(600):
        out = sampler.sample(batch)
        idx = out["indices"]
        assert idx.shape == (512, 3) and out["image"].shape == (512, 3) and out["fg_mask"].shape == (512, 1)
        cams = idx[:, 0].tolist()
        images_per_step.append(set(cams))
        for (c, y, x), rgb, fg in zip(idx.tolist(), out["image"], out["fg_mask"]):
            pos = [4, 7, 9].index(c)
            r0, r1, c0, c1 = boxes[pos]
            assert r0 <= y < r1 and c0 <= x < c1
            hits[pos][y, x] += 1
        # gathered values are the batch's values at the sampled pixels (spot check)
        c, y, x = idx[0].tolist()
        pos = [4, 7, 9].index(c)
        assert torch.equal(out["image"][0], batch["image"][pos][y, x])
        assert float(out["fg_mask"][0]) == float(masks[pos][y, x])
    for pos, (r0, r1, c0, c1) in enumerate(boxes):
        inside = hits[pos][r0:r1, c0:c1]
        assert inside.min() > 0, f"image {pos}: some box pixels never sampled"
        outside = hits[pos].sum() - inside.sum()
        assert outside == 0
    if one_image:
        assert all(len(s) == 1 for s in images_per_step)
        counts = np.bincount([next(iter(s)) for s in images_per_step], minlength=10)[[4, 7, 9]]
        assert counts.min() > 140  # uniform over the three images (600 / 3 = 200 expected)
    else:
        assert np.mean([len(s) for s in images_per_step]) == 3


def test_empty_mask_samples_whole_image_with_warning():
    sampler = MaskBBoxPixelSamplerConfig(dilation=30).setup(num_rays_per_batch=4000)
    batch = _batch([torch.zeros(10, 12, dtype=torch.bool)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = sampler.sample(batch)
    assert any("empty" in str(w.message) for w in caught)
    ys, xs = out["indices"][:, 1], out["indices"][:, 2]
    assert ys.min() == 0 and ys.max() == 9 and xs.min() == 0 and xs.max() == 11


def test_missing_mask_key_is_a_clear_error():
    sampler = MaskBBoxPixelSamplerConfig().setup(num_rays_per_batch=8)
    with pytest.raises(KeyError, match="fg_mask"):
        sampler.sample({"image_idx": torch.tensor([0]), "image": torch.rand(1, 4, 4, 3)})


def test_datamanager_with_facescape_sample_uses_the_sampler():
    """The FaceScape datamanager (per-image lists) returns rays inside each dilated box, with fg_mask."""
    from neuface_ns.configs.facescape import facescape_datamanager
    from neuface_ns.data.dataset import load_mask
    from neuface_ns.data.sampling import MaskBBoxPixelSampler

    config = facescape_datamanager(rays_per_batch=300, one_image_per_step=True)
    dm = config.setup(device="cpu")
    assert isinstance(dm.train_pixel_sampler, MaskBBoxPixelSampler)
    masks = [load_mask(p, 4) for p in dm.train_dataparser_outputs.metadata["fg_mask_filenames"]]
    for step in range(5):
        ray_bundle, batch = dm.next_train(step)
        idx = batch["indices"]
        assert ray_bundle.origins.shape == (300, 3)
        assert len(set(idx[:, 0].tolist())) == 1
        cam = int(idx[0, 0])
        r0, r1, c0, c1 = mask_bbox(torch.from_numpy(masks[cam]), 30)
        assert (idx[:, 1] >= r0).all() and (idx[:, 1] < r1).all() and (idx[:, 2] >= c0).all() and (idx[:, 2] < c1).all()
        expected_fg = torch.from_numpy(masks[cam][idx[:, 1].numpy(), idx[:, 2].numpy()]).float()
        assert torch.equal(batch["fg_mask"].reshape(-1), expected_fg)
        # black background: no colour outside the mask
        assert float(batch["image"][batch["fg_mask"].reshape(-1) == 0].abs().max()) == 0.0


@pytest.mark.parametrize("as_list", [False, True])
@pytest.mark.parametrize("one_image", [True, False])
def test_foreground_fraction_mixes_foreground_and_box_rays(as_list, one_image):
    """With foreground_fraction f, a pixel's probability is f / |foreground| (if foreground) + (1 - f) / |box|
    (if in the box), inside the step's image (one image per step) or with the foreground pooled over images: the
    sampled frequencies match that closed form (binomial tolerance), and no ray leaves the box."""
    torch.manual_seed(3)
    rng = np.random.default_rng(4)
    shapes = [(40, 50), (30, 60)] if as_list else [(40, 50), (40, 50)]
    src = [((10, 20), (12, 30)), ((5, 25), (20, 40))]
    masks = [_blob(h, w, r, c, rng) for (h, w), (r, c) in zip(shapes, src)]
    d, f, n, steps = 3, 0.75, 400, 500
    sampler = MaskBBoxPixelSamplerConfig(dilation=d, one_image_per_step=one_image, foreground_fraction=f).setup(
        num_rays_per_batch=n
    )
    batch = _batch(masks, as_list=as_list)
    counts = [np.zeros(s) for s in shapes]
    for _ in range(steps):
        idx = sampler.sample(batch)["indices"]
        assert idx.shape == (n, 3)
        for c, y, x in idx.tolist():
            counts[c][y, x] += 1
    total = n * steps
    for pos, ((h, w), (r, c)) in enumerate(zip(shapes, src)):
        r0, r1, c0, c1 = _expected_box(r, c, d, h, w)
        box = np.zeros((h, w), dtype=bool)
        box[r0:r1, c0:c1] = True
        fg = masks[pos].numpy()
        if one_image:  # the step's image is uniform, then the mixture inside it
            p = 0.5 * (f * fg / fg.sum() + (1 - f) * box / box.sum())
        else:  # foreground rays uniform over every image's foreground pixels; box rays pick an image uniformly
            all_fg = sum(float(m.sum()) for m in masks)
            p = f * fg / all_fg + (1 - f) * 0.5 * box / box.sum()
        assert counts[pos][~box].sum() == 0
        expected = p * total
        # aggregate over the two pixel classes (foreground / box-only) to test the mixture weights tightly
        for cls in (fg, box & ~fg):
            e, got = expected[cls].sum(), counts[pos][cls].sum()
            assert abs(got - e) < 5 * np.sqrt(e) + 0.01 * e, (pos, got, e)
        # and per pixel, loosely (every foreground pixel is drawn at about its rate)
        assert np.all(np.abs(counts[pos][fg] - expected[fg]) < 6 * np.sqrt(expected[fg]) + 5)


def test_foreground_fraction_with_an_empty_mask_falls_back_to_the_box():
    sampler = MaskBBoxPixelSamplerConfig(dilation=2, foreground_fraction=0.5, one_image_per_step=False).setup(
        num_rays_per_batch=300
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idx = sampler.sample(_batch([torch.zeros(10, 12, dtype=torch.bool)]))["indices"]
    assert idx.shape == (300, 3) and int(idx[:, 1].max()) < 10 and int(idx[:, 2].max()) < 12


def test_edge_band_matches_scipy_morphology():
    """The band = pixels within `width` (Chebyshev) of both a foreground and a background pixel: scipy's binary
    dilation of the mask and of its complement with a (2 width + 1)^2 square, intersected."""
    from scipy import ndimage

    from neuface_ns.data.sampling import mask_edge_band

    rng = np.random.default_rng(0)
    mask = torch.from_numpy(ndimage.binary_opening(rng.random((37, 41)) > 0.45, iterations=1))
    for width in (1, 3):
        square = np.ones((2 * width + 1,) * 2, dtype=bool)
        expected = ndimage.binary_dilation(mask.numpy(), square) & ndimage.binary_dilation(~mask.numpy(), square)
        np.testing.assert_array_equal(mask_edge_band(mask, width).numpy(), expected)
    assert not mask_edge_band(torch.ones(8, 9, dtype=torch.bool), 2).any()  # no boundary, no band


def test_edge_fraction_draws_that_share_from_the_band():
    """foreground 0.25 + edge 0.5 + box 0.25: the rays falling in the band outside the foreground (only edge or
    box rays can) match edge / |band| + box / |box| per pixel summed over that class (binomial tolerance)."""
    from neuface_ns.data.sampling import mask_edge_band

    torch.manual_seed(5)
    mask = torch.zeros(40, 50, dtype=torch.bool)
    mask[10:30, 12:35] = True
    f, e, w, d, n, steps = 0.25, 0.5, 2, 4, 400, 300
    sampler = MaskBBoxPixelSamplerConfig(
        dilation=d, one_image_per_step=False, foreground_fraction=f, edge_fraction=e, edge_width=w
    ).setup(num_rays_per_batch=n)
    counts = np.zeros((40, 50))
    for _ in range(steps):
        for _, y, x in sampler.sample(_batch([mask]))["indices"].tolist():
            counts[y, x] += 1
    band = mask_edge_band(mask, w).numpy()
    fg = mask.numpy()
    box = np.zeros_like(fg)
    box[10 - d:30 + d, 12 - d:35 + d] = True
    p = f * fg / fg.sum() + e * band / band.sum() + (1 - f - e) * box / box.sum()
    expected = p * n * steps
    assert counts[~box].sum() == 0
    for cls in (band & ~fg, band & fg, box & ~band & ~fg):
        assert abs(counts[cls].sum() - expected[cls].sum()) < 5 * np.sqrt(expected[cls].sum()) + 5
