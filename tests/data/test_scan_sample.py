"""The bundled realistic samples (neuface_ns/data/sample/scan under Blender's studio light, and scan_interior under
its interior light with other cameras: a real face scan path-traced by Cycles, made with
scripts/render_scan_scene.py) checked against what they claim to be, without Blender: cameras and masks agree with
the ground-truth mesh, both layouts describe the same views, every held-out view has its relit ground truth, the
package stays small; and the realistic benchmark runs on it end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parents[2]
SCAN = ROOT / "neuface_ns" / "data" / "sample" / "scan"
SCENES = [SCAN, ROOT / "neuface_ns" / "data" / "sample" / "scan_interior"]
every_scene = pytest.mark.parametrize("scene", SCENES, ids=[path.name for path in SCENES])


def scene_json(scan: Path) -> dict:
    return json.loads((scan / "scene.json").read_text())


@every_scene
def test_the_sample_stays_small(scene):
    size = sum(p.stat().st_size for p in scene.rglob("*") if p.is_file())
    assert size < 8 * 2**20, f"{size / 2**20:.1f} MB"


@every_scene
def test_visible_ground_truth_projects_into_the_masks(scene):
    """Every ground-truth surface point a camera sees (ray cast against the mesh) lands inside that view's mask,
    and the mask holds little else: the cameras, the masks and gt_mesh.ply describe the same head."""
    import trimesh

    from neuface_ns.tools import eval_mesh

    gt = trimesh.load(scene / "gt_mesh.ply", process=False)
    points = eval_mesh.sample_surface(gt.vertices, gt.faces, 60_000, np.random.default_rng(0))
    with np.load(scene / "cameras.npz") as cameras:
        for view in (0, 5, 17, 30):
            P = cameras[f"world_mat_{view}"][:3, :4]
            mask = np.asarray(Image.open(scene / "mask" / f"{view:03d}.png")) > 127
            height, width = mask.shape
            seen = eval_mesh.observed(points, gt.vertices, gt.faces, [P], width, height)
            pix = np.concatenate([points[seen], np.ones((seen.sum(), 1))], axis=1) @ P.T
            col = np.clip(np.round(pix[:, 0] / pix[:, 2]).astype(int), 0, width - 1)
            row = np.clip(np.round(pix[:, 1] / pix[:, 2]).astype(int), 0, height - 1)
            assert seen.mean() > 0.2
            assert mask[row, col].mean() > 0.97, view  # seen surface -> inside the mask
            covered = np.zeros_like(mask)
            covered[row, col] = True
            grown = np.asarray(Image.fromarray(covered).filter(ImageFilter.MaxFilter(5)))
            assert (mask & ~grown).sum() < 0.03 * mask.sum(), view  # the mask holds little but that surface


@every_scene
def test_both_layouts_hold_the_same_views_and_split(scene):
    """neuface-dtu-data on the IDR layout and neuface-facescape-data on facescape/ give the same normalised cameras
    (two different normalisations: scale_mat vs the nose tip) and the generator's held-out views."""
    import torch

    from neuface_ns.data.dtu import NeuFaceDTUDataParserConfig
    from neuface_ns.data.facescape import NeuFaceFaceScapeDataParserConfig

    SCENE = scene_json(scene)
    held_out = SCENE["held_out_views"]
    for split, expected in (("train", [v for v in range(len(SCENE["mask_pixels"])) if v not in held_out]),
                            ("test", held_out)):
        idr = NeuFaceDTUDataParserConfig(data=scene).setup().get_dataparser_outputs(split=split)
        face = NeuFaceFaceScapeDataParserConfig(data=scene / "facescape", downscale_factor=1).setup() \
            .get_dataparser_outputs(split=split)
        assert [int(Path(p).stem) for p in idr.image_filenames] == expected
        order = np.argsort([int(Path(p).stem) for p in face.image_filenames])
        assert [int(Path(face.image_filenames[i]).stem) for i in order] == expected
        torch.testing.assert_close(face.cameras.camera_to_worlds[order], idr.cameras.camera_to_worlds,
                                   atol=2e-4, rtol=0)
        torch.testing.assert_close(face.cameras.fx[order], idr.cameras.fx)


@every_scene
def test_relit_ground_truth_and_lights(scene):
    for view in scene_json(scene)["held_out_views"]:
        assert (scene / "relit" / "image" / f"{view:03d}.png").is_file()
        assert (scene / "facescape" / "relit" / f"{view}.jpg").is_file()
    train, relight = (np.load(scene / "lights" / f"{name}.npy") for name in ("train", "relight"))
    assert train.shape == relight.shape == (121, 3)
    assert (train[0] > 0).all() and (relight[0] > 0).all()  # positive mean radiance
    assert np.abs(train - relight).max() > 0.1 * np.abs(train).max()  # two different environments


def test_realistic_benchmark_reports_every_figure(capsys, load_script):
    benchmark = load_script("benchmark")
    assert benchmark.main(["--realistic", "--method", "neuface-dtu", "--steps", "2", "--warmup", "0",
                           "--budget-steps", "4", "--device", "cpu",
                           "--set", "pipeline.datamanager.train_num_rays_per_batch=64",
                           "pipeline.datamanager.dataparser.downscale_factor=4"]) == 0  # 80x60 renders: quick
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("wall_s", "psnr_masked", "ssim_masked", "relit_psnr_masked", "unrelit_psnr_masked",
                "relit_gain_db", "albedo_shading_corr", "gt_albedo_shading_corr", "mesh_chamfer", "mesh_fscore",
                "mesh_surface_chamfer", "mesh_surface_fscore", "mesh_observed_fraction", "peak_memory_mb",
                "mesh_seen_surface_chamfer", "mesh_seen_fscore"):
        assert np.isfinite(result[key]), key
    assert 0.0 < result["mesh_seen_faces_fraction"] <= 1.0  # the mesh cut to what the masks show
    assert result["mesh_threshold"] == 1.0  # F-score at 1 mm
    assert 0.3 < result["mesh_observed_fraction"] <= 1.0
    assert result["relit_gain_db"] == pytest.approx(result["relit_psnr_masked"] - result["unrelit_psnr_masked"])


def test_benchmark_set_flags_accumulate(load_script):
    """`--set a --set b c` applies a, b and c (argparse's default kept only the last flag's values)."""
    parser = load_script("benchmark").build_parser()
    args = parser.parse_args(["--set", "a.x=1", "--set", "b.y=2", "c.z=3", "--set-b", "d=4", "--set-b", "e=5"])
    assert args.set_a == ["a.x=1", "b.y=2", "c.z=3"] and args.set_b == ["d=4", "e=5"]
    assert parser.parse_args([]).set_a == []


def test_fixed_light_holds_the_scenes_own_light_through_training(tmp_path, capsys, load_script):
    """--fixed-light (the diagnostic of how much of the relighting error is the light's): after training steps the
    saved light equals the file's coefficients (read with numpy here, cut to the model's order), so Adam never moved
    it; in a plain run the light learns."""
    benchmark = load_script("benchmark")
    true_light = np.load(SCAN / "lights" / "train.npy")
    common = ["--realistic", "--method", "neuface-dtu", "--steps", "2", "--warmup", "0", "--budget-steps", "6",
              "--device", "cpu", "--skip-quality", "--set", "pipeline.datamanager.train_num_rays_per_batch=64",
              "pipeline.datamanager.dataparser.downscale_factor=4"]
    lights = {}
    for name, extra in (("fixed", ["--fixed-light", str(SCAN / "lights" / "train.npy")]), ("learned", [])):
        state = tmp_path / f"{name}.pt"
        assert benchmark.main(common + ["--save-state", str(state)] + extra) == 0
        lights[name] = torch.load(state, weights_only=False)["pipeline"]["_model.light.coefficients"].numpy()
    capsys.readouterr()
    order_terms = lights["fixed"].shape[0]
    assert order_terms <= len(true_light)
    np.testing.assert_array_equal(lights["fixed"], true_light[:order_terms].astype(np.float32))
    from neuface_ns.lighting.light import paper_initial_light  # where the plain run's light starts

    assert np.abs(lights["learned"] - paper_initial_light(int(np.sqrt(order_terms)) - 1).numpy()).max() > 1e-4


def test_fixed_light_names_a_missing_file(tmp_path, load_script):
    benchmark = load_script("benchmark")
    with pytest.raises(SystemExit, match="no light"):
        benchmark.main(["--realistic", "--method", "neuface-dtu", "--steps", "1", "--warmup", "0", "--device", "cpu",
                        "--fixed-light", str(tmp_path / "missing.npy"),
                        "--set", "pipeline.datamanager.train_num_rays_per_batch=64",
                        "pipeline.datamanager.dataparser.downscale_factor=4"])


def test_the_two_scenes_differ_in_light_and_cameras():
    """scan_interior is a second scene, not a copy: another training light (interior, not studio) and another
    relighting light (forest, not courtyard), other camera jitter (seed 1), the same scan and face sphere."""
    studio, interior = (scene_json(path) for path in SCENES)
    assert (studio["environments"], interior["environments"]) == (
        {"train": "studio.exr", "relight": "courtyard.exr"}, {"train": "interior.exr", "relight": "forest.exr"})
    for name in ("train", "relight"):
        a, b = (np.load(path / "lights" / f"{name}.npy") for path in SCENES)
        assert np.abs(a - b).max() > 0.1 * np.abs(a).max()
    with np.load(SCENES[0] / "cameras.npz") as a, np.load(SCENES[1] / "cameras.npz") as b:
        assert np.abs(a["world_mat_5"] - b["world_mat_5"]).max() > 1e-3 * np.abs(a["world_mat_5"]).max()
        np.testing.assert_allclose(a["scale_mat_5"], b["scale_mat_5"], rtol=1e-6)
