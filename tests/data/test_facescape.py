"""Tests for the FaceScape (NeuFace layout) dataparser, its bundled synthetic sample and the FaceScape presets.

Two kinds of ground truth, both independent of the code under test:
- the bundled sample written by scripts/make_sample_scene.py (its scene.json gives every camera centre and rotation
  in the face frame and the landmarks' pixels), and
- tiny layouts built here from hand-picked cameras, scales and nose tips.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neuface_ns.data.facescape import (
    FACESCAPE_EXPRESSIONS,
    SAMPLE_FACESCAPE_DIR,
    FaceScapeDataset,
    NeuFaceFaceScapeDataParserConfig,
)
from neuface_ns.errors import NeuFaceInputError

from helpers import rotation

SAMPLE = SAMPLE_FACESCAPE_DIR
FLIP = np.array([1.0, -1.0, -1.0])  # OpenCV <-> OpenGL camera axes (columns of c2w)


def parse(data=SAMPLE, split="train", **kwargs):
    return NeuFaceFaceScapeDataParserConfig(data=Path(data), **kwargs).setup().get_dataparser_outputs(split=split)


def point_ray_distance(point, origin, direction):
    d = direction / np.linalg.norm(direction)
    v = point - origin
    return np.linalg.norm(v - np.dot(v, d) * d), np.dot(v, d)


@pytest.fixture(scope="module")
def scene():
    return json.loads((SAMPLE / "scene.json").read_text())


# ---------------------------------------------------------------------------------------------------------------
# the bundled sample: normalisation against the generator's ground truth
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "test", "val"])
def test_sample_cameras_match_generator(scene, split):
    out = parse(split=split)
    names = [p.stem for p in out.image_filenames]
    expected_names = scene["train_views"] if split == "train" else scene["test_views"]
    assert names == expected_names
    views = {v["view"]: v for v in scene["views"]}
    c2w = out.cameras.camera_to_worlds.numpy().astype(np.float64)
    for i, name in enumerate(names):
        v = views[name]
        np.testing.assert_allclose(c2w[i, :3, 3], v["camera_centre_face"], atol=2e-6)
        np.testing.assert_allclose(c2w[i, :3, :3] * FLIP, v["rotation_c2w_face_opencv"], atol=2e-6)
        K = np.array(v["K"])
        np.testing.assert_allclose(float(out.cameras.fx[i]), K[0, 0] / 4, rtol=1e-6)
        np.testing.assert_allclose(float(out.cameras.cy[i]), (K[1, 2] + 0.5) / 4, rtol=1e-6)  # OpenCV K
    assert (out.cameras.width == scene["width"] // 4).all() and (out.cameras.height == scene["height"] // 4).all()
    assert out.metadata["black_background"] is True
    assert [p.stem for p in out.metadata["fg_mask_filenames"]] == names


def test_sample_split_follows_rule(scene):
    n = scene["num_views"]
    assert scene["test_views"] == [str(i) for i in range(0, n, 8)]
    assert sorted(scene["train_views"] + scene["test_views"], key=int) == [str(i) for i in range(n)]


@pytest.mark.parametrize("factor", [4, 1])
def test_rays_through_known_landmarks(scene, factor):
    """nerfstudio's ray of a landmark's pixel passes through the landmark's face-frame position."""
    checked = 0
    for split in ("train", "test"):
        out = parse(split=split, downscale_factor=factor)
        views = {v["view"]: v for v in scene["views"]}
        for i, p in enumerate(out.image_filenames):
            for name, lm in views[p.stem]["landmarks"].items():
                if not lm["visible"]:
                    continue
                u, v = lm["pixel"]  # OpenCV image point (pixel centres at integers), full resolution
                rays = out.cameras.generate_rays(  # nerfstudio's coords: from the corner, in the downscaled image
                    camera_indices=i, coords=torch.tensor([[(v + 0.5) / factor, (u + 0.5) / factor]], dtype=torch.float32)
                )
                point = np.array(scene["landmarks"][name]["face"])
                dist, depth = point_ray_distance(point, rays.origins[0].double().numpy(), rays.directions[0].double().numpy())
                assert dist < 2e-5 * math.sqrt(depth * depth + 1), (p.stem, name, dist)
                assert depth > 0
                checked += 1
    assert checked > 40


def test_landmarks_fall_in_masks(scene):
    out = parse(split="train")
    ds = FaceScapeDataset(out)
    views = {v["view"]: v for v in scene["views"]}
    for i in (0, 5, 10):
        item = ds[i]
        for lm in views[out.image_filenames[i].stem]["landmarks"].values():
            if lm["visible"]:
                u, v = lm["pixel"]  # OpenCV: the full-size pixel (round(v), round(u)), in the block of 4
                assert item["fg_mask"][int((v + 0.5) // 4), int((u + 0.5) // 4), 0] == 1.0


def test_nose_tip_and_tu_millimetres(scene):
    """World = TU mm: x_norm = scale (T X_TU); the nose tip lands on (0, 0, 0.4); the GT mesh fits the sphere."""
    import trimesh

    from neuface_ns.exporter import normalised_to_world

    out = parse()
    T = out.dataparser_transform.numpy().astype(np.float64)
    s = out.dataparser_scale
    assert s == pytest.approx(0.01)
    nose = np.array(scene["nose_tip_tu_mm"])
    np.testing.assert_allclose(out.metadata["facescape"]["nose_tip_tu_mm"], nose, atol=1e-4)
    np.testing.assert_allclose(s * (T @ np.append(nose, 1.0)), [0.0, 0.0, 0.4], atol=1e-5)
    for lm in scene["landmarks"].values():
        np.testing.assert_allclose(s * (T @ np.append(lm["tu_mm"], 1.0)), lm["face"], atol=1e-5)
        # and back (what neuface-export writes): TU mm = 100 x + nose - (0, 0, 40)
        back = normalised_to_world(np.array([lm["face"]]), T, s)[0]
        np.testing.assert_allclose(back, lm["tu_mm"], atol=1e-3)
        np.testing.assert_allclose(back, 100 * np.array(lm["face"]) + nose - [0, 0, 40], atol=1e-3)
    mesh = trimesh.load(SAMPLE / "gt_mesh.ply", process=False)
    x = (np.asarray(mesh.vertices) - nose + [0, 0, 40]) / 100
    assert np.linalg.norm(x, axis=1).max() < 0.9
    # nerfstudio's own inverse gives the camera centres in TU mm
    poses = out.transform_poses_to_original_space(out.cameras.camera_to_worlds, camera_convention="opengl")
    views = {v["view"]: v for v in scene["views"]}
    centres = np.array([views[p.stem]["camera_centre_tu_mm"] for p in out.image_filenames])
    np.testing.assert_allclose(poses[:, :3, 3].numpy(), centres, atol=2e-3)
    json.dumps(out.metadata["facescape"])  # plain types only


def test_black_background_and_mask_threshold():
    out = parse(split="test")
    ds = FaceScapeDataset(out)
    item = ds[0]
    img, fg = item["image"], item["fg_mask"]
    assert tuple(img.shape) == (150, 200, 3) and tuple(fg.shape) == (150, 200, 1)
    assert set(torch.unique(fg).tolist()) == {0.0, 1.0}
    assert float(img[fg[..., 0] == 0].abs().max()) == 0.0
    assert float(img[fg[..., 0] == 1].mean()) > 0.2
    # the raw JPEG has (near) black background too, and the mask is the > 0.5 threshold of the area average
    raw = np.asarray(Image.open(out.metadata["fg_mask_filenames"][0])).astype(np.float64) / 255
    area = raw[:600, :800].reshape(150, 4, 200, 4).mean(axis=(1, 3))
    np.testing.assert_array_equal(fg[..., 0].numpy(), (area > 0.5).astype(np.float32))


def test_train_views_subset_and_full_resolution():
    out = parse(train_views=("5", "1", "9"), downscale_factor=1)
    assert [p.stem for p in out.image_filenames] == ["1", "5", "9"]
    assert (out.cameras.width == 800).all() and (out.cameras.height == 600).all()
    # the subset is for training only
    assert len(parse(split="test", train_views=("1",)).image_filenames) == 3
    with pytest.raises(NeuFaceInputError) as err:
        parse(train_views=("1", "42"))
    assert "42" in str(err.value) and "train" in str(err.value)


def test_sample_size_is_small():
    total = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert total < 4e6


# ---------------------------------------------------------------------------------------------------------------
# tiny hand-built layouts: exact normalisation and bad input
# ---------------------------------------------------------------------------------------------------------------


def make_layout(root: Path, subject=3, expression=2, n_views=4, width=24, height=16):
    """A NeuFace-layout tuple with known cameras; returns the ground truth."""
    expr = f"{expression}_{FACESCAPE_EXPRESSIONS[expression - 1]}"
    scale = 2.5
    R_s = rotation([0.2, 1.0, -0.4], 0.6)
    t_s = np.array([10.0, -4.0, 7.0])
    nose = np.array([1.5, -20.0, 95.0])
    Rt = np.eye(4)
    Rt[:3, :3], Rt[:3, 3] = R_s, t_s
    (root / "Rt_scale_dict.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "Rt_scale_dict.json").write_text(json.dumps({str(subject): {str(expression): [scale, Rt.tolist()]}}))
    ids = np.arange(68) * 2
    np.savez(root / "landmark_indices.npz", v10=ids)
    obj = root / "imface_model" / str(subject) / f"{expr}.obj"
    obj.parent.mkdir(parents=True)
    lines = ["# test", "vt 0 0"]
    for k in range(ids[30] + 5):
        vert = nose if k == ids[30] else np.array([k, -k, 0.5 * k])
        lines.append("v " + " ".join(f"{c:.6f}" for c in vert))
    lines.append("f 1 2 3")
    obj.write_text("\n".join(lines) + "\n")
    K = np.array([[30.0, 0.0, 11.7], [0.0, 31.0, 8.2], [0.0, 0.0, 1.0]])
    params, truth = {}, {}
    rng = np.random.default_rng(1)
    for v in range(n_views):
        R = rotation(rng.normal(size=3), 0.4 + 0.1 * v)
        t = rng.normal(size=3) * 3
        params[f"{v}_K"] = K.tolist()
        params[f"{v}_Rt"] = np.concatenate([R, t[:, None]], axis=1).tolist()
        # expected, straight from docs/method.md section 7
        c = -R.T @ t
        c = R_s @ (scale * c) + t_s
        c = c - nose
        c[2] += 40.0
        c = c / 100.0
        truth[str(v)] = {"centre": c, "rotation": R_s @ R.T}
        split = "test" if v == 0 else "train"
        for kind in ("imface_image", "imface_mask"):
            d = root / kind / str(subject) / expr / split
            d.mkdir(parents=True, exist_ok=True)
            arr = np.full((height, width, 3), 200, np.uint8) if kind == "imface_image" else np.zeros((height, width), np.uint8)
            if kind == "imface_mask":
                arr[4:12, 6:18] = 255
            Image.fromarray(arr).save(d / f"{v}.jpg")
    (root / "imface_image" / str(subject) / expr / "params.json").write_text(json.dumps(params))
    return {"root": root, "subject": subject, "expression": expression, "expr": expr, "K": K, "truth": truth,
            "nose": nose}


@pytest.fixture
def layout(tmp_path):
    return make_layout(tmp_path / "fs")


def parse_layout(lay, split="train", **kwargs):
    kwargs.setdefault("subject_id", lay["subject"])
    kwargs.setdefault("expression_id", lay["expression"])
    kwargs.setdefault("downscale_factor", 1)
    return parse(lay["root"], split, **kwargs)


def test_handbuilt_normalisation_matches_spec_formula(layout):
    for split in ("train", "test"):
        out = parse_layout(layout, split)
        c2w = out.cameras.camera_to_worlds.numpy().astype(np.float64)
        for i, p in enumerate(out.image_filenames):
            truth = layout["truth"][p.stem]
            np.testing.assert_allclose(c2w[i, :3, 3], truth["centre"], atol=1e-5)
            np.testing.assert_allclose(c2w[i, :3, :3] * FLIP, truth["rotation"], atol=1e-6)
        np.testing.assert_allclose(out.cameras.fx.numpy().ravel(), 30.0)
        np.testing.assert_allclose(out.cameras.cx.numpy().ravel(), 11.7 + 0.5, rtol=1e-6)  # OpenCV K -> corner
    out = parse_layout(layout, downscale_factor=2)
    np.testing.assert_allclose(out.cameras.cx.numpy().ravel(), (11.7 + 0.5) / 2, rtol=1e-6)
    assert (out.cameras.width == 12).all() and (out.cameras.height == 8).all()
    T, s = out.dataparser_transform.numpy().astype(np.float64), out.dataparser_scale
    np.testing.assert_allclose(s * (T @ np.append(layout["nose"], 1.0)), [0, 0, 0.4], atol=1e-6)


def _raises(lay, needle, **kwargs):
    with pytest.raises(NeuFaceInputError) as err:
        parse_layout(lay, **kwargs)
    msg = str(err.value)
    assert isinstance(err.value, SystemExit) and "\n" not in msg
    assert str(needle) in msg, msg
    return msg


def test_unknown_subject_lists_subjects(layout):
    msg = _raises(layout, "unknown subject 7", subject_id=7)
    assert "subjects present: 3" in msg


def test_unknown_expression_lists_expressions(layout):
    msg = _raises(layout, "expressions present: 2_smile", expression_id=1)
    assert "1_neutral" in msg
    _raises(layout, "valid: 1..20", expression_id=21)


def test_missing_params_key(layout):
    path = layout["root"] / "imface_image" / "3" / layout["expr"] / "params.json"
    params = json.loads(path.read_text())
    del params["2_Rt"]
    path.write_text(json.dumps(params))
    msg = _raises(layout, path)
    assert "'2_Rt'" in msg


def test_views_marked_not_valid_are_skipped_with_one_line(layout, capsys):
    """FaceScape's params.json keeps "<v>_valid"; a layout built the reference way keeps that file, so the
    dataparser skips those views (and says which), and stops with one line if none is left."""
    path = layout["root"] / "imface_image" / "3" / layout["expr"] / "params.json"
    params = json.loads(path.read_text())
    params["2_valid"], params["3_valid"] = False, "1"
    path.write_text(json.dumps(params))
    out = parse_layout(layout, "train")
    assert sorted(p.stem for p in out.image_filenames) == ["1", "3"]
    assert "skipping train view(s) 2" in capsys.readouterr().out.replace("\n", " ")
    params["1_valid"] = params["3_valid"] = 0
    path.write_text(json.dumps(params))
    _raises(layout, "every train view is marked not valid")


def test_missing_mask(layout):
    mask = layout["root"] / "imface_mask" / "3" / layout["expr"] / "train" / "1.jpg"
    mask.unlink()
    _raises(layout, mask)


def test_loss_masks_are_optional_and_load_as_their_own_entry(layout):
    """imface_loss_mask/ (written by neuface-process-data) reaches the batch as "loss_mask", pixel for pixel;
    a view without one stops with one line naming the missing file."""
    assert "loss_mask_filenames" not in parse_layout(layout).metadata
    folder = layout["root"] / "imface_loss_mask" / "3" / layout["expr"] / "train"
    folder.mkdir(parents=True)
    skip = np.full((16, 24), 255, np.uint8)
    skip[3:5, :] = 0  # two rows the loss skips
    for v in (1, 2, 3):
        Image.fromarray(skip).save(folder / f"{v}.png")
    out = parse_layout(layout)
    assert [p.stem for p in out.metadata["loss_mask_filenames"]] == [p.stem for p in out.image_filenames]
    item = FaceScapeDataset(out)[0]
    np.testing.assert_array_equal(item["loss_mask"][..., 0].numpy(), (skip > 127).astype(np.float32))
    assert item["fg_mask"].shape == item["loss_mask"].shape
    # black background except on the skipped rows, which keep the image's colour (the black_or_image loss needs it)
    raw = np.asarray(Image.open(out.image_filenames[0]).convert("RGB")).astype(np.float32) / 255
    outside = item["fg_mask"][..., 0].numpy() == 0
    image = item["image"].numpy()
    np.testing.assert_allclose(image[3:5], raw[3:5], atol=1e-6)
    rest = outside.copy()
    rest[3:5] = False
    assert rest.any() and float(np.abs(image[rest]).max()) == 0.0
    (folder / "2.png").unlink()
    _raises(layout, folder / "2.png")
    Image.fromarray(skip[:8]).save(folder / "2.png")
    _raises(layout, "not the size of its mask")


def test_missing_rt_scale_entry(layout):
    path = layout["root"] / "Rt_scale_dict.json"
    table = json.loads(path.read_text())
    table["3"] = {"5": table["3"]["2"]}
    path.write_text(json.dumps(table))
    msg = _raises(layout, path)
    assert "expression 2" in msg
    path.write_text(json.dumps({"9": table["3"]}))
    _raises(layout, "no entry for subject 3")


def test_missing_landmark_file(layout):
    path = layout["root"] / "landmark_indices.npz"
    path.unlink()
    msg = _raises(layout, path)
    assert "toolkit/predef/" in msg and "zhuhao-nju/facescape" in msg  # not in the dataset zips


def test_missing_rt_scale_dict_says_where_it_comes_from(layout):
    path = layout["root"] / "Rt_scale_dict.json"
    path.unlink()
    msg = _raises(layout, path)
    assert "toolkit/predef/" in msg and "zhuhao-nju/facescape" in msg


def test_landmark_without_v10_and_missing_tu_mesh(layout):
    np.savez(layout["root"] / "landmark_indices.npz", v16=np.arange(68))
    _raises(layout, "'v10'")
    np.savez(layout["root"] / "landmark_indices.npz", v10=np.arange(68) * 2)
    obj = layout["root"] / "imface_model" / "3" / f"{layout['expr']}.obj"
    obj.unlink()
    _raises(layout, obj)


def test_size_mismatch_and_no_test_views(layout, capsys):
    mask = layout["root"] / "imface_mask" / "3" / layout["expr"] / "train" / "2.jpg"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(mask)
    _raises(layout, mask)
    lay2 = make_layout(layout["root"].parent / "fs2")
    for kind in ("imface_image", "imface_mask"):
        (lay2["root"] / kind / "3" / lay2["expr"] / "test" / "0.jpg").unlink()
    out = parse_layout(lay2, "val")
    assert [p.stem for p in out.image_filenames] == ["1", "2", "3"]


# ---------------------------------------------------------------------------------------------------------------
# registration and presets
# ---------------------------------------------------------------------------------------------------------------


def test_relight_preset_is_the_cpu_default_with_the_four_relighting_options():
    """neuface-facescape-relight differs from neuface-facescape in its name, exactly four model fields (the paper
    preset keeps all four off) and its schedule (2000 steps, as measured, against the default's 3000, each with the lr
    halved at 65 % and 87.5 % of the steps); the bundled synthetic sample declares "linear", so "auto" keeps it linear
    there."""
    import dataclasses

    from neuface_ns.configs.facescape import cpu_default, paper, relightable

    def fields(config, prefix=""):
        out = {}
        for f in dataclasses.fields(config):
            value = getattr(config, f.name)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                out.update(fields(value, f"{prefix}{f.name}."))
            else:
                out[f"{prefix}{f.name}"] = value
        return out

    for config, steps, milestones in ((cpu_default(), 3000, (1950, 2625)), (relightable(), 2000, (1300, 1750))):
        assert config.max_num_iterations == steps
        for group in config.optimizers.values():
            assert (group["scheduler"].max_steps, tuple(group["scheduler"].milestones)) == (steps, milestones)
    default, relight = fields(cpu_default()), fields(relightable())
    differing = {k: (default[k], relight[k]) for k in default if default[k] != relight[k]}
    assert differing.pop("max_num_iterations") == (3000, 2000)
    default_groups, relight_groups = differing.pop("optimizers")  # the same optimisers; only the schedules differ
    assert {g: o["optimizer"] for g, o in default_groups.items()} == {g: o["optimizer"] for g, o in relight_groups.items()}
    assert differing == {
        "method_name": ("neuface-facescape", "neuface-facescape-relight"),
        "pipeline.model.image_encoding": ("linear", "auto"),
        "pipeline.model.calibration_form": ("matrix", "white_balance"),
        "pipeline.model.light_first_steps": (0, 500),
        "pipeline.model.sdf_field.appearance.initial_roughness": (None, 0.1),
    }
    m = paper().pipeline.model
    assert (m.image_encoding, m.calibration_form, m.light_first_steps) == ("linear", "matrix", 0)
    assert getattr(m.sdf_field.appearance, "initial_roughness", None) is None  # the SIREN has no such option


def test_paper_preset_is_the_face_paper_setting():
    from nerfstudio.engine.schedulers import MultiStepSchedulerConfig

    from neuface_ns.configs.facescape import cpu_default, paper
    from neuface_ns.data.sampling import MaskBBoxPixelSamplerConfig
    from neuface_ns.fields.face_prior import FaceIDRSDFNetworkConfig

    cfg = paper()
    assert cfg.method_name == "neuface-facescape-paper" and cfg.epochs == 3000
    m = cfg.pipeline.model
    assert m.render_mode == "volume" and m.num_samples == 32 and m.near_surface_half_width == 0.005
    assert (m.trace_iterations, m.trace_threshold, m.dense_steps, m.secant_steps) == (10, 5e-4, 100, 8)
    assert (m.beta_init, m.beta_min) == (0.01, 1e-4)
    f = m.sdf_field
    assert isinstance(f.sdf_network, FaceIDRSDFNetworkConfig) and f.sdf_network.param_group == "prior"
    assert (f.sdf_network.hidden_dim, f.sdf_network.num_layers, f.sdf_network.skip_layers) == (512, 8, (4,))
    assert f.residual is not None and tuple(f.residual.hidden_dims) == (256, 256, 256, 128) and f.residual.num_frequencies == 6
    assert (f.appearance.hidden_dim, f.appearance.num_layers, f.appearance.num_basis, f.appearance.specular_channels) == (256, 8, 3, 1)
    assert (f.integrated_basis.hidden_dim, f.integrated_basis.num_layers, f.integrated_basis.num_basis) == (256, 8, 3)
    weights = (m.color_loss_mult, m.eikonal_loss_mult, m.white_light_loss_mult, m.specular_energy_loss_mult,
               m.residual_loss_mult, m.latent_loss_mult)
    assert weights == (1.0, 0.1, 0.005, 0.008, 0.001, 1000.0)
    dm = cfg.pipeline.datamanager
    assert dm.train_num_rays_per_batch == 2048 and dm.dataparser.downscale_factor == 4
    assert isinstance(dm.pixel_sampler, MaskBBoxPixelSamplerConfig)
    assert dm.pixel_sampler.dilation == 30 and dm.pixel_sampler.one_image_per_step
    opt = cfg.optimizers
    assert opt["fields"]["optimizer"].lr == 1e-4 and opt["prior"]["optimizer"].lr == 1e-6
    assert opt["light"]["optimizer"].lr == 1e-4 and opt["calibration"]["optimizer"].lr == 1e-4
    for group in opt.values():
        sched = group["scheduler"]
        assert isinstance(sched, MultiStepSchedulerConfig) and sched.gamma == 0.5
        assert tuple(sched.milestones) == (375, 750, 1125, 1500, 1875, 2250) and sched.max_steps == 3000
    small = cpu_default()
    assert small.method_name == "neuface-facescape" and small.pipeline.model.render_mode == "volume"
    assert small.pipeline.model.sdf_field.residual is not None
    assert small.pipeline.model.sdf_field.appearance.num_basis == 3
    assert small.pipeline.model.sdf_field.appearance.specular_channels == 1
    assert small.pipeline.datamanager.dataparser.data == SAMPLE
    # the CPU default's documented departures from the paper (docs/performance-log.md)
    from neuface_ns.fields.appearance import TriplaneAppearanceConfig

    assert isinstance(small.pipeline.model.sdf_field.appearance, TriplaneAppearanceConfig)
    assert small.pipeline.model.near_surface_half_width == 0.01
    assert small.pipeline.model.albedo_smoothness_loss_mult == 0.1
    assert small.pipeline.datamanager.pixel_sampler.foreground_fraction == 0.5
    assert small.pipeline.datamanager.train_num_rays_per_batch == 1024  # paper 2048 from one image
    assert tuple(small.pipeline.model.sdf_field.residual.hidden_dims) == (64, 64, 32)  # paper (256, 256, 256, 128)
    assert m.albedo_smoothness_loss_mult == 0.0 and cfg.pipeline.datamanager.pixel_sampler.foreground_fraction == 0.0


def test_pretrained_prior_gets_its_own_groups_and_latent_loss():
    """An ImFace-like prior (latents + own weights) drops in: groups 'prior' (lr/100) and 'prior_latents'."""
    from dataclasses import dataclass, field
    from typing import Type

    from nerfstudio.data.scene_box import SceneBox
    from nerfstudio.engine.optimizers import Optimizers
    from torch import nn

    from neuface_ns.configs.facescape import paper
    from neuface_ns.fields.face_prior import LatentFacePrior, LatentFacePriorConfig

    class ToyPrior(LatentFacePrior):
        def build_network(self):
            return nn.Linear(3 + 8, 1)

        def decode(self, x, z_id, z_exp):
            z = torch.cat([z_id[:4], z_exp[:4]]).expand(x.shape[0], -1)
            return x.norm(dim=-1, keepdim=True) - 0.5 + 0.01 * self.decoder(torch.cat([x, z], dim=-1))

    @dataclass
    class ToyPriorConfig(LatentFacePriorConfig):
        _target: Type = field(default_factory=lambda: ToyPrior)

    cfg = paper()
    model_cfg = cfg.pipeline.model
    model_cfg.sdf_field.sdf_network = ToyPriorConfig(latent_init_std=0.1)
    model_cfg.sdf_field.residual.hidden_dims = (8,)
    model_cfg.sdf_field.appearance.hidden_dim = 8
    model_cfg.sdf_field.integrated_basis.hidden_dim = 8
    model = model_cfg.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=2)
    groups = model.get_param_groups()
    prior = model.field.sdf_network
    assert {id(p) for p in groups["prior"]} == {id(p) for p in prior.decoder.parameters()}
    assert {id(p) for p in groups["prior_latents"]} == {id(prior.z_id), id(prior.z_exp)}
    assert not {id(p) for p in groups["fields"]} & {id(p) for p in prior.parameters()}
    optimizers = Optimizers(cfg.optimizers, groups)
    assert optimizers.optimizers["prior"].param_groups[0]["lr"] == 1e-6
    assert optimizers.optimizers["fields"].param_groups[0]["lr"] == 1e-4
    # the latent loss sees the latents
    from nerfstudio.cameras.rays import RayBundle

    rays = RayBundle(origins=torch.tensor([[0.0, 0.0, 3.0]] * 4), directions=torch.tensor([[0.0, 0.0, -1.0]] * 4),
                     pixel_area=torch.ones(4, 1), camera_indices=torch.zeros(4, 1, dtype=torch.long))
    model.train()
    outputs = model(rays)
    batch = {"image": torch.zeros(4, 3), "fg_mask": torch.ones(4, 1)}
    losses = model.get_loss_dict(outputs, batch, model.get_metrics_dict(outputs, batch))
    expected = 1000.0 * (prior.z_id.pow(2).mean() + prior.z_exp.pow(2).mean())
    assert float(losses["latent_loss"]) == pytest.approx(float(expected), rel=1e-5)
