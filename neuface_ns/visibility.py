"""Which parts of a mesh the training views show, and the mesh cut to them.

A NeuFace SDF is closed: behind an open face scan it grows a back no camera saw, and behind the scan's rim it can
grow sheets that a volume renderer paints black against a black background. Neither is supported by any image.
`seen_in_masks` keeps the triangles some training view shows inside its foreground mask (what `neuface-eval-mesh
--seen-in-masks` scores and `neuface-export --cut-to-masks` writes); `observed` is the same test against the whole
image (the GT side of the NeuFace protocol's observed surface).

Cameras are 3 x 4 world-to-pixel matrices in OpenCV's convention (pixel (row i, col j) centred at (u, v) = (j, i));
`world_to_pixel` builds them from nerfstudio `Cameras`, whose rays go through (j + 0.5, i + 0.5).
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from neuface_ns.errors import NeuFaceInputError


def _seen_by_cameras(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, cameras, accept) -> np.ndarray:
    """[N] bool: some camera k has the point in front of it, `accept(k, u, v)` true at its projection (u, v: pixel
    coordinates, OpenCV centres) and nothing of the mesh between. The occlusion test casts a ray from the point
    (nudged towards the camera by 1e-4 of the mesh's size, so that it does not hit its own triangle) to the camera
    centre; only points not yet seen are projected and cast."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    nudge = 1e-4 * float(np.linalg.norm(vertices.max(0) - vertices.min(0)))
    seen = np.zeros(len(points), dtype=bool)
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
    for k, P in enumerate(cameras):
        P = np.asarray(P)
        todo = np.flatnonzero(~seen)
        if len(todo) == 0:
            break
        pix = homogeneous[todo] @ P.T
        in_front = pix[:, 2] > 0
        depth = np.where(in_front, pix[:, 2], 1.0)
        candidates = todo[in_front & accept(k, pix[:, 0] / depth, pix[:, 1] / depth)]
        if len(candidates) == 0:
            continue
        centre = -np.linalg.solve(P[:, :3], P[:, 3])
        direction = centre - points[candidates]
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        blocked = mesh.ray.intersects_any(points[candidates] + nudge * direction, direction)
        seen[candidates[~blocked]] = True
    return seen


def observed(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, cameras, width: int, height: int) -> np.ndarray:
    """[N] bool: the point projects inside some camera's image, in front of it, with nothing of the mesh between."""

    def in_image(_, u, v):
        return (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)

    return _seen_by_cameras(points, vertices, faces, cameras, in_image)


def seen_in_masks(vertices: np.ndarray, faces: np.ndarray, cameras, masks: Sequence[np.ndarray]) -> np.ndarray:
    """[F] bool: the triangle's centroid is seen by some camera (in front of it, nothing of the mesh between) at a
    pixel inside that camera's mask (OpenCV pixel centres: the pixel nearest to the projection).

    What the training views show of a mesh inside their foreground masks. Surface they never show there is either
    hidden from every view (the back an SDF closes behind an open face scan, inner sheets) or seen only against the
    background, e.g. a sheet behind an open scan's rim that a volume renderer paints black against a black
    background: nothing in the images supports it."""

    def in_mask(k, u, v):
        u, v = np.rint(u), np.rint(v)
        height, width = masks[k].shape
        inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
        hit = np.zeros(len(u), dtype=bool)
        hit[inside] = masks[k][v[inside].astype(int), u[inside].astype(int)]
        return hit

    centroids = vertices[faces].mean(axis=1)
    return _seen_by_cameras(centroids, vertices, faces, cameras, in_mask)


def world_to_pixel(cameras) -> np.ndarray:
    """[N, 3, 4] OpenCV world-to-pixel matrices of nerfstudio `Cameras` (OpenGL camera-to-world: the camera looks
    down -z with y up; principal point measured from the image corner, hence the half pixel)."""
    c2w = cameras.camera_to_worlds.detach().cpu().double().numpy()
    rotation = c2w[:, :, :3] * np.array([1.0, -1.0, -1.0])  # OpenGL -> OpenCV camera axes
    centre = c2w[:, :, 3]
    fx, fy, cx, cy = (getattr(cameras, k).detach().cpu().double().numpy().reshape(-1) for k in ("fx", "fy", "cx", "cy"))
    n = len(c2w)
    K = np.zeros((n, 3, 3))
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = fx, fy, cx - 0.5, cy - 0.5, 1.0
    world_to_camera = np.concatenate(
        [rotation.transpose(0, 2, 1), -np.einsum("nji,nj->ni", rotation, centre)[:, :, None]], axis=2
    )
    return K @ world_to_camera


def training_views(pipeline) -> Tuple[np.ndarray, List[np.ndarray]]:
    """World-to-pixel matrices (normalised scene units) and [H, W] bool foreground masks of a pipeline's training
    images, at the resolution it trained on (the dataset's own downscaling). One line when the run has no masks."""
    from neuface_ns.data.dataset import load_mask

    dataset = pipeline.datamanager.train_dataset
    filenames = getattr(dataset, "fg_mask_filenames", None)
    if not filenames:
        source = getattr(pipeline.datamanager.config, "data", None) or "the training data"
        raise NeuFaceInputError(source, "has no foreground masks, which cutting the mesh to the masks needs")
    downscale = int(getattr(dataset, "downscale_factor", 1))
    scale = float(getattr(dataset, "scale_factor", 1.0))
    masks = [load_mask(path, downscale, scale) for path in filenames]
    cameras = dataset.cameras
    for path, mask, width, height in zip(filenames, masks, cameras.width.reshape(-1), cameras.height.reshape(-1)):
        if mask.shape != (int(height), int(width)):
            raise NeuFaceInputError(path, f"mask is {mask.shape[1]}x{mask.shape[0]}, its camera {int(width)}x{int(height)}")
    return world_to_pixel(cameras), masks


def cut_to_masks(vertices: np.ndarray, faces: np.ndarray, cameras, masks: Sequence[np.ndarray]):
    """The mesh without the triangles no training view shows inside its mask (`seen_in_masks`) and without the
    vertices only those used, as a trimesh.Trimesh. ValueError when nothing is left."""
    import trimesh

    keep = seen_in_masks(vertices, faces, cameras, masks)
    if not keep.any():
        raise ValueError("no triangle is seen inside a training mask")
    mesh = trimesh.Trimesh(vertices, faces[keep], process=False)
    mesh.remove_unreferenced_vertices()
    return mesh
