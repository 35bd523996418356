"""Colours of surface points from a NeuFace model: vertex colours and texels.

Colours. Vertex colours (and texels of the optional textured OBJ) are the model's own `albedo`
or `rgb` output for a short ray cast at the point against its normal: the ray starts `offset`
outside the surface along the SDF normal (autograd gradient at the point), points along -normal
and is limited to [0, 2 offset] by the bundle's own near/far. The model therefore renders exactly
as it does for images (sphere tracing, volume or surface rendering, the fixed evaluation
calibration latent `eval_latent`, albedo x pi through the same 3x3 calibration as the `albedo`
image); `rgb` is the colour seen looking straight at the surface (view direction = normal: the
specular part is view dependent and this is the head-on choice). Points whose ray finds no surface
are retried once with a 4x longer ray; those left are counted in the summary.
"""

from __future__ import annotations

from typing import List, Literal, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from neuface_ns.exporter.progress import progress_bar


def sdf_normals(field, points: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Unit SDF gradients [N, 3] of a NeuFace field at points [N, 3] (zero where the gradient
    vanishes), `chunk` points per autograd call: the direction the colour rays are cast along."""
    out = []
    for start in range(0, points.shape[0], chunk):
        _, gradient, _ = field.sdf_and_gradient(points[start : start + chunk], create_graph=False)
        out.append(F.normalize(gradient.detach(), dim=-1))
    return torch.cat(out) if out else torch.zeros(0, 3, device=points.device)


def short_rays(points: torch.Tensor, normals: torch.Tensor, offset: float):
    """A RayBundle of one ray per surface point [N, 3]: it starts `offset` outside along the unit
    normal [N, 3], points back along -normal and is limited to [0, 2 offset] by its own near / far,
    so the model's tracer finds the surface at the point itself."""
    from nerfstudio.cameras.rays import RayBundle

    n = points.shape[0]
    ones = torch.ones(n, 1, device=points.device)
    return RayBundle(
        origins=points + offset * normals,
        directions=-normals,
        pixel_area=ones,
        camera_indices=torch.zeros(n, 1, dtype=torch.long, device=points.device),
        nears=torch.zeros(n, 1, device=points.device),
        fars=ones * (2.0 * offset),
        metadata={"directions_norm": ones},
    )


@torch.no_grad()
def model_colors(
    model,
    points: np.ndarray,
    normals: Optional[np.ndarray] = None,
    output: Literal["albedo", "rgb"] = "albedo",
    offset: float = 0.01,
    chunk: Optional[int] = None,
    progress: bool = False,
    description: str = "Colours",
) -> Tuple[np.ndarray, int]:
    """The model's `output` ([0, 1] RGB) at surface points [N, 3] in normalised units, from short
    rays cast against the normal (see the module doc). Returns (colours [N, 3] float numpy, rays that
    found no surface even with the 4x longer retry). `normals` default: the SDF gradient at the
    points; `chunk` default: the model's eval_num_rays_per_chunk. The model is put in eval mode for
    the call and restored afterwards.

    Why the model's forward pass and not the field directly: the colour is then exactly what the
    model renders in images (tracer, render mode, calibration, albedo x pi).
    """
    device = model.device
    chunk = chunk or int(getattr(model.config, "eval_num_rays_per_chunk", 4096))
    pts = torch.tensor(np.asarray(points), dtype=torch.float32, device=device)  # a copy: trimesh arrays are read-only
    if normals is None:
        nrm = sdf_normals(model.field, pts, chunk)
    else:
        nrm = F.normalize(torch.tensor(np.asarray(normals), dtype=torch.float32, device=device), dim=-1)
    was_training = model.training
    model.eval()
    colors = torch.zeros(pts.shape[0], 3, device=device)
    missed: List[torch.Tensor] = []
    try:
        with progress_bar(progress) as bar:
            task = bar.add_task(description, total=int(pts.shape[0]))
            for start in range(0, pts.shape[0], chunk):
                p, n = pts[start : start + chunk], nrm[start : start + chunk]
                out = model(short_rays(p, n, offset))
                colors[start : start + chunk] = out[output].reshape(-1, 3)
                miss = (out["accumulation"].reshape(-1) < 0.5).nonzero().squeeze(-1) + start
                if miss.numel():
                    missed.append(miss)
                bar.advance(task, p.shape[0])
            if missed:
                retry = torch.cat(missed)
                out = model(short_rays(pts[retry], nrm[retry], 4.0 * offset)) if retry.numel() <= chunk else None
                if out is None:  # many misses: chunk the retry as well
                    parts = [model(short_rays(pts[retry[i : i + chunk]], nrm[retry[i : i + chunk]], 4.0 * offset))
                             for i in range(0, retry.numel(), chunk)]
                    out = {key: torch.cat([part[key] for part in parts]) for key in (output, "accumulation")}
                found = out["accumulation"].reshape(-1) >= 0.5
                colors[retry[found]] = out[output].reshape(-1, 3)[found]
                missed_count = int((~found).sum())
            else:
                missed_count = 0
    finally:
        model.train(was_training)
    return colors.clamp(0.0, 1.0).cpu().numpy(), missed_count
