"""Stage 1, frames: what the user gave, as upright RGB frames in the work folder (the input is only read).

- a folder of photos (.jpg .jpeg .png .tif .tiff .bmp .webp): every image, turned upright by its EXIF
  orientation (a phone stores portrait photos as landscape pixels plus an orientation tag);
- a video (.mp4 .mov .m4v .avi .mkv .webm): `num_frames` frames sampled evenly over its length; each sample is
  the sharpest of `oversample` neighbouring candidates (variance of the Laplacian), and frames still far blurrier
  than the rest (sharpness below `blur_ratio` x the median) are dropped;
- a nerfstudio dataset (a folder with transforms.json, e.g. from `ns-process-data`): its images and cameras as
  they are (OpenCV cameras; see `read_transforms`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from neuface_ns.capture.errors import CaptureError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm"}


@dataclass
class Frame:
    name: str  # output stem (also the COLMAP image name without folder)
    path: Path  # the upright RGB frame in the work folder
    source: str  # the user's file (and frame number for a video)
    width: int
    height: int
    sharpness: float
    camera: Optional[Dict[str, np.ndarray]] = None  # given cameras: K [3,3], R [3,3] (world->cam), t [3]


@dataclass
class Frames:
    kind: str  # "photos" | "video" | "nerfstudio"
    frames: List[Frame]
    dropped: Dict[str, str] = field(default_factory=dict)  # source -> why
    shared_intrinsics: bool = True


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image scaled to 640 px on its long side (resolution-independent)."""
    import cv2

    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    scale = 640.0 / max(grey.shape)
    if scale < 1.0:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def input_kind(path: Path) -> str:
    if not path.exists():
        raise CaptureError(path, "input not found: give a folder of photos, a video file or a nerfstudio dataset folder")
    if path.is_file():
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return "video"
        raise CaptureError(path, f"not a video ({', '.join(sorted(VIDEO_SUFFIXES))}): give a video file or a folder of photos")
    if (path / "transforms.json").is_file():
        return "nerfstudio"
    return "photos"


def read_upright(path: Path) -> np.ndarray:
    """RGB uint8 image turned by its EXIF orientation."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise CaptureError(path, f"not a readable image ({err}): remove it or convert it to JPEG/PNG") from None


def _save(rgb: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, quality=95) if path.suffix == ".jpg" else Image.fromarray(rgb).save(path)


def from_photos(folder: Path, work: Path) -> Frames:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CaptureError(folder, f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
    frames, sizes = [], set()
    for index, file in enumerate(files):
        rgb = read_upright(file)
        target = work / "frames" / f"{index:03d}.png"
        _save(rgb, target)
        frames.append(Frame(f"{index:03d}", target, file.name, rgb.shape[1], rgb.shape[0], sharpness(rgb)))
        sizes.add(rgb.shape[:2])
    # one set of intrinsics when every photo has the same size (one phone, one zoom); else one per photo
    return Frames("photos", frames, shared_intrinsics=len(sizes) == 1)


def from_video(video: Path, work: Path, num_frames: int, oversample: int = 3, blur_ratio: float = 0.4) -> Frames:
    import cv2

    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise CaptureError(video, "cannot open this video (OpenCV/FFmpeg): convert it to H.264 .mp4")
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    if total <= 0:
        capture.release()
        raise CaptureError(video, "the video has no frames")
    count = min(num_frames, total)
    candidates_per = max(1, min(oversample, total // count))
    # window w covers [w * total / count, (w + 1) * total / count); its candidates are spread evenly in it
    windows = [[int((w + (c + 0.5) / candidates_per) * total / count) for c in range(candidates_per)] for w in range(count)]
    wanted = {i for window in windows for i in window}
    images: Dict[int, np.ndarray] = {}
    index = 0
    while index <= max(wanted):
        ok = capture.grab()
        if not ok:
            break
        if index in wanted:
            ok, bgr = capture.retrieve()
            if ok:
                images[index] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        index += 1
    capture.release()
    if not images:
        raise CaptureError(video, "no frame could be decoded: convert it to H.264 .mp4")
    chosen: List[Tuple[int, np.ndarray, float]] = []
    for window in windows:
        scored = [(i, images[i], sharpness(images[i])) for i in window if i in images]
        if scored:
            chosen.append(max(scored, key=lambda s: s[2]))
    median = float(np.median([s for _, _, s in chosen]))
    frames, dropped = [], {}
    for i, rgb, score in chosen:
        source = f"{video.name}#{i}"
        if score < blur_ratio * median:
            dropped[source] = f"blurry (sharpness {score:.0f} < {blur_ratio} x median {median:.0f})"
            continue
        name = f"{len(frames):03d}"
        target = work / "frames" / f"{name}.png"
        _save(rgb, target)
        frames.append(Frame(name, target, source, rgb.shape[1], rgb.shape[0], score))
    return Frames("video", frames, dropped, shared_intrinsics=True)


def _opencv_camera(frame: dict, meta: dict, width: int, height: int, scale: Tuple[float, float]) -> Dict[str, np.ndarray]:
    get = lambda key, default=None: frame.get(key, meta.get(key, default))  # noqa: E731
    sx, sy = scale
    fx, fy = float(get("fl_x")), float(get("fl_y", get("fl_x")))
    cx, cy = float(get("cx", width / sx / 2.0)), float(get("cy", height / sy / 2.0))
    # nerfstudio (like COLMAP) puts the principal point in a frame whose pixel centres are at +0.5; OpenCV at 0
    K = np.array([[fx * sx, 0.0, (cx * sx) - 0.5], [0.0, fy * sy, (cy * sy) - 0.5], [0.0, 0.0, 1.0]])
    c2w = np.asarray(frame["transform_matrix"], dtype=np.float64)[:3, :4]
    R_c2w = c2w[:, :3] @ np.diag([1.0, -1.0, -1.0])  # OpenGL (nerfstudio) camera axes -> OpenCV
    distortion = np.array([float(get(k, 0.0)) for k in ("k1", "k2", "p1", "p2", "k3")])
    return {"K": K, "R": R_c2w.T, "t": -R_c2w.T @ c2w[:, 3], "distortion": distortion}


def from_nerfstudio(folder: Path, work: Path) -> Frames:
    """Images and cameras of a nerfstudio dataset. transforms.json: OpenGL camera-to-world `transform_matrix`
    per frame, intrinsics (fl_x, fl_y, cx, cy, k1, k2, p1, p2, k3) global or per frame, only perspective
    cameras. Images are undistorted with OpenCV (same K, same size) when the file has distortion."""
    import cv2

    path = folder / "transforms.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CaptureError(path, f"cannot read transforms.json ({err})") from None
    if meta.get("camera_model", "OPENCV") not in ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        raise CaptureError(path, f"camera_model {meta['camera_model']} is not supported: re-run ns-process-data with a perspective camera")
    entries = meta.get("frames") or []
    if not entries:
        raise CaptureError(path, "no frames in transforms.json")
    frames = []
    for index, entry in enumerate(entries):
        if "file_path" not in entry or "transform_matrix" not in entry or "fl_x" not in {**meta, **entry}:
            raise CaptureError(path, f"frame {index} lacks file_path, transform_matrix or fl_x")
        image_path = folder / entry["file_path"]
        if not image_path.is_file():
            raise CaptureError(image_path, "image listed in transforms.json not found")
        from PIL import Image

        with Image.open(image_path) as image:  # cameras refer to the stored pixels: no EXIF turn here
            rgb = np.asarray(image.convert("RGB"))
        height, width = rgb.shape[:2]
        declared_w, declared_h = entry.get("w", meta.get("w", width)), entry.get("h", meta.get("h", height))
        camera = _opencv_camera(entry, meta, width, height, (width / float(declared_w), height / float(declared_h)))
        if np.any(camera["distortion"] != 0):
            rgb = cv2.undistort(rgb, camera["K"], camera["distortion"])
        name = f"{index:03d}"
        target = work / "frames" / f"{name}.png"
        _save(rgb, target)
        frames.append(Frame(name, target, entry["file_path"], width, height, sharpness(rgb), camera))
    return Frames("nerfstudio", frames, shared_intrinsics=False)


def load_frames(input_path: Path, work: Path, num_frames: int = 50, blur_ratio: float = 0.4) -> Frames:
    kind = input_kind(input_path)
    if kind == "video":
        return from_video(input_path, work, num_frames, blur_ratio=blur_ratio)
    if kind == "nerfstudio":
        return from_nerfstudio(input_path, work)
    frames = from_photos(input_path, work)
    if len(frames.frames) > 1:  # a photo far blurrier than the others (motion blur): dropped, said why
        median = float(np.median([f.sharpness for f in frames.frames]))
        for frame in list(frames.frames):
            if frame.sharpness < blur_ratio * median * 0.5:
                frames.dropped[frame.source] = f"blurry (sharpness {frame.sharpness:.0f}, median {median:.0f})"
                frames.frames.remove(frame)
    return frames


def frame_rgb(frame: Frame) -> np.ndarray:
    from PIL import Image

    with Image.open(frame.path) as image:
        return np.asarray(image.convert("RGB"))

