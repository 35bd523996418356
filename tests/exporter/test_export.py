"""Mesh export (neuface-export), nerfstudio's exporter hooks, and neuface-eval-mesh (neuface_ns/tools/eval_mesh.py).

Geometry is checked against analytic SDFs; units against the bundled sample's known landmarks
(scene.json, written by the sample generator); colours against a model whose albedo is a constant.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import numpy as np
import pytest
import torch

from neuface_ns.errors import NeuFaceInputError
from neuface_ns.exporter import (
    extract_mesh,
    grid_shape,
    normalised_to_world,
    sdf_grid,
    world_to_normalised,
)
from neuface_ns.exporter.cli import ExportMesh
from neuface_ns.tools import eval_mesh

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "neuface_ns" / "data" / "sample" / "dtu"
EVAL_MESH_WRAPPER = REPO / "scripts" / "eval_mesh.py"  # the old command, a wrapper of the module


def sphere_sdf(center, radius):
    c = torch.tensor(center, dtype=torch.float32)
    return lambda x: (x - c.to(x.device)).norm(dim=-1, keepdim=True) - radius


def sphere_points(center, radius, n, seed=0):
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    return np.asarray(center) + radius * d / np.linalg.norm(d, axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------------- geometry


def test_sphere_mesh_chamfer_below_one_percent_of_radius():
    center, radius = (0.1, -0.05, 0.02), 0.6
    mesh = extract_mesh(sphere_sdf(center, radius), resolution=64)
    pred = eval_mesh.sample_surface(mesh.vertices, mesh.faces, 200_000, np.random.default_rng(0))
    accuracy = np.abs(np.linalg.norm(pred - np.asarray(center), axis=1) - radius).mean()  # exact distance to the sphere
    completeness = eval_mesh.point_metrics(pred, sphere_points(center, radius, 5000))["completeness"]
    assert 0.5 * (accuracy + completeness) < 0.01 * radius
    # outward orientation (SDF > 0 outside): face normals point away from the centre
    outward = ((mesh.triangles_center - np.asarray(center)) * mesh.face_normals).sum(-1)
    assert (outward > 0).mean() > 0.99
    assert mesh.is_watertight


@pytest.mark.parametrize("resolution", [37, 130])
def test_non_multiple_resolutions_and_exact_values_near_the_surface(resolution):
    center, radius = (0.0, 0.1, -0.05), 0.5
    fn = sphere_sdf(center, radius)
    values, lo, voxel = sdf_grid(fn, resolution)
    cells, n = grid_shape(resolution)
    assert values.shape == (n, n, n) and n >= resolution and (n - 1) % 4 == 0
    axes = [lo[i] + voxel[i] * np.arange(n) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    exact = fn(torch.as_tensor(grid, dtype=torch.float32)).numpy().reshape(n, n, n)
    near = np.abs(exact) < float(np.linalg.norm(voxel)) * 4  # every cell that can hold the surface
    np.testing.assert_allclose(values[near], exact[near], atol=1e-5)
    assert np.array_equal(np.sign(values), np.sign(exact))  # no false crossings far away
    mesh = extract_mesh(fn, resolution)
    err = np.abs(np.linalg.norm(mesh.vertices - np.asarray(center), axis=1) - radius)
    assert err.max() < 0.5 * float(voxel.max())


def test_keep_largest_component():
    big, small = sphere_sdf((-0.4, 0, 0), 0.35), sphere_sdf((0.6, 0, 0), 0.15)
    union = lambda x: torch.minimum(big(x), small(x))  # noqa: E731
    both = extract_mesh(union, 48, keep_largest_component=False)
    kept = extract_mesh(union, 48, keep_largest_component=True)
    assert len(kept.faces) < len(both.faces)
    assert kept.vertices[:, 0].max() < 0.1  # only the big sphere (centre x = -0.4) is left


def test_world_units_map_the_sample_landmarks_back():
    """The sample's normalised -> world mapping (scene.json, from the generator) through the
    dataparser's transform / scale, as neuface-export uses them."""
    from neuface_ns.data.dtu import NeuFaceDTUDataParserConfig

    outputs = NeuFaceDTUDataParserConfig(data=SAMPLE).setup().get_dataparser_outputs(split="train")
    transform = outputs.dataparser_transform.numpy().astype(np.float64)
    scale = float(outputs.dataparser_scale)
    scene = json.loads((SAMPLE / "scene.json").read_text())
    for landmark in scene["landmarks"].values():
        world = normalised_to_world(np.asarray([landmark["normalised"]]), transform, scale)[0]
        np.testing.assert_allclose(world, landmark["world"], atol=1e-6 * scene["scale"])
        back = world_to_normalised(world[None], transform, scale)[0]
        np.testing.assert_allclose(back, landmark["normalised"], atol=1e-9)
    # a small sphere meshed in a box around the nose tip lands on the world nose tip, radius x scale
    nose = np.asarray(scene["landmarks"]["nose_tip"]["normalised"])
    mesh = extract_mesh(sphere_sdf(nose, 0.1), 33, bounds_min=tuple(nose - 0.15), bounds_max=tuple(nose + 0.15))
    world = normalised_to_world(np.asarray(mesh.vertices), transform, scale)
    radii = np.linalg.norm(world - np.asarray(scene["landmarks"]["nose_tip"]["world"]), axis=1)
    assert np.abs(radii - 0.1 * scene["scale"]).max() < 0.01 * 0.1 * scene["scale"]


# ---------------------------------------------------------------------------------------------------- model


ALBEDO = (0.2, 0.1, 0.05)
SPHERE_CENTER, SPHERE_RADIUS = (0.05, 0.0, -0.05), 0.5


@pytest.fixture
def small_model(make_model, tiny_field_config, sphere_sdf_config, painted_appearance_config):
    """Factory: a tiny NeuFace model whose SDF is an analytic sphere (the test shape prior), whose albedo is
    `albedo(x)` (default: the constant ALBEDO) and whose calibration matrix is the identity."""

    def build(render_mode="surface", albedo=None):
        constant = torch.tensor(ALBEDO)
        paint = albedo or (lambda x: constant.to(x.device).expand(x.shape[0], 3))
        field = tiny_field_config(
            sdf_network=sphere_sdf_config(center=SPHERE_CENTER, radius=SPHERE_RADIUS),
            appearance=painted_appearance_config(hidden_dim=16, num_layers=2, skip_layers=(), num_basis=3, albedo=paint),
        )
        model = make_model(render_mode, num_train_data=2, seed=0, sh_order=2, sdf_field=field, eval_num_rays_per_chunk=4096)
        with torch.no_grad():
            model.calibration.mlp[-1].weight.zero_()
            model.calibration.mlp[-1].bias.copy_(torch.eye(3).flatten())
        model.eval()
        return model

    return build


def fake_pipeline(model, transform=None, scale=1.0):
    transform = torch.eye(4)[:3] if transform is None else transform
    outputs = SimpleNamespace(dataparser_transform=transform, dataparser_scale=scale)
    return SimpleNamespace(model=model, device=model.device, datamanager=SimpleNamespace(train_dataparser_outputs=outputs))


def test_constant_albedo_model_exports_that_colour(tmp_path, small_model):
    import trimesh
    from PIL import Image

    model = small_model()
    expected = np.clip(np.asarray(ALBEDO) * math.pi, 0, 1)  # the `albedo` output is albedo x pi, calibrated (A = I)
    # world frame: x_norm = 0.5 * (R x + t) with a rotation about z
    angle = 0.3
    rotation = torch.tensor([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0], [0, 0, 1.0]])
    transform = torch.cat([rotation, torch.tensor([[0.2], [-0.1], [0.3]])], dim=1)
    exporter = ExportMesh(
        load_config=tmp_path / "config.yml", output_dir=tmp_path / "out", resolution=24,
        vertex_colors="albedo", texture="albedo", texture_size=64,
    )
    written = exporter.run(fake_pipeline(model, transform, 0.5))
    assert [p.name for p in written] == ["mesh.ply", "mesh_textured.obj", "mesh_textured.mtl", "mesh_textured.png"]

    mesh = trimesh.load(tmp_path / "out" / "mesh.ply", process=False)
    colors = np.asarray(mesh.visual.vertex_colors)[:, :3] / 255.0
    np.testing.assert_allclose(colors, np.broadcast_to(expected, colors.shape), atol=1.0 / 255 + 1e-6)
    # world units: the sphere centre maps through the inverse similarity, the radius scales by 1 / 0.5
    center_world = normalised_to_world(np.asarray([SPHERE_CENTER]), transform.numpy().astype(np.float64), 0.5)[0]
    radii = np.linalg.norm(np.asarray(mesh.vertices) - center_world, axis=1)
    assert np.abs(radii - SPHERE_RADIUS / 0.5).max() < 0.02

    texture = np.asarray(Image.open(tmp_path / "out" / "mesh_textured.png").convert("RGB")) / 255.0
    np.testing.assert_allclose(texture.reshape(-1, 3), np.broadcast_to(expected, (texture.size // 3, 3)), atol=1.0 / 255 + 1e-6)
    textured = trimesh.load(tmp_path / "out" / "mesh_textured.obj", process=False, force="mesh")
    assert len(textured.faces) == len(mesh.faces)
    assert textured.visual.uv is not None and np.all((textured.visual.uv >= 0) & (textured.visual.uv <= 1))

    # never overwrite without --overwrite (checked before loading anything)
    (tmp_path / "config.yml").write_text("not used")
    with pytest.raises(NeuFaceInputError, match="already exists"):
        ExportMesh(load_config=tmp_path / "config.yml", output_dir=tmp_path / "out").main()


def test_textured_obj_uv_layout_matches_the_model(tmp_path, small_model):
    """Texture orientation: a position-dependent albedo looked up through the OBJ's UVs (trimesh's
    reader: v up, image row 0 at the top) equals the model's albedo at the vertices."""
    import trimesh

    lo = np.asarray(SPHERE_CENTER) - SPHERE_RADIUS
    model = small_model(albedo=lambda x: 0.05 + 0.25 * (x - torch.tensor(lo, dtype=x.dtype)) / (2 * SPHERE_RADIUS))
    ExportMesh(load_config=tmp_path / "c.yml", output_dir=tmp_path, resolution=24, vertex_colors="none",
               texture="albedo", texture_size=128, world_units=False).run(fake_pipeline(model))
    textured = trimesh.load(tmp_path / "mesh_textured.obj", process=False, force="mesh")
    looked_up = trimesh.visual.uv_to_color(textured.visual.uv, textured.visual.material.image)[:, :3] / 255.0
    expected = np.clip(math.pi * (0.05 + 0.25 * (np.asarray(textured.vertices) - lo) / (2 * SPHERE_RADIUS)), 0, 1)
    assert np.median(np.abs(looked_up - expected)) < 0.02


def test_trainer_mesh_helper_writes_world_units(tmp_path, small_model):
    import trimesh

    from neuface_ns.exporter import extract_mesh_to_file

    model = small_model()
    transform = torch.cat([torch.eye(3), torch.tensor([[0.1], [0.2], [-0.3]])], dim=1)
    path = extract_mesh_to_file(fake_pipeline(model, transform, 0.25), tmp_path / "run" / "mesh.ply", resolution=20)
    mesh = trimesh.load(path, process=False)
    center_world = (np.asarray(SPHERE_CENTER) / 0.25) - np.array([0.1, 0.2, -0.3])
    radii = np.linalg.norm(np.asarray(mesh.vertices) - center_world, axis=1)
    assert np.abs(radii - SPHERE_RADIUS / 0.25).max() < 0.05 * SPHERE_RADIUS / 0.25


def test_nerfstudio_exporter_hooks_and_texturing_on_cpu(tmp_path, small_model):
    """What `ns-export marching-cubes` calls after its CUDA-only grid: the SDF hook, then
    texture_utils.export_textured_mesh (short rays with their own near / far, get_rgba_image)."""
    from nerfstudio.exporter import texture_utils
    from nerfstudio.exporter.exporter_utils import Mesh
    from PIL import Image

    model = small_model()
    assert hasattr(model.config, "sdf_field")
    points = torch.tensor([[0.05, 0.0, -0.05], [0.55, 0.0, -0.05], [0.0, 0.9, 0.0]])
    sdf = model.field.forward_geonetwork(points)[:, 0].contiguous()
    np.testing.assert_allclose(sdf.detach().numpy(), [-0.5, 0.0, np.linalg.norm([-0.05, 0.9, 0.05]) - 0.5], atol=1e-6)

    mesh = extract_mesh(lambda x: model.field.forward_geonetwork(x)[:, 0], 16)
    ns_mesh = Mesh(
        vertices=torch.as_tensor(mesh.vertices, dtype=torch.float32),
        faces=torch.as_tensor(mesh.faces, dtype=torch.long),
        normals=torch.as_tensor(np.array(mesh.vertex_normals), dtype=torch.float32),
    )
    texture_utils.export_textured_mesh(ns_mesh, fake_pipeline(model), tmp_path, px_per_uv_triangle=None,
                                       unwrap_method="xatlas", num_pixels_per_side=48)
    assert (tmp_path / "mesh.obj").is_file() and (tmp_path / "material_0.mtl").is_file()
    texture = np.asarray(Image.open(tmp_path / "material_0.png").convert("RGB"))
    # texels inside the UV charts sit on the surface: their short rays hit it (black otherwise);
    # nerfstudio also shades texels outside every chart, off the surface, which stay black
    assert (texture.max(-1) > 0).mean() > 0.5
    rgba = model.get_rgba_image({"rgb": torch.rand(4, 5, 3), "accumulation": torch.ones(4, 5, 1)}, "rgb")
    assert rgba.shape == (4, 5, 4)


# ---------------------------------------------------------------------------------------------------- eval_mesh.py


def test_eval_mesh_matches_brute_force():
    rng = np.random.default_rng(3)
    pred, gt = rng.normal(size=(50, 3)), rng.normal(size=(70, 3)) + 0.1
    threshold = 0.3
    d = np.linalg.norm(pred[:, None] - gt[None], axis=-1)
    accuracy, completeness = d.min(1).mean(), d.min(0).mean()
    precision, recall = (d.min(1) < threshold).mean(), (d.min(0) < threshold).mean()
    result = eval_mesh.point_metrics(pred, gt, threshold)
    assert result["accuracy"] == pytest.approx(accuracy)
    assert result["completeness"] == pytest.approx(completeness)
    assert result["chamfer"] == pytest.approx((accuracy + completeness) / 2)
    assert result["precision"] == pytest.approx(precision) and result["recall"] == pytest.approx(recall)
    assert result["fscore"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert (result["num_points_pred"], result["num_points_gt"]) == (50, 70)


def test_eval_mesh_cli_one_json_line_with_sphere_cut(tmp_path):
    import trimesh

    gt = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    pred = trimesh.creation.icosphere(subdivisions=3, radius=1.02)
    far = trimesh.creation.box(extents=(0.2, 0.2, 0.2))
    far.apply_translation((5.0, 0.0, 0.0))  # outside the cutting sphere: must not count
    gt.export(tmp_path / "gt.ply")
    trimesh.util.concatenate([pred, far]).export(tmp_path / "pred.ply")
    args = [sys.executable, "-m", "neuface_ns.tools.eval_mesh", "--mesh", str(tmp_path / "pred.ply"),
            "--gt", str(tmp_path / "gt.ply"), "--num-points", "5000", "--threshold", "0.05"]
    cut = subprocess.run(args + ["--sphere-center", "0", "0", "0", "--sphere-radius", "2"], capture_output=True, text=True, check=True)
    lines = cut.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert 0.015 < result["accuracy"] < 0.05 and result["fscore"] > 0.9  # radius 1.02 vs 1 (+ sampling)
    uncut = json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)
    assert uncut["accuracy"] > 0.05  # the far box counts without the cut
    old_command = [sys.executable, str(EVAL_MESH_WRAPPER)] + args[3:]
    again = json.loads(subprocess.run(old_command, capture_output=True, text=True, check=True).stdout)
    assert again == uncut  # seeded; scripts/eval_mesh.py still runs the same tool


def test_eval_mesh_usage_errors_exit_2_like_argparse(tmp_path, capsys):
    base = ["--mesh", str(tmp_path / "pred.ply"), "--gt", str(tmp_path / "gt.ply")]
    for extra, message in (
        (["--num-points", "0"], "--num-points must be positive"),
        (["--sphere-center", "0", "0", "0"], "--sphere-center needs --sphere-radius"),
        (["--sphere-radius", "1", "--scene", str(SAMPLE)], "give either --scene or --sphere-radius"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            eval_mesh.main(base + extra)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # --mesh and --gt stay required
        eval_mesh.main(["--mesh", str(tmp_path / "pred.ply")])
    assert exit_info.value.code == 2


def test_eval_mesh_scene_sphere_from_scale_mat():
    center, radius = eval_mesh.sphere_from_scene(SAMPLE)
    scene = json.loads((SAMPLE / "scene.json").read_text())
    np.testing.assert_allclose(center, scene["centre"])
    assert radius == pytest.approx(scene["scale"])


def test_observed_surface_of_a_sphere_is_the_closed_form_cap():
    """A camera at distance d from the centre of a sphere of radius r sees the cap beyond the tangent circle,
    (1 - r / d) / 2 of the area; a second camera on the far side sees the mirror cap; a camera whose image
    misses the sphere sees nothing."""
    import trimesh

    r, d, f = 1.0, 3.0, 200.0
    mesh = trimesh.creation.icosphere(subdivisions=6, radius=r)
    points = eval_mesh.sample_surface(mesh.vertices, mesh.faces, 40_000, np.random.default_rng(1))
    K = np.array([[f, 0, 200.0], [0, f, 200.0], [0, 0, 1]])

    def camera(z_sign, shift_x=0.0):  # on the z axis, looking at the origin (OpenCV axes)
        R = np.diag([1.0, -1.0, -1.0]) if z_sign > 0 else np.eye(3)
        centre = np.array([shift_x, 0.0, z_sign * d])
        return K @ np.concatenate([R, -R @ centre[:, None]], axis=1)

    seen = eval_mesh.observed(points, mesh.vertices, mesh.faces, [camera(+1)], 400, 400)
    assert abs(seen.mean() - (1 - r / d) / 2) < 0.01
    assert np.all(points[seen, 2] > r * r / d - 0.02)  # only the near cap
    both = eval_mesh.observed(points, mesh.vertices, mesh.faces, [camera(+1), camera(-1)], 400, 400)
    assert abs(both.mean() - (1 - r / d)) < 0.015
    away = eval_mesh.observed(points, mesh.vertices, mesh.faces, [camera(+1, shift_x=50.0)], 400, 400)
    assert not away.any()  # the sphere projects far outside that camera's image


def test_observed_scoring_ignores_the_back_an_sdf_closes_behind_an_open_scan(tmp_path):
    """GT: the front half of a sphere (an open scan); prediction: the whole sphere (an SDF closes its surface). Seen
    from a camera in front, only the visible cap is scored on both sides, so the closed back costs nothing; without
    the observation test it dominates the accuracy."""
    import trimesh
    from PIL import Image

    r, d, f = 1.0, 3.0, 200.0
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=r)
    front = sphere.vertices[sphere.faces][:, :, 2].min(axis=1) > 0
    open_scan = trimesh.Trimesh(sphere.vertices, sphere.faces[front], process=False)
    sphere.export(tmp_path / "pred.ply")
    open_scan.export(tmp_path / "gt.ply")
    scan = tmp_path / "scan"
    (scan / "image").mkdir(parents=True)
    Image.new("RGB", (400, 400)).save(scan / "image" / "000.png")
    K = np.array([[f, 0, 200.0], [0, f, 200.0], [0, 0, 1]])
    R, centre = np.diag([1.0, -1.0, -1.0]), np.array([0.0, 0.0, d])
    world_mat = np.eye(4)
    world_mat[:3, :4] = K @ np.concatenate([R, -R @ centre[:, None]], axis=1)
    np.savez(scan / "cameras.npz", world_mat_0=world_mat)
    plain = eval_mesh.evaluate(tmp_path / "pred.ply", tmp_path / "gt.ply", num_points=50_000)
    seen = eval_mesh.evaluate(tmp_path / "pred.ply", tmp_path / "gt.ply", num_points=50_000, observed_by=scan)
    assert plain["accuracy"] > 0.2  # the back half is up to 1.4 r from the open scan
    assert seen["accuracy"] < 0.01 and seen["completeness"] < 0.01
    assert abs(seen["observed_pred_fraction"] - (1 - r / d) / 2) < 0.01  # the visible cap of the whole sphere
    assert abs(seen["observed_fraction"] - (1 - r / d)) < 0.03  # ... which is (1 - r/d) of the front half


def _one_camera_scan(root: Path, f: float, size: int, d: float, mask: np.ndarray) -> np.ndarray:
    """An IDR scan dir with one training camera on the +z axis at distance d looking at the origin (OpenCV axes,
    principal point at the image centre) and the given mask; returns its world-to-pixel matrix."""
    from PIL import Image

    for folder in ("image", "mask"):
        (root / folder).mkdir(parents=True)
    Image.new("RGB", (size, size)).save(root / "image" / "000.png")
    Image.fromarray((mask * 255).astype(np.uint8)).save(root / "mask" / "000.png")
    c = (size - 1) / 2.0
    K = np.array([[f, 0, c], [0, f, c], [0, 0, 1]])
    R, centre = np.diag([1.0, -1.0, -1.0]), np.array([0.0, 0.0, d])
    world_mat = np.eye(4)
    world_mat[:3, :4] = K @ np.concatenate([R, -R @ centre[:, None]], axis=1)
    np.savez(root / "cameras.npz", world_mat_0=world_mat)
    return world_mat[:3, :4]


def test_seen_in_masks_keeps_the_visible_cap_and_drops_a_sheet_seen_against_the_background(tmp_path):
    """A unit sphere seen from distance d, its mask the closed-form disc it projects to (radius f r / sqrt(d^2 -
    r^2) pixels), and a large square 3 units behind it (what a volume renderer can grow behind an open scan's rim
    and paint black). Kept: the sphere's triangles on the visible cap (centroid z > r^2 / d) at least a pixel inside
    the disc (the cap's rim is foreshortened into the disc's last pixel, where the rounding decides); dropped: the
    hidden back of the sphere and the whole square (behind the sphere it is hidden, beside it the mask is empty).
    Scored against the sphere, the raw mesh's accuracy is ruined by the visible part of the square; the kept mesh's
    is the facets' sagitta."""
    import trimesh

    r, d, f, size = 1.0, 5.0, 120.0, 121
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=r)
    square = trimesh.Trimesh([[-6, -6, -3], [6, -6, -3], [6, 6, -3], [-6, 6, -3]], [[0, 1, 2], [0, 2, 3]])
    square = square.subdivide().subdivide().subdivide().subdivide()
    both = trimesh.util.concatenate([sphere, square])
    yy, xx = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2.0
    disc = np.hypot(xx - c, yy - c) <= f * r / np.sqrt(d * d - r * r)
    scan = tmp_path / "scan"
    P = _one_camera_scan(scan, f, size, d, disc)
    (camera,), masks = eval_mesh.training_cameras(scan)[0], eval_mesh.training_masks(scan)
    np.testing.assert_array_equal(masks[0], disc)

    keep = eval_mesh.seen_in_masks(both.vertices, both.faces, [camera], masks)
    n = len(sphere.faces)
    x, y, z = sphere.triangles_center.T
    projected = f * np.hypot(x, y) / (d - z)  # pixels from the image centre
    assert not keep[n:].any()  # nothing of the square
    # the near cap a pixel inside the disc is kept (the cap's rim is foreshortened into the disc's last pixel)
    assert keep[:n][(z > r * r / d) & (projected < f * r / np.sqrt(d * d - r * r) - 1.0)].all()
    assert not keep[:n][z < r * r / d - 0.05].any()  # the far side, hidden by the near cap
    np.testing.assert_allclose(camera, P)

    both.export(tmp_path / "pred.ply")
    sphere.export(tmp_path / "gt.ply")
    raw = eval_mesh.evaluate(tmp_path / "pred.ply", tmp_path / "gt.ply", num_points=20_000, observed_by=scan)
    cut = eval_mesh.evaluate(tmp_path / "pred.ply", tmp_path / "gt.ply", num_points=20_000, observed_by=scan,
                             seen_in_masks_of=scan)
    assert raw["surface_accuracy"] > 1.0 and raw["seen_faces_fraction"] is None
    assert cut["surface_accuracy"] < 1e-3 and cut["surface_completeness"] < 0.02
    assert cut["seen_faces_fraction"] == pytest.approx(keep.mean())


def test_seen_in_masks_says_which_mask_is_missing(tmp_path):
    scan = tmp_path / "scan"
    _one_camera_scan(scan, 100.0, 21, 5.0, np.ones((21, 21), dtype=bool))
    (scan / "mask" / "000.png").unlink()
    with pytest.raises(SystemExit, match=r"mask/000\.png: missing mask of training view 000\.png"):
        eval_mesh.training_masks(scan)


def test_surface_distances_of_concentric_spheres_are_the_gap(tmp_path):
    """Spheres of radii 1 and 1 + d: every point of one surface is exactly d from the other, so the surface Chamfer
    is d and the F-score 1 below / 0 above the gap, whatever the sampling; the point-to-point estimate is biased
    above d by the sample spacing (its floor). A mesh against itself: surface Chamfer 0, point-to-point not."""
    import trimesh

    gap = 0.02
    inner = trimesh.creation.icosphere(subdivisions=6, radius=1.0)
    outer = trimesh.creation.icosphere(subdivisions=6, radius=1.0 + gap)
    inner.export(tmp_path / "gt.ply")
    outer.export(tmp_path / "pred.ply")
    sagitta = 1.0 - np.linalg.norm(inner.triangles_center, axis=1).min()  # the facets' deviation from the sphere
    assert sagitta < 2e-4
    for threshold, fscore in ((gap * 1.2, 1.0), (gap * 0.8, 0.0)):
        result = eval_mesh.evaluate(tmp_path / "pred.ply", tmp_path / "gt.ply", num_points=5_000, threshold=threshold)
        for key in ("surface_accuracy", "surface_completeness", "surface_chamfer"):
            assert result[key] == pytest.approx(gap, abs=2 * sagitta)
        assert result["surface_fscore"] == fscore
        assert result["chamfer"] > gap + 0.005  # 5 000 points on a unit sphere: ~0.05 apart
    same = eval_mesh.evaluate(tmp_path / "gt.ply", tmp_path / "gt.ply", num_points=5_000)
    assert same["surface_chamfer"] < 1e-5 and same["chamfer"] > 0.005


def test_distance_to_surface_matches_the_closed_form_far_from_the_origin():
    """Open3D works in float32: a unit square at 1e5 units from the origin (a DTU scan in mm is ~1e3 away) must
    still give the exact point-to-square distance (above: the height; beside: the distance to the edge)."""
    offset = np.array([1e5, -2e5, 3e5])
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=np.float64) + offset
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    points = np.array([[0.5, 0.5, 0.25], [0.2, 0.7, -0.01], [1.3, 0.5, 0.4], [-0.3, -0.4, 0.0]]) + offset
    expected = [0.25, 0.01, 0.5, 0.5]
    np.testing.assert_allclose(eval_mesh.distance_to_surface(points, vertices, faces), expected, atol=1e-3)


def test_point_clouds_get_no_surface_metrics(tmp_path):
    import trimesh

    points = sphere_points((0, 0, 0), 1.0, 2000)
    trimesh.PointCloud(points).export(tmp_path / "cloud.ply")
    trimesh.creation.icosphere(subdivisions=3).export(tmp_path / "gt.ply")
    result = eval_mesh.evaluate(tmp_path / "cloud.ply", tmp_path / "gt.ply", num_points=2000)
    assert "chamfer" in result and not any(key.startswith("surface_") for key in result)


# ---------------------------------------------------------------------------------------------------- cut to masks


def _ns_cameras(c2w: torch.Tensor, fx, fy, cx, cy, width: int, height: int):
    from nerfstudio.cameras.cameras import Cameras

    n = c2w.shape[0]
    column = lambda v: torch.full((n, 1), float(v))  # noqa: E731
    return Cameras(camera_to_worlds=c2w, fx=column(fx), fy=column(fy), cx=column(cx), cy=column(cy),
                   width=torch.full((n, 1), width), height=torch.full((n, 1), height))


def test_world_to_pixel_puts_every_nerfstudio_ray_on_its_pixel_centre():
    """Independent reference: nerfstudio's own ray generation. A point anywhere on the ray of pixel (row i, col
    j) projects to (u, v) = (j, i), the OpenCV centre of that pixel, for rotated, off-centre cameras."""
    from scipy.spatial.transform import Rotation

    from neuface_ns.visibility import world_to_pixel

    rotations = torch.tensor(Rotation.random(2, random_state=4).as_matrix(), dtype=torch.float32)
    c2w = torch.cat([rotations, torch.tensor([[[0.3], [-1.2], [2.5]], [[-2.0], [0.4], [0.1]]])], dim=2)
    cameras = _ns_cameras(c2w, 41.0, 37.0, 13.2, 9.7, 27, 19)
    P = world_to_pixel(cameras)
    for k in range(2):
        rays = cameras.generate_rays(camera_indices=k)
        points = (rays.origins + 1.7 * rays.directions).reshape(-1, 3).double().numpy()
        pix = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ P[k].T
        rows, cols = np.mgrid[0:19, 0:27]
        np.testing.assert_allclose(pix[:, 0] / pix[:, 2], cols.reshape(-1), atol=1e-3)
        np.testing.assert_allclose(pix[:, 1] / pix[:, 2], rows.reshape(-1), atol=1e-3)
        assert (pix[:, 2] > 0).all()


def _masked_pipeline(model, tmp_path: Path, mask: Optional[np.ndarray], f: float, size: int, d: float):
    """A pipeline whose one training camera (nerfstudio axes) sits at distance d from the sphere's centre on +z
    looking at it, with `mask` as its foreground mask file (None: a run without masks)."""
    from PIL import Image

    c2w = torch.eye(4)[:3].clone()[None]
    c2w[0, :, 3] = torch.tensor(SPHERE_CENTER) + torch.tensor([0.0, 0.0, d])
    paths = None
    if mask is not None:
        paths = [tmp_path / "mask_000.png"]
        Image.fromarray((mask * 255).astype(np.uint8)).save(paths[0])
    dataset = SimpleNamespace(cameras=_ns_cameras(c2w, f, f, size / 2, size / 2, size, size), fg_mask_filenames=paths,
                              downscale_factor=1, scale_factor=1.0)
    pipeline = fake_pipeline(model)
    pipeline.datamanager.train_dataset = dataset
    pipeline.datamanager.config = SimpleNamespace(data=tmp_path / "scene")
    return pipeline


def test_export_cut_to_masks_keeps_the_masked_part_of_the_visible_cap(tmp_path, small_model):
    """The analytic sphere (radius r) seen by one camera at distance d, its mask the left half of the image: the
    cut mesh is the visible cap (z - z0 > r^2 / d) left of the camera's axis, whose area is a quarter of the
    sphere's times (1 - r / d) (closed form of a spherical cap), up to the rim's facets."""
    import trimesh

    r, d, f, size = SPHERE_RADIUS, 1.5, 60.0, 64
    mask = np.zeros((size, size), dtype=bool)
    mask[:, : size // 2] = True
    pipeline = _masked_pipeline(small_model(), tmp_path, mask, f, size, d)
    exporter = ExportMesh(load_config=tmp_path / "c.yml", output_dir=tmp_path / "out", resolution=48,
                          vertex_colors="albedo", world_units=False, cut_to_masks=True)
    exporter.run(pipeline)
    cut = trimesh.load(tmp_path / "out" / "mesh.ply", process=False)
    full = extract_mesh(lambda x: (x - torch.tensor(SPHERE_CENTER)).norm(dim=-1, keepdim=True) - r, 48)
    rel = np.asarray(cut.vertices) - np.asarray(SPHERE_CENTER)
    voxel = 2.0 / 47
    assert (rel[:, 2] > r * r / d - voxel).all()  # nothing of the hidden side
    assert (rel[:, 0] < voxel).all()  # nothing of the right half, which the mask leaves out
    expected = 0.25 * (1 - r / d) * 4 * math.pi * r * r
    assert abs(cut.area - expected) < 0.06 * expected
    assert cut.area < 0.2 * full.area
    colors = np.asarray(cut.visual.vertex_colors)[:, :3] / 255.0  # colours follow the kept vertices
    np.testing.assert_allclose(colors, np.broadcast_to(np.clip(np.asarray(ALBEDO) * math.pi, 0, 1), colors.shape),
                               atol=1.0 / 255 + 1e-6)


def test_export_cut_to_masks_needs_masks_and_says_so(tmp_path, small_model):
    pipeline = _masked_pipeline(small_model(), tmp_path, None, 60.0, 64, 1.5)
    exporter = ExportMesh(load_config=tmp_path / "c.yml", output_dir=tmp_path / "out", resolution=16,
                          vertex_colors="none", world_units=False, cut_to_masks=True)
    with pytest.raises(NeuFaceInputError, match=r"scene: has no foreground masks"):
        exporter.run(pipeline)
    empty = _masked_pipeline(small_model(), tmp_path, np.zeros((64, 64), dtype=bool), 60.0, 64, 1.5)
    with pytest.raises(RuntimeError, match="no triangle is seen inside a training mask"):
        exporter.run(empty)
