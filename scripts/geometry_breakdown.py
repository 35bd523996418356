"""Where a mesh's face Chamfer comes from: errors binned by distance from the ground truth's own open edges.

    python scripts/geometry_breakdown.py --mesh <run>/mesh.ply [--scene neuface_ns/data/sample/scan]

Scores the mesh as `scripts/benchmark.py --realistic` does (the scene's face sphere, 100k points, completeness and
accuracy over what the training cameras see) and splits both by how far the ground-truth point concerned lies
from the ground truth's open edges: the rim and the holes of an open scan, not the sphere's cut. A closed SDF
cannot end in a zero-thickness edge, so the band along those edges measures the scene's open boundary as much as
the method; the rest of the surface is what a whole head would be scored on. A predicted point is attributed to
its nearest ground-truth point. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
from scipy.spatial import cKDTree

ROOT = Path(__file__).resolve().parents[1]
SCAN_SAMPLE = ROOT / "neuface_ns" / "data" / "sample" / "scan"
BANDS_MM = (0.0, 3.0, 6.0, 10.0, 20.0, np.inf)


def open_edge_points(vertices: np.ndarray, faces: np.ndarray, center: np.ndarray, radius: float,
                     spacing: float) -> np.ndarray:
    """Points every `spacing` along the mesh's boundary edges (edges of one triangle) except those of the
    sphere's cut: an edge whose midpoint lies within one median edge length of the sphere belongs to the cut."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    boundary = mesh.edges_sorted[trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)]
    a, b = vertices[boundary[:, 0]], vertices[boundary[:, 1]]
    median_edge = float(np.median(mesh.edges_unique_length))
    own = np.linalg.norm((a + b) / 2 - center, axis=1) < radius - median_edge
    a, b = a[own], b[own]
    if len(a) == 0:
        return np.zeros((0, 3))
    steps = np.maximum(np.ceil(np.linalg.norm(b - a, axis=1) / spacing).astype(int), 1)
    return np.concatenate([a[i] + np.linspace(0.0, 1.0, s + 1)[:, None] * (b[i] - a[i]) for i, s in enumerate(steps)])


def breakdown(pred: np.ndarray, gt: np.ndarray, edge_points: np.ndarray,
              bands: Sequence[float] = BANDS_MM) -> Dict[str, object]:
    """Accuracy / completeness per band of distance (of the ground-truth point concerned) from `edge_points`, each
    band's share of the Chamfer, and the Chamfer of the points beyond each band's lower bound."""
    gt_tree = cKDTree(gt)
    accuracy, nearest_gt = gt_tree.query(pred)
    completeness = cKDTree(pred).query(gt)[0]
    if len(edge_points):
        gt_edge_distance = cKDTree(edge_points).query(gt)[0]
    else:
        gt_edge_distance = np.full(len(gt), np.inf)
    pred_edge_distance = gt_edge_distance[nearest_gt]
    total = accuracy.mean() + completeness.mean()
    rows = []
    for lo, hi in zip(bands[:-1], bands[1:]):
        p = (pred_edge_distance >= lo) & (pred_edge_distance < hi)
        g = (gt_edge_distance >= lo) & (gt_edge_distance < hi)
        rows.append({
            "band_mm": [float(lo), float(hi)],
            "pred_share": float(p.mean()), "gt_share": float(g.mean()),
            "accuracy": float(accuracy[p].mean()) if p.any() else None,
            "completeness": float(completeness[g].mean()) if g.any() else None,
            "chamfer_share": float((accuracy[p].sum() / len(pred) + completeness[g].sum() / len(gt)) / total),
        })
    beyond = {}
    for lo in bands[1:-1]:
        p, g = pred_edge_distance >= lo, gt_edge_distance >= lo
        if p.any() and g.any():
            beyond[f"chamfer_beyond_{lo:g}mm"] = float(0.5 * (accuracy[p].mean() + completeness[g].mean()))
    return {"chamfer": float(0.5 * total), "bands": rows, **beyond}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mesh", type=Path, required=True)
    parser.add_argument("--scene", type=Path, default=SCAN_SAMPLE, help="realistic scene (gt_mesh.ply, cameras.npz)")
    parser.add_argument("--num-points", type=int, default=100_000)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from neuface_ns.tools import eval_mesh

    center, radius = eval_mesh.sphere_from_scene(args.scene)
    points = eval_mesh.scored_points(args.mesh, args.scene / "gt_mesh.ply", args.num_points, center, radius, seed=0,
                                     observed_by=args.scene)
    vertices, faces = eval_mesh.load_geometry(args.scene / "gt_mesh.ply")
    edges = open_edge_points(vertices, faces, np.asarray(center), radius, spacing=0.25)
    result = breakdown(points["pred"], points["gt"], edges)
    print(f"{args.mesh}: Chamfer {result['chamfer']:.3f} (units of the meshes)")
    print("distance from the GT's open edges | pred / GT points | accuracy | completeness | share of the Chamfer")
    for row in result["bands"]:
        lo, hi = row["band_mm"]
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"{lo:5g} - {hi:<5g} | {row['pred_share']:.3f} / {row['gt_share']:.3f} | {fmt(row['accuracy'])} | "
              f"{fmt(row['completeness'])} | {row['chamfer_share']:.3f}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
