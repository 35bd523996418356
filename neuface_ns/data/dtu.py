"""Dataparser for scans in the IDR / NeuS "DTU" layout (also NeuS's BlendedMVS scans).

Layout of one scan directory::

    <scan>/image/000.png ...  RGB images (.png or .jpg)
    <scan>/mask/000.png ...   object masks (.png or .jpg; object where value > 127.5, first channel if several)
    <scan>/cameras.npz        world_mat_i (4x4, top rows P = K [R | t], OpenCV camera) and
                              scale_mat_i (4x4, X_world = scale_mat @ x_norm: the unit sphere in world units);
                              NeuS names it cameras_sphere.npz, which is used when there is no cameras.npz
                              (``cameras_file`` picks another file)

Views and cameras. When every image name is a number (``000.png``, ``5.jpg``) that number is the view id: image
``005.png`` gets ``world_mat_5`` / ``scale_mat_5`` and the mask whose name is the same number, so removing images
(a sparse-view run) does not shift the later cameras. Otherwise the images are sorted by name and view i is the
i-th one (IDR's rule), with the mask of the same name. A missing camera or mask stops with one line naming it.

Cameras are expressed in the normalised frame (the object inside the unit sphere): the projection of view i
in that frame is ``(world_mat_i @ scale_mat_i)[:3, :4]``. It is decomposed into K, R (world->camera) and the
camera centre, then converted to nerfstudio's camera-to-world OpenGL convention (x right, y up, z back).

Pixel convention. DTU's / IDR's P is an OpenCV projection: pixel centres sit at integer coordinates, so the
centre of pixel (row i, col j) is (u, v) = (j, i) and the image spans [-0.5, W - 0.5]. nerfstudio shoots the ray
of pixel (row i, col j) through (j + 0.5, i + 0.5) with its cx, cy (the image corner is (0, 0)). The two agree
when nerfstudio's principal point is K's plus half a pixel: cx = K[0, 2] + 0.5, cy = K[1, 2] + 0.5.

With ``downscale_factor = f`` the images are area-averaged over f x f blocks (after cropping the last rows and
columns to a multiple of f), so a point at corner-based coordinate u of the full image is at u / f in the small
one: fx, fy are divided by f, cx = (K[0, 2] + 0.5) / f, cy = (K[1, 2] + 0.5) / f, and width/height become
``original // f``. The images themselves are downscaled on load by :class:`neuface_ns.data.dataset.NeuFaceDataset`
(nothing is written to disk).

Masks are NOT given to nerfstudio as ``mask_filenames`` (its pixel sampler would then only sample inside the
object, but NeuFace needs rays outside the mask too); they travel as ``metadata["fg_mask_filenames"]`` and
the dataset adds them to every batch as ``"fg_mask"``.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, Type

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.data.utils.dataparsers_utils import (
    get_train_eval_split_all,
    get_train_eval_split_filename,
    get_train_eval_split_fraction,
    get_train_eval_split_interval,
)
from nerfstudio.utils.rich_utils import CONSOLE

from neuface_ns.camera_response import encoding_metadata
from neuface_ns.errors import NeuFaceInputError

SAMPLE_DTU_DIR = Path(__file__).parent / "sample" / "dtu"
"""The small scan bundled with the package (default ``data``)."""

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
CAMERA_FILES = ("cameras.npz", "cameras_sphere.npz")
"""Camera files looked for, in this order, when ``cameras_file`` is not given (IDR's name, then NeuS's)."""


@dataclass
class NeuFaceDTUDataParserConfig(DataParserConfig):
    """IDR/NeuS-layout DTU scan (image/, mask/, cameras.npz) for NeuFace."""

    _target: Type = field(default_factory=lambda: NeuFaceDTUDataParser)
    """target class to instantiate"""
    data: Path = SAMPLE_DTU_DIR
    """Scan directory holding image/, mask/ and cameras.npz or cameras_sphere.npz (default: the bundled sample)."""
    cameras_file: Optional[Path] = None
    """The world_mat_i / scale_mat_i file, relative to data (or absolute). Default: cameras.npz, and
    cameras_sphere.npz (NeuS's name) when there is no cameras.npz."""
    downscale_factor: int = 1
    """Shrink images and masks by this integer factor (area average over f x f pixel blocks)."""
    eval_mode: Literal["auto", "fraction", "filename", "interval", "all"] = "auto"
    """How to split train/eval views (nerfstudio's convention, plus auto):
    auto: the views listed (by view id) as held_out_views in the scan's scene.json (scripts/render_scan_scene.py
    writes it, with its clean held-out renders), else interval;
    fraction: train_split_fraction of the views, evenly spaced, train, the rest eval;
    filename: names containing 'train' / 'eval';
    interval: every eval_interval-th image in view order (starting with the first) is eval, the others train;
    all: every view is used for both train and eval."""
    train_split_fraction: float = 0.9
    """Fraction of views used for training when eval_mode is 'fraction'."""
    eval_interval: int = 8
    """Interval between eval views when eval_mode is 'interval'."""


# ---------------------------------------------------------------------------------------------------------------
# helpers (module level so the tests and other modules can use them)
# ---------------------------------------------------------------------------------------------------------------


def list_images(directory: Path) -> List[Path]:
    """Image files (.png, .jpg, .jpeg) of ``directory``, sorted by name."""
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_EXTENSIONS)


def numbered(files: List[Path]) -> Optional[Dict[int, Path]]:
    """{number in the name: file} when every file name (without extension) is a number, else None.

    Raises NeuFaceInputError when two files carry the same number (e.g. 5.png and 005.png, or 005.png and 005.jpg).
    """
    if not files or not all(p.stem.isdigit() for p in files):
        return None
    by_number: Dict[int, Path] = {}
    for p in files:
        other = by_number.setdefault(int(p.stem), p)
        if other is not p:
            raise NeuFaceInputError(p, f"has the same view number as {other.name}; keep one of them")
    return dict(sorted(by_number.items()))


def nerfstudio_intrinsics(K: np.ndarray, factor: int = 1) -> List[float]:
    """[fx, fy, cx, cy] for nerfstudio's Cameras from an OpenCV K (pixel centres at integer coordinates).

    nerfstudio casts the ray of pixel (row i, col j) through (j + 0.5, i + 0.5) measured from the image corner,
    OpenCV's centre of that pixel is (j, i): the principal point moves by half a pixel. Area downscaling by
    ``factor`` divides corner-based coordinates by it. Skew (K[0, 1]) is not representable and is dropped.
    """
    K = np.asarray(K, dtype=np.float64)
    return [K[0, 0] / factor, K[1, 1] / factor, (K[0, 2] + 0.5) / factor, (K[1, 2] + 0.5) / factor]


def image_size(path: Path) -> Tuple[int, int]:
    """(width, height) of an image file, read from its header only (no full decode)."""
    try:
        with Image.open(path) as img:
            return img.size
    except UnidentifiedImageError:
        raise NeuFaceInputError(path, "not a readable image (unknown or corrupt format)") from None
    except OSError as err:
        raise NeuFaceInputError(path, f"cannot read image: {err}") from None


def decompose_projection(P: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split a 3x4 projection matrix P ~ K [R | -R C] into (K with K[2,2] = 1, R world->camera, centre C).

    P is only defined up to scale; a negative overall scale is removed so that K has a positive diagonal
    and R is the proper rotation of the camera that sees points in front of it (positive depth).
    Raises ValueError if P is degenerate or describes a mirrored camera.
    """
    P = np.asarray(P, dtype=np.float64)
    if P.shape != (3, 4) or not np.all(np.isfinite(P)):
        raise ValueError("projection matrix must be a finite 3x4 matrix")
    if abs(np.linalg.det(P[:, :3])) < 1e-12 * max(np.abs(P[:, :3]).max(), 1e-300) ** 3:
        raise ValueError("projection matrix is degenerate (its left 3x3 block is singular)")
    K, R, C_h = cv2.decomposeProjectionMatrix(P)[:3]
    if K[2, 2] < 0:  # same projective camera, but decomposed with the opposite overall sign
        K, R, C_h = cv2.decomposeProjectionMatrix(-P)[:3]
    K = K / K[2, 2]
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError("projection matrix describes a mirrored camera (negative focal length)")
    centre = (C_h[:3, 0] / C_h[3, 0]).astype(np.float64)
    return K, R.astype(np.float64), centre


def similarity_inverse(scale_mat: np.ndarray) -> Tuple[np.ndarray, float]:
    """Express the inverse of ``scale_mat`` (X_world = scale_mat @ x_norm) in nerfstudio's convention.

    Returns (transform 3x4, scale) with x_norm = scale * (transform @ [x_world; 1]).
    Raises ValueError unless scale_mat is a similarity transform (uniform scale, rotation, translation).
    """
    S = np.asarray(scale_mat, dtype=np.float64)
    if not np.allclose(S[3], [0.0, 0.0, 0.0, 1.0], atol=1e-9):
        raise ValueError(f"last row is {S[3].tolist()}, expected [0, 0, 0, 1]")
    A, b = S[:3, :3], S[:3, 3]
    det = np.linalg.det(A)
    if det <= 0:
        raise ValueError("its 3x3 block is singular or mirrors the scene (det <= 0)")
    a = det ** (1.0 / 3.0)
    Q = A / a
    if not np.allclose(Q.T @ Q, np.eye(3), atol=1e-6):
        raise ValueError("it is not a similarity transform (uniform scale + rotation + translation)")
    transform = np.concatenate([Q.T, (-Q.T @ b)[:, None]], axis=1)
    return transform, 1.0 / a


def _load_cameras_npz(path: Path) -> Dict[str, np.ndarray]:
    if not path.is_file():
        raise NeuFaceInputError(path, "camera file not found (expected world_mat_i and scale_mat_i for every view)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: np.asarray(npz[key]) for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise NeuFaceInputError(path, f"cannot read {path.name}: {err}") from None


def _matrix(cams: Dict[str, np.ndarray], key: str, npz_path: Path, image: Path) -> np.ndarray:
    if key not in cams:
        raise NeuFaceInputError(npz_path, f"no '{key}' for image {image.name}")
    mat = cams[key]
    if mat.shape != (4, 4) or not np.issubdtype(mat.dtype, np.number):
        raise NeuFaceInputError(npz_path, f"'{key}' has shape {mat.shape}, expected a numeric 4x4 matrix")
    mat = mat.astype(np.float64)
    if not np.all(np.isfinite(mat)):
        raise NeuFaceInputError(npz_path, f"'{key}' contains NaN or infinite values")
    return mat


@dataclass
class NeuFaceDTUDataParser(DataParser):
    """Reads an IDR/NeuS-layout DTU scan into nerfstudio cameras in the normalised (unit-sphere) frame."""

    config: NeuFaceDTUDataParserConfig

    def __init__(self, config: NeuFaceDTUDataParserConfig):
        super().__init__(config=config)
        self.config = config
        self._announced_split = False
        self._announced_cameras = False
        self._announced_matching = False

    # -- file discovery and validation ----------------------------------------------------------------------

    def _list_files(self) -> Tuple[List[Path], List[Path], List[int]]:
        """(images, their masks, their view ids) in view order; see the module docstring for the matching rule."""
        data = Path(self.config.data)
        if not data.is_dir():
            raise NeuFaceInputError(data, "data directory does not exist")
        image_dir, mask_dir = data / "image", data / "mask"
        if not image_dir.is_dir():
            raise NeuFaceInputError(image_dir, "missing image directory")
        if not mask_dir.is_dir():
            raise NeuFaceInputError(mask_dir, "missing mask directory")
        images = list_images(image_dir)
        if not images:
            raise NeuFaceInputError(image_dir, "no .png or .jpg images found")
        mask_files = list_images(mask_dir)
        by_number = numbered(images)
        if by_number is not None:
            ids, images = list(by_number), list(by_number.values())
            mask_by_number = numbered([p for p in mask_files if p.stem.isdigit()]) or {}
            found = [mask_by_number.get(i) for i in ids]
        else:
            ids = list(range(len(images)))
            mask_by_stem: Dict[str, Path] = {}
            for p in mask_files:
                other = mask_by_stem.setdefault(p.stem, p)
                if other is not p:
                    raise NeuFaceInputError(p, f"two masks named {p.stem} ({other.name}, {p.name}); keep one of them")
            found = [mask_by_stem.get(p.stem) for p in images]
        masks: List[Path] = []
        for img_path, mask_path in zip(images, found):
            if mask_path is None:
                raise NeuFaceInputError(
                    mask_dir / f"{img_path.stem}.png", f"missing mask for image {img_path} (.png or .jpg)"
                )
            masks.append(mask_path)
        return images, masks, ids

    def _camera_file(self) -> Path:
        data = Path(self.config.data)
        if self.config.cameras_file is not None:
            path = Path(self.config.cameras_file)
            path = path if path.is_absolute() else data / path
            if not path.is_file():
                raise NeuFaceInputError(path, "camera file not found (given as cameras_file)")
        else:
            candidates = [data / name for name in CAMERA_FILES]
            path = next((p for p in candidates if p.is_file()), None)
            if path is None:
                raise NeuFaceInputError(
                    candidates[0],
                    f"missing cameras.npz (and no {CAMERA_FILES[1]}; expected world_mat_i and scale_mat_i for every view)",
                )
        if not self._announced_cameras:
            CONSOLE.print(f"neuface-dtu-data: cameras from {path}")
            self._announced_cameras = True
        return path

    @staticmethod
    def _check_sizes(images: List[Path], masks: List[Path]) -> Tuple[int, int]:
        first_size = None
        for img_path, mask_path in zip(images, masks):
            size = image_size(img_path)
            if first_size is None:
                first_size = size
            elif size != first_size:
                raise NeuFaceInputError(
                    img_path,
                    f"image is {size[0]}x{size[1]} but {images[0].name} is {first_size[0]}x{first_size[1]}; "
                    "all images must have the same size",
                )
            mask_size = image_size(mask_path)
            if mask_size != size:
                raise NeuFaceInputError(
                    mask_path,
                    f"mask is {mask_size[0]}x{mask_size[1]} but its image {img_path.name} is {size[0]}x{size[1]}",
                )
        assert first_size is not None
        return first_size

    def _split_indices(self, images: List[Path], ids: List[int], split: str) -> np.ndarray:
        mode = self.config.eval_mode
        held_out = self._scene_held_out_views(ids) if mode == "auto" else None
        if held_out is not None:
            i_eval = sorted(held_out)
            i_train = [i for i in range(len(images)) if i not in held_out]
        elif mode in ("interval", "auto"):
            i_train, i_eval = get_train_eval_split_interval(images, self.config.eval_interval)
        elif mode == "fraction":
            i_train, i_eval = get_train_eval_split_fraction(images, self.config.train_split_fraction)
        elif mode == "filename":
            try:
                i_train, i_eval = get_train_eval_split_filename(images)
            except ValueError:
                raise NeuFaceInputError(
                    images[0].parent, "eval_mode 'filename' needs 'train' or 'eval' in every image name"
                ) from None
        elif mode == "all":
            i_train, i_eval = get_train_eval_split_all(images)
        else:
            raise ValueError(f"Unknown eval mode {mode}")
        if split == "train":
            return np.asarray(i_train, dtype=np.int64)
        if split in ("val", "test"):
            return np.asarray(i_eval, dtype=np.int64)
        raise ValueError(f"Unknown dataparser split {split}")

    def _scene_held_out_views(self, ids: List[int]) -> Optional[set]:
        """held_out_views of <data>/scene.json (view ids) as positions in the image list, or None when the file
        does not list them."""
        path = Path(self.config.data) / "scene.json"
        if not path.is_file():
            return None
        try:
            listed = json.loads(path.read_text()).get("held_out_views")
        except (json.JSONDecodeError, AttributeError):
            raise NeuFaceInputError(path, "not a JSON object") from None
        if listed is None:
            return None
        position = {view: k for k, view in enumerate(ids)}
        if not isinstance(listed, list) or not all(isinstance(v, int) and v in position for v in listed):
            raise NeuFaceInputError(path, f"held_out_views must be ids of views present in image/ ({ids[0]}..{ids[-1]})")
        if not self._announced_split:
            CONSOLE.print(f"neuface-dtu-data: held-out views {listed} from {path}")
            self._announced_split = True
        return {position[v] for v in listed}

    # -- main -----------------------------------------------------------------------------------------------

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        data = Path(self.config.data)
        images, masks, ids = self._list_files()
        npz_path = self._camera_file()
        cams = _load_cameras_npz(npz_path)
        width, height = self._check_sizes(images, masks)

        factor = int(self.config.downscale_factor)
        if factor < 1 or factor != self.config.downscale_factor:
            raise NeuFaceInputError(
                data, f"downscale_factor must be a positive integer, got {self.config.downscale_factor}"
            )
        if width // factor < 1 or height // factor < 1:
            raise NeuFaceInputError(images[0], f"image ({width}x{height}) is smaller than downscale_factor {factor}")
        n_world_mats = sum(key.startswith("world_mat_") for key in cams)
        if n_world_mats != len(images) and not self._announced_matching:
            rule = "the number in each image's name" if all(p.stem.isdigit() for p in images) else "name order"
            CONSOLE.print(f"neuface-dtu-data: {len(images)} images, {n_world_mats} cameras in {npz_path.name}; "
                          f"views matched to cameras by {rule}")
            self._announced_matching = True

        scale_mat, first_view = None, None
        intrinsics, c2ws = [], []
        for img_path, view in zip(images, ids):
            world_mat = _matrix(cams, f"world_mat_{view}", npz_path, img_path)
            s_mat = _matrix(cams, f"scale_mat_{view}", npz_path, img_path)
            if scale_mat is None:
                scale_mat, first_view = s_mat, view
            elif not np.allclose(s_mat, scale_mat, rtol=1e-6, atol=1e-9 * max(np.abs(scale_mat).max(), 1.0)):
                raise NeuFaceInputError(
                    npz_path,
                    f"scale_mat_{view} differs from scale_mat_{first_view}; IDR scans need one scale_mat for all views",
                )
            try:
                K, R, centre = decompose_projection((world_mat @ s_mat)[:3, :4])
            except ValueError as err:
                raise NeuFaceInputError(npz_path, f"world_mat_{view} @ scale_mat_{view}: {err}") from None
            skew_px = abs(K[0, 1]) * height / K[1, 1]
            if skew_px > 0.05:
                CONSOLE.print(
                    f"[bold yellow]Warning: camera {view} has skew {K[0, 1]:.4g} (up to {skew_px:.3g} px); "
                    "nerfstudio cameras have no skew, it is ignored"
                )
            c2w = np.eye(4)
            c2w[:3, :3] = R.T
            c2w[:3, 3] = centre
            c2w[:3, 1:3] *= -1  # OpenCV (y down, z forward) -> OpenGL (y up, z back)
            intrinsics.append(nerfstudio_intrinsics(K, factor))
            c2ws.append(c2w[:3, :4])
        assert scale_mat is not None

        try:
            transform, scale = similarity_inverse(scale_mat)
        except ValueError as err:
            raise NeuFaceInputError(npz_path, f"scale_mat_{first_view}: {err}") from None

        indices = self._split_indices(images, ids, split)
        intr = torch.tensor(np.asarray(intrinsics)[indices], dtype=torch.float32)
        cameras = Cameras(
            camera_to_worlds=torch.tensor(np.asarray(c2ws)[indices], dtype=torch.float32),
            fx=intr[:, 0:1],
            fy=intr[:, 1:2],
            cx=intr[:, 2:3],
            cy=intr[:, 3:4],
            width=torch.full((len(indices), 1), width // factor, dtype=torch.int64),
            height=torch.full((len(indices), 1), height // factor, dtype=torch.int64),
            camera_type=CameraType.PERSPECTIVE,
        )
        return DataparserOutputs(
            image_filenames=[images[i] for i in indices],
            cameras=cameras,
            scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]], dtype=torch.float32)),
            dataparser_transform=torch.tensor(transform, dtype=torch.float32),
            dataparser_scale=float(scale),
            metadata={
                "fg_mask_filenames": [masks[i] for i in indices],
                "downscale_factor": factor,
                "scale_mat": [[float(v) for v in row] for row in scale_mat],
                "view_ids": [int(ids[i]) for i in indices],
                "cameras_file": str(npz_path),
                **encoding_metadata(data),
            },
        )
