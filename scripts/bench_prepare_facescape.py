#!/usr/bin/env python
"""A FaceScape multi-view *release* whose mesh reaches outside the face sphere, at test or release size, and a
timing / peak-memory run of ``scripts/prepare_facescape.py`` on it.

The head is an ellipsoid plus an open neck tube, built in the normalised face frame (one unit = 100 mm, the
nose tip at (0, 0, 0.4), the face sphere = the unit sphere) and written in a FaceScape multi-view frame through a
scaled rigid Rt_scale_dict entry, so the back of the head and most of the neck lie outside the face sphere::

    python scripts/bench_prepare_facescape.py generate --out /tmp/fs_release --views 52 \\
        --width 4000 --height 3000 --subdivisions 8          # ~1.3 M triangles, 4000 x 3000 JPEGs
    python scripts/bench_prepare_facescape.py run --release /tmp/fs_release --out /tmp/fs_prepared \\
        [--script scripts/prepare_facescape.py] [-- extra prepare_facescape args]

``run`` prints one JSON line: wall seconds, seconds per view and the peak resident memory of the preparation
(``/usr/bin/time -v``'s "Maximum resident set size", else getrusage of the child).

This module imports nothing from ``neuface_ns``: the tests use it as an independent fixture
(``write_head_release`` returns the analytic geometry and the cameras in the normalised frame).
Pixel convention: OpenCV (the centre of pixel (row i, col j) is at (u, v) = (j, i) in K's frame).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

# geometry in the normalised face frame (units of 100 mm)
HEAD_CENTRE = (0.0, 0.1, -0.5)
HEAD_RADII = (0.75, 1.05, 0.95)  # front of the head at z = 0.45
NECK_AXIS_XZ = (0.0, -0.55)
NECK_RADIUS = 0.45
NECK_Y = (-2.2, -0.5)  # bottom, top

# multi-view frame: X_TU = R_s (scale X_mview) + t_s (mm); nose tip of the TU model (mm)
MVIEW_SCALE = 1.08
MVIEW_AXIS, MVIEW_ANGLE = (0.3, 1.0, 0.1), 0.4
MVIEW_T = (12.0, -30.0, 50.0)
NOSE_TU_MM = (3.0, -20.0, 80.0)
FACE_Z_OFFSET_MM = 40.0
MM_PER_UNIT = 100.0


def _rotation(axis, angle) -> np.ndarray:
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def normalised_to_mview(points: np.ndarray) -> np.ndarray:
    tu = MM_PER_UNIT * np.asarray(points, dtype=np.float64) + np.asarray(NOSE_TU_MM) - np.array([0, 0, FACE_Z_OFFSET_MM])
    R_s = _rotation(MVIEW_AXIS, MVIEW_ANGLE)
    return (tu - np.asarray(MVIEW_T)) @ R_s / MVIEW_SCALE  # R_s^T (X - t) / s, row vectors


def normalised_to_tu(points: np.ndarray) -> np.ndarray:
    return MM_PER_UNIT * np.asarray(points, dtype=np.float64) + np.asarray(NOSE_TU_MM) - np.array([0, 0, FACE_Z_OFFSET_MM])


def head_and_neck(subdivisions: int = 4, tube_segments: int = 96, tube_rows: int = 24):
    """(vertices [N, 3], faces [M, 3]) of the ellipsoid head (scaled icosphere) and the open neck tube."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    head_v = np.asarray(sphere.vertices) * np.asarray(HEAD_RADII) + np.asarray(HEAD_CENTRE)
    head_f = np.asarray(sphere.faces)
    theta = np.linspace(0, 2 * np.pi, tube_segments, endpoint=False)
    ys = np.linspace(NECK_Y[0], NECK_Y[1], tube_rows + 1)
    tt, yy = np.meshgrid(theta, ys)
    tube_v = np.stack([NECK_AXIS_XZ[0] + NECK_RADIUS * np.cos(tt), yy, NECK_AXIS_XZ[1] + NECK_RADIUS * np.sin(tt)],
                      axis=-1).reshape(-1, 3)
    r, c = np.meshgrid(np.arange(tube_rows), np.arange(tube_segments), indexing="ij")
    a = r * tube_segments + c
    b = r * tube_segments + (c + 1) % tube_segments
    tube_f = np.concatenate([np.stack([a, b, a + tube_segments], -1).reshape(-1, 3),
                             np.stack([b, b + tube_segments, a + tube_segments], -1).reshape(-1, 3)])
    return np.concatenate([head_v, tube_v]), np.concatenate([head_f, tube_f + len(head_v)])


def look_at(centre, target=(0.0, 0.05, 0.0), up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """OpenCV world->camera rotation (rows: x right, y down, z forward) of a camera at ``centre``."""
    z = np.asarray(target, dtype=np.float64) - np.asarray(centre, dtype=np.float64)
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z])


def camera_ring(num_views: int, distance: float) -> List[np.ndarray]:
    """Camera centres on a frontal arc (azimuth -80..80 deg, elevation -15..25 deg)."""
    centres = []
    for k in range(num_views):
        f = k / max(num_views - 1, 1)
        az = math.radians(-80 + 160 * f)
        el = math.radians(-15 + 40 * ((k * 0.618) % 1.0))
        centres.append(distance * np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)]))
    return centres


def mview_extrinsics(R_n: np.ndarray, c_n: np.ndarray):
    """(R, t) in the multi-view frame of the camera x_cam = R_n (x_norm - c_n) (camera coordinates scaled)."""
    R_s = _rotation(MVIEW_AXIS, MVIEW_ANGLE)
    off = -np.asarray(NOSE_TU_MM) + np.array([0.0, 0.0, FACE_Z_OFFSET_MM])
    R = R_n @ R_s
    t = (R_n @ (np.asarray(MVIEW_T) + off) - MM_PER_UNIT * R_n @ c_n) / MVIEW_SCALE
    return R, t


def _write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
              f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n").encode()
    face_rec = np.empty(len(faces), dtype=[("n", "u1"), ("v", "<i4", (3,))])
    face_rec["n"], face_rec["v"] = 3, faces
    with open(path, "wb") as fh:
        fh.write(header)
        fh.write(np.asarray(vertices, dtype="<f4").tobytes())
        fh.write(face_rec.tobytes())


def write_head_release(out, num_views: int = 6, width: int = 160, height: int = 120, focal: Optional[float] = None,
                       distance: float = 7.0, subdivisions: int = 4, distortion: Sequence[float] = (0, 0, 0, 0, 0),
                       away_views: Sequence[int] = (), image_value=(200, 180, 160), pattern: bool = False,
                       jpeg_quality: int = 95, subject_id: int = 1, expression: str = "1_neutral") -> Dict[str, object]:
    """Write the release layout under ``out``; returns the cameras (normalised frame) and geometry facts.

    Views in ``away_views`` look away from the head (their cut mask is empty).
    """
    import cv2

    out = Path(out)
    image_dir = out / "images" / str(subject_id) / expression
    image_dir.mkdir(parents=True, exist_ok=True)
    (out / "meshes" / str(subject_id)).mkdir(parents=True, exist_ok=True)
    (out / "tu" / str(subject_id) / "models_reg").mkdir(parents=True, exist_ok=True)
    focal = focal if focal is not None else 7000.0 * width / 4000.0
    K = np.array([[focal, 0, (width - 1) / 2.0], [0, focal, (height - 1) / 2.0], [0, 0, 1]])  # OpenCV
    vertices, faces = head_and_neck(subdivisions)
    _write_ply(out / "meshes" / str(subject_id) / f"{expression}.ply", normalised_to_mview(vertices), faces)
    # TU model: 68 landmark vertices, vertex 30 the nose tip (only that one anchors the frame)
    tu = np.array(NOSE_TU_MM)[None] + np.random.default_rng(0).normal(0, 20, (68, 3))
    tu[30] = NOSE_TU_MM
    with open(out / "tu" / str(subject_id) / "models_reg" / f"{expression}.obj", "w") as fh:
        fh.write("".join(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in tu))
        fh.write("f 1 2 3\n")
    np.savez(out / "landmark_indices.npz", v10=np.arange(68))
    Rt = np.eye(4)
    Rt[:3, :3], Rt[:3, 3] = _rotation(MVIEW_AXIS, MVIEW_ANGLE), MVIEW_T
    eid = expression.split("_")[0]
    (out / "Rt_scale_dict.json").write_text(json.dumps({str(subject_id): {eid: [MVIEW_SCALE, Rt.tolist()]}}))
    if pattern:
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        base = 128 + 60 * np.sin(xx / 97.0)[..., None] * np.cos(yy / 131.0)[..., None] * np.array([1, 0.7, 0.4])
        base += np.random.default_rng(1).normal(0, 6, base.shape)
        image = np.clip(base, 0, 255).astype(np.uint8)
    else:
        image = np.empty((height, width, 3), np.uint8)
        image[:] = tuple(image_value)[::-1]  # RGB -> OpenCV's BGR
    first = image_dir / "0.jpg"
    cv2.imwrite(str(first), image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    params: Dict[str, object] = {}
    cams = []
    for k, c_n in enumerate(camera_ring(num_views, distance)):
        R_n = look_at(c_n)
        if k in away_views:
            R_n = look_at(c_n, target=2 * c_n)
        R, t = mview_extrinsics(R_n, c_n)
        params.update({f"{k}_K": K.tolist(), f"{k}_Rt": np.concatenate([R, t[:, None]], 1).tolist(),
                       f"{k}_distortion": list(distortion), f"{k}_width": width, f"{k}_height": height,
                       f"{k}_valid": True})
        if k:
            shutil.copyfile(first, image_dir / f"{k}.jpg")
        cams.append({"view": str(k), "K": K, "R_norm": R_n, "centre_norm": c_n})
    (image_dir / "params.json").write_text(json.dumps(params, indent=1))
    return {"root": out, "cameras": cams, "num_faces": int(len(faces)), "num_vertices": int(len(vertices)),
            "image": image}


def _peak_rss_kib(stderr: str) -> Optional[int]:
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    return int(match.group(1)) if match else None


def run(release: Path, out: Path, script: Path, extra: Sequence[str]) -> Dict[str, object]:
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, str(script), "--release-root", str(release), "--output-dir", str(out), *extra]
    timer = ["/usr/bin/time", "-v"] if os.path.exists("/usr/bin/time") else []
    t0 = time.perf_counter()
    proc = subprocess.run(timer + cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"bench: {script} failed ({proc.returncode})")
    peak = _peak_rss_kib(proc.stderr) or resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    params = {}
    for p in (release / "images").rglob("params.json"):
        params.update({f"{p}:{k}": v for k, v in json.loads(p.read_text()).items()})
    views = sum(1 for k in params if k.endswith("_K"))
    return {"script": str(script), "views": views, "wall_s": round(wall, 2), "s_per_view": round(wall / max(views, 1), 3),
            "peak_rss_mib": round(peak / 1024, 1), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "tail": proc.stdout.strip().splitlines()[-3:]}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--views", type=int, default=52)
    g.add_argument("--width", type=int, default=4000)
    g.add_argument("--height", type=int, default=3000)
    g.add_argument("--subdivisions", type=int, default=8, help="icosphere level of the head (8: 1.3 M triangles)")
    r = sub.add_parser("run")
    r.add_argument("--release", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--script", type=Path, default=Path(__file__).with_name("prepare_facescape.py"))
    r.add_argument("extra", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    if args.cmd == "generate":
        t0 = time.perf_counter()
        if args.out.exists():
            shutil.rmtree(args.out)
        info = write_head_release(args.out, args.views, args.width, args.height, subdivisions=args.subdivisions,
                                  distortion=(-0.05, 0.02, 0.0005, -0.0003, 0.0), pattern=True, jpeg_quality=90)
        print(json.dumps({"out": str(args.out), "views": args.views, "size": [args.width, args.height],
                          "triangles": info["num_faces"], "seconds": round(time.perf_counter() - t0, 1)}))
    else:
        extra = [a for a in args.extra if a != "--"]
        print(json.dumps(run(args.release, args.out, args.script, extra)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
