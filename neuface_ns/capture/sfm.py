"""Stage 2, cameras: COLMAP structure from motion through pycolmap (CPU), or the cameras the input came with.

SIFT features (long side capped at `max_image_size`, at most `max_features` per image), exhaustive matching for
photos, sequential matching for a video's frames (each with the next 15 and 2^k further), with geometric
verification, COLMAP's
incremental mapper; one SIMPLE_RADIAL camera shared by all frames of a video (or photos of one size), one per
image otherwise. The largest reconstruction is kept; frames it does not register are dropped (and reported).
COLMAP's initial pair is chosen closer than its default (see run_sfm), with up to `attempts` random seeds; a
model that the caller's `accept` check rejects (the CLI: the face landmarks must triangulate consistently with
it) is passed over for the next seed. Each registered frame is then undistorted with OpenCV to a pinhole camera
with the same K and size.

Pixel convention: COLMAP's principal point counts pixel centres at +0.5; the cameras returned here are OpenCV's
(pixel centres at integers, as `world_mat` and FaceScape's K), so cx, cy are COLMAP's minus 0.5.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from neuface_ns.capture.errors import CaptureError, name_list
from neuface_ns.capture.frames import Frames


@dataclass
class Cameras:
    K: Dict[str, np.ndarray]  # frame name -> 3x3 OpenCV intrinsics (pinhole, after undistortion)
    R: Dict[str, np.ndarray]  # world -> camera rotation
    t: Dict[str, np.ndarray]
    dropped: Dict[str, str] = field(default_factory=dict)  # frame name -> why
    reprojection_error_px: float = float("nan")
    num_points: int = 0
    source: str = "colmap"
    points: Optional[np.ndarray] = None  # [P, 3] world: SfM points (error < 1 px, seen by >= 3 views)
    observers: Optional[List[List[str]]] = None  # per point: the frame names that see it
    rejected_models: int = 0  # models passed over because `accept` rejected them

    def centre(self, name: str) -> np.ndarray:
        return -self.R[name].T @ self.t[name]

    def projection(self, name: str) -> np.ndarray:
        return self.K[name] @ np.concatenate([self.R[name], self.t[name][:, None]], axis=1)

    @property
    def names(self) -> List[str]:
        return sorted(self.K)


def given_cameras(frames: Frames) -> Cameras:
    """The cameras that came with a nerfstudio dataset (already undistorted by frames.py)."""
    cams = Cameras({}, {}, {}, source="transforms.json")
    for frame in frames.frames:
        cams.K[frame.name], cams.R[frame.name], cams.t[frame.name] = frame.camera["K"], frame.camera["R"], frame.camera["t"]
    return cams


def _cam_from_world(image):
    pose = image.cam_from_world
    return pose() if callable(pose) else pose


def run_sfm(frames: Frames, work: Path, input_path: Optional[Path] = None, max_image_size: int = 1280,
            num_threads: int = 2, min_registered: int = 8, seed: int = 0, attempts: int = 4,
            camera_model: str = "SIMPLE_RADIAL", max_features: int = 4096, sequential_overlap: int = 15,
            accept: Optional[Callable[[Cameras], bool]] = None) -> Cameras:
    """accept: a check of a candidate model's cameras (before undistortion); a rejected model is passed over
    for the next seed, and returned only when every seed's model is rejected (the caller then reports why)."""
    import cv2
    import pycolmap

    database = work / "colmap" / "database.db"
    sparse = work / "colmap" / "sparse"
    if database.parent.exists():
        shutil.rmtree(database.parent)
    sparse.mkdir(parents=True)
    image_dir = frames.frames[0].path.parent
    names = [f.path.name for f in frames.frames]
    where = input_path or image_dir  # messages name what the user gave

    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = num_threads
    extraction.max_image_size = max_image_size
    extraction.use_gpu = False
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = camera_model
    mode = pycolmap.CameraMode.SINGLE if frames.shared_intrinsics else pycolmap.CameraMode.PER_IMAGE
    extraction.sift.max_num_features = max_features
    pycolmap.extract_features(database, image_dir, image_names=names, camera_mode=mode, reader_options=reader,
                              extraction_options=extraction, device=pycolmap.Device.cpu)
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = num_threads
    matching.use_gpu = False
    if frames.kind == "video" and len(names) > 2 * sequential_overlap:
        # a video's frames are in path order: each is matched with the next `sequential_overlap` ones (and
        # 2^k further, quadratic overlap), O(n) pairs instead of the O(n^2) of exhaustive matching
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = sequential_overlap
        pairing.quadratic_overlap = True
        pycolmap.match_sequential(database, matching_options=matching, pairing_options=pairing,
                                  device=pycolmap.Device.cpu)
    else:
        pycolmap.match_exhaustive(database, matching_options=matching, device=pycolmap.Device.cpu)
    # COLMAP's initial pair is drawn at random: a bad draw (e.g. a focal length that runs away with the radial
    # term) registers a few views only. Up to `attempts` seeds; the model that registers the most views wins.
    rec = rejected = None
    num_rejected = 0
    for attempt in range(attempts):
        options = pycolmap.IncrementalPipelineOptions()
        options.num_threads = num_threads
        options.random_seed = seed + attempt
        options.multiple_models = False
        options.min_focal_length_ratio, options.max_focal_length_ratio = 0.3, 3.0
        # A capture circles a face: neighbouring views are 5-15 degrees apart, so COLMAP's default initial pair
        # (>= 16 degrees of triangulation angle, >= 100 inliers) is often a poor, far pair whose two-view
        # bundle adjustment lets the focal length and the radial term run away; a closer pair with 50 inliers
        # initialises reliably (tested on the rendered captures: every seed the same model).
        options.mapper.init_min_tri_angle = 8.0
        options.mapper.init_min_num_inliers = 50
        attempt_dir = sparse / str(attempt)
        attempt_dir.mkdir()
        reconstructions = pycolmap.incremental_mapping(database, image_dir, attempt_dir, options=options)
        candidate = max(reconstructions.values(), key=lambda r: r.num_reg_images(), default=None)
        if candidate is None:
            continue
        if accept is not None and not accept(_model_cameras(candidate, frames)):
            # e.g. a 50-frame rendered video: 2 of 10 runs gave models that register every frame yet disagree
            # with the face landmarks (no landmark consistent in 3 views); another seed gives a good one
            rejected, num_rejected = candidate, num_rejected + 1
            continue
        if rec is None or candidate.num_reg_images() > rec.num_reg_images():
            rec = candidate
        if rec.num_reg_images() >= 0.9 * len(names):
            break
    rec = rec if rec is not None else rejected
    if rec is None:
        raise CaptureError(where, f"structure from motion registered no views of {len(names)}: move around the face "
                                      "more slowly with more overlap, keep a textured background in view, avoid blur")
    by_name = {image.name: image for image in rec.images.values() if image.has_pose}
    registered = [f for f in frames.frames if f.path.name in by_name]
    if len(registered) < min_registered:
        missing = [f.source for f in frames.frames if f.path.name not in by_name]
        raise CaptureError(where, f"structure from motion registered only {len(registered)} of {len(names)} views "
                                      f"(not: {name_list(missing)}); at least {min_registered} are needed: add overlapping "
                                      "views, keep a textured background in view, avoid blur and moving backgrounds")
    cams = _model_cameras(rec, frames)
    cams.rejected_models = num_rejected
    for frame in frames.frames:
        if frame.name not in cams.K:
            cams.dropped[frame.name] = "not registered by structure from motion"
            continue
        camera = rec.cameras[by_name[frame.path.name].camera_id]
        k = camera.params[3] if camera.model_name == "SIMPLE_RADIAL" else 0.0
        if k != 0.0:  # SIMPLE_RADIAL: x_d = x (1 + k r^2); OpenCV's (k1, k2, p1, p2) = (k, 0, 0, 0)
            rgb = cv2.imread(str(frame.path), cv2.IMREAD_COLOR)
            cv2.imwrite(str(frame.path), cv2.undistort(rgb, cams.K[frame.name], np.array([k, 0.0, 0.0, 0.0])))
    name_of = {image_id: next(f.name for f in frames.frames if f.path.name == image.name)
               for image_id, image in rec.images.items() if image.name in by_name}
    good = [p for p in rec.points3D.values() if p.error < 1.0 and p.track.length() >= 3]
    cams.points = np.array([p.xyz for p in good], dtype=np.float64).reshape(-1, 3)
    cams.observers = [[name_of[e.image_id] for e in p.track.elements if e.image_id in name_of] for p in good]
    errors = [p.error for p in rec.points3D.values()]
    cams.reprojection_error_px = float(np.mean(errors)) if errors else float("nan")
    cams.num_points = len(errors)
    return cams


def _model_cameras(rec, frames: Frames) -> Cameras:
    """The registered frames' OpenCV cameras of a COLMAP model (the radial term is left to the undistortion)."""
    by_name = {image.name: image for image in rec.images.values() if image.has_pose}
    cams = Cameras({}, {}, {})
    for frame in frames.frames:
        if frame.path.name not in by_name:
            continue
        image = by_name[frame.path.name]
        f, cx, cy = rec.cameras[image.camera_id].params[:3]
        matrix = np.asarray(_cam_from_world(image).matrix(), dtype=np.float64)
        cams.K[frame.name] = np.array([[f, 0.0, cx - 0.5], [0.0, f, cy - 0.5], [0.0, 0.0, 1.0]])
        cams.R[frame.name], cams.t[frame.name] = matrix[:, :3], matrix[:, 3]
    return cams


def timed(function, *args, **kwargs):
    start = time.time()
    result = function(*args, **kwargs)
    return result, time.time() - start
