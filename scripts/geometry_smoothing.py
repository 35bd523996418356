"""Is a reconstruction's shape error a smoothed copy of the truth, or noise? Offsets along the truth's normals,
regressed on what smoothing the truth would do to it.

    python scripts/geometry_smoothing.py --mesh <run>/mesh.ply [--mesh <another>.ply ...] [--scene <realistic scene>]

For points spread over the ground truth inside the scene's face sphere (`--margin` mm inside it), the signed offset
of the predicted surface along the ground truth's normal (+ outwards; the nearest crossing within `--reach` mm),
averaged over `--patch` mm: the low-frequency shape error. Each offset is set against the ground truth's own
smoothing displacement at radius R (mean height of the ground truth within R of the point, along its normal:
negative on bumps, positive in hollows; on a sphere of radius r it is -R^2 / (4 r)). A reconstruction that is the
truth smoothed has offsets proportional to it (slope > 0, correlation near 1); independent noise has correlation
0. With several meshes it also prints the correlation of their offset maps: errors that repeat across seeds are
the method's, not the run's. Prints a table and one JSON line per mesh.
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
RADII_MM = (3.0, 6.0, 10.0)


def normal_offsets(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, normals: np.ndarray,
                   reach: float) -> np.ndarray:
    """[N] signed distance along each normal from the point to the nearest crossing of the mesh within +-reach
    (NaN where the line misses it)."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    n = len(points)
    origins = np.concatenate([points - reach * normals, points + reach * normals])
    directions = np.concatenate([normals, -normals])
    locations, ray, _ = mesh.ray.intersects_location(origins, directions, multiple_hits=True)
    offsets = np.full(n, np.nan)
    if len(ray) == 0:
        return offsets
    which = ray % n
    t = np.einsum("ij,ij->i", locations - points[which], normals[which])
    near = np.abs(t) <= reach
    which, t = which[near], t[near]
    order = np.argsort(-np.abs(t))  # write the farthest first, so each point keeps its nearest crossing
    offsets[which[order]] = t[order]
    return offsets


def smoothing_displacement(surface: np.ndarray, points: np.ndarray, normals: np.ndarray, radius: float) -> np.ndarray:
    """[N] mean of (q - p) . n over the dense surface samples q within `radius` of each point p."""
    neighbours = cKDTree(surface).query_ball_point(points, radius)
    return np.array([np.mean((surface[i] - p) @ n) if len(i) else np.nan
                     for i, p, n in zip(neighbours, points, normals)])


def patch_mean(points: np.ndarray, values: np.ndarray, patch: float) -> np.ndarray:
    """[N] mean of the finite values within `patch` of each point (NaN where none is)."""
    out = np.full(len(points), np.nan)
    for k, i in enumerate(cKDTree(points).query_ball_point(points, patch)):
        v = values[i]
        v = v[np.isfinite(v)]
        if len(v):
            out[k] = v.mean()
    return out


def regression(offsets: np.ndarray, displacement: np.ndarray) -> Dict[str, float]:
    """Least-squares slope of the offsets on the displacement and their correlation, over the points where both are
    finite (NaN when either is constant)."""
    from scipy.stats import linregress

    ok = np.isfinite(offsets) & np.isfinite(displacement)
    x, y = displacement[ok], offsets[ok]
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return {"slope": float("nan"), "corr": float("nan")}
    fit = linregress(x, y)
    return {"slope": float(fit.slope), "corr": float(fit.rvalue)}


def main(argv: Sequence[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mesh", type=Path, action="append", required=True)
    parser.add_argument("--scene", type=Path, default=SCAN_SAMPLE, help="realistic scene (gt_mesh.ply, cameras.npz)")
    parser.add_argument("--num-points", type=int, default=20_000)
    parser.add_argument("--margin", type=float, default=10.0, help="mm inside the face sphere")
    parser.add_argument("--reach", type=float, default=5.0, help="mm along the normal")
    parser.add_argument("--patch", type=float, default=4.0, help="mm: the offsets' averaging radius")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import trimesh

    from neuface_ns.tools import eval_mesh

    center, radius = eval_mesh.sphere_from_scene(args.scene)
    gt = trimesh.load(args.scene / "gt_mesh.ply", process=False)
    points, face = trimesh.sample.sample_surface(gt, args.num_points, seed=0)
    keep = np.linalg.norm(points - center, axis=1) < radius - args.margin
    points, normals = np.asarray(points)[keep], gt.face_normals[face[keep]]
    dense = np.asarray(trimesh.sample.sample_surface(gt, 10 * args.num_points, seed=1)[0])
    displacement = {r: smoothing_displacement(dense, points, normals, r) for r in RADII_MM}
    maps = {}
    for path in args.mesh:
        vertices, faces = eval_mesh.load_geometry(path)
        if faces is None:
            raise SystemExit(f"geometry_smoothing: {path}: needs a mesh with faces")
        smooth = patch_mean(points, normal_offsets(vertices, faces, points, normals, args.reach), args.patch)
        maps[str(path)] = smooth
        result = {"mesh": str(path), "mean_abs_offset": float(np.nanmean(np.abs(smooth))),
                  "mean_offset": float(np.nanmean(smooth)), "covered": float(np.isfinite(smooth).mean())}
        for r, d in displacement.items():
            fit = regression(smooth, d)
            result[f"slope_{r:g}mm"], result[f"corr_{r:g}mm"] = fit["slope"], fit["corr"]
        print(f"{path}: |offset| {result['mean_abs_offset']:.3f} mm over {args.patch:g} mm patches; against the "
              "truth's smoothing " + ", ".join(f"R {r:g} mm slope {result[f'slope_{r:g}mm']:+.2f} corr "
                                              f"{result[f'corr_{r:g}mm']:+.2f}" for r in RADII_MM))
        print(json.dumps(result))
    names = list(maps)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            fit = regression(maps[names[i]], maps[names[j]])
            print(f"offset maps of {names[i]} and {names[j]}: correlation {fit['corr']:+.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
