"""A rendered scene: cameras, renders, landmarks (with their per-view pixels and visibility) and the mesh."""

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .conventions import WORLD_CENTRE, WORLD_SCALE, Camera, make_cameras, to_normalised, to_world
from .face import LANDMARK_RAYS, extract_gt_mesh, face_normals
from .renderer import RenderResult, render_view, sphere_trace


def compute_landmarks() -> Dict[str, Dict[str, np.ndarray]]:
    """Known surface points (normalised frame) and their outward normals."""
    names = list(LANDMARK_RAYS)
    origins = np.array([[*LANDMARK_RAYS[k], 2.0] for k in names], dtype=np.float64)
    dirs = np.tile(np.array([0.0, 0.0, -1.0]), (len(names), 1))
    # start inside the bounding sphere is handled by sphere_trace (it clips to it)
    hit, t = sphere_trace(origins, dirs, eps=1e-9, max_steps=2000)
    if not hit.all():
        raise RuntimeError("landmark ray missed the face")
    pts = origins + t[:, None] * dirs
    normals = face_normals(pts)
    return {k: {"point": pts[i], "normal": normals[i]} for i, k in enumerate(names)}


def landmark_in_view(cam: Camera, point_n: np.ndarray, normal_n: np.ndarray, scale: float = WORLD_SCALE,
                     centre: Sequence[float] = WORLD_CENTRE) -> Dict[str, object]:
    """Pixel (continuous OpenCV u, v), camera depth and visibility of a landmark in one view.

    Visible = in front of the camera, at least 1 px inside the image (whose
    border is at -0.5 and W - 0.5), facing the
    camera (cos(normal, to-camera) >= 0.3) and not occluded (the first hit of the
    camera ray towards it is the landmark itself).
    """
    X = to_world(point_n, scale, centre)
    xc = cam.R @ X + cam.t
    uvw = cam.K @ xc
    u, v = uvw[0] / uvw[2], uvw[1] / uvw[2]
    origin_n = to_normalised(cam.centre_world, scale, centre)
    to_pt = point_n - origin_n
    dist = float(np.linalg.norm(to_pt))
    d = to_pt / dist
    facing = float(-(d @ normal_n))
    inside = (xc[2] > 0) and (0.5 <= u <= cam.width - 1.5) and (0.5 <= v <= cam.height - 1.5)
    visible = False
    if inside and facing >= 0.3:
        hit, t = sphere_trace(origin_n, d[None], eps=1e-8, max_steps=2000)
        visible = bool(hit[0] and abs(t[0] - dist) < 2e-3)
    return {"pixel": [float(u), float(v)], "depth": float(xc[2]), "visible": visible, "facing_cosine": facing}


@dataclass
class Scene:
    cameras: List[Camera]
    renders: List[RenderResult]
    landmarks: Dict[str, Dict[str, np.ndarray]]
    landmark_views: List[Dict[str, Dict[str, object]]]
    scale: float = WORLD_SCALE
    centre: Tuple[float, float, float] = WORLD_CENTRE
    seed: int = 0
    mesh: Optional[object] = None
    extra: Dict[str, object] = field(default_factory=dict)


def generate_scene(num_views: int = 20, width: int = 200, height: int = 150, seed: int = 0,
                   mesh_resolution: int = 128, verbose: bool = True, supersample: int = 2) -> Scene:
    cams = make_cameras(num_views, width, height, seed)
    landmarks = compute_landmarks()
    renders: List[RenderResult] = []
    lm_views: List[Dict[str, Dict[str, object]]] = []
    for i, cam in enumerate(cams):
        t0 = time.time()
        r = render_view(cam, supersample=supersample)
        renders.append(r)
        lm_views.append({k: landmark_in_view(cam, v["point"], v["normal"]) for k, v in landmarks.items()})
        if verbose:
            nvis = sum(int(x["visible"]) for x in lm_views[-1].values())
            print(
                f"[view {i + 1:3d}/{num_views}] az={cam.azimuth_deg:6.1f} el={cam.elevation_deg:6.1f} "
                f"mask={r.mask.mean() * 100:5.1f}% landmarks visible={nvis}/{len(landmarks)} "
                f"({time.time() - t0:.2f}s)",
                flush=True,
            )
    mesh = None
    if mesh_resolution > 0:
        t0 = time.time()
        mesh = extract_gt_mesh(mesh_resolution)
        if verbose:
            print(f"[mesh] {len(mesh.vertices)} vertices, {len(mesh.faces)} faces ({time.time() - t0:.2f}s)", flush=True)
    return Scene(cameras=cams, renders=renders, landmarks=landmarks, landmark_views=lm_views, seed=seed, mesh=mesh)
