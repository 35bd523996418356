"""NeuFace input dataset: area-downscaled RGB images plus a per-pixel foreground mask.

Every item is a dict with
    "image_idx": int,
    "image":     float32 tensor [H, W, 3] in [0, 1] (RGB; an alpha channel is composited onto black),
    "fg_mask":   float32 tensor [H, W, 1], 1.0 on the object and 0.0 elsewhere (only if the dataparser gave
                 ``metadata["fg_mask_filenames"]``),
    "loss_mask": float32 tensor [H, W, 1], 1.0 where the pixel counts in the photometric losses and 0.0 where it
                 does not (only if the dataparser gave ``metadata["loss_mask_filenames"]``: a capture marks the
                 pixels whose mask value it is unsure of "don't care" instead of teaching a wrong edge).

nerfstudio's ``PixelSampler.collate_image_dataset_batch`` gathers every tensor in the image batch at the sampled
pixels (``value[c, y, x]`` for every key except "image_idx"), so a training ray batch carries
``batch["fg_mask"]`` of shape [num_rays, 1] next to ``batch["image"]`` [num_rays, 3]. Unlike "image" (which the
datamanager keeps on the CPU), "fg_mask" is not in ``exclude_batch_keys_from_device`` and is moved to the
datamanager's device.

Downscaling (``metadata["downscale_factor"] = f``): the image is cropped to a multiple of f and averaged over
f x f blocks (the same as PIL ``Image.reduce(f)``, without rounding to 8 bits). The mask's values (v / 255 for
8-bit masks; the first channel if there are several) are averaged the same way and then thresholded at 0.5,
which for f = 1 is "object where value > 127.5". The datamanager's ``camera_res_scale_factor`` (the dataset's
``scale_factor``) is still honoured afterwards with a bilinear resize, like nerfstudio's ``InputDataset``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np
import numpy.typing as npt
import torch
from jaxtyping import Float
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset

from neuface_ns.errors import NeuFaceInputError


def _open_decoded(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except FileNotFoundError:
        raise NeuFaceInputError(path, "file not found") from None
    except UnidentifiedImageError:
        raise NeuFaceInputError(path, "not a readable image (unknown or corrupt format)") from None
    except (OSError, ValueError, SyntaxError) as err:  # truncated / corrupt data
        raise NeuFaceInputError(path, f"cannot decode image: {err}") from None


def _to_unit_float(arr: np.ndarray) -> np.ndarray:
    """Integer/bool image array -> float32 in [0, 1]."""
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if np.issubdtype(arr.dtype, np.integer):  # 16-bit PNGs (PIL modes I;16 / I)
        return arr.astype(np.float32) / 65535.0
    return arr.astype(np.float32)


def area_downscale(arr: np.ndarray, factor: int) -> np.ndarray:
    """Average [H, W, C] over factor x factor blocks, after cropping H, W to multiples of factor."""
    if factor == 1:
        return arr
    h, w = arr.shape[0] // factor, arr.shape[1] // factor
    arr = arr[: h * factor, : w * factor]
    return arr.reshape(h, factor, w, factor, arr.shape[2]).mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def _bilinear_resize(arr: np.ndarray, scale_factor: float) -> np.ndarray:
    if scale_factor == 1.0:
        return arr
    height, width = arr.shape[:2]
    newsize = (int(width * scale_factor), int(height * scale_factor))
    channels = [
        np.asarray(Image.fromarray(arr[:, :, c], mode="F").resize(newsize, resample=Image.Resampling.BILINEAR))
        for c in range(arr.shape[2])
    ]
    return np.stack(channels, axis=-1).astype(np.float32)


def load_rgb_float(path: Path, factor: int = 1, scale_factor: float = 1.0) -> np.ndarray:
    """RGB float32 [H, W, 3] in [0, 1], area-downscaled by ``factor``; alpha composited onto black."""
    img = _open_decoded(path)
    mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        arr = _to_unit_float(np.asarray(img.convert("RGBA")))
        arr = arr[:, :, :3] * arr[:, :, 3:4]
    elif mode.startswith("I") or mode == "F":  # 16-bit or float greyscale
        arr = _to_unit_float(np.asarray(img))
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    else:
        arr = _to_unit_float(np.asarray(img.convert("RGB")))
    arr = np.clip(arr, 0.0, 1.0).astype(np.float32)
    return _bilinear_resize(area_downscale(arr, factor), scale_factor)


def load_mask(path: Path, factor: int = 1, scale_factor: float = 1.0) -> np.ndarray:
    """Binary foreground mask, bool [H, W]: first channel, area-downscaled by ``factor``, then > 0.5."""
    img = _open_decoded(path)
    if img.mode == "P":
        img = img.convert("RGB")
    arr = np.asarray(img)
    if arr.ndim == 3:
        arr = arr[:, :, 0]
    val = _to_unit_float(arr)[:, :, None]
    val = _bilinear_resize(area_downscale(val, factor), scale_factor)
    return val[:, :, 0] > 0.5


class NeuFaceDataset(InputDataset):
    """InputDataset with area-downscaled images and an "fg_mask" entry (see the module docstring)."""

    # own list: VanillaDataManager mutates this list in place (masks_on_gpu / images_on_gpu)
    exclude_batch_keys_from_device: List[str] = ["image", "mask"]

    def __init__(self, dataparser_outputs: DataparserOutputs, scale_factor: float = 1.0):
        super().__init__(dataparser_outputs, scale_factor)
        self.downscale_factor = int(self.metadata.get("downscale_factor", 1))
        fg = self.metadata.get("fg_mask_filenames")
        self.fg_mask_filenames = [Path(p) for p in fg] if fg is not None else None
        if self.fg_mask_filenames is not None and len(self.fg_mask_filenames) != len(self):
            raise ValueError(
                f"{len(self.fg_mask_filenames)} fg_mask_filenames for {len(self)} images in the dataparser outputs"
            )
        loss = self.metadata.get("loss_mask_filenames")
        self.loss_mask_filenames = [Path(p) for p in loss] if loss is not None else None
        if self.loss_mask_filenames is not None and len(self.loss_mask_filenames) != len(self):
            raise ValueError(
                f"{len(self.loss_mask_filenames)} loss_mask_filenames for {len(self)} images in the dataparser outputs"
            )

    def _image_path(self, image_idx: int) -> Path:
        return Path(self._dataparser_outputs.image_filenames[image_idx])

    def get_image_float32(self, image_idx: int) -> Float[Tensor, "image_height image_width 3"]:
        """RGB image in [0, 1], exact area average (not rounded to 8 bits)."""
        arr = load_rgb_float(self._image_path(image_idx), self.downscale_factor, self.scale_factor)
        return torch.from_numpy(arr)

    def get_numpy_image(self, image_idx: int) -> npt.NDArray[np.uint8]:
        """RGB image as uint8 [H, W, 3] (the float image rounded)."""
        arr = load_rgb_float(self._image_path(image_idx), self.downscale_factor, self.scale_factor)
        return np.round(arr * 255.0).astype(np.uint8)

    def get_metadata(self, data: Dict) -> Dict:
        image_idx = data["image_idx"]
        image_hw = tuple(data["image"].shape[:2])
        out = {}
        for key, filenames in (("fg_mask", self.fg_mask_filenames), ("loss_mask", self.loss_mask_filenames)):
            if filenames is None:
                continue
            mask = load_mask(filenames[image_idx], self.downscale_factor, self.scale_factor)
            if mask.shape[:2] != image_hw:
                raise NeuFaceInputError(
                    filenames[image_idx],
                    f"mask loads as {mask.shape[1]}x{mask.shape[0]} but its image "
                    f"{self._image_path(image_idx).name} loads as {image_hw[1]}x{image_hw[0]}",
                )
            out[key] = torch.from_numpy(mask[:, :, None].astype(np.float32))
        return out
