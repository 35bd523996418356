"""Tests for the IDR-layout DTU dataparser and NeuFaceDataset.

Every test builds its own tiny scan from KNOWN cameras (K, R, centre, scale_mat written with numpy), so the
expected values are independent of the code under test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.model_components.ray_generators import RayGenerator

from neuface_ns.data.dataset import NeuFaceDataset
from neuface_ns.data.dtu import NeuFaceDTUDataParserConfig
from neuface_ns.errors import NeuFaceInputError

from helpers import rotation

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "neuface_ns" / "data" / "sample" / "dtu"

# ---------------------------------------------------------------------------------------------------------------
# fixture: an IDR scan from known cameras
# ---------------------------------------------------------------------------------------------------------------

K_TRUE = np.array([[40.3, 0.0, 15.3], [0.0, 41.7, 12.1], [0.0, 0.0, 1.0]])
MASK_LEVELS = np.array([0, 100, 127, 128, 200, 255], dtype=np.uint8)


def _look_at(centre, target=np.zeros(3), up=np.array([0.0, 0.0, 1.0])):
    """OpenCV world->camera rotation (rows: x right, y down, z forward) of a camera at centre looking at target."""
    f = target - centre
    f = f / np.linalg.norm(f)
    r = np.cross(f, up)
    r = r / np.linalg.norm(r)
    d = np.cross(f, r)
    return np.stack([r, d, f])


def make_scan(root: Path, n_views=10, width=32, height=24, seed=0, rgba_view=None, rgb_mask_views=(1, 4)):
    """Writes <root>/image, <root>/mask, <root>/cameras.npz; returns the ground truth."""
    rng = np.random.default_rng(seed)
    # scale_mat: X_world = S @ x_norm, a similarity with a rotation, scale 2.5 and a translation
    S = np.eye(4)
    S[:3, :3] = 2.5 * rotation([0.3, -0.2, 1.0], 0.7)
    S[:3, 3] = [0.3, -0.7, 1.1]
    S_inv = np.linalg.inv(S)
    Rs, Cs, images, masks = [], [], [], []
    (root / "image").mkdir(parents=True)
    (root / "mask").mkdir(parents=True)
    cams = {}
    for i in range(n_views):
        az, el = 2 * math.pi * i / n_views, 0.3 + 0.05 * i
        C = 3.0 * np.array([math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el)])
        R = rotation(rng.normal(size=3), 0.05) @ _look_at(C)  # small random roll/tilt
        Rs.append(R)
        Cs.append(C)
        P_norm = K_TRUE @ np.concatenate([R, (-R @ C)[:, None]], axis=1)
        world_mat = np.eye(4)
        lam = {2: 2.0, 5: -1.5}.get(i, 1.0)  # P is only defined up to scale (even a negative one)
        world_mat[:3, :4] = lam * (P_norm @ S_inv)
        cams[f"world_mat_{i}"] = world_mat
        cams[f"scale_mat_{i}"] = S.copy()
        img = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        name = f"{i:03d}.png"
        if i == rgba_view:
            alpha = rng.integers(0, 256, size=(height, width, 1), dtype=np.uint8)
            Image.fromarray(np.concatenate([img, alpha], axis=2), mode="RGBA").save(root / "image" / name)
            images.append(img / 255.0 * (alpha / 255.0))  # composited onto black
        else:
            Image.fromarray(img).save(root / "image" / name)
            images.append(img / 255.0)
        m = MASK_LEVELS[rng.integers(0, len(MASK_LEVELS), size=(height, width))]
        if i in rgb_mask_views:  # several channels: only the first one counts
            Image.fromarray(np.stack([m, 255 - m, 255 - m], axis=2)).save(root / "mask" / name)
        else:
            Image.fromarray(m).save(root / "mask" / name)
        masks.append(m)
    np.savez(root / "cameras.npz", **cams)
    return {"K": K_TRUE, "R": np.array(Rs), "C": np.array(Cs), "S": S, "images": images, "masks": masks,
            "width": width, "height": height, "n": n_views}


def parse(data, split="train", **kwargs):
    config = NeuFaceDTUDataParserConfig(data=data, **kwargs)
    return config.setup().get_dataparser_outputs(split=split)


def point_ray_distance(point, origin, direction):
    d = direction / np.linalg.norm(direction)
    v = point - origin
    return np.linalg.norm(v - np.dot(v, d) * d), np.dot(v, d)


@pytest.fixture
def scan(tmp_path):
    gt = make_scan(tmp_path / "scan")
    gt["root"] = tmp_path / "scan"
    return gt


# ---------------------------------------------------------------------------------------------------------------
# cameras
# ---------------------------------------------------------------------------------------------------------------


def test_decomposition_recovers_known_intrinsics_and_poses(scan):
    out = parse(scan["root"], eval_mode="all")
    cams = out.cameras
    n = scan["n"]
    assert len(cams) == n
    np.testing.assert_allclose(cams.fx.numpy().ravel(), np.full(n, K_TRUE[0, 0]), rtol=1e-6)
    np.testing.assert_allclose(cams.fy.numpy().ravel(), np.full(n, K_TRUE[1, 1]), rtol=1e-6)
    # OpenCV principal point (pixel centres at integers) -> nerfstudio's (measured from the image corner)
    np.testing.assert_allclose(cams.cx.numpy().ravel(), np.full(n, K_TRUE[0, 2] + 0.5), rtol=1e-6)
    np.testing.assert_allclose(cams.cy.numpy().ravel(), np.full(n, K_TRUE[1, 2] + 0.5), rtol=1e-6)
    assert (cams.width.ravel() == scan["width"]).all() and (cams.height.ravel() == scan["height"]).all()
    c2w = cams.camera_to_worlds.numpy().astype(np.float64)
    np.testing.assert_allclose(c2w[:, :3, 3], scan["C"], atol=1e-6 * 3.0)
    # OpenGL camera-to-world: columns x right, y up, z back = R^T with the y and z columns negated
    expected_rot = np.transpose(scan["R"], (0, 2, 1)) * np.array([1.0, -1.0, -1.0])
    np.testing.assert_allclose(c2w[:, :3, :3], expected_rot, atol=1e-6)
    assert out.cameras.camera_type.ravel().tolist() == [1] * n  # CameraType.PERSPECTIVE
    np.testing.assert_allclose(out.scene_box.aabb.numpy(), [[-1, -1, -1], [1, 1, 1]])


def test_nerfstudio_rays_pass_through_known_point(scan):
    out = parse(scan["root"], eval_mode="all")
    X = np.array([0.12, -0.21, 0.17])  # inside the unit sphere, normalised frame
    for i in (0, 3, 7):
        R, C = scan["R"][i], scan["C"][i]
        p = K_TRUE @ (R @ (X - C))
        u, v = p[0] / p[2], p[1] / p[2]  # OpenCV image point (pixel centres at integers)
        # nerfstudio's coords are (row, col) measured from the image corner (its pixel centres are at + 0.5)
        rays = out.cameras.generate_rays(camera_indices=i, coords=torch.tensor([[v + 0.5, u + 0.5]], dtype=torch.float32))
        o = rays.origins[0].numpy().astype(np.float64)
        d = rays.directions[0].numpy().astype(np.float64)
        dist, depth = point_ray_distance(X, o, d)
        assert dist < 1e-5, (i, dist)
        assert depth > 0  # the point is in front of the camera


def test_ray_generator_pixel_centre_convention(scan):
    """The datamanager's RayGenerator shoots pixel (row r, col c) through that pixel's OpenCV centre (c, r)."""
    out = parse(scan["root"], eval_mode="all")
    gen = RayGenerator(out.cameras)
    i, row, col = 4, 5, 7
    R, C = scan["R"][i], scan["C"][i]
    depth = 2.7
    X = C + depth * R.T @ np.linalg.solve(K_TRUE, np.array([col, row, 1.0]))
    rays = gen(torch.tensor([[i, row, col]]))
    dist, along = point_ray_distance(X, rays.origins[0].double().numpy(), rays.directions[0].double().numpy())
    assert dist < 1e-5 and along > 0


def test_dataparser_transform_maps_world_to_normalised(scan):
    out = parse(scan["root"])
    S = scan["S"]
    x_world = np.array([1.3, -0.4, 2.2])
    x_norm = np.linalg.solve(S, np.append(x_world, 1.0))[:3]
    T = out.dataparser_transform.numpy().astype(np.float64)
    assert T.shape == (3, 4)
    got = out.dataparser_scale * (T @ np.append(x_world, 1.0))
    np.testing.assert_allclose(got, x_norm, atol=1e-6)
    # nerfstudio's own inverse maps camera centres back to DTU world units
    poses = out.transform_poses_to_original_space(out.cameras.camera_to_worlds, camera_convention="opengl")
    centres_world = (S @ np.concatenate([scan["C"], np.ones((scan["n"], 1))], axis=1).T).T[:, :3]
    idx = [int(p.name[:3]) for p in out.image_filenames]
    np.testing.assert_allclose(poses[:, :3, 3].numpy(), centres_world[idx], atol=1e-5)
    # scale_mat travels as plain nested float lists (no numpy objects)
    sm = out.metadata["scale_mat"]
    assert isinstance(sm, list) and all(isinstance(r, list) for r in sm)
    assert all(type(v) is float for r in sm for v in r)
    np.testing.assert_allclose(np.array(sm), S, atol=1e-12)
    json.dumps(sm)
    out.save_dataparser_transform(scan["root"].parent / "out" / "dataparser_transforms.json")


# ---------------------------------------------------------------------------------------------------------------
# splits
# ---------------------------------------------------------------------------------------------------------------


def _names(out):
    return [p.name for p in out.image_filenames]


def test_eval_splits_follow_nerfstudio_convention(scan):
    root, n = scan["root"], scan["n"]
    all_names = [f"{i:03d}.png" for i in range(n)]
    # interval (default, eval_interval 8): views 0 and 8 are eval, the rest train
    assert _names(parse(root, "train")) == [all_names[i] for i in range(n) if i % 8 != 0]
    assert _names(parse(root, "val")) == [all_names[0], all_names[8]]
    assert _names(parse(root, "test", eval_interval=3)) == [all_names[i] for i in (0, 3, 6, 9)]
    # all: every view in both
    assert _names(parse(root, "train", eval_mode="all")) == all_names
    assert _names(parse(root, "val", eval_mode="all")) == all_names
    # fraction: ceil(n * f) evenly spaced training views, the remaining ones eval
    tr, ev = parse(root, "train", eval_mode="fraction"), parse(root, "val", eval_mode="fraction")
    assert len(tr.image_filenames) == 9 and len(ev.image_filenames) == 1
    assert sorted(_names(tr) + _names(ev)) == all_names
    tr = parse(root, "train", eval_mode="fraction", train_split_fraction=0.5)
    assert len(tr.image_filenames) == 5 and _names(tr)[0] == all_names[0] and _names(tr)[-1] == all_names[-1]
    # the cameras and masks follow the split
    ev = parse(root, "val")
    np.testing.assert_allclose(ev.cameras.camera_to_worlds[:, :3, 3].numpy(), scan["C"][[0, 8]], atol=1e-5)
    assert [p.name for p in ev.metadata["fg_mask_filenames"]] == [all_names[0], all_names[8]]
    assert "mask_filenames" not in ev.metadata and ev.mask_filenames is None


def test_auto_split_takes_held_out_views_from_scene_json(scan):
    """The realistic-scene generator lists its clean held-out views in scene.json; 'auto' (the default) holds out
    exactly those, 'interval' ignores them, and a bad list stops with one line naming the file."""
    root, n = scan["root"], scan["n"]
    all_names = [f"{i:03d}.png" for i in range(n)]
    (root / "scene.json").write_text(json.dumps({"held_out_views": [1, 6]}))
    try:
        assert _names(parse(root, "val")) == [all_names[1], all_names[6]]
        assert _names(parse(root, "train")) == [all_names[i] for i in range(n) if i not in (1, 6)]
        assert _names(parse(root, "val", eval_mode="interval")) == [all_names[0], all_names[8]]
        (root / "scene.json").write_text(json.dumps({"held_out_views": [1, n]}))
        with pytest.raises(NeuFaceInputError, match="scene.json"):
            parse(root, "val")
    finally:
        (root / "scene.json").unlink()


def test_filename_eval_mode_requires_train_eval_names(scan):
    with pytest.raises(NeuFaceInputError) as err:
        parse(scan["root"], eval_mode="filename")
    assert "image" in str(err.value)


# ---------------------------------------------------------------------------------------------------------------
# downscaling and the dataset
# ---------------------------------------------------------------------------------------------------------------


def test_downscale_halves_size_intrinsics_and_box_averages(tmp_path):
    gt = make_scan(tmp_path / "odd", n_views=4, width=33, height=25)  # odd sizes: last row/col cropped
    out = parse(tmp_path / "odd", eval_mode="all", downscale_factor=2)
    cams = out.cameras
    assert (cams.width.ravel() == 16).all() and (cams.height.ravel() == 12).all()
    np.testing.assert_allclose(cams.fx.numpy().ravel(), K_TRUE[0, 0] / 2, rtol=1e-6)
    np.testing.assert_allclose(cams.fy.numpy().ravel(), K_TRUE[1, 1] / 2, rtol=1e-6)
    np.testing.assert_allclose(cams.cx.numpy().ravel(), (K_TRUE[0, 2] + 0.5) / 2, rtol=1e-6)
    np.testing.assert_allclose(cams.cy.numpy().ravel(), (K_TRUE[1, 2] + 0.5) / 2, rtol=1e-6)
    assert out.metadata["downscale_factor"] == 2
    # the downscaled camera still sees a known point where the full camera does: at half the corner-based coordinate
    X = np.array([-0.1, 0.2, 0.05])
    R, C = gt["R"][1], gt["C"][1]
    p = K_TRUE @ (R @ (X - C))
    u, v = (p[0] / p[2] + 0.5) / 2, (p[1] / p[2] + 0.5) / 2
    rays = cams.generate_rays(camera_indices=1, coords=torch.tensor([[v, u]], dtype=torch.float32))
    assert point_ray_distance(X, rays.origins[0].double().numpy(), rays.directions[0].double().numpy())[0] < 1e-5

    ds = NeuFaceDataset(out)
    for i in (0, 3):
        item = ds[i]
        img = item["image"]
        assert img.dtype == torch.float32 and tuple(img.shape) == (12, 16, 3)
        full = gt["images"][i][:24, :32]
        expected = (full[0::2, 0::2] + full[1::2, 0::2] + full[0::2, 1::2] + full[1::2, 1::2]) / 4
        np.testing.assert_allclose(img.numpy(), expected, atol=1e-6)
        m = gt["masks"][i][:24, :32].astype(np.float64) / 255
        mean = (m[0::2, 0::2] + m[1::2, 0::2] + m[0::2, 1::2] + m[1::2, 1::2]) / 4
        assert tuple(item["fg_mask"].shape) == (12, 16, 1)
        np.testing.assert_array_equal(item["fg_mask"][..., 0].numpy(), (mean > 0.5).astype(np.float32))
    u8 = ds.get_numpy_image(0)
    assert u8.dtype == np.uint8 and u8.shape == (12, 16, 3)


def test_dataset_fg_mask_and_image(tmp_path):
    gt = make_scan(tmp_path / "s", n_views=6, rgba_view=2, rgb_mask_views=(1, 4))
    out = parse(tmp_path / "s", eval_mode="all")
    ds = NeuFaceDataset(out)
    assert len(ds) == 6
    for i in range(6):
        item = ds[i]
        assert item["image_idx"] == i
        assert tuple(item["image"].shape) == (24, 32, 3)
        np.testing.assert_allclose(item["image"].numpy(), gt["images"][i], atol=1e-6)  # RGBA view: on black
        fg = item["fg_mask"]
        assert tuple(fg.shape) == (24, 32, 1) and fg.dtype == torch.float32
        np.testing.assert_array_equal(fg[..., 0].numpy(), (gt["masks"][i] > 127.5).astype(np.float32))


def test_vanilla_datamanager_uses_neuface_dataset_and_carries_fg_mask(scan):
    config = VanillaDataManagerConfig(
        _target=VanillaDataManager[NeuFaceDataset],
        dataparser=NeuFaceDTUDataParserConfig(data=scan["root"]),
        train_num_rays_per_batch=256,
    )
    dm = config.setup(device="cpu")
    assert type(dm.train_dataset) is NeuFaceDataset and type(dm.eval_dataset) is NeuFaceDataset
    ray_bundle, batch = dm.next_train(0)
    assert tuple(batch["fg_mask"].shape) == (256, 1) and tuple(batch["image"].shape) == (256, 3)
    names = _names(dm.train_dataparser_outputs)
    for (c, y, x), fg, rgb in zip(batch["indices"].tolist(), batch["fg_mask"], batch["image"]):
        view = int(names[c][:3])
        assert fg.item() == float(scan["masks"][view][y, x] > 127.5)
        np.testing.assert_allclose(rgb.numpy(), scan["images"][view][y, x], atol=1e-6)
    assert ray_bundle.origins.shape == (256, 3)
    camera, full = dm.next_eval_image(0)  # full-image eval batch
    assert tuple(full["fg_mask"].shape) == (24, 32, 1) and tuple(full["image"].shape) == (24, 32, 3)
    view = int(_names(dm.eval_dataset._dataparser_outputs)[full["image_idx"]][:3])
    np.testing.assert_array_equal(full["fg_mask"][..., 0].numpy(), (scan["masks"][view] > 127.5).astype(np.float32))


# ---------------------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------------------


def _raises(data, needle, **kwargs):
    with pytest.raises(NeuFaceInputError) as err:
        parse(data, **kwargs)
    msg = str(err.value)
    assert isinstance(err.value, SystemExit)
    assert "\n" not in msg
    assert str(needle) in msg, msg
    return msg


def test_missing_data_dir(tmp_path):
    _raises(tmp_path / "nope", tmp_path / "nope")


def test_missing_cameras_npz(scan):
    (scan["root"] / "cameras.npz").unlink()
    _raises(scan["root"], scan["root"] / "cameras.npz")


def test_unreadable_cameras_npz(scan):
    (scan["root"] / "cameras.npz").write_bytes(b"this is not a zip archive")
    _raises(scan["root"], scan["root"] / "cameras.npz")


@pytest.mark.parametrize("key", ["world_mat_3", "scale_mat_3"])
def test_missing_matrix_for_an_image(scan, key):
    npz = scan["root"] / "cameras.npz"
    cams = dict(np.load(npz))
    del cams[key]
    np.savez(npz, **cams)
    msg = _raises(scan["root"], npz)
    assert key in msg and "003.png" in msg


def test_scale_mat_differs_between_views(scan):
    npz = scan["root"] / "cameras.npz"
    cams = dict(np.load(npz))
    cams["scale_mat_6"] = cams["scale_mat_6"] * np.diag([1.1, 1.1, 1.1, 1.0])
    np.savez(npz, **cams)
    assert "scale_mat_6" in _raises(scan["root"], npz)


def test_missing_mask_for_an_image(scan):
    (scan["root"] / "mask" / "005.png").unlink()
    msg = _raises(scan["root"], scan["root"] / "mask" / "005.png")
    assert "image" in msg and "005.png" in msg


def test_no_images(scan):
    for p in (scan["root"] / "image").iterdir():
        p.unlink()
    _raises(scan["root"], scan["root"] / "image")


def test_image_size_differs_from_its_mask(scan):
    Image.fromarray(np.zeros((20, 32), np.uint8)).save(scan["root"] / "mask" / "004.png")
    _raises(scan["root"], scan["root"] / "mask" / "004.png")


def test_image_size_differs_from_other_images(scan):
    Image.fromarray(np.zeros((24, 30, 3), np.uint8)).save(scan["root"] / "image" / "007.png")
    Image.fromarray(np.zeros((24, 30), np.uint8)).save(scan["root"] / "mask" / "007.png")
    _raises(scan["root"], scan["root"] / "image" / "007.png")


def test_corrupt_image_at_parse_time(scan):
    (scan["root"] / "image" / "002.png").write_bytes(b"\x00garbage, not a png")
    _raises(scan["root"], scan["root"] / "image" / "002.png")


def test_corrupt_mask_at_parse_time(scan):
    (scan["root"] / "mask" / "006.png").write_bytes(b"")
    _raises(scan["root"], scan["root"] / "mask" / "006.png")


def test_truncated_image_and_mask_at_load_time(scan):
    for sub, name in (("image", "001.png"), ("mask", "009.png")):
        path = scan["root"] / sub / name
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # header intact, pixel data cut
    ds = NeuFaceDataset(parse(scan["root"], eval_mode="all"))
    for idx, bad in ((1, scan["root"] / "image" / "001.png"), (9, scan["root"] / "mask" / "009.png")):
        with pytest.raises(NeuFaceInputError) as err:
            ds[idx]
        assert str(bad) in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------------------------
# NeuS's layout: cameras_sphere.npz, views matched to cameras by the number in the file name, .jpg
# ---------------------------------------------------------------------------------------------------------------


def _to_neus(root: Path) -> Path:
    """IDR scan -> NeuS layout: the same world_mat_i / scale_mat_i saved as cameras_sphere.npz."""
    (root / "cameras.npz").rename(root / "cameras_sphere.npz")
    return root / "cameras_sphere.npz"


def _centres_by_name(out):
    return {p.name: c for p, c in zip(out.image_filenames, out.cameras.camera_to_worlds[:, :3, 3].double().numpy())}


def test_neus_cameras_sphere_npz_is_found_and_named(scan, capsys):
    npz = _to_neus(scan["root"])
    out = parse(scan["root"], eval_mode="all")
    assert f"camerasfrom{npz}" in "".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert out.metadata["cameras_file"] == str(npz)
    np.testing.assert_allclose(out.cameras.camera_to_worlds[:, :3, 3].numpy(), scan["C"], atol=1e-5)
    # cameras.npz wins when both are there; cameras_file picks any file (relative to data, or absolute)
    other = dict(np.load(npz))
    other["world_mat_0"] = other["world_mat_1"]
    np.savez(scan["root"] / "cameras.npz", **other)
    assert parse(scan["root"], eval_mode="all").metadata["cameras_file"] == str(scan["root"] / "cameras.npz")
    for given in (Path("cameras_sphere.npz"), npz):
        out = parse(scan["root"], eval_mode="all", cameras_file=given)
        assert out.metadata["cameras_file"] == str(npz)
        np.testing.assert_allclose(out.cameras.camera_to_worlds[0, :3, 3].numpy(), scan["C"][0], atol=1e-5)
    msg = _raises(scan["root"], scan["root"] / "cams_typo.npz", cameras_file=Path("cams_typo.npz"))
    assert "cameras_file" in msg


def test_neither_camera_file(scan):
    (scan["root"] / "cameras.npz").unlink()
    msg = _raises(scan["root"], scan["root"] / "cameras.npz")
    assert "cameras_sphere.npz" in msg


def test_removed_image_keeps_every_other_camera(scan, capsys):
    """A sparse-view run deletes images (here 002 and 005, with 005's mask kept): image 006.png still gets
    world_mat_6, not world_mat_5."""
    _to_neus(scan["root"])
    for name in ("002.png", "005.png"):
        (scan["root"] / "image" / name).unlink()
    (scan["root"] / "mask" / "002.png").unlink()
    out = parse(scan["root"], eval_mode="all")
    kept = [i for i in range(scan["n"]) if i not in (2, 5)]
    assert _names(out) == [f"{i:03d}.png" for i in kept]
    assert out.metadata["view_ids"] == kept
    assert [p.name for p in out.metadata["fg_mask_filenames"]] == [f"{i:03d}.png" for i in kept]
    np.testing.assert_allclose(out.cameras.camera_to_worlds[:, :3, 3].numpy(), scan["C"][kept], atol=1e-5)
    printed = " ".join(capsys.readouterr().out.split())
    assert "8 images, 10 cameras" in printed and "number in each image's name" in printed
    # held_out_views of scene.json are view ids too
    (scan["root"] / "scene.json").write_text(json.dumps({"held_out_views": [6, 9]}))
    assert _names(parse(scan["root"], "val")) == ["006.png", "009.png"]
    (scan["root"] / "scene.json").write_text(json.dumps({"held_out_views": [5]}))  # its image was removed
    _raises(scan["root"], scan["root"] / "scene.json", split="val")


def test_numbers_not_zero_padded_and_jpg(tmp_path):
    """Names are numbers, not positions: 2.jpg, 10.png, ... sort numerically; .jpg images and masks are read."""
    gt = make_scan(tmp_path / "s", n_views=12)
    root = tmp_path / "s"
    _to_neus(root)
    for i in range(12):
        for sub in ("image", "mask"):
            src = root / sub / f"{i:03d}.png"
            if i % 3 == 0:  # some as JPEG (lossy: compare against the decoded file)
                Image.open(src).convert("RGB" if sub == "image" else "L").save(root / sub / f"{i}.jpg", quality=95)
                src.unlink()
            else:
                src.rename(root / sub / f"{i}.png")
    (root / "image" / "7.png").unlink()
    out = parse(root, eval_mode="all")
    kept = [i for i in range(12) if i != 7]
    assert [int(p.stem) for p in out.image_filenames] == kept
    assert [p.suffix for p in out.image_filenames] == [".jpg" if i % 3 == 0 else ".png" for i in kept]
    np.testing.assert_allclose(out.cameras.camera_to_worlds[:, :3, 3].numpy(), gt["C"][kept], atol=1e-5)
    ds = NeuFaceDataset(out)
    k = kept.index(9)
    item = ds[k]
    decoded = np.asarray(Image.open(root / "image" / "9.jpg")).astype(np.float64) / 255
    np.testing.assert_allclose(item["image"].numpy(), decoded, atol=1e-6)
    mask = np.asarray(Image.open(root / "mask" / "9.jpg")).astype(np.float64)
    np.testing.assert_array_equal(item["fg_mask"][..., 0].numpy(), (mask > 127.5).astype(np.float32))


def test_camera_missing_for_a_numbered_image(scan):
    npz = _to_neus(scan["root"])
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(scan["root"] / "image" / "012.png")
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(scan["root"] / "mask" / "012.png")
    msg = _raises(scan["root"], npz)
    assert "'world_mat_12'" in msg and "012.png" in msg


def test_two_images_with_the_same_number(scan):
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(scan["root"] / "image" / "3.jpg")
    msg = _raises(scan["root"], "3.jpg")
    assert "003.png" in msg


def test_names_that_are_not_numbers_keep_idr_order(tmp_path):
    """Not all names numbers: view i is the i-th image by name (IDR's rule), its mask the file of the same name."""
    gt = make_scan(tmp_path / "s", n_views=4)
    root = tmp_path / "s"
    names = ["a_left", "b_front", "c_right", "d_top"]
    for i, name in enumerate(names):
        (root / "image" / f"{i:03d}.png").rename(root / "image" / f"{name}.png")
        (root / "mask" / f"{i:03d}.png").rename(root / "mask" / f"{name}.png")
    out = parse(root, eval_mode="all")
    assert [p.stem for p in out.image_filenames] == names
    assert [p.stem for p in out.metadata["fg_mask_filenames"]] == names
    np.testing.assert_allclose(out.cameras.camera_to_worlds[:, :3, 3].numpy(), gt["C"], atol=1e-5)
    (root / "mask" / "c_right.png").unlink()
    with pytest.raises(NeuFaceInputError) as err:
        parse(root)
    assert "c_right" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------------------------
# defaults (registration: test_registration.py)
# ---------------------------------------------------------------------------------------------------------------


def test_default_data_is_bundled_sample():
    assert NeuFaceDTUDataParserConfig().data == SAMPLE


# ---------------------------------------------------------------------------------------------------------------
# the bundled sample scan (written by scripts/make_sample_scene.py, an independent numpy reference)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not (SAMPLE / "scene.json").is_file(), reason="bundled sample scan not generated")
def test_bundled_sample_matches_scene_json():
    scene = json.loads((SAMPLE / "scene.json").read_text())
    views = scene["views"]
    out = parse(SAMPLE, eval_mode="all")
    cams = out.cameras
    assert len(cams) == scene["num_views"] == len(views)
    assert [p.name for p in out.image_filenames] == [Path(v["image"]).name for v in views]
    assert (cams.width.ravel() == scene["width"]).all() and (cams.height.ravel() == scene["height"]).all()
    K = np.array([v["K"] for v in views])
    np.testing.assert_allclose(cams.fx.numpy().ravel(), K[:, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(cams.fy.numpy().ravel(), K[:, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(cams.cx.numpy().ravel(), K[:, 0, 2] + 0.5, rtol=1e-6)  # OpenCV K -> corner-based
    np.testing.assert_allclose(cams.cy.numpy().ravel(), K[:, 1, 2] + 0.5, rtol=1e-6)
    c2w = cams.camera_to_worlds.numpy().astype(np.float64)
    centres = np.array([v["camera_centre_normalised"] for v in views])
    np.testing.assert_allclose(c2w[:, :3, 3], centres, atol=1e-5)
    # scale_mat has no rotation here, so the rotation is the same in the world and normalised frames
    R = np.array([v["R"] for v in views])
    np.testing.assert_allclose(c2w[:, :3, :3], np.transpose(R, (0, 2, 1)) * np.array([1.0, -1.0, -1.0]), atol=1e-5)
    # world -> normalised through the dataparser transform
    np.testing.assert_allclose(np.array(out.metadata["scale_mat"]), np.array(scene["scale_mat"]), rtol=1e-12)
    T = out.dataparser_transform.numpy().astype(np.float64)
    for v in views[:3]:
        got = out.dataparser_scale * (T @ np.append(v["camera_centre_world"], 1.0))
        np.testing.assert_allclose(got, v["camera_centre_normalised"], atol=1e-5)
    # landmark pixels (OpenCV image points: pixel centres at integers) are hit by nerfstudio's rays through
    # the corner-based coordinate (u + 0.5, v + 0.5)
    checked = 0
    for i in (0, len(views) // 2, len(views) - 1):
        for name, lm in views[i]["landmarks"].items():
            if not lm["visible"]:
                continue
            u, v = lm["pixel"]
            rays = cams.generate_rays(camera_indices=i, coords=torch.tensor([[v + 0.5, u + 0.5]], dtype=torch.float32))
            X = np.array(scene["landmarks"][name]["normalised"])
            dist, depth = point_ray_distance(X, rays.origins[0].double().numpy(), rays.directions[0].double().numpy())
            assert dist < 1e-5 and depth > 0, (i, name, dist)
            checked += 1
    assert checked > 0
    # foreground mask of the frontal view
    ds = NeuFaceDataset(out)
    item = ds[0]
    assert tuple(item["fg_mask"].shape) == (scene["height"], scene["width"], 1)
    assert item["fg_mask"].mean().item() == pytest.approx(views[0]["mask_fraction"], abs=1e-9)


def test_paper_preset_trains_and_evaluates_on_every_view():
    """NeuFace's DTU setting (common_object/training) uses all views and reports training-view metrics; the CPU
    default keeps a held-out split."""
    from neuface_ns.configs import dtu

    paper = dtu.paper().pipeline.datamanager.dataparser.setup()
    default = dtu.cpu_default().pipeline.datamanager.dataparser.setup()
    views = len(list((Path(paper.config.data) / "image").glob("*.png")))
    assert len(paper.get_dataparser_outputs("train").image_filenames) == views
    assert len(paper.get_dataparser_outputs("test").image_filenames) == views
    assert len(default.get_dataparser_outputs("train").image_filenames) < views
