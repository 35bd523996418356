#!/usr/bin/env python
"""Geometry metrics of a reconstructed mesh against a ground-truth mesh; prints ONE JSON line.

    neuface-eval-mesh --mesh pred.ply --gt gt.ply [--threshold T] [--num-points N]
        [--sphere-center X Y Z --sphere-radius R | --scene <IDR scan dir>] [--seed S]

Both surfaces are sampled uniformly by area (`--num-points` each, seeded; a file without faces is
used as a point cloud as it is). With a sphere (given, or from `--scene`: the scan's cameras.npz
scale_mat_0, which maps the unit sphere to world units: the NeuFace protocol's "GT cut to the unit
sphere"), only sample points inside it are kept, for both surfaces. Then, with nearest-neighbour
distances (scipy cKDTree):

- accuracy     mean distance from predicted points to the GT points
- completeness mean distance from GT points to the predicted points
- chamfer      (accuracy + completeness) / 2
- precision / recall: fraction of predicted / GT points closer than the threshold to the other set
- fscore       2 P R / (P + R)

These point-to-point figures have a floor set by the sampling density, not by the geometry: a point on the other
surface is on average about half the sample spacing from its nearest sample. On the realistic scan sample a
perfect mesh scores a Chamfer of 0.32 mm at 100k points (0.16 mm at 400k) and an F-score at 1 mm of 0.9995. So,
when both inputs are meshes, the same scored points are also measured against the other *surface* (the exact
distance to its nearest triangle, Open3D's raycasting scene; nerfstudio already depends on Open3D):
`surface_accuracy`, `surface_completeness`, `surface_chamfer`, `surface_precision`, `surface_recall`,
`surface_fscore`. A perfect mesh scores 0 there whatever the sampling, and two concentric spheres of radii r and
r + d score d. The whole other mesh counts as its surface (the sphere and the observation test select which points
are scored, not what they may lie near).

With `--observed-by <IDR scan dir>`, both sides count only what a training camera of that scan sees (in its image,
in front of it, and not hidden by the surface the point lies on): completeness and recall the GT points the GT
surface leaves visible, accuracy and precision the predicted points the predicted surface leaves visible. This is
what DTU's observation masks do: a reconstruction is not blamed for surface no training view shows, e.g. the back
that an SDF closes behind an open face scan. Training cameras are the scan's views minus `held_out_views` in its
scene.json (the realistic-scene generator writes it), or all views.

With `--seen-in-masks <IDR scan dir>`, the predicted mesh first keeps only the triangles a training camera sees
inside its mask (`mask/`); `seen_faces_fraction` says how many. This scores the surface the images support: an SDF
trained on an open face scan against a black background can grow a sheet behind the scan's rim that is seen only
against the background (painted black, it costs a volume renderer nothing), and scoring it blames the method for
surface no image supports. Give both figures: this one is a post-processing choice, not the raw mesh.

All distances are in the meshes' own units (DTU world units: the scan's mm; normalised exports:
scene units). The default threshold is 1% of the diagonal of the bounding box of the evaluated GT
points.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tyro
from scipy.spatial import cKDTree

from neuface_ns.visibility import observed, seen_in_masks  # noqa: F401 (eval_mesh.seen_in_masks)


def sample_surface(vertices: np.ndarray, faces: Optional[np.ndarray], count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` points uniformly distributed over the triangles' area (the vertices if no faces)."""
    vertices = np.asarray(vertices, dtype=np.float64)
    if faces is None or len(faces) == 0:
        return vertices
    tri = vertices[np.asarray(faces)]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=-1)
    if area.sum() <= 0:
        return vertices
    face = rng.choice(len(area), size=count, p=area / area.sum())
    r1, r2 = rng.random(count), rng.random(count)
    s = np.sqrt(r1)
    a, b, c = tri[face, 0], tri[face, 1], tri[face, 2]
    return (1 - s)[:, None] * a + (s * (1 - r2))[:, None] * b + (s * r2)[:, None] * c


def inside_sphere(points: np.ndarray, center: Sequence[float], radius: float) -> np.ndarray:
    return points[np.linalg.norm(points - np.asarray(center, dtype=np.float64), axis=-1) <= radius]


def point_metrics(pred: np.ndarray, gt: np.ndarray, threshold: Optional[float] = None) -> Dict[str, float]:
    """Accuracy / completeness / chamfer / precision / recall / F-score of two point sets."""
    if len(pred) == 0 or len(gt) == 0:
        raise ValueError(f"no points to compare (prediction {len(pred)}, GT {len(gt)})")
    if threshold is None:
        threshold = 0.01 * float(np.linalg.norm(gt.max(0) - gt.min(0)))
    d_pred, _ = cKDTree(gt).query(pred, k=1)  # prediction -> GT
    d_gt, _ = cKDTree(pred).query(gt, k=1)  # GT -> prediction
    return {
        **distance_metrics(d_pred, d_gt, threshold),
        "threshold": float(threshold),
        "num_points_pred": int(len(pred)),
        "num_points_gt": int(len(gt)),
    }


def distance_to_surface(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """[N] exact distance from each point to the nearest triangle of the mesh (Open3D's raycasting scene).

    Open3D computes in float32, so everything is shifted to the mesh's centre first: world units far from the
    origin (a DTU scan in mm) keep their precision."""
    import open3d as o3d

    vertices = np.asarray(vertices, dtype=np.float64)
    origin = 0.5 * (vertices.min(0) + vertices.max(0))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor((vertices - origin).astype(np.float32)), o3d.core.Tensor(np.asarray(faces, dtype=np.uint32))
    )
    query = o3d.core.Tensor((np.asarray(points, dtype=np.float64) - origin).astype(np.float32))
    return scene.compute_distance(query).numpy().astype(np.float64)


def distance_metrics(d_pred: np.ndarray, d_gt: np.ndarray, threshold: float) -> Dict[str, float]:
    """Accuracy / completeness / chamfer / precision / recall / F-score from the two sets of distances."""
    precision = float((d_pred < threshold).mean())
    recall = float((d_gt < threshold).mean())
    fscore = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    accuracy, completeness = float(d_pred.mean()), float(d_gt.mean())
    return {"accuracy": accuracy, "completeness": completeness, "chamfer": 0.5 * (accuracy + completeness),
            "precision": precision, "recall": recall, "fscore": fscore}


def surface_metrics(pred: np.ndarray, gt: np.ndarray, pred_mesh: Tuple[np.ndarray, np.ndarray],
                    gt_mesh: Tuple[np.ndarray, np.ndarray], threshold: float) -> Dict[str, float]:
    """The scored points measured against the other mesh's surface instead of its sample points: no sampling floor.
    Keys as `point_metrics`, prefixed with "surface_"."""
    if len(pred) == 0 or len(gt) == 0:
        raise ValueError(f"no points to compare (prediction {len(pred)}, GT {len(gt)})")
    metrics = distance_metrics(distance_to_surface(pred, *gt_mesh), distance_to_surface(gt, *pred_mesh), threshold)
    return {f"surface_{k}": v for k, v in metrics.items()}


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def training_views(scene: Path) -> Tuple[List[Path], np.ndarray]:
    """Image paths of the scan's training views (all views minus scene.json's `held_out_views`),
    with every view's world_mat; one line naming the file when something is missing."""
    path = scene / "cameras.npz"
    if not path.is_file():
        raise SystemExit(f"eval_mesh: {path}: no cameras.npz")
    images = sorted(p for p in (scene / "image").iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES) \
        if (scene / "image").is_dir() else []
    if not images:
        raise SystemExit(f"eval_mesh: {scene / 'image'}: no images")
    held_out = set()
    if (scene / "scene.json").is_file():
        held_out = set(json.loads((scene / "scene.json").read_text()).get("held_out_views", []))
    with np.load(path) as cameras:
        keep = [i for i in range(len(images)) if i not in held_out and f"world_mat_{i}" in cameras]
        if not keep:
            raise SystemExit(f"eval_mesh: {path}: no world_mat_<i> for the training views of {scene / 'image'}")
        matrices = np.stack([np.asarray(cameras[f"world_mat_{i}"], dtype=np.float64)[:3, :4] for i in keep])
    return [images[i] for i in keep], matrices


def training_cameras(scene: Path) -> Tuple[List[np.ndarray], int, int]:
    """World-to-pixel 3x4 matrices of the scan's training views, and the image width and height."""
    from PIL import Image

    images, matrices = training_views(scene)
    with Image.open(images[0]) as first:
        width, height = first.size
    return list(matrices), width, height


def training_masks(scene: Path) -> List[np.ndarray]:
    """[H, W] bool foreground masks of the training views (mask/<image stem>.png or .jpg, > half), in the order of
    `training_cameras`."""
    from PIL import Image

    masks = []
    for image in training_views(scene)[0]:
        path = next((scene / "mask" / f"{image.stem}{s}" for s in _IMAGE_SUFFIXES
                     if (scene / "mask" / f"{image.stem}{s}").is_file()), None)
        if path is None:
            missing = scene / "mask" / f"{image.stem}.png"
            raise SystemExit(f"eval_mesh: {missing}: missing mask of training view {image.name}")
        with Image.open(path) as mask:
            masks.append(np.asarray(mask.convert("L")) > 127)
    return masks


def load_geometry(path: Path) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    import trimesh

    if not path.is_file():
        raise SystemExit(f"eval_mesh: {path}: file not found")
    geometry = trimesh.load(path, process=False)
    if isinstance(geometry, trimesh.Scene):
        geometry = geometry.dump(concatenate=True)
    faces = getattr(geometry, "faces", None)
    vertices = np.asarray(geometry.vertices)
    if len(vertices) == 0:
        raise SystemExit(f"eval_mesh: {path}: no vertices")
    return vertices, (np.asarray(faces) if faces is not None and len(faces) else None)


def sphere_from_scene(scene: Path) -> Tuple[np.ndarray, float]:
    """Centre and radius of the unit sphere in world units, from an IDR scan's scale_mat_0."""
    path = scene / "cameras.npz" if scene.is_dir() else scene
    if not path.is_file():
        raise SystemExit(f"eval_mesh: {path}: no cameras.npz")
    with np.load(path) as cameras:
        if "scale_mat_0" not in cameras:
            raise SystemExit(f"eval_mesh: {path}: no scale_mat_0")
        scale_mat = np.asarray(cameras["scale_mat_0"], dtype=np.float64)
    radius = float(abs(np.linalg.det(scale_mat[:3, :3])) ** (1.0 / 3.0))
    return scale_mat[:3, 3], radius


def scored_points(
    mesh: Path,
    gt: Path,
    num_points: int = 200_000,
    sphere_center: Optional[Sequence[float]] = None,
    sphere_radius: Optional[float] = None,
    seed: int = 0,
    observed_by: Optional[Path] = None,
    seen_in_masks_of: Optional[Path] = None,
) -> Dict[str, object]:
    """The sample points `evaluate` scores: "pred" and "gt" [N, 3] after the sphere cut and the observation test,
    with "observed_fraction" / "observed_pred_fraction" (None without `observed_by`), the sphere's "center", and
    the loaded "pred_mesh" / "gt_mesh" as (vertices, faces or None). With `seen_in_masks_of` (a scan dir) the
    predicted mesh first keeps only the triangles that scan's training views see inside their masks
    (`seen_in_masks`; "seen_faces_fraction" says how many)."""
    rng = np.random.default_rng(seed)
    pred_vertices, pred_faces = load_geometry(mesh)
    seen_faces_fraction = None
    if seen_in_masks_of is not None:
        if pred_faces is None:
            raise ValueError(f"{mesh}: keeping what the masks show needs a mesh with faces")
        cameras, _, _ = training_cameras(seen_in_masks_of)
        keep = seen_in_masks(pred_vertices, pred_faces, cameras, training_masks(seen_in_masks_of))
        seen_faces_fraction = float(keep.mean())
        if not keep.any():
            raise ValueError(f"{mesh}: no triangle is seen inside a training mask of {seen_in_masks_of}")
        pred_faces = pred_faces[keep]
    pred_points = sample_surface(pred_vertices, pred_faces, num_points, rng)
    gt_vertices, gt_faces = load_geometry(gt)
    gt_points = sample_surface(gt_vertices, gt_faces, num_points, rng)
    center = None
    if sphere_radius is not None:
        center = np.zeros(3) if sphere_center is None else np.asarray(sphere_center, dtype=np.float64)
        pred_points = inside_sphere(pred_points, center, sphere_radius)
        gt_points = inside_sphere(gt_points, center, sphere_radius)
    observed_fraction = observed_pred_fraction = None
    if observed_by is not None:
        for path, faces in ((gt, gt_faces), (mesh, pred_faces)):
            if faces is None:
                raise ValueError(f"{path}: the observation test needs a mesh with faces")
        cameras = training_cameras(observed_by)
        keep = observed(gt_points, gt_vertices, gt_faces, *cameras)
        observed_fraction = float(keep.mean()) if len(keep) else 0.0
        gt_points = gt_points[keep]
        keep = observed(pred_points, pred_vertices, pred_faces, *cameras)
        observed_pred_fraction = float(keep.mean()) if len(keep) else 0.0
        pred_points = pred_points[keep]
    return {"pred": pred_points, "gt": gt_points, "observed_fraction": observed_fraction,
            "observed_pred_fraction": observed_pred_fraction, "center": center,
            "seen_faces_fraction": seen_faces_fraction,
            "pred_mesh": (pred_vertices, pred_faces), "gt_mesh": (gt_vertices, gt_faces)}


def evaluate(
    mesh: Path,
    gt: Path,
    num_points: int = 200_000,
    threshold: Optional[float] = None,
    sphere_center: Optional[Sequence[float]] = None,
    sphere_radius: Optional[float] = None,
    seed: int = 0,
    observed_by: Optional[Path] = None,
    seen_in_masks_of: Optional[Path] = None,
) -> Dict[str, object]:
    points = scored_points(mesh, gt, num_points, sphere_center, sphere_radius, seed, observed_by, seen_in_masks_of)
    pred_points, gt_points, center = points["pred"], points["gt"], points["center"]
    observed_fraction, observed_pred_fraction = points["observed_fraction"], points["observed_pred_fraction"]
    result: Dict[str, object] = point_metrics(pred_points, gt_points, threshold)
    if points["pred_mesh"][1] is not None and points["gt_mesh"][1] is not None:
        result.update(surface_metrics(pred_points, gt_points, points["pred_mesh"], points["gt_mesh"],
                                      result["threshold"]))
    result["observed_fraction"] = observed_fraction
    result["observed_pred_fraction"] = observed_pred_fraction
    result["seen_faces_fraction"] = points["seen_faces_fraction"]
    result["sphere"] = (
        None if sphere_radius is None else {"center": [float(v) for v in center], "radius": float(sphere_radius)}
    )
    result["units"] = "mesh units"
    result["seed"] = seed
    return result


def _usage_error(message: str) -> None:
    """Exit as argparse's `parser.error` did: the message on stderr, status 2."""
    print(f"neuface-eval-mesh: error: {message}", file=sys.stderr)
    raise SystemExit(2)


@dataclass
class EvalMesh:
    """Geometry metrics of a reconstructed mesh against a ground-truth mesh; prints ONE JSON line."""

    mesh: Path
    """predicted mesh (ply/obj/...)"""
    gt: Path
    """ground-truth mesh"""
    num_points: int = 200_000
    """sample points per surface"""
    threshold: Optional[float] = None
    """F-score distance (default 1% of the GT bbox diagonal)"""
    sphere_center: Optional[Tuple[float, float, float]] = None
    """X Y Z of the cutting sphere (needs --sphere-radius)"""
    sphere_radius: Optional[float] = None
    """keep only sample points within this distance of --sphere-center (default the origin)"""
    scene: Optional[Path] = None
    """IDR scan dir: cut to the sphere of cameras.npz scale_mat_0"""
    observed_by: Optional[Path] = None
    """IDR scan dir: score only the surface (GT and predicted) its training cameras see"""
    seen_in_masks: Optional[Path] = None
    """IDR scan dir: first keep only the predicted triangles its training views see inside their masks"""
    seed: int = 0
    """seed of the surface sampling"""

    def main(self) -> int:
        if self.num_points < 1:
            _usage_error("--num-points must be positive")
        if self.sphere_center is not None and self.sphere_radius is None:
            _usage_error("--sphere-center needs --sphere-radius")
        center, radius = self.sphere_center, self.sphere_radius
        if self.scene is not None:
            if radius is not None:
                _usage_error("give either --scene or --sphere-radius, not both")
            center, radius = sphere_from_scene(self.scene)
        try:
            result = evaluate(self.mesh, self.gt, self.num_points, self.threshold, center, radius, self.seed,
                              self.observed_by, self.seen_in_masks)
        except ValueError as err:
            raise SystemExit(f"eval_mesh: {err}") from None
        print(json.dumps(result))
        return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse `argv` (default: sys.argv[1:]) and run; returns the exit status."""
    return tyro.cli(EvalMesh, args=None if argv is None else list(argv)).main()


def entrypoint() -> None:
    """Console script `neuface-eval-mesh`."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
