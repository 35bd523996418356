"""`neuface-process-data`: a folder of photos, a video or a nerfstudio dataset -> a NeuFace scene.

    neuface-process-data --input <photos/ | video.mp4 | nerfstudio dataset/> --output-dir <scene>
    ns-train neuface-facescape --data <scene> neuface-facescape-data --downscale-factor <f>   (printed at the end)

Bad input (too few images, no face in most images, a face too small, too few views registered by structure
from motion, an existing output folder) stops with one line that names the files and what to do. The input is
only read; everything is written under --output-dir (work files under <scene>/work/, removed at the end unless
--keep-work).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple

import numpy as np

from neuface_ns.capture.errors import CaptureError, name_list
from neuface_ns.capture.nose_depth import NoseDepth, refine_nose_depth


@dataclass
class ProcessData:
    """Turn a capture of your face into a NeuFace scene (FaceScape layout; IDR layout under idr/)."""

    input: Path
    """A folder of photos, a video file, or a nerfstudio dataset folder (with transforms.json)."""
    output_dir: Path
    """The scene folder to write (must be empty or absent unless --overwrite)."""
    num_frames: int = 50
    """Video: frames to keep, sampled evenly (each the sharpest of 3 neighbouring candidates)."""
    blur_ratio: float = 0.4
    """Frames whose sharpness (variance of the Laplacian) is below this fraction of the median are dropped."""
    interpupillary_mm: Optional[float] = None
    """The subject's interpupillary distance in mm (sets the metric scale). Default: the adult mean, 63 mm
    (about +-6 % scale error for an unknown face; see the README)."""
    baseline: Optional[Tuple[str, str, float]] = None
    """Scale from a known distance instead: two input images (file names, or video frame numbers as
    <video>#<n>) and the distance in mm between their camera centres."""
    min_images: int = 8
    """Fewer usable images than this stops the run."""
    min_face_fraction: float = 0.1
    """A face whose landmark box diagonal is below this fraction of the image diagonal is 'too small'."""
    max_image_size: int = 1280
    """Structure from motion works on images with at most this long side (features), cameras at full size."""
    camera_model: Literal["SIMPLE_RADIAL", "SIMPLE_PINHOLE"] = "SIMPLE_RADIAL"
    """COLMAP camera model (one radial term, or none for images already undistorted)."""
    uncertain_band_px: int = 1
    """Pixels (at the printed --downscale-factor) on each side of every mask edge that the photometric loss
    skips (imface_loss_mask/): the edges come from a voxel hull and a segmentation."""
    uncertain_depth_mm: float = 10.0
    """The photometric loss also skips the pixels whose sphere cut the visual hull leaves open: the sphere
    crosses the hull within this depth behind the hull's first hit (the hull is looser than the head). On the
    rendered capture 10 mm took the trained face Chamfer from 2.33 mm (edge band alone) to 1.95 mm; 0 turns it off."""
    refine_nose_depth: bool = True
    """Move the triangulated nose tip along the face axis onto the skin, where the views agree (nose_depth.py):
    on the rendered captures it took the nose tip from 1.9 / 3.7 mm off to 1.1 / 2.0 mm (photos / video)."""
    test_every: int = 8
    """Every n-th kept view (0, n, 2n, ...) is held out for evaluation."""
    num_threads: int = 2
    keep_work: bool = False
    """Keep <scene>/work/ (the upright frames and the COLMAP database and model)."""
    overwrite: bool = False


def _finite(value: float, digits: int) -> Optional[float]:
    """A number for the JSON report: rounded, or None (null) when there is none."""
    return round(float(value), digits) if np.isfinite(value) else None


def _fail_if_output_exists(args: ProcessData) -> None:
    out = args.output_dir
    if out.exists() and not out.is_dir():
        raise CaptureError(out, "output exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            raise CaptureError(out, "output folder is not empty: choose another --output-dir or pass --overwrite")
        if out.resolve() == args.input.resolve() or out.resolve() in args.input.resolve().parents:
            raise CaptureError(out, "--output-dir must not contain the input")
        shutil.rmtree(out)


def _key_landmarks() -> List[int]:
    """The landmarks the face frame needs (nose tip, iris centres, mouth corners)."""
    from neuface_ns.capture import landmarks

    return [*landmarks.NOSE_TIP_PAIR, *landmarks.IRIS_CENTRES, *landmarks.MOUTH_CORNERS]


def _landmark_threshold_px(detections: dict) -> float:
    """RANSAC inlier threshold: 4 % of the median face size (gross detector failures, a hidden landmark guessed
    elsewhere, are further off; a tighter threshold keeps fewer views and lets per-view landmark noise bias the
    points: nose tip 3.3 / 1.7 mm from the truth on the two rendered captures at 4 %, 4.8 / 2.5 mm at 2 %)."""
    return max(2.0, 0.04 * float(np.median([d.face_px for d in detections.values()])))


def _landmarks_agree(cameras, detections: dict) -> bool:
    """Structure from motion's check against the face: the key landmarks triangulate consistently in >= 3 views
    (a model that registers every frame can still be wrong; the landmarks are an independent witness)."""
    from neuface_ns.capture.landmarks import Detection, triangulate

    key = _key_landmarks()
    seen = {n: Detection(d.points[key], d.face_px) for n, d in detections.items() if d is not None and n in cameras.K}
    if len(seen) < 3:
        return True  # too few faces to judge: the caller reports it
    tri = triangulate({n: cameras.projection(n) for n in seen}, seen, _landmark_threshold_px(seen))
    return bool((tri.inliers.sum(1) >= 3).all())


def downscale_for(width: int, height: int, target: int = 512) -> int:
    """The dataparser's --downscale-factor that brings the long side near `target` px (NeuFace trains on x4
    downsampled 4K FaceScape images, about 1000 px; a CPU wants less)."""
    return max(1, int(round(max(width, height) / target)))


def process(args: ProcessData) -> dict:
    from neuface_ns.capture import face_frame as face_frame_module
    from neuface_ns.capture import frames as frames_module
    from neuface_ns.capture import landmarks as landmarks_module
    from neuface_ns.capture import masks as masks_module
    from neuface_ns.capture import output, sfm

    timings: Dict[str, float] = {}
    kind = frames_module.input_kind(args.input)
    _fail_if_output_exists(args)
    work = args.output_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"input": str(args.input), "kind": kind, "views": {}, "dropped": {}, "without_landmarks": {}}

    start = time.time()
    frames = frames_module.load_frames(args.input, work, args.num_frames, args.blur_ratio)
    timings["frames"] = time.time() - start
    report["dropped"].update(frames.dropped)
    source_of = {f.name: f.source for f in frames.frames}
    if len(frames.frames) < args.min_images:
        raise CaptureError(args.input, f"only {len(frames.frames)} usable images ({name_list(source_of.values())}); at least "
                                       f"{args.min_images} are needed: take more photos around the face (or a longer video)")

    # landmarks first: a capture without a face fails in seconds, not after structure from motion
    start = time.time()
    images = {f.name: frames_module.frame_rgb(f) for f in frames.frames}
    detections: Dict[str, Optional[landmarks_module.Detection]] = {}
    detector = landmarks_module.face_mesh_detector()
    try:
        for name, rgb in images.items():
            detections[name] = landmarks_module.detect(rgb, detector)
    finally:
        detector.close()
    no_face = [n for n, d in detections.items() if d is None]
    if len(no_face) > len(images) / 2:
        raise CaptureError(args.input, f"no face found in {len(no_face)} of {len(images)} images ({name_list([source_of[n] for n in no_face])}): "
                                       "the face must be visible, lit and not turned away by more than about 60 degrees")
    too_small = []
    for name, detection in detections.items():
        if detection is None:
            continue
        height, width = images[name].shape[:2]
        if detection.face_px < args.min_face_fraction * float(np.hypot(width, height)):
            too_small.append(name)
    if len(too_small) > len(images) / 2:
        raise CaptureError(args.input, f"the face is too small in {len(too_small)} of {len(images)} images ({name_list([source_of[n] for n in too_small])}): "
                                       "move closer, so that the face spans at least a third of the frame")
    # a view without usable landmarks keeps its camera and gets its mask from the 3D hull like the others
    report["without_landmarks"] = {source_of[n]: "no face found" for n in no_face}
    for name in too_small:
        report["without_landmarks"][source_of[name]] = "face too small"
        detections[name] = None
    timings["landmarks_2d"] = time.time() - start

    start = time.time()
    if kind == "nerfstudio":
        cameras = sfm.given_cameras(frames)
    else:
        cameras = sfm.run_sfm(frames, work, args.input, args.max_image_size, args.num_threads, args.min_images,
                              camera_model=args.camera_model, accept=lambda c: _landmarks_agree(c, detections))
        images = {f.name: frames_module.frame_rgb(f) for f in frames.frames if f.name in cameras.K}  # undistorted
    timings["sfm"] = time.time() - start
    for name, why in cameras.dropped.items():
        report["dropped"][source_of[name]] = why

    start = time.time()
    with_face = {n: d for n, d in detections.items() if d is not None and n in cameras.K}
    if len(with_face) < args.min_images:
        raise CaptureError(args.input, f"only {len(with_face)} views have both a camera and a face; at least {args.min_images} are needed")
    face_px = float(np.median([d.face_px for d in with_face.values()]))
    threshold = _landmark_threshold_px(with_face)
    projections = {n: cameras.projection(n) for n in with_face}
    tri = landmarks_module.triangulate(projections, with_face, threshold)
    key = _key_landmarks()
    weak = [k for k in key if tri.inliers[k].sum() < 3]
    if weak:
        raise CaptureError(args.input, f"the nose, eyes and mouth could not be triangulated consistently (landmarks {weak} "
                                       f"seen consistently in < 3 views): check that the frames show one person who keeps still")
    centres = np.stack([cameras.centre(n) for n in cameras.names])
    baseline = None
    if args.baseline is not None:
        by_source = {f.source: f.name for f in frames.frames}
        a, b, mm = args.baseline
        for s in (a, b):
            if s not in by_source or by_source[s] not in cameras.K:
                raise CaptureError(s, "--baseline names an image that has no camera (not given or not registered)")
        baseline = (cameras.centre(by_source[a]), cameras.centre(by_source[b]), float(mm))
    frame = face_frame_module.face_frame(tri.points, centres, args.interpupillary_mm, baseline)
    nose = NoseDepth(0.0, float("nan"), float("nan"), [], False, "--no-refine-nose-depth")
    if args.refine_nose_depth:
        nose = refine_nose_depth(images, {n: (cameras.K[n], cameras.R[n], cameras.t[n]) for n in cameras.names},
                                 frame.nose_tip, frame.rotation, frame.mm_per_world)
        frame = frame.nose_moved(nose.offset_mm)
    timings["triangulation_and_frame"] = time.time() - start

    start = time.time()
    kept = [n for n in cameras.names if n in images]
    cameras_mm = {}
    for name in kept:
        R, t = frame.camera_to_mm(cameras.R[name], cameras.t[name])
        cameras_mm[name] = (cameras.K[name], R, t)
    cameras_unit = {n: (K, R, t / 100.0) for n, (K, R, t) in cameras_mm.items()}
    points_unit = frame.world_to_unit(cameras.points) if cameras.points is not None else None
    masks, uncertain = masks_module.face_masks(
        {n: images[n] for n in kept}, {n: with_face.get(n) for n in kept}, cameras_unit, points=points_unit,
        observers=cameras.observers, jaw=frame.world_to_unit(tri.points[list(masks_module.JAW)]),
        depth_margin=args.uncertain_depth_mm / 100.0)
    median_area = float(np.median([m.sum() for m in masks.values()]))
    for name in list(kept):
        if masks[name].sum() < 0.1 * median_area:
            report["dropped"][source_of[name]] = "the face sphere is (almost) not visible"
            kept.remove(name)
    timings["masks"] = time.time() - start

    start = time.time()
    landmarks_mm = frame.world_to_mm(tri.points)
    width, height = images[kept[0]].shape[1], images[kept[0]].shape[0]
    factor = downscale_for(width, height)
    loss_masks = None
    if args.uncertain_band_px > 0 or args.uncertain_depth_mm > 0:  # the band is in training pixels
        loss_masks = {n: ~(masks_module.uncertain_band(masks[n], args.uncertain_band_px * factor) | uncertain[n])
                      for n in kept}
    # the landmark mesh carries the nose tip as one more vertex (v10[30] of landmark_indices.npz)
    split = output.write_scene(args.output_dir, kept, images, masks, cameras_mm,
                               np.concatenate([landmarks_mm, frame.world_to_mm(frame.nose_tip[None])]), len(landmarks_mm),
                               args.test_every, loss_masks=loss_masks)
    labels = {n: f"{int(n)} {source_of[n][-18:]}" for n in kept}
    output.contact_sheet(args.output_dir / "contact_sheet.png", kept, images, masks,
                         {n: (with_face[n].points if n in with_face else None) for n in kept}, labels)
    timings["write"] = time.time() - start

    command = f"ns-train neuface-facescape --data {args.output_dir} neuface-facescape-data --downscale-factor {factor}"
    inliers = tri.error_px[tri.inliers.sum(1) >= 2]
    report.update({
        "views": {f"{int(n)}": {"source": source_of[n], "split": "test" if str(int(n)) in split["test"] else "train",
                                "landmark_reprojection_median_px": round(tri.per_view_error_px.get(n, float("nan")), 3),
                                "mask_pixels": int(masks[n].sum()),
                                "loss_skipped_pixels": int((~loss_masks[n]).sum()) if loss_masks else 0} for n in kept},
        "uncertain_band_px": {"training": args.uncertain_band_px, "full_resolution": args.uncertain_band_px * factor},
        "uncertain_depth_mm": args.uncertain_depth_mm,
        "num_input": len(frames.frames) + len(frames.dropped), "num_kept": len(kept),
        "cameras": {"source": cameras.source, "sfm_reprojection_error_px": round(cameras.reprojection_error_px, 4),
                    "sfm_models_rejected_by_landmarks": cameras.rejected_models,
                    "sfm_points": cameras.num_points, "shared_intrinsics": frames.shared_intrinsics},
        "landmarks": {"threshold_px": round(threshold, 3), "median_face_px": round(face_px, 1),
                      "triangulation_error_px": {"mean": round(float(np.mean(inliers)), 4),
                                                 "median": round(float(np.median(inliers)), 4),
                                                 "p90": round(float(np.percentile(inliers, 90)), 4)},
                      "nose_tip_views": int(tri.inliers[list(landmarks_module.NOSE_TIP_PAIR)].sum(1).min()),
                      "nose_tip_depth": {"applied": nose.applied, "offset_mm": round(nose.offset_mm, 3),
                                         "correlation": _finite(nose.score, 4),
                                         "correlation_at_landmarks": _finite(nose.score_at_landmarks, 4),
                                         "views": len(nose.views), "why": nose.why}},
        "scale": {"source": frame.scale_source, "mm_per_sfm_unit": frame.mm_per_world,
                  "interpupillary_mm_measured": round(float(np.linalg.norm(
                      landmarks_mm[landmarks_module.IRIS_CENTRES[0]] - landmarks_mm[landmarks_module.IRIS_CENTRES[1]])), 2)},
        "face_frame": {"rotation_world_from_face": frame.rotation.tolist(), "origin_world": frame.origin.tolist(),
                       "nose_tip_world": frame.nose_tip.tolist()},
        "split": split, "seconds": {k: round(v, 2) for k, v in timings.items()},
        "train_command": command,
    })
    (args.output_dir / "capture_report.json").write_text(json.dumps(report, indent=1) + "\n")
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return report


def main(args: ProcessData) -> int:
    report = process(args)
    dropped = report["dropped"]
    print(f"neuface-process-data: {report['num_kept']} views kept, {len(dropped)} dropped"
          + (f" ({'; '.join(f'{k}: {v}' for k, v in list(dropped.items())[:6])})" if dropped else "")
          + (f"; {len(report['without_landmarks'])} kept without landmarks" if report["without_landmarks"] else ""))
    print(f"neuface-process-data: SfM reprojection {report['cameras']['sfm_reprojection_error_px']} px, landmark "
          f"triangulation {report['landmarks']['triangulation_error_px']['median']} px (median), scale from "
          f"{report['scale']['source']}")
    print(f"neuface-process-data: wrote {args.output_dir} (contact_sheet.png, capture_report.json); train with:")
    print(f"    {report['train_command']}")
    return 0


def entrypoint() -> None:
    import os

    import tyro

    import warnings

    # COLMAP's and MediaPipe's C++ logs (glog): warnings and errors only; this tool says what went wrong itself
    os.environ.setdefault("GLOG_minloglevel", "2")
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation noise from imports
    try:
        import pycolmap

        pycolmap.logging.minloglevel = 3
    except (ImportError, AttributeError):
        pass

    sys.exit(main(tyro.cli(ProcessData)))


if __name__ == "__main__":
    entrypoint()
