"""neuface-prepare-facescape on a tiny synthetic FaceScape *release* (distorted images, one invalid view),
read back through the NeuFace FaceScape dataparser."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neuface_ns.data.facescape import FaceScapeDataset, NeuFaceFaceScapeDataParserConfig
from neuface_ns.errors import NeuFaceInputError

ROOT = Path(__file__).resolve().parents[2]
FLIP = np.array([1.0, -1.0, -1.0])


@pytest.fixture(scope="module")
def gen(load_script):
    return load_script("make_sample_scene")


@pytest.fixture(scope="module")
def prep():
    from neuface_ns.tools import prepare_facescape

    return prepare_facescape


@pytest.fixture(scope="module")
def release(gen, tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    scene = gen.generate_scene(num_views=6, width=128, height=96, mesh_resolution=72, verbose=False, supersample=1)
    gen.write_facescape_release(scene, root, invalid_views=(2,))
    return {"root": root, "scene": scene, "meta": json.loads((root / "scene.json").read_text())}


@pytest.fixture(scope="module")
def prepared(prep, release, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "neuface"
    assert prep.main(["--release-root", str(release["root"]), "--output-dir", str(out)]) == 0
    return out


def parse(out, split="train", **kwargs):
    kwargs.setdefault("downscale_factor", 1)
    return NeuFaceFaceScapeDataParserConfig(data=out, **kwargs).setup().get_dataparser_outputs(split=split)


def test_release_has_invalid_view_and_distortion(release):
    params = json.loads((release["root"] / "images" / "1" / "1_neutral" / "params.json").read_text())
    assert params["2_valid"] is False and params["0_valid"] is True
    assert any(abs(v) > 0 for v in params["0_distortion"])


def test_split_and_invalid_view_skipped(release, prepared):
    meta = release["meta"]
    assert meta["expected_train_views"] == ["1", "3", "4", "5"] and meta["expected_test_views"] == ["0"]
    image_dir = prepared / "imface_image" / "1" / "1_neutral"
    assert sorted(p.stem for p in (image_dir / "train").glob("*.jpg")) == ["1", "3", "4", "5"]
    assert sorted(p.stem for p in (image_dir / "test").glob("*.jpg")) == ["0"]
    params = json.loads((image_dir / "params.json").read_text())
    assert not any(k.startswith("2_") for k in params)
    assert {"0_K", "0_Rt", "0_width", "0_height"} <= set(params)
    for name in ("Rt_scale_dict.json", "landmark_indices.npz"):
        assert (prepared / name).read_bytes() == (release["root"] / name).read_bytes()
    assert (prepared / "imface_model" / "1" / "1_neutral.obj").is_file()


def test_dataparser_reads_back_the_generator_cameras(release, prepared):
    views = {v["view"]: v for v in release["meta"]["views"]}
    for split in ("train", "test"):
        out = parse(prepared, split)
        c2w = out.cameras.camera_to_worlds.numpy().astype(np.float64)
        for i, p in enumerate(out.image_filenames):
            np.testing.assert_allclose(c2w[i, :3, 3], views[p.stem]["camera_centre_face"], atol=2e-6)
            np.testing.assert_allclose(c2w[i, :3, :3] * FLIP, views[p.stem]["rotation_c2w_face_opencv"], atol=2e-6)
        assert (out.cameras.width == 128).all() and (out.cameras.height == 96).all()


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_images_are_undistorted_and_masks_match_the_render(gen, release, prepared):
    out = parse(prepared, "train")
    ds = FaceScapeDataset(out)
    scene = release["scene"]
    for i, p in enumerate(out.image_filenames):
        view = int(p.stem)
        ref = scene.renders[view]  # undistorted analytic render (same pixel convention)
        item = ds[i]
        mask = item["fg_mask"][..., 0].numpy() > 0.5
        distorted = gen.render_distorted_view(scene.cameras[view], release["meta"]["distortion"])
        iou = _iou(mask, ref.mask)
        assert iou > 0.985, (view, iou)
        assert iou > _iou(distorted.mask, ref.mask) + 0.01  # undistortion made a measurable difference
        # colours: the undistorted JPEG matches the reference render inside the (eroded) face
        inner = ref.mask & mask
        inner[1:-1, 1:-1] &= ref.mask[:-2, 1:-1] & ref.mask[2:, 1:-1] & ref.mask[1:-1, :-2] & ref.mask[1:-1, 2:]
        diff = np.abs(item["image"].numpy() - ref.rgb).mean(-1)[inner]
        assert diff.mean() < 0.03
        # near the silhouette, where distortion moves colours most, the undistorted image is closer than the raw one
        raw = np.asarray(Image.open(release["root"] / "images" / "1" / "1_neutral" / f"{view}.jpg")).astype(np.float64) / 255
        band = (ref.mask | distorted.mask) & ~inner
        got = np.abs(item["image"].numpy() - ref.rgb).mean(-1)[band].mean()
        assert got < 0.8 * np.abs(raw - ref.rgb).mean(-1)[band].mean(), view
        assert float(item["image"][~torch.from_numpy(mask)].abs().max()) == 0.0  # black background


def test_rays_through_landmarks_after_preparation(release, prepared):
    views = {v["view"]: v for v in release["meta"]["views"]}
    out = parse(prepared, "train", downscale_factor=2)
    checked = 0
    for i, p in enumerate(out.image_filenames):
        for name, lm in views[p.stem]["landmarks"].items():
            if not lm["visible"]:
                continue
            u, v = lm["pixel"]  # OpenCV: pixel centres at integers; nerfstudio's coords count from the corner
            coords = torch.tensor([[(v + 0.5) / 2, (u + 0.5) / 2]], dtype=torch.float32)
            rays = out.cameras.generate_rays(camera_indices=i, coords=coords)
            o, d = rays.origins[0].double().numpy(), rays.directions[0].double().numpy()
            x = np.array(release["meta"]["landmarks"][name]["face"]) - o
            d = d / np.linalg.norm(d)
            assert np.linalg.norm(x - (x @ d) * d) < 1e-4
            checked += 1
    assert checked >= 8


def test_refuses_to_overwrite_without_flag(prep, release, prepared, tmp_path):
    with pytest.raises(NeuFaceInputError) as err:
        prep.main(["--release-root", str(release["root"]), "--output-dir", str(prepared)])
    assert "--overwrite" in str(err.value) and "\n" not in str(err.value)
    before = (prepared / "imface_image" / "1" / "1_neutral" / "params.json").read_text()
    # CLI: one line, non-zero exit
    proc = subprocess.run([sys.executable, "-m", "neuface_ns.tools.prepare_facescape", "--release-root",
                           str(release["root"]), "--output-dir", str(prepared)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "--overwrite" in proc.stderr and "Traceback" not in proc.stderr
    # --overwrite with an explicit test view rewrites the tuple
    assert prep.main(["--release-root", str(release["root"]), "--output-dir", str(prepared), "--overwrite",
                      "--test-views", "4"]) == 0
    image_dir = prepared / "imface_image" / "1" / "1_neutral"
    assert sorted(p.stem for p in (image_dir / "test").glob("*.jpg")) == ["4"]
    assert sorted(p.stem for p in (image_dir / "train").glob("*.jpg")) == ["0", "1", "3", "5"]
    assert json.loads((image_dir / "params.json").read_text()).keys() == json.loads(before).keys()


def test_bad_release_input(prep, release, tmp_path):
    with pytest.raises(NeuFaceInputError) as err:
        prep.main(["--release-root", str(release["root"]), "--output-dir", str(tmp_path / "o"), "--subjects", "9"])
    assert "unknown subject" in str(err.value)
    with pytest.raises(NeuFaceInputError) as err:
        prep.main(["--release-root", str(release["root"]), "--output-dir", str(tmp_path / "o"), "--expressions", "4"])
    assert "1_neutral" in str(err.value)
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(release["root"], broken)
    (broken / "meshes" / "1" / "1_neutral.ply").unlink()
    with pytest.raises(NeuFaceInputError) as err:
        prep.main(["--release-root", str(broken), "--output-dir", str(tmp_path / "o2")])
    assert "1_neutral.ply" in str(err.value)


@pytest.mark.parametrize("missing", ["Rt_scale_dict.json", "landmark_indices.npz"])
def test_missing_side_file_says_it_comes_from_the_toolkit(prep, release, tmp_path, missing):
    """The two side files are in the FaceScape toolkit's toolkit/predef/, not in the dataset zips (NeuFace issues
    #2, #15): the one-line error names the file and says where to get it."""
    import shutil

    root = tmp_path / "release"
    shutil.copytree(release["root"], root)
    (root / missing).unlink()
    with pytest.raises(NeuFaceInputError) as err:
        prep.main(["--release-root", str(root), "--output-dir", str(tmp_path / "out")])
    message = str(err.value)
    assert missing in message and "toolkit/predef" in message and "\n" not in message
