#!/usr/bin/env python
"""A realistic capture for `neuface-process-data`: the scan rendered with Cycles in a textured room, as a
hand-held capture would see it (background visible, so structure from motion has something to match), with the
true cameras, face frame and face masks kept apart as the answer key.

    nice -n 10 python scripts/render_capture_scene.py --scan-obj <dir>/james.obj --texture <dir>/james.jpg \\
        --landmarks <dir>/james.ljson --output-dir tests/capture/capture_james --num-views 24

Reuses scripts/render_scan_scene.py (camera rig, skin material, environment light, ray-cast face masks) and its
Blender job (scripts/blender/render_views.py with a "room": a box and cubes with random-coloured 3D Voronoi cells,
seen by the camera only, so the face is lit by the environment alone). Blender runs as a subprocess; tests never need it.

Written:

    <out>/images/000.jpg ...   the photos (8-bit sRGB, JPEG quality 92, background visible, no mask)
    <out>/truth.npz            K [3, 3] (OpenCV, pixel centres at integers), R_c2w [N, 3, 3], centres_mm [N, 3]
                               (scan millimetres), nose_tip_mm [3], sphere_centre_mm [3], masks [N, H, W] bool
                               (first surface hit inside the face sphere: NeuFace's face region)
    <out>/scene.json           settings and timings
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _scan_scene_module():
    spec = importlib.util.spec_from_file_location("render_scan_scene", REPO / "scripts" / "render_scan_scene.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clutter(rng: np.random.Generator, count: int, half_size: float) -> list:
    """Cubes [x, y, z, size] (Blender world) behind and beside the head (face-frame z < -1.5: never between a
    camera of the frontal rig and the face), at depths from 1.5 units to the walls."""
    cubes = []
    while len(cubes) < count:
        x, y = rng.uniform(-0.8 * half_size, 0.8 * half_size, 2)
        z = rng.uniform(-0.8 * half_size, -1.5)
        if abs(x) < 1.5 and abs(y) < 1.5:
            continue
        face = np.array([x, y, z])
        blender = [float(face[0]), float(-face[2]), float(face[1])]  # face (x, y, z) -> Blender (x, -z, y)
        cubes.append(blender + [float(rng.uniform(0.6, 2.5))])
    return cubes


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scan-obj", type=Path, required=True)
    p.add_argument("--texture", type=Path, required=True)
    p.add_argument("--landmarks", type=Path, required=True, help="menpo LJSON with the 68 iBUG landmarks")
    p.add_argument("--output-dir", type=Path, required=True)
    p.add_argument("--environment", default="studio")
    p.add_argument("--num-views", type=int, default=24)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--focal-px", type=float, default=None, help="default: 2.5 x height")
    p.add_argument("--distance", type=float, default=5.5, help="camera distance in units of 100 mm")
    p.add_argument("--yaw", type=float, default=50.0, help="the rig spans +-yaw degrees")
    p.add_argument("--samples", type=int, default=48)
    p.add_argument("--room-half-size", type=float, default=12.0, help="the room box, units of 100 mm")
    p.add_argument("--room-strength", type=float, default=0.8)
    p.add_argument("--clutter", type=int, default=40, help="textured cubes behind and beside the head")
    p.add_argument("--exposure", type=float, default=0.8)
    p.add_argument("--jpeg-quality", type=int, default=92)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--blender", default="blender")
    p.add_argument("--overwrite", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    rss = _scan_scene_module()
    out = args.output_dir
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise SystemExit(f"render_capture_scene: {out} exists and is not empty (pass --overwrite)")
    if shutil.which(args.blender) is None:
        raise SystemExit(f"render_capture_scene: '{args.blender}' not found (apt-get install blender python3-numpy)")
    started = time.time()
    rng = np.random.default_rng(args.seed)
    vertices_mm, faces, uv = rss.load_scan(args.scan_obj)
    landmark_nose = rss.ibug_landmark_points(args.landmarks)[rss.NOSE_TIP]
    nose = vertices_mm[np.argmin(np.linalg.norm(vertices_mm - landmark_nose, axis=-1))]
    centre_mm = nose - np.array([0.0, 0.0, rss.FACE_SPHERE_BEHIND_NOSE_MM])
    scale = rss.FACE_SPHERE_RADIUS_MM
    focal = args.focal_px or 2.5 * args.height
    K = rss.intrinsics(args.width, args.height, focal)
    cameras = rss.capture_rig(args.num_views, rng, args.distance, yaw_deg=args.yaw, pitch_deg=(-15.0, 25.0))
    environment = rss.resolve_environment(args.environment)
    (out / "images").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="render_capture_scene_"))
    try:
        rss.write_obj(work / "scan.obj", (vertices_mm - centre_mm) / scale @ rss.FACE_TO_BLENDER.T, uv, faces)
        views = [{"c2w": rss.blender_camera_matrix(rotation, centre), "lens_mm": focal * 36.0 / args.width,
                  "sensor_mm": 36.0, "width": args.width, "height": args.height, "seed": args.seed * 1000 + index,
                  "environment": "train", "samples": args.samples, "output": str(work / f"view_{index:03d}.png")}
                 for index, (rotation, centre) in enumerate(cameras)]
        job = {"mesh": str(work / "scan.obj"), "texture": str(args.texture.resolve()),
               "material": rss.skin_material(0.35, 0.45, 0.05, scale),
               "environments": {"train": {"path": str(environment),
                                          "strength": rss.environment_strength(environment, args.exposure)}},
               "room": {"half_size": args.room_half_size,
                        "strength": args.room_strength, "clutter": clutter(rng, args.clutter, args.room_half_size)},
               "views": views}
        print(f"render_capture_scene: {len(views)} Cycles renders")
        render_start = time.time()
        rss.run_blender(args.blender, job, work)
        render_seconds = time.time() - render_start
        from PIL import Image

        for index in range(len(views)):
            rgb = Image.open(work / f"view_{index:03d}.png").convert("RGB")
            rgb.save(out / "images" / f"{index:03d}.jpg", quality=args.jpeg_quality)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cameras_mm = [(rotation, centre * scale + centre_mm) for rotation, centre in cameras]
    masks, _ = rss.face_masks(vertices_mm, faces, centre_mm, cameras_mm, K, args.width, args.height)
    np.savez_compressed(out / "truth.npz", K=K, R_c2w=np.stack([r for r, _ in cameras_mm]),
                        centres_mm=np.stack([c for _, c in cameras_mm]), nose_tip_mm=nose,
                        sphere_centre_mm=centre_mm, masks=np.stack(masks))
    info = {"generator": "scripts/render_capture_scene.py", "scan": args.scan_obj.name,
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "render_seconds": round(render_seconds, 1), "total_seconds": round(time.time() - started, 1),
            "mask_pixels": [int(m.sum()) for m in masks]}
    (out / "scene.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"render_capture_scene: wrote {out} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
