"""scripts/geometry_smoothing.py against closed forms on spheres."""

from __future__ import annotations

import json

import numpy as np
import pytest


def _sphere_points(radius: float, count: int, seed: int) -> np.ndarray:
    d = np.random.default_rng(seed).normal(size=(count, 3))
    return radius * d / np.linalg.norm(d, axis=1, keepdims=True)


def test_smoothing_displacement_on_a_sphere_is_minus_r_squared_over_4_radius(load_script):
    """The points of a sphere of radius rho within chord R of p cover a cap of area pi R^2, uniform in d^2, at
    height -d^2 / (2 rho) below the tangent plane: mean -R^2 / (4 rho)."""
    gs = load_script("geometry_smoothing")
    rho = 50.0
    dense = _sphere_points(rho, 400_000, seed=1)
    points = _sphere_points(rho, 50, seed=2)
    normals = points / rho
    for radius in (6.0, 10.0):
        d = gs.smoothing_displacement(dense, points, normals, radius)
        np.testing.assert_allclose(d, -radius**2 / (4 * rho), atol=0.02 * radius**2 / (4 * rho) + 0.005)


def test_normal_offsets_are_the_gap_between_concentric_spheres_and_nan_out_of_reach(load_script):
    import trimesh

    gs = load_script("geometry_smoothing")
    points = _sphere_points(1.0, 300, seed=3)
    normals = points.copy()
    outer = trimesh.creation.icosphere(subdivisions=6, radius=1.05)
    inner = trimesh.creation.icosphere(subdivisions=6, radius=0.97)
    np.testing.assert_allclose(gs.normal_offsets(outer.vertices, outer.faces, points, normals, 0.2), 0.05, atol=2e-4)
    np.testing.assert_allclose(gs.normal_offsets(inner.vertices, inner.faces, points, normals, 0.2), -0.03, atol=2e-4)
    # both spheres at once: each point keeps the nearer crossing
    both = trimesh.util.concatenate([outer, inner])
    np.testing.assert_allclose(gs.normal_offsets(both.vertices, both.faces, points, normals, 0.2), -0.03, atol=2e-4)
    far = trimesh.creation.icosphere(subdivisions=4, radius=2.0)
    assert np.isnan(gs.normal_offsets(far.vertices, far.faces, points, normals, 0.5)).all()


def test_regression_recovers_a_known_slope_and_ignores_nans(load_script):
    gs = load_script("geometry_smoothing")
    rng = np.random.default_rng(4)
    x = rng.normal(size=2000)
    y = 0.6 * x + 0.01 * rng.normal(size=2000)
    y[::7] = np.nan
    fit = gs.regression(y, x)
    assert fit["slope"] == pytest.approx(0.6, abs=0.01) and fit["corr"] > 0.99


def test_cli_on_a_sphere_scene_reports_the_gap(tmp_path, load_script, capsys):
    """GT: a sphere of radius 60 in a face sphere of radius 100; prediction 0.5 larger: every patch offset is +0.5."""
    import trimesh

    gs = load_script("geometry_smoothing")
    scene = tmp_path / "scene"
    scene.mkdir()
    trimesh.creation.icosphere(subdivisions=5, radius=60.0).export(scene / "gt_mesh.ply")
    scale = np.diag([100.0, 100.0, 100.0, 1.0])
    np.savez(scene / "cameras.npz", scale_mat_0=scale, world_mat_0=np.eye(4))
    pred = tmp_path / "pred.ply"
    trimesh.creation.icosphere(subdivisions=5, radius=60.5).export(pred)
    assert gs.main(["--mesh", str(pred), "--scene", str(scene), "--num-points", "2000"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[1])
    assert result["mean_offset"] == pytest.approx(0.5, abs=0.02) and result["covered"] == 1.0
