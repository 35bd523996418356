#!/usr/bin/env python
"""Convert FaceScape multi-view release data into the NeuFace layout that ``neuface-facescape-data`` reads.

Input (the FaceScape release; paths can be given one by one)::

    IMAGES_ROOT/<id>/<e>_<expr>/<v>.jpg, params.json   per view v: <v>_K, <v>_Rt (3x4 OpenCV world->camera),
                                                        <v>_distortion (k1 k2 p1 p2 k3), <v>_width, <v>_height,
                                                        <v>_valid, ...
    MESHES_ROOT/<id>/<e>_<expr>.ply                     multi-view mesh (same frame as the cameras)
    TU_ROOT/<id>/models_reg/<e>_<expr>.obj              TU model (mm); landmark vertex v10[30] = nose tip
    Rt_scale_dict.json                                  [id][exp] = [scale, Rt]: multi-view -> TU
    landmark_indices.npz                                'v10': 68 TU vertex ids

``--release-root R`` is short for R/images, R/meshes, R/tu, R/Rt_scale_dict.json and R/landmark_indices.npz
(the layout ``scripts/make_sample_scene.py --layout facescape-release`` writes).

Output (docs/method.md section 7)::

    OUT/Rt_scale_dict.json, OUT/landmark_indices.npz               copied
    OUT/imface_image/<id>/<e>_<expr>/params.json                   <v>_K, <v>_Rt, <v>_width, <v>_height (kept views)
    OUT/imface_image/<id>/<e>_<expr>/{train,test}/<v>.jpg          undistorted images, black outside the mask
    OUT/imface_mask/<id>/<e>_<expr>/{train,test}/<v>.jpg           face masks (255 = face)
    OUT/imface_model/<id>/<e>_<expr>.obj                           copied TU model
    OUT/imface_gt/<id>/<e>_<expr>.ply                              the mesh cut to the face sphere, TU millimetres
    OUT/gt_mesh.ply                                                the same, when the run prepares one tuple

Face sphere (NeuFace's data_preprocess/cut_mesh.py and render_mask.py): the multi-view mesh is mapped into the
normalised face frame (Rt_scale_dict multi-view -> TU mm, then the nose-tip frame: origin 40 mm behind the TU
nose tip, 100 mm per unit; ``neuface_ns.data.facescape.FaceFrame``) and cut to the unit sphere: faces with all
three vertices inside are kept, faces with one or two inside are clipped at the sphere, the others dropped. Only
this cut mesh is rendered into the masks (so the back of the head, the neck and hair outside the sphere are not
face), and it is written in TU millimetres as the ground truth for ``neuface-eval-mesh --gt`` (the unit of
``neuface-export``'s meshes).

Per view: views whose ``_valid`` is false are skipped (their camera parameters are unreliable); the mask is
rendered from the cut mesh (exact rasterisation of its projected triangles, numpy; a view with a triangle that
crosses its camera plane is ray cast with trimesh instead); views whose mask is empty are dropped, with one line
saying so; the image is undistorted with OpenCV using the view's distortion (same K, same size) and set to black
outside the mask at full resolution, as NeuFace does (the dataparser downsamples later). Pixel convention:
OpenCV's, as FaceScape's K: the centre of pixel (row i, col j) is (u, v) = (j, i), and the pixel is in the mask
iff the ray through K^-1 (j, i, 1) hits the cut mesh, i.e. iff (j, i) lies inside a projected triangle;
``cv2.undistort`` uses K as given.

Train/test split (deterministic): the kept views (valid, non-empty mask) sorted by view id; every
``--test-every``-th one starting with the first (positions 0, 8, 16, ... for the default 8) is a test view, all
others are train views. ``--test-views`` names the test views explicitly instead.

Nothing is overwritten: an existing output tuple (or OUT/gt_mesh.ply for a one-tuple run, or a different
Rt_scale_dict.json / landmark_indices.npz in OUT) stops the script unless ``--overwrite`` is given, which then
replaces exactly the tuples being written. A progress bar (rich) counts views, masks first, then images.

Example::

    neuface-prepare-facescape --images-root fsmview_images --meshes-root fsmview_meshes \\
        --tu-root facescape_trainset --rt-scale-dict Rt_scale_dict.json \\
        --landmark-indices landmark_indices.npz --output-dir data/facescape_neuface --subjects 1 --expressions 1 2
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from neuface_ns.data.dtu import image_size
from neuface_ns.data.facescape import (
    FACESCAPE_EXPRESSIONS,
    FaceFrame,
    camera_from_params,
    expression_dirname,
    load_landmark_index,
    load_rt_scale,
    read_json,
    read_obj_vertex,
    view_is_valid,
    view_sort_key,
)
from neuface_ns.errors import NeuFaceInputError

FACE_SPHERE_RADIUS = 1.0
"""NeuFace keeps the part of the mesh inside the unit sphere of the normalised face frame (100 mm)."""

SPLIT_RULE = (
    "test = every N-th valid view that sees the cut mesh (N = --test-every, default 8) in ascending view-id order, starting with the "
    "first (positions 0, N, 2N, ...); train = the other valid views"
)


# ---------------------------------------------------------------------------------------------------------------
# pieces (importable for tests)
# ---------------------------------------------------------------------------------------------------------------


def view_ids(params: dict) -> List[str]:
    """View names of a params.json dict (those with a '<v>_K' entry), sorted numerically."""
    return sorted({k[: -len("_K")] for k in params if k.endswith("_K")}, key=view_sort_key)


def split_views(valid: Sequence[str], test_every: int = 8, test_views: Optional[Sequence[str]] = None) -> Tuple[List[str], List[str]]:
    """(train, test) names by SPLIT_RULE (or the explicit test_views)."""
    ordered = sorted(valid, key=view_sort_key)
    if test_views:
        test = [v for v in ordered if v in set(test_views)]
    else:
        test = [v for k, v in enumerate(ordered) if k % test_every == 0]
    return [v for v in ordered if v not in test], test


def undistort_image(image: np.ndarray, K: np.ndarray, distortion: Sequence[float]) -> np.ndarray:
    """Undistorted image with the same K (OpenCV convention, used as given) and size (bilinear resampling)."""
    dist = np.asarray(distortion, dtype=np.float64).reshape(-1)
    if dist.size == 0 or not np.any(dist):
        return image
    K = np.asarray(K, dtype=np.float64)
    return cv2.undistort(image, K, dist, None, K)


# -- the face-sphere cut (NeuFace data_preprocess/cut_mesh.py) --------------------------------------------------


def cut_to_sphere(vertices: np.ndarray, faces: np.ndarray, centre: Sequence[float] = (0.0, 0.0, 0.0),
                  radius: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
    """The part of a triangle mesh inside a sphere: (vertices [n, 3] float64, faces [m, 3] int64).

    As NeuFace's cut_mesh.py: a face with all three vertices inside is kept, one with none inside is dropped,
    and one that crosses the sphere is clipped at it (one inside vertex: one triangle; two: two triangles), the
    new vertices lying on the sphere on the crossing edges (solved exactly here; NeuFace bisects). Crossing
    edges shared by two faces share their new vertex, orientation is kept, unused vertices are dropped.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    c = np.asarray(centre, dtype=np.float64)
    inside = ((v - c) ** 2).sum(axis=1) <= radius * radius
    inside_f = inside[f]
    count = inside_f.sum(axis=1)
    keep = f[count == 3]
    parts = [keep]
    new_vertices = np.zeros((0, 3))
    crossing = f[(count == 1) | (count == 2)]
    if len(crossing):
        flags = inside[crossing]
        n_in = flags.sum(axis=1)
        # roll each face so that its odd vertex (the inside one of 1, the outside one of 2) comes first
        odd = np.where(n_in == 1, np.argmax(flags, axis=1), np.argmin(flags, axis=1))
        rows = np.arange(len(crossing))[:, None]
        p = crossing[rows, (odd[:, None] + np.arange(3)) % 3]  # cyclic roll keeps the orientation
        a, b, q = p[:, 0], p[:, 1], p[:, 2]
        # crossing edges (inside vertex, outside vertex): a-b and a-q for one inside, b-a and q-a for two
        one = n_in == 1
        e_in = np.concatenate([np.where(one, a, b), np.where(one, a, q)])
        e_out = np.concatenate([np.where(one, b, a), np.where(one, q, a)])
        key = e_in * len(v) + e_out
        unique, inverse = np.unique(key, return_inverse=True)
        ins, outs = unique // len(v), unique % len(v)
        d = v[outs] - v[ins]
        o = v[ins] - c
        A = (d * d).sum(axis=1)
        B = 2.0 * (o * d).sum(axis=1)
        C = (o * o).sum(axis=1) - radius * radius  # <= 0: the inside vertex
        s = np.clip((-B + np.sqrt(np.maximum(B * B - 4 * A * C, 0.0))) / (2 * np.maximum(A, 1e-300)), 0.0, 1.0)
        new_vertices = v[ins] + s[:, None] * d
        ids = len(v) + inverse
        e_ab, e_aq = ids[: len(crossing)], ids[len(crossing):]  # new vertex on edge a-b and on edge a-q
        parts.append(np.stack([a, e_ab, e_aq], axis=1)[one])  # a inside: triangle (a, E_ab, E_aq)
        two = ~one  # a outside, b and q inside: quad (b, q, E_aq, E_ab)
        parts.append(np.stack([b, q, e_aq], axis=1)[two])
        parts.append(np.stack([b, e_aq, e_ab], axis=1)[two])
    all_v = np.concatenate([v, new_vertices])
    out_f = np.concatenate(parts)
    used = np.zeros(len(all_v), dtype=bool)
    used[out_f.ravel()] = True
    remap = np.cumsum(used) - 1
    return all_v[used], remap[out_f]


# -- masks ------------------------------------------------------------------------------------------------------


def rasterise_triangles(uv: np.ndarray, faces: np.ndarray, width: int, height: int,
                        max_pairs: int = 2_000_000) -> np.ndarray:
    """bool [H, W]: pixel (row i, col j) is set iff its centre (u, v) = (j, i) lies in (or on) a triangle.

    Exact scanline coverage: for every (triangle, pixel row) pair the triangle's span on the line v = i (between
    its long edge, top to bottom vertex, and the short edge on that side of the middle vertex) is intersected with
    the integer columns; the spans are counted as +1 / -1 in a per-row difference array whose cumulative sum is
    the coverage count (so overlapping triangles add up, whatever their order or orientation).
    """
    uv = np.asarray(uv, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    starts, stops = [], []
    if len(f):
        tv = uv[f, 1]
        r0 = np.maximum(np.ceil(tv.min(axis=1)), 0)
        r1 = np.minimum(np.floor(tv.max(axis=1)), height - 1)
        tu = uv[f, 0]
        ok = (r1 >= r0) & (tu.max(axis=1) >= 0) & (tu.min(axis=1) <= width - 1)
        order = np.argsort(tv[ok], axis=1)  # vertices top (smallest v), middle, bottom
        tv = np.take_along_axis(tv[ok], order, axis=1)
        tu = np.take_along_axis(tu[ok], order, axis=1)
        r0, n_rows = r0[ok].astype(np.int64), (r1[ok] - r0[ok]).astype(np.int64) + 1
        del order, ok, r1

        def slope(a, b):
            dv = tv[:, b] - tv[:, a]
            return np.where(dv > 0, (tu[:, b] - tu[:, a]) / np.where(dv > 0, dv, 1.0), 0.0)

        s_long, s_top, s_bottom = slope(0, 2), slope(0, 1), slope(1, 2)
        u_top, v_top, u_mid, v_mid = tu[:, 0], tv[:, 0], tu[:, 1], tv[:, 1]
        ends = np.cumsum(n_rows)
        start = 0
        while start < len(n_rows):
            base = ends[start - 1] if start else 0
            stop = max(int(np.searchsorted(ends, base + max_pairs, side="right")), start + 1)
            counts = n_rows[start:stop]
            tri = np.repeat(np.arange(start, stop), counts)
            row = r0[tri] + (np.arange(len(tri)) - np.repeat(np.cumsum(counts) - counts, counts))
            y = row.astype(np.float64)
            x_long = u_top[tri] + (y - v_top[tri]) * s_long[tri]
            upper = y < v_mid[tri]
            x_short = np.where(upper, u_top[tri] + (y - v_top[tri]) * s_top[tri],
                               u_mid[tri] + (y - v_mid[tri]) * s_bottom[tri])
            jl = np.maximum(np.ceil(np.minimum(x_long, x_short)), 0).astype(np.int64)
            jr = np.minimum(np.floor(np.maximum(x_long, x_short)), width - 1).astype(np.int64)
            span = jl <= jr
            flat = row[span] * (width + 1)
            starts.append(flat + jl[span])
            stops.append(flat + jr[span] + 1)
            start = stop
    size = height * (width + 1)
    if starts:
        diff = np.bincount(np.concatenate(starts), minlength=size)
        diff -= np.bincount(np.concatenate(stops), minlength=size)
    else:
        diff = np.zeros(size, dtype=np.int64)
    diff = diff.reshape(height, width + 1)
    np.cumsum(diff, axis=1, out=diff)
    return diff[:, :width] > 0


def pixel_rays(K: np.ndarray, R: np.ndarray, t: np.ndarray, width: int, height: int):
    """Origin [3] and unit directions [H*W, 3] (world frame) through the pixel centres (u, v) = (j, i)."""
    uu, vv = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pix = np.stack([uu.ravel(), vv.ravel(), np.ones(uu.size)], axis=-1)
    d_world = pix @ np.linalg.inv(K).T @ R  # R^T K^-1 [u, v, 1]
    d_world /= np.linalg.norm(d_world, axis=-1, keepdims=True)
    return -R.T @ t, d_world


def raycast_mask(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray,
                 width: int, height: int, chunk: int = 400_000) -> np.ndarray:
    """bool [H, W]: the ray through the pixel centre hits the mesh (trimesh ray casting; slow, any camera)."""
    import trimesh

    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    origin, dirs = pixel_rays(K, R, t, width, height)
    hits = np.zeros(dirs.shape[0], dtype=bool)
    for start in range(0, dirs.shape[0], chunk):
        d = dirs[start : start + chunk]
        hits[start : start + chunk] = mesh.ray.intersects_any(np.broadcast_to(origin, d.shape).copy(), d)
    return hits.reshape(height, width)


def render_mask(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray,
                width: int, height: int) -> np.ndarray:
    """bool [H, W] face mask of the (cut) mesh seen by camera x_cam = R x + t with OpenCV intrinsics K.

    Pixel (row i, col j) is set iff the ray through (u, v) = (j, i) hits the mesh. Triangles in front of the
    camera are projected and rasterised (``rasterise_triangles``), those behind it dropped; only when a triangle
    crosses the camera plane is the mask ray cast instead (``raycast_mask``).
    """
    cam = np.asarray(vertices, dtype=np.float64) @ R.T + t
    z = cam[:, 2]
    f = np.asarray(faces, dtype=np.int64)
    front = z[f] > 1e-9 * max(float(np.abs(z).max(initial=0.0)), 1.0)
    if not front.all(axis=1)[front.any(axis=1)].all():
        return raycast_mask(vertices, f[front.any(axis=1)], K, R, t, width, height)
    f = f[front.all(axis=1)]
    with np.errstate(divide="ignore", invalid="ignore"):
        pix = cam @ np.asarray(K, dtype=np.float64).T
        uv = pix[:, :2] / pix[:, 2:3]
    return rasterise_triangles(uv, f, width, height)


def _read_image(path: Path) -> np.ndarray:
    if not path.is_file():
        raise NeuFaceInputError(path, "image of a valid view not found")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise NeuFaceInputError(path, "not a readable image")
    return image


def _write_jpeg(path: Path, image: np.ndarray, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
        raise NeuFaceInputError(path, "cannot write image")


# ---------------------------------------------------------------------------------------------------------------
# the conversion
# ---------------------------------------------------------------------------------------------------------------


class Paths:
    def __init__(self, args):
        release = args.release_root
        self.images = args.images_root or (release / "images" if release else None)
        self.meshes = args.meshes_root or (release / "meshes" if release else None)
        self.tu = args.tu_root or (release / "tu" if release else None)
        self.rt_scale = args.rt_scale_dict or (release / "Rt_scale_dict.json" if release else None)
        self.landmarks = args.landmark_indices or (release / "landmark_indices.npz" if release else None)
        missing = [name for name, value in (("--images-root", self.images), ("--meshes-root", self.meshes),
                                            ("--tu-root", self.tu), ("--rt-scale-dict", self.rt_scale),
                                            ("--landmark-indices", self.landmarks)) if value is None]
        if missing:
            raise SystemExit(f"prepare_facescape: give --release-root or {', '.join(missing)}")


def find_tuples(paths: Paths, subjects: Optional[Sequence[int]], expressions: Optional[Sequence[int]]) -> List[Tuple[int, int]]:
    if not paths.images.is_dir():
        raise NeuFaceInputError(paths.images, "images root not found")
    present = sorted((p.name for p in paths.images.iterdir() if p.is_dir() and p.name.isdigit()), key=int)
    if subjects:
        unknown = [s for s in subjects if str(s) not in present]
        if unknown:
            raise NeuFaceInputError(paths.images, f"unknown subject(s) {unknown}; subjects present: {', '.join(present) or 'none'}")
    chosen = [int(s) for s in (subjects or [int(p) for p in present])]
    tuples = []
    for sid in chosen:
        exprs_present = [e for e in range(1, len(FACESCAPE_EXPRESSIONS) + 1)
                         if (paths.images / str(sid) / expression_dirname(e)).is_dir()]
        if expressions:
            for e in expressions:
                if not 1 <= e <= len(FACESCAPE_EXPRESSIONS):
                    raise NeuFaceInputError(paths.images, f"unknown expression {e} (valid: 1..{len(FACESCAPE_EXPRESSIONS)})")
                if e not in exprs_present:
                    names = ", ".join(expression_dirname(x) for x in exprs_present) or "none"
                    raise NeuFaceInputError(paths.images / str(sid) / expression_dirname(e),
                                            f"expression {e} not found for subject {sid}; present: {names}")
            tuples += [(sid, e) for e in expressions]
        else:
            tuples += [(sid, e) for e in exprs_present]
    if not tuples:
        raise NeuFaceInputError(paths.images, "no <id>/<e>_<expr> folders found")
    return tuples


def _copy_root_file(src: Path, dst: Path, overwrite: bool) -> None:
    if not src.is_file():
        raise NeuFaceInputError(
            src,
            "file not found; Rt_scale_dict.json and landmark_indices.npz ship with the FaceScape toolkit "
            "(toolkit/predef/ of github.com/zhuhao-nju/facescape), not with the dataset zips",
        )
    if dst.exists():
        if filecmp.cmp(src, dst, shallow=False):
            return
        if not overwrite:
            raise NeuFaceInputError(dst, "already exists and differs from the input (pass --overwrite to replace it)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _tuple_outputs(out: Path, sid: int, eid: int) -> List[Path]:
    expr = expression_dirname(eid)
    return [out / "imface_image" / str(sid) / expr, out / "imface_mask" / str(sid) / expr,
            out / "imface_model" / str(sid) / f"{expr}.obj", out / "imface_gt" / str(sid) / f"{expr}.ply"]


def load_face_frame_from_release(paths: Paths, sid: int, eid: int) -> FaceFrame:
    """The multi-view -> TU -> normalised face frame of a tuple, read from the release files."""
    scale, R_s, t_s = load_rt_scale(paths.rt_scale, sid, eid)
    tu_src = paths.tu / str(sid) / "models_reg" / f"{expression_dirname(eid)}.obj"
    nose = read_obj_vertex(tu_src, load_landmark_index(paths.landmarks))
    return FaceFrame(scale=scale, rotation=R_s, translation=t_s, nose_tip=nose)


def load_cut_mesh(mesh_path: Path, frame: FaceFrame) -> Tuple[np.ndarray, np.ndarray]:
    """The multi-view mesh in the normalised face frame, cut to the unit (face) sphere."""
    if not mesh_path.is_file():
        raise NeuFaceInputError(mesh_path, "multi-view mesh not found (needed to render the masks)")
    import trimesh

    try:
        mesh = trimesh.load(mesh_path, process=False, force="mesh")
    except Exception as err:  # trimesh raises many types for bad files
        raise NeuFaceInputError(mesh_path, f"cannot read mesh: {err}") from None
    faces = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))), dtype=np.int64)
    if len(faces) == 0:
        raise NeuFaceInputError(mesh_path, "mesh has no faces")
    vertices = frame.mview_to_normalised(np.asarray(mesh.vertices))
    del mesh
    vertices, faces = cut_to_sphere(vertices, faces, (0.0, 0.0, 0.0), FACE_SPHERE_RADIUS)
    if len(faces) == 0:
        raise NeuFaceInputError(mesh_path, "no part of the mesh lies inside the face sphere (100 mm around the point "
                                           "40 mm behind the nose tip): check Rt_scale_dict and the TU model")
    return vertices, faces


def write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Binary little-endian PLY (float32 vertices, int32 faces)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
              f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n").encode()
    rec = np.empty(len(faces), dtype=[("n", "u1"), ("v", "<i4", (3,))])
    rec["n"], rec["v"] = 3, faces
    with open(path, "wb") as fh:
        fh.write(header)
        fh.write(np.asarray(vertices, dtype="<f4").tobytes())
        fh.write(rec.tobytes())


def _image_path(src_dir: Path, view: str) -> Path:
    for ext in (".jpg", ".png"):
        if (src_dir / f"{view}{ext}").is_file():
            return src_dir / f"{view}{ext}"
    raise NeuFaceInputError(src_dir / f"{view}.jpg", "image of a valid view not found")


def _checked_size(params: dict, view: str, image_path: Path) -> Tuple[int, int]:
    width, height = image_size(image_path)
    declared = (params.get(f"{view}_width"), params.get(f"{view}_height"))
    if None not in declared and (int(declared[0]), int(declared[1])) != (width, height):
        raise NeuFaceInputError(image_path, f"image is {width}x{height} but params.json says {declared[0]}x{declared[1]}")
    return width, height


def prepare_tuple(paths: Paths, out: Path, sid: int, eid: int, args, progress=None, task=None,
                  root_gt: Optional[Path] = None) -> Dict[str, object]:
    expr = expression_dirname(eid)
    src_dir = paths.images / str(sid) / expr
    params_path = src_dir / "params.json"
    params = read_json(params_path)
    frame = load_face_frame_from_release(paths, sid, eid)
    mesh_path = paths.meshes / str(sid) / f"{expr}.ply"
    vertices, faces = load_cut_mesh(mesh_path, frame)
    describe = f"subject {sid} {expr}"

    views = view_ids(params)
    valid = [v for v in views if view_is_valid(params, v)]
    skipped = [v for v in views if v not in valid]
    # pass 1: masks of the cut mesh (kept bit-packed), views that see none of it are dropped
    masks: Dict[str, Tuple[np.ndarray, Tuple[int, int]]] = {}
    empty: List[str] = []
    if progress is not None:
        progress.update(task, description=f"{describe}: masks")
    for view in valid:
        K, R, t = camera_from_params(params, view, params_path)
        width, height = _checked_size(params, view, _image_path(src_dir, view))
        c2w = frame.camera_to_world(R, t)  # OpenCV camera -> normalised face frame
        mask = render_mask(vertices, faces, K, c2w[:, :3].T, -c2w[:, :3].T @ c2w[:, 3], width, height)
        if mask.any():
            masks[view] = (np.packbits(mask), (height, width))
        else:
            empty.append(view)
        if progress is not None:
            progress.advance(task)
    if empty:
        print(f"{describe}: dropping view(s) {', '.join(empty)}: the mesh cut to the face sphere covers no pixel")
    kept = [v for v in valid if v in masks]
    if not kept:
        raise NeuFaceInputError(mesh_path, "no valid view sees the part of the mesh inside the face sphere")
    train, test = split_views(kept, args.test_every, args.test_views)

    # pass 2: undistort, black out the background at full resolution, write
    image_out, mask_out = out / "imface_image" / str(sid) / expr, out / "imface_mask" / str(sid) / expr
    out_params: Dict[str, object] = {}
    if progress is not None:
        progress.update(task, description=f"{describe}: images")
    for view in kept:
        split = "test" if view in test else "train"
        K, R, t = camera_from_params(params, view, params_path)
        packed, (height, width) = masks.pop(view)
        mask = np.unpackbits(packed, count=height * width).reshape(height, width).astype(bool)
        image = undistort_image(_read_image(_image_path(src_dir, view)), K, params.get(f"{view}_distortion", [0.0] * 5))
        np.multiply(image, mask[..., None], out=image)  # as NeuFace's render_mask.py: kept only inside the mask
        _write_jpeg(image_out / split / f"{view}.jpg", image, args.jpeg_quality)
        _write_jpeg(mask_out / split / f"{view}.jpg", mask.astype(np.uint8) * 255, args.jpeg_quality)
        out_params[f"{view}_K"] = K.tolist()
        out_params[f"{view}_Rt"] = np.concatenate([R, t[:, None]], axis=1).tolist()
        out_params[f"{view}_width"] = width
        out_params[f"{view}_height"] = height
        if progress is not None:
            progress.advance(task)
    if progress is not None:
        progress.advance(task, len(empty))
    image_out.mkdir(parents=True, exist_ok=True)
    (image_out / "params.json").write_text(json.dumps(out_params, indent=1))
    model_dst = out / "imface_model" / str(sid) / f"{expr}.obj"
    model_dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(paths.tu / str(sid) / "models_reg" / f"{expr}.obj", model_dst)
    gt = out / "imface_gt" / str(sid) / f"{expr}.ply"
    write_ply(gt, frame.normalised_to_tu(vertices), faces)  # TU millimetres, as neuface-export's meshes
    if root_gt is not None:
        shutil.copyfile(gt, root_gt)
    return {"subject": sid, "expression": expr, "train": train, "test": test, "skipped_invalid": skipped,
            "dropped_empty_mask": empty, "gt_mesh": gt, "gt_faces": int(len(faces))}


def count_valid_views(paths: Paths, tuples) -> int:
    total = 0
    for sid, eid in tuples:
        params = read_json(paths.images / str(sid) / expression_dirname(eid) / "params.json")
        total += sum(view_is_valid(params, v) for v in view_ids(params))
    return total


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="FaceScape multi-view release -> NeuFace layout (see the module docstring).")
    ap.add_argument("--output-dir", type=Path, required=True, help="root of the NeuFace layout to write")
    ap.add_argument("--release-root", type=Path, default=None,
                    help="shortcut for R/images, R/meshes, R/tu, R/Rt_scale_dict.json, R/landmark_indices.npz")
    ap.add_argument("--images-root", type=Path, default=None, help="<id>/<e>_<expr>/{<v>.jpg, params.json}")
    ap.add_argument("--meshes-root", type=Path, default=None, help="<id>/<e>_<expr>.ply (multi-view meshes)")
    ap.add_argument("--tu-root", type=Path, default=None, help="<id>/models_reg/<e>_<expr>.obj (TU models)")
    ap.add_argument("--rt-scale-dict", type=Path, default=None, help="Rt_scale_dict.json")
    ap.add_argument("--landmark-indices", type=Path, default=None, help="landmark_indices.npz ('v10')")
    ap.add_argument("--subjects", type=int, nargs="+", default=None, help="subject ids (default: all found)")
    ap.add_argument("--expressions", type=int, nargs="+", default=None, help="1-based expression ids (default: all found)")
    ap.add_argument("--test-every", type=int, default=8, help="every N-th valid view is a test view (default 8)")
    ap.add_argument("--test-views", nargs="+", default=None, help="explicit test view names (replaces --test-every)")
    ap.add_argument("--jpeg-quality", type=int, default=95)
    ap.add_argument("--overwrite", action="store_true", help="replace existing outputs of the tuples written")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.test_every < 1:
        raise SystemExit("prepare_facescape: --test-every must be >= 1")
    paths = Paths(args)
    out: Path = args.output_dir
    if out.exists() and not out.is_dir():
        raise NeuFaceInputError(out, "exists and is not a directory")
    tuples = find_tuples(paths, args.subjects, args.expressions)
    root_gt = out / "gt_mesh.ply" if len(tuples) == 1 else None  # a one-scene output, like the bundled samples
    for sid, eid in tuples:  # refuse before writing anything
        for path in _tuple_outputs(out, sid, eid) + ([root_gt] if root_gt else []):
            if path.exists() and not args.overwrite:
                raise NeuFaceInputError(path, "already exists (pass --overwrite to replace it)")
    _copy_root_file(paths.rt_scale, out / "Rt_scale_dict.json", args.overwrite)
    _copy_root_file(paths.landmarks, out / "landmark_indices.npz", args.overwrite)
    for sid, eid in tuples:
        for path in _tuple_outputs(out, sid, eid) + ([root_gt] if root_gt else []):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    t0 = time.time()
    reports = []
    total = count_valid_views(paths, tuples)
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn()) as progress:
        task = progress.add_task("views", total=2 * total)  # masks, then images
        for sid, eid in tuples:
            reports.append(prepare_tuple(paths, out, sid, eid, args, progress, task, root_gt))
    for r in reports:
        print(f"subject {r['subject']} {r['expression']}: train {len(r['train'])} views, test {r['test']}, "
              f"skipped invalid {r['skipped_invalid']}, dropped (empty mask) {r['dropped_empty_mask']}; "
              f"ground truth {r['gt_mesh']} ({r['gt_faces']} faces, TU mm)")
    print(f"split rule: {SPLIT_RULE if not args.test_views else 'explicit --test-views'}")
    if root_gt is not None:
        print(f"ground truth of the scene: {root_gt} (the mesh cut to the face sphere, TU mm)")
    elapsed = time.time() - t0
    print(f"wrote {len(reports)} tuple(s) to {out} in {elapsed:.1f}s ({elapsed / max(total, 1):.2f}s per valid view)")
    return 0


def entrypoint() -> None:
    """Console script `neuface-prepare-facescape` (argparse, not tyro: the CLI of scripts/prepare_facescape.py as it was)."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
