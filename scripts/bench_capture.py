#!/usr/bin/env python
"""Benchmark of `neuface-process-data` on a rendered capture (scripts/render_capture_scene.py) given without its
cameras: per-stage time, the accuracy against the truth, and optionally the trained model next to the same
training on the true cameras. Prints one JSON object and writes it to <work>/bench_capture.json.

    nice -n 10 python scripts/bench_capture.py --capture tests/capture/capture_james --work /tmp/bench_capture
    nice -n 10 python scripts/bench_capture.py --capture <render> --video       # the photos as a video first
    nice -n 10 python scripts/bench_capture.py --capture <render> --train --steps 2000

--video writes the photos as an MJPG video upscaled to --video-height (1080) with their aspect ratio kept (a
4:3 render becomes 1440x1080; stretching it to 16:9 would give non-square pixels, which no single-focal camera
model fits) and processes the video (frame sampling included), for the time of a phone video's frames at that
resolution.
--train builds a second scene from the true cameras and masks (scan millimetres, the sphere centre as origin),
trains `neuface-facescape` on both (same steps, seed, downscale), and reports each mesh's Chamfer distance to
the scan cut to the face sphere (the processed scene's mesh is first mapped to the scan by the similarity that
aligns its cameras to the true ones).
--ideal-masks (with --train, photos only) trains a third scene: the processed cameras and face frame with masks
ray-cast from the scan for the processed face sphere, which separates the masks' share of the difference from
the cameras' and the frame's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def write_video(images: list, path: Path, size) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, tuple(size))
    for image in images:
        frame = cv2.imread(str(image))
        writer.write(cv2.resize(frame, tuple(size), interpolation=cv2.INTER_CUBIC))
    writer.release()


def true_scene(capture: Path, out: Path) -> None:
    """The capture with its true cameras and masks in the FaceScape layout (neuface_ns.capture.output's writer)."""
    from PIL import Image

    from neuface_ns.capture.output import write_scene

    truth = np.load(capture / "truth.npz")
    paths = sorted((capture / "images").glob("*.jpg"))
    names = [f"{k:03d}" for k in range(len(paths))]
    images = {n: np.asarray(Image.open(p).convert("RGB")) for n, p in zip(names, paths)}
    masks = {n: truth["masks"][k] for k, n in enumerate(names)}
    cameras = {}
    for k, n in enumerate(names):
        R = truth["R_c2w"][k].T
        centre = truth["centres_mm"][k] - truth["sphere_centre_mm"]  # the scan's axes are the face's
        cameras[n] = (truth["K"], R, -R @ centre)
    write_scene(out, names, images, masks, cameras, np.array([[0.0, 0.0, 40.0]]), 0)


def ideal_mask_scene(capture: Path, processed: Path, out: Path, rss, vertices, faces, similarity) -> None:
    """A copy of the processed scene whose masks (and masked images, from the original photos) are ray-cast from
    the scan: the visible surface inside the processed face sphere (centre and radius mapped to the scan by the
    camera similarity)."""
    import shutil

    import cv2

    s, _, t = similarity
    truth = np.load(capture / "truth.npz")
    photos = sorted((capture / "images").glob("*.jpg"))
    if out.exists():  # this benchmark's own work folder, from an earlier run
        shutil.rmtree(out)
    shutil.copytree(processed, out)
    shutil.rmtree(out / "imface_loss_mask", ignore_errors=True)  # ray-cast masks are exact: no uncertain band
    height, width = truth["masks"].shape[1:]
    mask_paths = sorted((out / "imface_mask").rglob("*.jpg"))
    views = [int(path.stem) for path in mask_paths]
    cameras = [(truth["R_c2w"][view], truth["centres_mm"][view]) for view in views]
    masks, _ = rss.face_masks(vertices, faces, t, cameras, truth["K"], width, height, radius_mm=100.0 * s)
    for mask_path, view, mask in zip(mask_paths, views, masks):
        image_path = out / "imface_image" / mask_path.relative_to(out / "imface_mask")
        cv2.imwrite(str(mask_path), mask.astype(np.uint8) * 255, [cv2.IMWRITE_JPEG_QUALITY, 95])
        masked = cv2.imread(str(photos[view])) * mask[..., None].astype(np.uint8)
        cv2.imwrite(str(image_path), masked, [cv2.IMWRITE_JPEG_QUALITY, 95])


def train(scene: Path, steps: int, downscale: int, log: Path) -> Path:
    command = ["ns-train", "neuface-facescape", "--max-num-iterations", str(steps), "--vis", "tensorboard",
               "--output-dir", str(scene.parent / "outputs"), "--data", str(scene),
               "neuface-facescape-data", "--downscale-factor", str(downscale)]
    with open(log, "w") as f:
        subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, check=True)
    meshes = sorted((scene.parent / "outputs").rglob("mesh.ply"), key=lambda p: p.stat().st_mtime)
    if not meshes:
        raise SystemExit(f"bench_capture: no mesh.ply after training {scene} (see {log})")
    return meshes[-1]


def chamfer_mm(mesh: Path, gt_vertices, gt_faces, centre, transform=None) -> dict:
    import trimesh

    from neuface_ns.tools.eval_mesh import inside_sphere, point_metrics, sample_surface

    rng = np.random.default_rng(0)
    loaded = trimesh.load(mesh, force="mesh", process=False)
    vertices = np.asarray(loaded.vertices, dtype=np.float64)
    if transform is not None:
        s, R, t = transform
        vertices = (s * (R @ vertices.T)).T + t
    pred = inside_sphere(sample_surface(vertices, np.asarray(loaded.faces), 100_000, rng), centre, 100.0)
    gt = inside_sphere(sample_surface(gt_vertices, gt_faces, 100_000, rng), centre, 100.0)
    return point_metrics(pred, gt, 1.0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--capture", type=Path, required=True, help="a render_capture_scene.py folder (images/, truth.npz)")
    p.add_argument("--work", type=Path, default=Path("/tmp/bench_capture"))
    p.add_argument("--video", action="store_true")
    p.add_argument("--video-height", type=int, default=1080)
    p.add_argument("--num-frames", type=int, default=50)
    p.add_argument("--train", action="store_true")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--ideal-masks", action="store_true")
    p.add_argument("--interpupillary-mm", type=float, default=None)
    args = p.parse_args(argv)
    if args.ideal_masks and (args.video or not args.train):
        p.error("--ideal-masks needs --train and photos (not --video)")

    from neuface_ns.capture.cli import ProcessData, process
    from neuface_ns.capture.evaluate import evaluate, umeyama

    args.work.mkdir(parents=True, exist_ok=True)
    source = args.capture / "images"
    if args.video:
        source = args.work / "capture.avi"
        frames = sorted((args.capture / "images").glob("*.jpg"))
        from PIL import Image

        width, height = Image.open(frames[0]).size
        write_video(frames, source, (round(width * args.video_height / height), args.video_height))
    scene = args.work / "processed" / "scene"
    started = time.time()
    report = process(ProcessData(input=source, output_dir=scene, overwrite=True, num_frames=args.num_frames,
                                 interpupillary_mm=args.interpupillary_mm))
    result = {"capture": str(args.capture), "input": str(source), "seconds": report["seconds"],
              "total_seconds": round(time.time() - started, 1), "num_kept": report["num_kept"],
              "dropped": report["dropped"], "sfm_reprojection_error_px": report["cameras"]["sfm_reprojection_error_px"],
              "landmark_triangulation_error_px": report["landmarks"]["triangulation_error_px"],
              "scale": report["scale"]}
    index = None
    if args.video:  # frame n of the video is view n of the render
        index = {int(v): int(info["source"].split("#")[1]) for v, info in report["views"].items()}
    if True:
        accuracy = evaluate(scene, args.capture / "truth.npz", index)
        accuracy["mask_iou"].pop("per_view")
        result["accuracy"] = accuracy
    if args.train:
        import importlib.util

        spec = importlib.util.spec_from_file_location("rss", REPO / "scripts" / "render_scan_scene.py")
        rss = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(rss)
        info = json.loads((args.capture / "scene.json").read_text())
        truth = np.load(args.capture / "truth.npz")
        vertices, faces, _ = rss.load_scan(Path(info["settings"]["scan_obj"]))
        true = args.work / "true" / "scene"
        true_scene(args.capture, true)
        from neuface_ns.capture.evaluate import read_scene_cameras

        cameras = read_scene_cameras(scene)
        views = sorted(cameras)
        s, R, t = umeyama(np.stack([cameras[v][2] for v in views]), truth["centres_mm"][views])
        centre = truth["sphere_centre_mm"]
        runs = {}
        scenes = [("true_cameras", true, (1.0, np.eye(3), centre)), ("processed", scene, (s, R, t))]
        if args.ideal_masks:
            ideal = args.work / "ideal_masks" / "scene"
            ideal_mask_scene(args.capture, scene, ideal, rss, vertices, faces, (s, R, t))
            scenes.append(("processed_ideal_masks", ideal, (s, R, t)))
        for name, folder, transform in scenes:
            start = time.time()
            mesh = train(folder, args.steps, 1, folder.parent / "train.log")
            metrics = chamfer_mm(mesh, vertices, faces, centre, transform)
            eval_path = next(iter(sorted(mesh.parent.glob("eval_metrics.json"))), None)
            runs[name] = {"chamfer_mm": metrics["chamfer"], "fscore_1mm": metrics.get("fscore"),
                          "train_seconds": round(time.time() - start, 1), "mesh": str(mesh),
                          "eval": json.loads(eval_path.read_text()) if eval_path else None}
        runs["chamfer_difference_mm"] = runs["processed"]["chamfer_mm"] - runs["true_cameras"]["chamfer_mm"]
        result["training"] = runs
    text = json.dumps(result, indent=1, default=float)
    (args.work / "bench_capture.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
