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

Output (spec section 7)::

    OUT/Rt_scale_dict.json, OUT/landmark_indices.npz               copied
    OUT/imface_image/<id>/<e>_<expr>/params.json                   <v>_K, <v>_Rt, <v>_width, <v>_height (valid views)
    OUT/imface_image/<id>/<e>_<expr>/{train,test}/<v>.jpg          undistorted images
    OUT/imface_mask/<id>/<e>_<expr>/{train,test}/<v>.jpg           face masks (255 = face)
    OUT/imface_model/<id>/<e>_<expr>.obj                           copied TU model

Per view: views whose ``_valid`` is false are skipped (their camera parameters are unreliable); the image is
undistorted with OpenCV using the view's distortion (same K, same size); the mask is the set of pixels whose ray
hits the multi-view mesh (trimesh ray casting, Embree when available; no GPU). Pixel convention: the project's
(K's principal point measured from the image corner, the ray of pixel (row i, col j) through (j + 0.5, i + 0.5));
undistortion and ray casting both use it.

Train/test split (deterministic): the valid views sorted by view id; every ``--test-every``-th one starting with
the first (positions 0, 8, 16, ... for the default 8) is a test view, all others are train views.
``--test-views`` names the test views explicitly instead.

Nothing is overwritten: an existing output tuple (or a different Rt_scale_dict.json / landmark_indices.npz in
OUT) stops the script unless ``--overwrite`` is given, which then replaces exactly the tuples being written.

Example::

    python scripts/prepare_facescape.py --images-root fsmview_images --meshes-root fsmview_meshes \\
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

from neuface_ns.data.facescape import (
    FACESCAPE_EXPRESSIONS,
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

SPLIT_RULE = (
    "test = every N-th valid view (N = --test-every, default 8) in ascending view-id order, starting with the "
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


def corner_convention_cv_matrix(K: np.ndarray) -> np.ndarray:
    """The K OpenCV needs (pixel centres at integers) for a K whose principal point is measured from the corner."""
    K_cv = np.asarray(K, dtype=np.float64).copy()
    K_cv[0, 2] -= 0.5
    K_cv[1, 2] -= 0.5
    return K_cv


def undistort_image(image: np.ndarray, K: np.ndarray, distortion: Sequence[float]) -> np.ndarray:
    """Undistorted image with the same K and size (bilinear resampling)."""
    dist = np.asarray(distortion, dtype=np.float64).reshape(-1)
    if dist.size == 0 or not np.any(dist):
        return image
    K_cv = corner_convention_cv_matrix(K)
    return cv2.undistort(image, K_cv, dist, None, K_cv)


def pixel_rays(K: np.ndarray, R: np.ndarray, t: np.ndarray, width: int, height: int, step: int = 1):
    """Origin [3] and unit directions [h*w, 3] (world frame) through pixel centres of a (coarse) grid.

    With step s the grid has ceil(H/s) x ceil(W/s) points at the centres of s x s pixel blocks.
    """
    cols = np.arange(0, width, step) + step / 2.0
    rows = np.arange(0, height, step) + step / 2.0
    uu, vv = np.meshgrid(cols, rows)
    pix = np.stack([uu.ravel(), vv.ravel(), np.ones(uu.size)], axis=-1)
    d_cam = pix @ np.linalg.inv(K).T
    d_world = d_cam @ R  # R^T d
    d_world /= np.linalg.norm(d_world, axis=-1, keepdims=True)
    return -R.T @ t, d_world, (len(rows), len(cols))


def render_mask(mesh, K: np.ndarray, R: np.ndarray, t: np.ndarray, width: int, height: int,
                step: int = 1, chunk: int = 400_000) -> np.ndarray:
    """bool [H, W]: the pixel's ray hits the mesh (cast on an s x s block grid and repeated for step s)."""
    origin, dirs, (h, w) = pixel_rays(K, R, t, width, height, step)
    hits = np.zeros(dirs.shape[0], dtype=bool)
    for start in range(0, dirs.shape[0], chunk):
        d = dirs[start : start + chunk]
        hits[start : start + chunk] = mesh.ray.intersects_any(np.broadcast_to(origin, d.shape).copy(), d)
    mask = hits.reshape(h, w)
    if step > 1:
        mask = np.repeat(np.repeat(mask, step, axis=0), step, axis=1)[:height, :width]
    return mask


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
        raise NeuFaceInputError(src, "file not found")
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
            out / "imface_model" / str(sid) / f"{expr}.obj"]


def prepare_tuple(paths: Paths, out: Path, sid: int, eid: int, args, progress=None, task=None) -> Dict[str, object]:
    expr = expression_dirname(eid)
    src_dir = paths.images / str(sid) / expr
    params_path = src_dir / "params.json"
    params = read_json(params_path)
    load_rt_scale(paths.rt_scale, sid, eid)  # fail early on a missing entry
    tu_src = paths.tu / str(sid) / "models_reg" / f"{expr}.obj"
    read_obj_vertex(tu_src, load_landmark_index(paths.landmarks))  # the nose-tip vertex must exist
    mesh_path = paths.meshes / str(sid) / f"{expr}.ply"
    if not mesh_path.is_file():
        raise NeuFaceInputError(mesh_path, "multi-view mesh not found (needed to render the masks)")
    import trimesh

    try:
        mesh = trimesh.load(mesh_path, process=False, force="mesh")
    except Exception as err:  # trimesh raises many types for bad files
        raise NeuFaceInputError(mesh_path, f"cannot read mesh: {err}") from None
    if len(getattr(mesh, "faces", [])) == 0:
        raise NeuFaceInputError(mesh_path, "mesh has no faces")

    views = view_ids(params)
    valid = [v for v in views if view_is_valid(params, v)]
    skipped = [v for v in views if v not in valid]
    train, test = split_views(valid, args.test_every, args.test_views)
    image_out, mask_out = out / "imface_image" / str(sid) / expr, out / "imface_mask" / str(sid) / expr
    out_params: Dict[str, object] = {}
    for view in valid:
        split = "test" if view in test else "train"
        K, R, t = camera_from_params(params, view, params_path)
        image = _read_image(src_dir / f"{view}.jpg") if (src_dir / f"{view}.jpg").is_file() else _read_image(src_dir / f"{view}.png")
        height, width = image.shape[:2]
        declared = (params.get(f"{view}_width"), params.get(f"{view}_height"))
        if None not in declared and (int(declared[0]), int(declared[1])) != (width, height):
            raise NeuFaceInputError(src_dir / f"{view}.jpg",
                                    f"image is {width}x{height} but params.json says {declared[0]}x{declared[1]}")
        dist = params.get(f"{view}_distortion", [0.0] * 5)
        image = undistort_image(image, K, dist)
        mask = render_mask(mesh, K, R, t, width, height, step=args.mask_step)
        _write_jpeg(image_out / split / f"{view}.jpg", image, args.jpeg_quality)
        _write_jpeg(mask_out / split / f"{view}.jpg", np.where(mask, 255, 0).astype(np.uint8), args.jpeg_quality)
        out_params[f"{view}_K"] = K.tolist()
        out_params[f"{view}_Rt"] = np.concatenate([R, t[:, None]], axis=1).tolist()
        out_params[f"{view}_width"] = width
        out_params[f"{view}_height"] = height
        if progress is not None:
            progress.advance(task)
    (image_out).mkdir(parents=True, exist_ok=True)
    (image_out / "params.json").write_text(json.dumps(out_params, indent=1))
    model_dst = out / "imface_model" / str(sid) / f"{expr}.obj"
    model_dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tu_src, model_dst)
    return {"subject": sid, "expression": expr, "train": train, "test": test, "skipped_invalid": skipped}


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
    ap.add_argument("--mask-step", type=int, default=1,
                    help="cast one mask ray per s x s pixel block (default 1: every pixel)")
    ap.add_argument("--jpeg-quality", type=int, default=95)
    ap.add_argument("--overwrite", action="store_true", help="replace existing outputs of the tuples written")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.test_every < 1 or args.mask_step < 1:
        raise SystemExit("prepare_facescape: --test-every and --mask-step must be >= 1")
    paths = Paths(args)
    out: Path = args.output_dir
    if out.exists() and not out.is_dir():
        raise NeuFaceInputError(out, "exists and is not a directory")
    tuples = find_tuples(paths, args.subjects, args.expressions)
    for sid, eid in tuples:  # refuse before writing anything
        for path in _tuple_outputs(out, sid, eid):
            if path.exists() and not args.overwrite:
                raise NeuFaceInputError(path, "already exists (pass --overwrite to replace it)")
    _copy_root_file(paths.rt_scale, out / "Rt_scale_dict.json", args.overwrite)
    _copy_root_file(paths.landmarks, out / "landmark_indices.npz", args.overwrite)
    for sid, eid in tuples:
        for path in _tuple_outputs(out, sid, eid):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    t0 = time.time()
    reports = []
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn()) as progress:
        task = progress.add_task("views", total=count_valid_views(paths, tuples))
        for sid, eid in tuples:
            progress.update(task, description=f"subject {sid} {expression_dirname(eid)}")
            reports.append(prepare_tuple(paths, out, sid, eid, args, progress, task))
    for r in reports:
        print(f"subject {r['subject']} {r['expression']}: train {len(r['train'])} views, test {r['test']}, "
              f"skipped invalid {r['skipped_invalid']}")
    print(f"split rule: {SPLIT_RULE if not args.test_views else 'explicit --test-views'}")
    print(f"wrote {len(reports)} tuple(s) to {out} in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
