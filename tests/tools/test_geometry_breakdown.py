"""scripts/geometry_breakdown.py against analytic sheets: the open-edge band and the rest, by closed form."""

from __future__ import annotations

import numpy as np
import pytest


def _grid(x0: float, x1: float, y0: float, y1: float, step: float, z: float = 0.0):
    """A flat triangulated rectangle at height z: vertices [N, 3], faces [M, 3]."""
    xs, ys = np.arange(x0, x1 + 1e-9, step), np.arange(y0, y1 + 1e-9, step)
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    vertices = np.stack([X.ravel(), Y.ravel(), np.full(X.size, z)], axis=1)
    nx, ny = len(xs), len(ys)
    idx = np.arange(nx * ny).reshape(nx, ny)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return vertices, faces


def _surface_points(vertices, faces, count, seed):
    import trimesh

    points, _ = trimesh.sample.sample_surface(trimesh.Trimesh(vertices, faces, process=False), count, seed=seed)
    return np.asarray(points)


def test_open_edges_are_the_sheet_border_and_the_sphere_cut_is_left_out(load_script):
    gb = load_script("geometry_breakdown")
    vertices, faces = _grid(-20, 20, -20, 20, 2.0)
    points = gb.open_edge_points(vertices, faces, np.zeros(3), radius=100.0, spacing=0.5)
    # every point lies on the square's border, and the border is covered every 0.5
    on_border = np.isclose(np.abs(points[:, :2]).max(axis=1), 20.0)
    assert on_border.all()
    probe = np.array([[20.0, 7.3, 0.0], [-13.1, -20.0, 0.0]])
    assert np.linalg.norm(points[None] - probe[:, None], axis=-1).min(axis=1).max() <= 0.25 + 1e-9
    # a sphere through the border's midpoints: the sides near it are the cut, the rest (corners) stay open
    cut = gb.open_edge_points(vertices, faces, np.zeros(3), radius=20.5, spacing=0.5)
    assert len(cut) < len(points) and np.all(np.linalg.norm(cut, axis=1) > 20.5 - 2.0)


def test_breakdown_puts_the_overhang_at_the_edge_and_the_offset_everywhere(load_script):
    """GT: a 40 mm square sheet; prediction: the same sheet 0.5 mm above it and 5 mm longer on one side. Far from
    the border both accuracy and completeness are 0.5 (the offset); the overhang's error goes to the first band,
    whose accuracy is the mean of sqrt(u^2 + 0.25) over its points."""
    gb = load_script("geometry_breakdown")
    gt_v, gt_f = _grid(-20, 20, -20, 20, 1.0)
    pred_v, pred_f = _grid(-20, 25, -20, 20, 1.0, z=0.5)
    gt = _surface_points(gt_v, gt_f, 60000, seed=0)
    pred = _surface_points(pred_v, pred_f, 67500, seed=1)
    edges = gb.open_edge_points(gt_v, gt_f, np.zeros(3), radius=1000.0, spacing=0.25)
    result = gb.breakdown(pred, gt, edges)
    far = result["bands"][-2]  # 10-20 mm from the border
    assert far["accuracy"] == pytest.approx(0.5, abs=0.02) and far["completeness"] == pytest.approx(0.5, abs=0.02)
    assert result["chamfer_beyond_10mm"] == pytest.approx(0.5, abs=0.02)
    first = result["bands"][0]
    overhang = pred[pred[:, 0] > 20.0]
    u = overhang[:, 0] - 20.0
    n_band = first["pred_share"] * len(pred)
    expected = (float(np.sqrt(u ** 2 + 0.25).sum()) + 0.5 * (n_band - len(overhang))) / n_band
    assert first["accuracy"] == pytest.approx(expected, abs=0.03)
    assert first["accuracy"] > 1.0  # the overhang dominates the band next to the border
    assert sum(row["chamfer_share"] for row in result["bands"]) == pytest.approx(1.0, abs=1e-9)
