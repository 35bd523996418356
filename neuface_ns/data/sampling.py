"""NeuFace's ray sampler: pixels drawn uniformly inside each mask's bounding box dilated by 30 px.

`MaskBBoxPixelSamplerConfig` is a nerfstudio `PixelSamplerConfig`; select it with
``VanillaDataManagerConfig(pixel_sampler=MaskBBoxPixelSamplerConfig(...))`` (the FaceScape presets do). The box
of an image is the smallest axis-aligned rectangle holding every foreground pixel of ``batch["fg_mask"]`` (> 0.5,
the mask the NeuFace datasets load), grown by ``dilation`` pixels on every side and clipped to the image. Pixels
are uniform over the integer pixel grid of that box; rays outside the mask but inside the box are kept on purpose
(the volume renderer learns the black background from them, which replaces IDR's mask loss). An image whose mask
is empty is sampled over the whole image (with a warning).

``one_image_per_step = True`` is the paper's sampling: every step draws all its rays from one image chosen
uniformly at random among the images the datamanager holds (cache every image with
``train_num_images_to_sample_from = -1`` so that no image is re-read from disk each step). With False, every ray
picks its own image.

Works with both collations of the cached batch: tensors stacked over images (``nerfstudio_collate``, same-size
images) and per-image lists (``variable_res_collate``, FaceScape's mixed camera resolutions). Like nerfstudio's
sampler it gathers every per-pixel entry of the batch at the sampled pixels and returns ``indices`` = (camera index,
row, col) with the dataset's own image indices.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Type

import torch
from torch import Tensor

from nerfstudio.data.pixel_samplers import PixelSampler, PixelSamplerConfig


@dataclass
class MaskBBoxPixelSamplerConfig(PixelSamplerConfig):
    """Uniform pixels inside each foreground mask's bounding box dilated by `dilation` px (NeuFace)."""

    _target: Type = field(default_factory=lambda: MaskBBoxPixelSampler)
    dilation: int = 30
    """Pixels added on every side of the mask's bounding box (in the loaded, downscaled image)."""
    one_image_per_step: bool = True
    """Draw all rays of a step from one randomly chosen image (the paper); False: each ray picks an image."""
    mask_key: str = "fg_mask"
    """Batch entry holding the foreground mask ([H, W, 1], object > 0.5)."""
    foreground_fraction: float = 0.0
    """Share of each step's rays drawn uniformly from the foreground pixels themselves (the rest from the boxes).
    0 is the paper's sampler. On a realistic face only ~30-45 % of a box is face, and only face rays feed the
    colour loss in surface mode; the remaining rays still teach the silhouette."""
    edge_fraction: float = 0.0
    """Share of each step's rays drawn uniformly from the band of `edge_width` px on either side of the mask's
    boundary (0 = off; not in the paper). On the path-traced scan sample the surface within 10 mm of the scan's
    open edges holds about 30 % of the face Chamfer; 0.25 of the rays there improved that band's completeness but
    cost the held-out images 1.1-1.9 dB in three seeds; Chamfer -0.02 / +0.04 / -0.97 mm, the last against an
    outlier run of the default (docs/performance-log.md), so it stays off until more seeds settle it."""
    edge_width: int = 3
    """Half-width in pixels of the edge band (a pixel belongs to it when a foreground and a background pixel both
    lie within this Chebyshev distance of it)."""


def mask_bbox(mask: Tensor, dilation: int) -> Tuple[int, int, int, int]:
    """(row0, row1, col0, col1), half-open, of the foreground of mask [H, W(, 1)] dilated and clipped.

    An empty mask gives the whole image.
    """
    m = mask.reshape(mask.shape[0], mask.shape[1], -1)[..., 0] > 0.5
    height, width = m.shape
    rows = torch.nonzero(m.any(dim=1)).reshape(-1)
    cols = torch.nonzero(m.any(dim=0)).reshape(-1)
    if rows.numel() == 0:
        return 0, height, 0, width
    r0 = max(int(rows[0]) - dilation, 0)
    r1 = min(int(rows[-1]) + 1 + dilation, height)
    c0 = max(int(cols[0]) - dilation, 0)
    c1 = min(int(cols[-1]) + 1 + dilation, width)
    return r0, r1, c0, c1


def mask_edge_band(mask: Tensor, width: int) -> Tensor:
    """[H, W] bool: the pixels within `width` px (Chebyshev) of both a foreground and a background pixel of the
    boolean mask [H, W], i.e. the band on either side of its boundary."""
    m = mask.float()[None, None]
    size = 2 * width + 1
    near_foreground = torch.nn.functional.max_pool2d(m, size, stride=1, padding=width)[0, 0] > 0.5
    near_background = torch.nn.functional.max_pool2d(1.0 - m, size, stride=1, padding=width)[0, 0] > 0.5
    return near_foreground & near_background


class MaskBBoxPixelSampler(PixelSampler):
    """See the module docstring."""

    config: MaskBBoxPixelSamplerConfig

    def __init__(self, config: MaskBBoxPixelSamplerConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self._boxes: Dict[Tuple[int, int, int], Tuple[int, int, int, int]] = {}
        self._region_pixel_cache: Dict[Tuple, Tuple[Tensor, Tensor]] = {}
        self._warned_empty = False

    # -- boxes ----------------------------------------------------------------------------------------------

    def _box(self, mask: Tensor, key: Tuple[int, int, int]) -> Tuple[int, int, int, int]:
        """Cached per (storage pointer, image position, image index): the cached batch never changes."""
        box = self._boxes.get(key)
        if box is None:
            box = mask_bbox(mask, self.config.dilation)
            if box == (0, mask.shape[0], 0, mask.shape[1]) and not bool((mask > 0.5).any()) and not self._warned_empty:
                warnings.warn("an image has an empty foreground mask: sampling it over the whole image")
                self._warned_empty = True
            if len(self._boxes) > 100000:
                self._boxes.clear()
            self._boxes[key] = box
        return box

    def boxes(self, batch: Dict) -> List[Tuple[int, int, int, int]]:
        """Dilated boxes of every image of a cached batch, in batch order."""
        masks = batch[self.config.mask_key]
        return [self._box(masks[i], self._key(batch, i)) for i in range(len(masks))]

    def _key(self, batch: Dict, position: int) -> Tuple[int, int, int]:
        masks = batch[self.config.mask_key]
        ptr = masks.data_ptr() if isinstance(masks, Tensor) else masks[position].data_ptr()
        return ptr, position, int(batch["image_idx"][position])

    # -- sampling -------------------------------------------------------------------------------------------

    def _sample_in_box(self, box: Tuple[int, int, int, int], n: int) -> Tuple[Tensor, Tensor]:
        r0, r1, c0, c1 = box
        y = r0 + (torch.rand(n) * (r1 - r0)).long().clamp(max=r1 - r0 - 1)
        x = c0 + (torch.rand(n) * (c1 - c0)).long().clamp(max=c1 - c0 - 1)
        return y, x

    def _region_pixels(self, batch: Dict, region: str) -> Tuple[Tensor, Tensor]:
        """Every pixel of `region` ("foreground", or "edge": the band around the mask's boundary) of a cached batch
        as [M, 3] (position in the batch, row, col), image by image, and the [N + 1] offsets of each image's run
        in it (cached: the cached batch never changes)."""
        masks = batch[self.config.mask_key]
        key = (self._key(batch, 0), len(masks), region)
        cached = self._region_pixel_cache.get(key)
        if cached is None:
            foregrounds = [m.reshape(m.shape[0], m.shape[1], -1)[..., 0].cpu() > 0.5 for m in masks]
            if region == "edge":
                foregrounds = [mask_edge_band(m, self.config.edge_width) for m in foregrounds]
            per_image = [torch.nonzero(m) for m in foregrounds]
            pixels = torch.cat([torch.nn.functional.pad(p, (1, 0), value=i) for i, p in enumerate(per_image)])
            offsets = torch.cumsum(torch.tensor([0] + [p.shape[0] for p in per_image]), 0)
            cached = self._region_pixel_cache[key] = (pixels, offsets)
        return cached

    def sample_indices(self, batch: Dict, num_rays: int) -> Tensor:
        """[num_rays, 3] (position of the image in the batch, row, col) on the CPU."""
        if self.config.mask_key not in batch:
            raise KeyError(
                f"MaskBBoxPixelSampler needs batch['{self.config.mask_key}'] (use a NeuFace dataset with foreground masks)"
            )
        masks = batch[self.config.mask_key]
        image = int(torch.randint(len(masks), (1,))) if self.config.one_image_per_step else None
        chosen, remaining = [], num_rays
        for region, fraction in (("foreground", self.config.foreground_fraction), ("edge", self.config.edge_fraction)):
            count = min(int(round(fraction * num_rays)), remaining)
            if count <= 0:
                continue
            pixels, offsets = self._region_pixels(batch, region)
            start, end = (0, pixels.shape[0]) if image is None else (int(offsets[image]), int(offsets[image + 1]))
            if end > start:  # an empty region falls back to the boxes
                chosen.append(pixels[start + torch.randint(end - start, (count,))])
                remaining -= count
        return torch.cat(chosen + [self._sample_boxes(batch, remaining, image)], dim=0)

    def _sample_boxes(self, batch: Dict, num_rays: int, image: Optional[int]) -> Tensor:
        """Uniform pixels in the dilated boxes: all from `image` (one image per step) or each ray its own."""
        masks = batch[self.config.mask_key]
        num_images = len(masks)
        if image is not None:
            y, x = self._sample_in_box(self._box(masks[image], self._key(batch, image)), num_rays)
            return torch.stack([torch.full_like(y, image), y, x], dim=-1)
        boxes = torch.tensor(self.boxes(batch), dtype=torch.long)  # [N, 4]
        c = torch.randint(num_images, (num_rays,))
        b = boxes[c]
        y = torch.minimum(b[:, 0] + (torch.rand(num_rays) * (b[:, 1] - b[:, 0])).long(), b[:, 1] - 1)
        x = torch.minimum(b[:, 2] + (torch.rand(num_rays) * (b[:, 3] - b[:, 2])).long(), b[:, 3] - 1)
        return torch.stack([c, y, x], dim=-1)

    def _gather(self, batch: Dict, indices: Tensor) -> Dict:
        c, y, x = indices[:, 0], indices[:, 1], indices[:, 2]
        out: Dict = {}
        for key, value in batch.items():
            if key == "image_idx" or value is None:
                continue
            if isinstance(value, Tensor):
                if value.dim() < 3:
                    continue
                dev = value.device
                out[key] = value[c.to(dev), y.to(dev), x.to(dev)]
            elif isinstance(value, (list, tuple)) and value and isinstance(value[0], Tensor):
                first = value[0]
                gathered = torch.empty((indices.shape[0],) + tuple(first.shape[2:]), dtype=first.dtype, device=first.device)
                for pos in torch.unique(c).tolist():
                    sel = (c == pos).nonzero().reshape(-1)
                    img = value[pos]
                    gathered[sel.to(first.device)] = img[y[sel].to(img.device), x[sel].to(img.device)].to(first.device)
                out[key] = gathered
        return out

    def sample(self, image_batch: Dict) -> Dict:
        n = self.num_rays_per_batch
        positions = self.sample_indices(image_batch, n)
        pixel_batch = self._gather(image_batch, positions)
        indices = positions.clone()
        indices[:, 0] = torch.as_tensor(image_batch["image_idx"]).cpu()[positions[:, 0]]
        pixel_batch["indices"] = indices
        if self.config.keep_full_image:
            pixel_batch["full_image"] = image_batch["image"]
        return pixel_batch
