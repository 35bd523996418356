"""Dataparser for FaceScape in the NeuFace layout (docs/method.md section 7), entry point ``neuface-facescape-data``.

Layout under ``data`` (the root)::

    Rt_scale_dict.json                              [id][exp] = [scale, Rt 4x4 (or 3x4)]: multi-view -> TU (mm)
    landmark_indices.npz                            'v10': 68 TU-mesh vertex ids; index 30 = nose tip
    imface_image/<id>/<e>_<expr>/params.json        per view v: "<v>_K" (3x3), "<v>_Rt" (3x4, OpenCV world->cam),
                                                    "<v>_valid" (optional; false: the view is skipped)
    imface_image/<id>/<e>_<expr>/{train,test}/<v>.jpg
    imface_mask/<id>/<e>_<expr>/{train,test}/<v>.jpg    face where the (area-downscaled) value > 0.5
    imface_loss_mask/<id>/<e>_<expr>/{train,test}/<v>.png   optional, not in FaceScape: pixels that count in the
                                                    photometric loss (> 0.5); neuface-process-data writes 0 where
                                                    it is unsure of the mask (its edge, open sphere cuts)
    imface_model/<id>/<e>_<expr>.obj                TU mesh; vertex v10[30] is the nose tip

``Rt_scale_dict.json`` and ``landmark_indices.npz`` are not in the FaceScape dataset zips: they come with the
FaceScape toolkit, ``toolkit/predef/`` of https://github.com/zhuhao-nju/facescape (copy them to the root).

``<e>`` is the 1-based expression id and ``<expr>`` its name (`FACESCAPE_EXPRESSIONS`). Train views come from
``train/``, eval views ("val" / "test" splits) from ``test/`` (if that folder is missing or empty, the train views
are used for eval too, with a warning). ``train_views`` keeps only the named training views (sparse-view runs).

Normalisation (the face frame; docs/method.md section 7). For view v with Rt = [R | t] (multi-view frame, OpenCV):
camera centre c = -R^T t; c <- R_s (scale c) + t_s (TU millimetres, from Rt_scale_dict); c <- c - nose_tip;
c.z += 40; c /= 100. Camera-to-world rotation R_s R^T (then OpenCV -> OpenGL axes for nerfstudio). So a point
x_norm of the scene is, in TU millimetres, ``X_TU = 100 x_norm + nose_tip - (0, 0, 40)``: one scene unit is
100 mm and the nose tip sits at (0, 0, 0.4). ``dataparser_transform`` / ``dataparser_scale`` express exactly this
(x_norm = 0.01 (X_TU - nose_tip + (0, 0, 40))), so nerfstudio's "original space" and ``neuface-export``'s mesh
are in TU millimetres; ``metadata["facescape"]`` also carries the multi-view -> TU transform.

Intrinsics: FaceScape's ``<v>_K`` is an OpenCV K (pixel centres at integer coordinates: the centre of pixel
(row i, col j) is (j, i)), while nerfstudio casts that pixel's ray through (j + 0.5, i + 0.5) measured from the
image corner; so cx = K[0, 2] + 0.5, cy = K[1, 2] + 0.5 (``neuface_ns.data.dtu.nerfstudio_intrinsics``, the same
rule as the DTU parser). With ``downscale_factor`` f (area filter over f x f blocks, default 4) fx, fy are divided by
f, cx = (K[0, 2] + 0.5) / f, cy = (K[1, 2] + 0.5) / f, and each view's size becomes (W // f, H // f); views may differ
in size (FaceScape mixes cameras). The images are expected undistorted (``scripts/prepare_facescape.py`` undistorts
them).

Background: NeuFace renders faces with no background colour, so the pixels outside each mask are set to black
when the image is loaded (``FaceScapeDataset``; ``metadata["black_background"]``).

Bad input stops with one line naming the file (``NeuFaceInputError``).
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Type

import numpy as np
import torch

from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.utils.rich_utils import CONSOLE

from neuface_ns.camera_response import encoding_metadata
from neuface_ns.data.dataset import NeuFaceDataset
from neuface_ns.data.dtu import image_size, nerfstudio_intrinsics
from neuface_ns.errors import NeuFaceInputError

SAMPLE_FACESCAPE_DIR = Path(__file__).parent / "sample" / "facescape"
"""The synthetic FaceScape-layout sample bundled with the package (default ``data``)."""

TOOLKIT_PREDEF_HINT = "it ships with the FaceScape toolkit, toolkit/predef/ of github.com/zhuhao-nju/facescape, not with the dataset zips"
"""Where Rt_scale_dict.json and landmark_indices.npz come from (said when one is missing)."""

FACESCAPE_EXPRESSIONS = (
    "neutral", "smile", "mouth_stretch", "anger", "jaw_left", "jaw_right", "jaw_forward", "mouth_left",
    "mouth_right", "dimpler", "chin_raiser", "lip_puckerer", "lip_funneler", "sadness", "lip_roll", "grin",
    "cheek_blowing", "eye_closed", "brow_raiser", "brow_lower",
)  # fmt: skip
"""FaceScape's 20 expressions; expression id e (1-based) is FACESCAPE_EXPRESSIONS[e - 1]."""

NOSE_TIP_LANDMARK = 30
"""Index of the nose tip in the 68 'v10' landmarks."""
FACE_FRAME_Z_OFFSET_MM = 40.0
"""The nose tip sits this far in front of the frame origin (+z)."""
MM_PER_UNIT = 100.0
"""One scene unit in millimetres."""

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def expression_dirname(expression_id: int) -> str:
    """'<e>_<expr>' for a 1-based expression id, e.g. 1 -> '1_neutral'."""
    return f"{expression_id}_{FACESCAPE_EXPRESSIONS[expression_id - 1]}"


def view_sort_key(name: str):
    """Numeric view names sort numerically ('2' < '10'), others after them by name."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def _list_views(directory: Path) -> Dict[str, Path]:
    if not directory.is_dir():
        return {}
    files = [p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_EXTENSIONS]
    views: Dict[str, Path] = {}
    for p in sorted(files):
        views.setdefault(p.stem, p)
    return dict(sorted(views.items(), key=lambda kv: view_sort_key(kv[0])))


def _find_view_file(directory: Path, view: str) -> Optional[Path]:
    for ext in _IMAGE_EXTENSIONS:
        for candidate in (directory / f"{view}{ext}", directory / f"{view}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


# ---------------------------------------------------------------------------------------------------------------
# reading the FaceScape files (module level: the preparation script and the tests use them too)
# ---------------------------------------------------------------------------------------------------------------


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise NeuFaceInputError(path, "file not found")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise NeuFaceInputError(path, f"cannot read JSON: {err}") from None


def _as_matrix(value, rows_ok: Sequence[Tuple[int, int]], path: Path, what: str) -> np.ndarray:
    try:
        mat = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise NeuFaceInputError(path, f"{what} is not a numeric matrix") from None
    if mat.ndim == 1 and mat.size in (9, 12, 16):  # flattened
        mat = mat.reshape(-1, 3 if mat.size == 9 else 4)
    if tuple(mat.shape) not in rows_ok:
        raise NeuFaceInputError(path, f"{what} has shape {tuple(mat.shape)}, expected one of {list(rows_ok)}")
    if not np.all(np.isfinite(mat)):
        raise NeuFaceInputError(path, f"{what} contains NaN or infinite values")
    return mat


def _check_rotation(R: np.ndarray, path: Path, what: str) -> None:
    if not np.allclose(R.T @ R, np.eye(3), atol=2e-3) or np.linalg.det(R) <= 0:
        raise NeuFaceInputError(path, f"{what}: its 3x3 block is not a rotation")


def view_is_valid(params: dict, view: str) -> bool:
    """FaceScape's params.json marks views whose calibration failed with "<v>_valid": false (or "0" / "false");
    a view without the key is valid."""
    value = params.get(f"{view}_valid", True)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def camera_from_params(params: dict, view: str, path: Path) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K 3x3, R world->camera, t) of view ``view`` from a FaceScape params.json dict."""
    for key in (f"{view}_K", f"{view}_Rt"):
        if key not in params:
            raise NeuFaceInputError(path, f"no '{key}' for view {view}")
    K = _as_matrix(params[f"{view}_K"], [(3, 3), (4, 4)], path, f"'{view}_K'")[:3, :3]
    Rt = _as_matrix(params[f"{view}_Rt"], [(3, 4), (4, 4)], path, f"'{view}_Rt'")[:3, :4]
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise NeuFaceInputError(path, f"'{view}_K' has a non-positive focal length")
    K = K / K[2, 2]
    R, t = Rt[:, :3], Rt[:, 3]
    _check_rotation(R, path, f"'{view}_Rt'")
    return K, R, t


def load_rt_scale(path: Path, subject_id: int, expression_id: int) -> Tuple[float, np.ndarray, np.ndarray]:
    """(scale, R_s, t_s) with X_TU = R_s (scale X_mview) + t_s, from Rt_scale_dict.json."""
    if not path.is_file():
        raise NeuFaceInputError(path, f"not found; {TOOLKIT_PREDEF_HINT}")
    table = read_json(path)
    sid, eid = str(subject_id), str(expression_id)
    if not isinstance(table, dict) or sid not in table:
        raise NeuFaceInputError(path, f"no entry for subject {sid}")
    if not isinstance(table[sid], dict) or eid not in table[sid]:
        raise NeuFaceInputError(path, f"no entry for subject {sid}, expression {eid}")
    entry = table[sid][eid]
    if not isinstance(entry, (list, tuple)) or len(entry) != 2:
        raise NeuFaceInputError(path, f"entry [{sid}][{eid}] is not [scale, Rt]")
    try:
        scale = float(entry[0])
    except (TypeError, ValueError):
        raise NeuFaceInputError(path, f"entry [{sid}][{eid}]: scale is not a number") from None
    if not (math.isfinite(scale) and scale > 0):
        raise NeuFaceInputError(path, f"entry [{sid}][{eid}]: scale must be positive, got {scale}")
    Rt = _as_matrix(entry[1], [(3, 4), (4, 4)], path, f"entry [{sid}][{eid}] Rt")
    _check_rotation(Rt[:3, :3], path, f"entry [{sid}][{eid}] Rt")
    return scale, Rt[:3, :3].copy(), Rt[:3, 3].copy()


def load_landmark_index(path: Path, landmark: int = NOSE_TIP_LANDMARK) -> int:
    """TU-mesh vertex id of landmark ``landmark`` of the 68 'v10' landmarks."""
    if not path.is_file():
        raise NeuFaceInputError(path, f"not found ('v10': 68 TU-mesh vertex ids); {TOOLKIT_PREDEF_HINT}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "v10" not in npz.files:
                raise NeuFaceInputError(path, f"no 'v10' array (found: {', '.join(npz.files) or 'nothing'})")
            ids = np.asarray(npz["v10"]).reshape(-1)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise NeuFaceInputError(path, f"cannot read landmark file: {err}") from None
    if ids.size <= landmark or not np.issubdtype(ids.dtype, np.integer):
        raise NeuFaceInputError(path, f"'v10' must hold at least {landmark + 1} integer vertex ids, got {ids.size}")
    return int(ids[landmark])


def read_obj_vertex(path: Path, index: int) -> np.ndarray:
    """Vertex ``index`` (0-based, file order) of a Wavefront OBJ, read from its 'v' lines (no re-indexing)."""
    if not path.is_file():
        raise NeuFaceInputError(path, "TU mesh not found (its landmark vertex anchors the face frame)")
    count = 0
    try:
        with open(path, "r", errors="replace") as f:
            for line in f:
                if line.startswith("v ") or line.startswith("v\t"):
                    if count == index:
                        values = line.split()[1:4]
                        try:
                            vertex = np.array([float(v) for v in values], dtype=np.float64)
                        except ValueError:
                            raise NeuFaceInputError(path, f"vertex {index} is not numeric") from None
                        if vertex.shape != (3,) or not np.all(np.isfinite(vertex)):
                            raise NeuFaceInputError(path, f"vertex {index} is malformed")
                        return vertex
                    count += 1
    except OSError as err:
        raise NeuFaceInputError(path, f"cannot read mesh: {err}") from None
    raise NeuFaceInputError(path, f"has {count} vertices, landmark vertex {index} does not exist")


@dataclass(frozen=True)
class FaceFrame:
    """Multi-view frame -> TU millimetres -> normalised face frame (docs/method.md section 7)."""

    scale: float
    rotation: np.ndarray  # R_s
    translation: np.ndarray  # t_s (mm)
    nose_tip: np.ndarray  # TU mm

    @property
    def offset_mm(self) -> np.ndarray:
        """x_norm = (X_TU + offset) / 100."""
        return -self.nose_tip + np.array([0.0, 0.0, FACE_FRAME_Z_OFFSET_MM])

    def mview_to_tu(self, points: np.ndarray) -> np.ndarray:
        return (self.scale * np.asarray(points, dtype=np.float64)) @ self.rotation.T + self.translation

    def tu_to_normalised(self, points_mm: np.ndarray) -> np.ndarray:
        return (np.asarray(points_mm, dtype=np.float64) + self.offset_mm) / MM_PER_UNIT

    def normalised_to_tu(self, points: np.ndarray) -> np.ndarray:
        return MM_PER_UNIT * np.asarray(points, dtype=np.float64) - self.offset_mm

    def mview_to_normalised(self, points: np.ndarray) -> np.ndarray:
        return self.tu_to_normalised(self.mview_to_tu(points))

    def camera_to_world(self, R: np.ndarray, t: np.ndarray) -> np.ndarray:
        """OpenCV camera-to-world 3x4 in the normalised frame of the camera x_cam = R x_mview + t."""
        centre = self.mview_to_normalised(-R.T @ t)
        return np.concatenate([self.rotation @ R.T, centre[:, None]], axis=1)


def load_face_frame(root: Path, subject_id: int, expression_id: int) -> FaceFrame:
    scale, R_s, t_s = load_rt_scale(root / "Rt_scale_dict.json", subject_id, expression_id)
    index = load_landmark_index(root / "landmark_indices.npz")
    nose = read_obj_vertex(root / "imface_model" / str(subject_id) / f"{expression_dirname(expression_id)}.obj", index)
    return FaceFrame(scale=scale, rotation=R_s, translation=t_s, nose_tip=nose)


# ---------------------------------------------------------------------------------------------------------------
# dataset: black background
# ---------------------------------------------------------------------------------------------------------------


class FaceScapeDataset(NeuFaceDataset):
    """NeuFaceDataset that sets the pixels outside the mask to black when ``metadata["black_background"]``,
    except those a loss mask marks uncertain."""

    exclude_batch_keys_from_device: List[str] = ["image", "mask"]

    def get_data(self, image_idx: int, image_type="float32") -> Dict:
        data = super().get_data(image_idx, image_type)
        if self.metadata.get("black_background") and "fg_mask" in data:
            fg = data["fg_mask"]
            if "loss_mask" in data:  # a capture's uncertain pixels keep the photo's colour (black_or_image loss)
                fg = torch.maximum(fg, 1.0 - data["loss_mask"])
            data["image"] = data["image"] * (fg.to(data["image"].dtype) if image_type == "float32" else fg.to(torch.uint8))
        return data


# ---------------------------------------------------------------------------------------------------------------
# the dataparser
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class NeuFaceFaceScapeDataParserConfig(DataParserConfig):
    """FaceScape in the NeuFace layout (imface_image/, imface_mask/, imface_model/, Rt_scale_dict.json)."""

    _target: Type = field(default_factory=lambda: NeuFaceFaceScapeDataParser)
    """target class to instantiate"""
    data: Path = SAMPLE_FACESCAPE_DIR
    """Root of the NeuFace layout (default: the bundled synthetic sample)."""
    subject_id: int = 1
    """FaceScape subject id (folder imface_image/<id>)."""
    expression_id: int = 1
    """1-based expression id: 1 neutral, 2 smile, 3 mouth_stretch, ... 20 brow_lower."""
    downscale_factor: int = 4
    """Shrink images and masks by this integer factor (area average over f x f blocks; 1 keeps full size)."""
    train_views: Tuple[str, ...] = ()
    """Only these training views (names of files in train/, e.g. 1 5 9 for a sparse 3-view run); empty: all."""


@dataclass
class NeuFaceFaceScapeDataParser(DataParser):
    """Reads one FaceScape subject/expression into nerfstudio cameras in the normalised face frame."""

    config: NeuFaceFaceScapeDataParserConfig

    def __init__(self, config: NeuFaceFaceScapeDataParserConfig):
        super().__init__(config=config)
        self.config = config

    # -- locating the tuple ----------------------------------------------------------------------------------

    def _tuple_dirs(self) -> Tuple[Path, Path, str]:
        root = Path(self.config.data)
        if not root.is_dir():
            raise NeuFaceInputError(root, "data directory does not exist")
        images_root = root / "imface_image"
        if not images_root.is_dir():
            raise NeuFaceInputError(images_root, "missing imface_image directory (NeuFace FaceScape layout)")
        sid, eid = self.config.subject_id, self.config.expression_id
        subject_dir = images_root / str(sid)
        if not subject_dir.is_dir():
            found = sorted((p.name for p in images_root.iterdir() if p.is_dir()), key=view_sort_key)
            raise NeuFaceInputError(
                subject_dir, f"unknown subject {sid}; subjects present: {', '.join(found) or 'none'}"
            )
        existing = sorted((p.name for p in subject_dir.iterdir() if p.is_dir()), key=lambda n: view_sort_key(n.split("_")[0]))
        if not 1 <= eid <= len(FACESCAPE_EXPRESSIONS):
            raise NeuFaceInputError(
                subject_dir,
                f"unknown expression {eid} (valid: 1..{len(FACESCAPE_EXPRESSIONS)}); "
                f"expressions present: {', '.join(existing) or 'none'}",
            )
        name = expression_dirname(eid)
        if not (subject_dir / name).is_dir():
            raise NeuFaceInputError(
                subject_dir / name, f"expression {eid} ({name}) not found; expressions present: {', '.join(existing) or 'none'}"
            )
        return subject_dir / name, root / "imface_mask" / str(sid) / name, name

    def _views(self, image_dir: Path, split: str) -> Tuple[str, Dict[str, Path]]:
        if split == "train":
            folder = "train"
        elif split in ("val", "test"):
            folder = "test"
        else:
            raise ValueError(f"Unknown dataparser split {split}")
        views = _list_views(image_dir / folder)
        if folder == "test" and not views:
            CONSOLE.print(f"[bold yellow]Warning: no test views in {image_dir / 'test'}; evaluating on the train views")
            folder, views = "train", _list_views(image_dir / "train")
        if not views:
            raise NeuFaceInputError(image_dir / folder, "no .jpg/.png images found")
        if folder == "train" and split == "train" and self.config.train_views:
            wanted = [str(v) for v in self.config.train_views]
            missing = [v for v in wanted if v not in views]
            if missing:
                raise NeuFaceInputError(
                    image_dir / "train", f"train view(s) {', '.join(missing)} not found; views present: {', '.join(views)}"
                )
            views = {v: views[v] for v in sorted(set(wanted), key=view_sort_key)}
        return folder, views

    # -- main -----------------------------------------------------------------------------------------------

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        factor = int(self.config.downscale_factor)
        if factor < 1 or factor != self.config.downscale_factor:
            raise NeuFaceInputError(
                self.config.data, f"downscale_factor must be a positive integer, got {self.config.downscale_factor}"
            )
        image_dir, mask_dir, expr_name = self._tuple_dirs()
        root = Path(self.config.data)
        folder, views = self._views(image_dir, split)
        params_path = image_dir / "params.json"
        params = read_json(params_path)
        invalid = [view for view in views if not view_is_valid(params, view)]
        if invalid:
            CONSOLE.print(f"neuface-facescape-data: skipping {folder} view(s) {', '.join(invalid)}: "
                          f"marked not valid in {params_path}")
            views = {view: path for view, path in views.items() if view not in invalid}
            if not views:
                raise NeuFaceInputError(params_path, f"every {folder} view is marked not valid (<view>_valid)")
        frame = load_face_frame(root, self.config.subject_id, self.config.expression_id)

        images, masks, intrinsics, c2ws, sizes = [], [], [], [], []
        loss_mask_dir = root / "imface_loss_mask" / mask_dir.relative_to(root / "imface_mask") / folder
        loss_masks: Optional[List[Path]] = [] if loss_mask_dir.is_dir() else None
        distorted = []
        for view, img_path in views.items():
            mask_path = _find_view_file(mask_dir / folder, view)
            if mask_path is None:
                raise NeuFaceInputError(mask_dir / folder / f"{view}.jpg", f"missing mask for image {img_path}")
            K, R, t = camera_from_params(params, view, params_path)
            dist = params.get(f"{view}_distortion")
            if dist is not None and np.any(np.abs(np.asarray(dist, dtype=np.float64)) > 0):
                distorted.append(view)
            width, height = image_size(img_path)
            mask_size = image_size(mask_path)
            if mask_size != (width, height):
                raise NeuFaceInputError(
                    mask_path, f"mask is {mask_size[0]}x{mask_size[1]} but its image {img_path.name} is {width}x{height}"
                )
            if width // factor < 1 or height // factor < 1:
                raise NeuFaceInputError(img_path, f"image ({width}x{height}) is smaller than downscale_factor {factor}")
            if loss_masks is not None:
                loss_path = _find_view_file(loss_mask_dir, view)
                if loss_path is None:
                    raise NeuFaceInputError(loss_mask_dir / f"{view}.png", f"missing loss mask for image {img_path} "
                                            f"(delete {loss_mask_dir} to train without loss masks)")
                if image_size(loss_path) != mask_size:
                    raise NeuFaceInputError(loss_path, f"loss mask is not the size of its mask {mask_path}")
                loss_masks.append(loss_path)
            c2w = frame.camera_to_world(R, t)
            c2w[:3, 1:3] *= -1  # OpenCV (y down, z forward) -> OpenGL (y up, z back)
            images.append(img_path)
            masks.append(mask_path)
            intrinsics.append(nerfstudio_intrinsics(K, factor))
            c2ws.append(c2w)
            sizes.append((width // factor, height // factor))
        if distorted:
            CONSOLE.print(
                f"[bold yellow]Warning: {params_path} has non-zero distortion for view(s) {', '.join(distorted[:8])}; "
                "the NeuFace layout expects undistorted images (scripts/prepare_facescape.py undistorts them)"
            )

        intr = torch.tensor(np.asarray(intrinsics), dtype=torch.float32)
        size = torch.tensor(sizes, dtype=torch.int64)
        cameras = Cameras(
            camera_to_worlds=torch.tensor(np.asarray(c2ws), dtype=torch.float32),
            fx=intr[:, 0:1],
            fy=intr[:, 1:2],
            cx=intr[:, 2:3],
            cy=intr[:, 3:4],
            width=size[:, 0:1],
            height=size[:, 1:2],
            camera_type=CameraType.PERSPECTIVE,
        )
        transform = np.concatenate([np.eye(3), frame.offset_mm[:, None]], axis=1)
        mview_rt = np.eye(4)
        mview_rt[:3, :3], mview_rt[:3, 3] = frame.rotation, frame.translation
        return DataparserOutputs(
            image_filenames=images,
            cameras=cameras,
            scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]], dtype=torch.float32)),
            dataparser_transform=torch.tensor(transform, dtype=torch.float32),
            dataparser_scale=1.0 / MM_PER_UNIT,
            metadata={
                "fg_mask_filenames": masks,
                **({"loss_mask_filenames": loss_masks} if loss_masks is not None else {}),
                "downscale_factor": factor,
                "black_background": True,
                **encoding_metadata(root),
                "facescape": {
                    "subject_id": int(self.config.subject_id),
                    "expression_id": int(self.config.expression_id),
                    "expression": expr_name,
                    "split_folder": folder,
                    "views": list(views),
                    "nose_tip_tu_mm": [float(v) for v in frame.nose_tip],
                    "normalised_to_tu_mm": "X_TU = 100 * x_norm + nose_tip - (0, 0, 40)",
                    "mview_to_tu": {
                        "scale": float(frame.scale),
                        "Rt": [[float(v) for v in row] for row in mview_rt],
                        "rule": "X_TU = Rt[:3, :3] @ (scale * X_mview) + Rt[:3, 3]",
                    },
                },
            },
        )
