"""The albedo-shading correlation (neuface_ns/albedo_shading.py) against scipy's pearsonr on synthetic scenes, the
generator's shading pass maths (scripts/render_scan_scene.py, without Blender) and the bundled scan sample's
shading/ ground truth; one in-process run of the CLI on a tiny untrained pipeline (no ns-train)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import pearsonr

from neuface_ns import albedo_shading as metric

ROOT = Path(__file__).resolve().parents[1]
SCAN = ROOT / "neuface_ns" / "data" / "sample" / "scan"


@pytest.fixture(scope="module")
def generator(load_script):
    return load_script("render_scan_scene")


def _smooth(rng, shape, scale=6):
    """A smooth random field in [0, 1] (bilinear upsampling of a coarse grid)."""
    coarse = rng.random((shape[0] // scale + 2, shape[1] // scale + 2))
    image = Image.fromarray(coarse.astype(np.float32), mode="F").resize((shape[1], shape[0]), Image.BILINEAR)
    return np.asarray(image, dtype=np.float64)


def _write_scene(root: Path, views, shading, diffuse, masks):
    """A scene folder in the generator's layout: shading/<v>.png, shading/diffuse/<v>.png, mask/<v>.png."""
    (root / "shading" / "diffuse").mkdir(parents=True, exist_ok=True)
    (root / "mask").mkdir(exist_ok=True)
    for v in views:
        stored = np.round(shading[v] * masks[v] * metric.SHADING_SCALE).astype(np.uint16)
        Image.fromarray(stored).save(root / "shading" / f"{v:03d}.png")
        Image.fromarray(np.round(diffuse[v] * masks[v][..., None] * 255).astype(np.uint8)).save(
            root / "shading" / "diffuse" / f"{v:03d}.png")
        Image.fromarray((masks[v] * 255).astype(np.uint8)).save(root / "mask" / f"{v:03d}.png")
    (root / "scene.json").write_text(json.dumps({"shading": {"views": list(views)}}))


def _synthetic(tmp_path, shape=(36, 48), views=(0, 6)):
    rng = np.random.default_rng(0)
    shading, diffuse, masks = {}, {}, {}
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for v in views:
        shading[v] = 0.2 + 1.5 * _smooth(rng, shape, 12)
        diffuse[v] = np.stack([_smooth(rng, shape, 3) for _ in range(3)], axis=-1) * 0.8 + 0.1
        masks[v] = ((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2) < (0.45 * shape[0]) ** 2
    _write_scene(tmp_path, views, shading, diffuse, masks)
    # what the files hold after quantisation
    stored = {v: np.round(shading[v] * masks[v] * metric.SHADING_SCALE) / metric.SHADING_SCALE for v in views}
    colour = {v: np.round(diffuse[v] * masks[v][..., None] * 255) / 255 for v in views}
    return stored, colour, masks


def test_pearson_matches_scipy():
    rng = np.random.default_rng(1)
    a = rng.normal(size=500)
    for b in (rng.normal(size=500), 0.3 * a + rng.normal(size=500), -2.0 * a + 1.0):
        assert metric.pearson(a, b) == pytest.approx(pearsonr(a, b)[0], abs=1e-12)
    assert np.isnan(metric.pearson(np.ones(5), np.arange(5.0)))
    assert np.isnan(metric.pearson(np.ones(1), np.ones(1)))


def test_baked_shading_correlates_and_the_true_albedo_does_not(tmp_path):
    shading, colour, masks = _synthetic(tmp_path)
    baked = {v: np.clip(colour[v] * shading[v][..., None] / 1.7, 0.0, 1.0) for v in shading}
    clean = metric.correlations(colour, tmp_path)
    dirty = metric.correlations(baked, tmp_path)
    assert dirty["albedo_shading_corr"] > 0.6
    assert abs(clean["albedo_shading_corr"]) < 0.15
    # the reference floor is the true colour's own correlation, whatever the prediction
    assert clean["gt_albedo_shading_corr"] == pytest.approx(clean["albedo_shading_corr"], abs=1e-12)
    assert dirty["gt_albedo_shading_corr"] == pytest.approx(clean["gt_albedo_shading_corr"], abs=1e-12)
    assert clean["albedo_gt_corr"] == pytest.approx(1.0, abs=1e-12)
    # pooled over the views, inside the masks: scipy on the concatenated pixels
    lum = lambda rgb: rgb @ np.array([0.2126, 0.7152, 0.0722])  # noqa: E731
    a = np.concatenate([lum(baked[v][masks[v]]) for v in shading])
    s = np.concatenate([shading[v][masks[v]] for v in shading])
    g = np.concatenate([lum(colour[v][masks[v]]) for v in shading])
    assert dirty["pixels"] == sum(int(m.sum()) for m in masks.values()) == a.size
    assert dirty["albedo_shading_corr"] == pytest.approx(pearsonr(a, s)[0], abs=1e-9)
    assert dirty["gt_albedo_shading_corr"] == pytest.approx(pearsonr(g, s)[0], abs=1e-9)
    assert dirty["albedo_gt_corr"] == pytest.approx(pearsonr(a, g)[0], abs=1e-9)
    first = dirty["views"][0]
    assert first["view"] == 0 and first["albedo_shading_corr"] == pytest.approx(
        pearsonr(lum(baked[0][masks[0]]), shading[0][masks[0]])[0], abs=1e-9)


def test_covered_pixels_and_resolution(tmp_path):
    shading, colour, masks = _synthetic(tmp_path)
    covered = {v: np.zeros_like(m) for v, m in masks.items()}
    for c in covered.values():
        c[:, : c.shape[1] // 2] = True
    result = metric.correlations(colour, tmp_path, covered)
    assert result["pixels"] == sum(int((masks[v] & covered[v]).sum()) for v in masks)
    # a prediction at half the resolution is scored against the ground truth area-resized to it
    half = {v: np.asarray(Image.fromarray(c.astype(np.float32)[..., 0], mode="F").resize((24, 18), Image.BOX))
            for v, c in colour.items()}
    result = metric.correlations({v: np.repeat(h[..., None], 3, -1) for v, h in half.items()}, tmp_path)
    assert 0 < result["pixels"] < sum(int(m.sum()) for m in masks.values()) / 2


def test_missing_shading_is_an_input_error(tmp_path):
    with pytest.raises(SystemExit, match="only-shading"):
        metric.load_view(tmp_path, 0)


def _passes(rng, shape=(6, 8)):
    """Synthetic Cycles passes as render_views.py writes them: colour passes and the image premultiplied by the
    pixel's coverage, light passes divided by the colour (ratios, not premultiplied)."""
    coverage = np.clip(rng.random(shape) * 2, 0, 1)
    coverage[0, 0] = 0.0
    colour = rng.random(shape + (3,)) * 0.8
    tint = np.array([1.0, 1.05, 1.1])  # a slightly blue light, like the studio map
    direct, indirect = rng.random(shape + (1,)) * tint, rng.random(shape + (1,)) * 0.2 * tint
    gloss_colour, gloss = rng.random(shape + (3,)), rng.random(shape + (3,)) * 0.1
    c = coverage[..., None]
    passes = {"DiffCol": colour * c, "DiffDir": direct, "DiffInd": indirect, "GlossCol": gloss_colour * c,
              "GlossDir": gloss, "GlossInd": np.zeros(shape + (3,))}
    image = (colour * (direct + indirect) + gloss_colour * gloss) * c
    passes["Image"] = np.concatenate([image, c], axis=-1)
    return passes, colour, direct + indirect, coverage


def test_generator_shading_from_passes(generator):
    passes, colour, light, coverage = _passes(np.random.default_rng(2))
    shading, base, cov = generator.shading_from_passes(passes)
    inside = coverage > 0
    assert np.allclose(shading[inside], light[inside]) and np.allclose(base[inside], colour[inside])
    assert np.all(shading[~inside] == 0) and np.array_equal(cov, coverage)


def test_generator_write_shading_round_trip(tmp_path, generator):
    """write_shading's files decode (through the metric's loader) to the grey shading and the diffuse colour, and
    its check reproduces an image written from the same passes."""
    passes, colour, light, coverage = _passes(np.random.default_rng(3))
    mask = coverage > 0.5
    (tmp_path / "image").mkdir()
    (tmp_path / "mask").mkdir()
    image = generator.srgb_encode(passes["Image"][..., :3] / np.maximum(coverage, 1e-6)[..., None])
    Image.fromarray(np.round(image * coverage[..., None] * mask[..., None] * 255).astype(np.uint8)).save(
        tmp_path / "image" / "006.png")
    Image.fromarray((mask * 255).astype(np.uint8)).save(tmp_path / "mask" / "006.png")
    checks = generator.write_shading(tmp_path, 6, passes, mask)
    assert checks["combined_psnr"] == float("inf") and checks["passes_psnr"] > 50 and checks["stored_psnr"] > 25
    assert generator.SHADING_SCALE == metric.SHADING_SCALE
    shading, diffuse, loaded_mask = metric.load_view(tmp_path, 6)
    assert np.array_equal(loaded_mask, mask)
    assert np.allclose(shading[mask], light.mean(-1)[mask], atol=1 / generator.SHADING_SCALE)
    assert np.all(shading[~mask] == 0)
    assert np.allclose(diffuse[mask], generator.srgb_encode(colour)[mask], atol=0.5 / 255 + 1e-9)


def test_generator_cameras_from_npz_match_the_rig(generator):
    """--only-shading's cameras (from cameras.npz) are the rig the scene was rendered with."""
    info = json.loads((SCAN / "scene.json").read_text())
    settings = info["settings"]
    views = info["held_out_views"]
    cameras = generator.cameras_from_npz(SCAN / "cameras.npz", np.asarray(info["intrinsics"]), views)
    rig = generator.capture_rig(settings["num_views"], np.random.default_rng(settings["seed"]), settings["distance"],
                                yaw_deg=65.0, pitch_deg=(-20.0, 30.0))
    centre = np.asarray(info["face_sphere"]["centre_mm"])
    for v, (rotation, position) in zip(views, cameras):
        assert np.allclose(rotation, rig[v][0], atol=1e-9)
        assert np.allclose((position - centre) / info["face_sphere"]["radius_mm"], rig[v][1], atol=1e-9)


def test_scan_sample_shading():
    """The bundled sample's ground truth: every held-out view, small, recorded, and the render reproduced."""
    info = json.loads((SCAN / "scene.json").read_text())
    record = info["shading"]
    assert record["views"] == info["held_out_views"]
    files = [p for p in (SCAN / "shading").rglob("*") if p.is_file()]
    assert len(files) == 2 * len(record["views"])
    assert sum(p.stat().st_size for p in files) < 1_000_000
    for v in record["views"]:
        check = record["check_psnr_db"][f"{v:03d}"]
        assert check["passes_psnr"] > 30 and check["stored_psnr"] > 28  # 128 samples against 512
        shading, diffuse, mask = metric.load_view(SCAN, v)
        assert shading.shape == mask.shape == (240, 320) and mask.sum() == info["mask_pixels"][v]
        assert np.all(shading[~mask] == 0) and 0.1 < shading[mask].mean() < 3.0
    exact = record["same_samples_check"]  # the held-out image's own samples and seed: 8-bit rounding only
    assert exact["samples"] == info["settings"]["clean_samples"] and exact["combined_psnr"] > 48
    floor = metric.correlations({v: metric.load_view(SCAN, v)[1] for v in record["views"]}, SCAN)
    assert floor["albedo_gt_corr"] == pytest.approx(1.0)
    assert abs(floor["gt_albedo_shading_corr"]) < 0.5


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, save_tiny_dtu_run):
    """An untrained neuface-dtu pipeline with tiny networks on a 24 x 18 generated scene, saved as a run, with a
    synthetic shading/ ground truth for its held-out views."""
    root = tmp_path_factory.mktemp("albedo_shading")
    scene = root / "scene"
    config, pipeline = save_tiny_dtu_run(root)
    names = [Path(n).name for n in pipeline.datamanager.eval_dataset._dataparser_outputs.image_filenames]
    views = [int(Path(n).stem) for n in names]
    rng = np.random.default_rng(4)
    masks = {v: np.asarray(Image.open(scene / "mask" / f"{v:03d}.png")) > 127 for v in views}
    shading = {v: 0.2 + rng.random((18, 24)) for v in views}
    diffuse = {v: rng.random((18, 24, 3)) for v in views}
    _write_scene(scene, views, shading, diffuse, masks)
    return {"config": config.get_base_dir() / "config.yml", "scene": scene, "views": views, "pipeline": pipeline}


def test_cli_on_a_run_matches_the_rendered_albedo(tiny_run, tmp_path):
    output = tmp_path / "albedo.json"
    result = metric.AlbedoShading(load_config=tiny_run["config"], output=output).main()
    assert json.loads(output.read_text())["albedo_shading_corr"] == result["albedo_shading_corr"]
    assert Path(result["scene"]) == tiny_run["scene"] and result["step"] == 0
    assert [row["view"] for row in result["views"]] == tiny_run["views"]
    # recomputed from the pipeline's own albedo renders and the files, with scipy
    albedos, covered = metric.render_albedos(tiny_run["pipeline"])
    lum, shade = [], []
    for v in tiny_run["views"]:
        shading, _, mask = metric.load_view(tiny_run["scene"], v)
        keep = mask & covered[v]
        lum.append(albedos[v][keep] @ np.array([0.2126, 0.7152, 0.0722]))
        shade.append(shading[keep])
    lum, shade = np.concatenate(lum), np.concatenate(shade)
    assert result["pixels"] == lum.size > 0
    if lum.std() > 0:
        assert result["albedo_shading_corr"] == pytest.approx(pearsonr(lum, shade)[0], abs=1e-6)
