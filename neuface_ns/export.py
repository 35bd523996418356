"""`neuface-export`: extract the SDF's zero level set on CPU or GPU and write a mesh in the
dataset's world units (DTU: undoing scale_mat).

Coarse-to-fine: the SDF is evaluated on a grid 4x coarser first; only fine points in coarse cells
that can contain the surface (|sdf| below the cell diagonal, with a safety factor) are evaluated
exactly, the rest take the trilinear upsampling of the coarse values, whose sign is right there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
import tyro

from nerfstudio.utils.rich_utils import CONSOLE

from neuface_ns.errors import NeuFaceInputError

COARSE_STRIDE = 4


@torch.no_grad()
def sdf_grid(
    sdf_fn: Callable[[torch.Tensor], torch.Tensor],
    resolution: int,
    bounds_min: Tuple[float, float, float] = (-1.0, -1.0, -1.0),
    bounds_max: Tuple[float, float, float] = (1.0, 1.0, 1.0),
    device: torch.device | str = "cpu",
    chunk: int = 65536,
    safety: float = 2.0,
    progress: bool = False,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SDF values on a regular grid of `resolution`^3 points (rounded up to 4k + 1).

    Returns (values [R, R, R] as float32 numpy, bounds_min, voxel size per axis).
    """
    k = COARSE_STRIDE
    cells = max(1, math.ceil((resolution - 1) / k))
    n_coarse, n_fine = cells + 1, cells * k + 1
    lo = torch.tensor(bounds_min, dtype=torch.float32, device=device)
    hi = torch.tensor(bounds_max, dtype=torch.float32, device=device)
    voxel = (hi - lo) / (n_fine - 1)

    def grid_points(n: int) -> torch.Tensor:
        axes = [torch.linspace(float(lo[i]), float(hi[i]), n, device=device) for i in range(3)]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)

    def evaluate(points: torch.Tensor) -> torch.Tensor:
        values = [sdf_fn(points[i : i + chunk]).reshape(-1) for i in range(0, points.shape[0], chunk)]
        return torch.cat(values) if values else torch.zeros(0, device=device)

    coarse = evaluate(grid_points(n_coarse)).reshape(n_coarse, n_coarse, n_coarse)
    fine = F.interpolate(coarse[None, None], size=(n_fine,) * 3, mode="trilinear", align_corners=True)[0, 0]
    # A coarse cell may hold surface if any corner is within `safety` cell diagonals of it.
    cell_diagonal = float((voxel * k).norm())
    corner_min = -F.max_pool3d(-coarse.abs()[None, None], kernel_size=2, stride=1)[0, 0]
    near_cells = (corner_min < safety * cell_diagonal).float()
    near = near_cells.repeat_interleave(k, 0).repeat_interleave(k, 1).repeat_interleave(k, 2)
    near = F.pad(near, (0, 1, 0, 1, 0, 1))
    near = F.max_pool3d(near[None, None], kernel_size=3, stride=1, padding=1)[0, 0] > 0  # shared faces

    index = near.nonzero()
    total = index.shape[0]
    step = max(chunk, 1)
    for start in range(0, total, step):
        idx = index[start : start + step]
        points = lo + idx.float() * voxel
        fine[idx[:, 0], idx[:, 1], idx[:, 2]] = sdf_fn(points).reshape(-1)
        if progress:
            CONSOLE.print(f"  marching cubes: {min(start + step, total)}/{total} near-surface points", end="\r")
    if progress:
        CONSOLE.print("")
    return fine.cpu().numpy().astype(np.float32), lo.cpu().numpy(), voxel.cpu().numpy()


def extract_mesh(
    sdf_fn: Callable[[torch.Tensor], torch.Tensor],
    resolution: int = 256,
    bounds_min=(-1.0, -1.0, -1.0),
    bounds_max=(1.0, 1.0, 1.0),
    device="cpu",
    keep_largest_component: bool = True,
    progress: bool = False,
):
    """Marching cubes of the zero level set -> trimesh.Trimesh in the SDF's own (normalised) frame."""
    import trimesh
    from skimage.measure import marching_cubes

    values, lo, voxel = sdf_grid(sdf_fn, resolution, bounds_min, bounds_max, device=device, progress=progress)
    if not (values.min() < 0 < values.max()):
        raise RuntimeError(
            f"the SDF has no zero crossing inside the box {tuple(bounds_min)}..{tuple(bounds_max)} "
            f"(range {values.min():.3g}..{values.max():.3g}): nothing to mesh"
        )
    vertices, faces, normals, _ = marching_cubes(values, level=0.0, spacing=tuple(float(v) for v in voxel))
    vertices = vertices + lo
    # SDF is negative inside: skimage orients faces towards increasing values, i.e. outwards.
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces[:, ::-1], process=False)
    if keep_largest_component:
        parts = mesh.split(only_watertight=False)
        if len(parts) > 1:
            mesh = max(parts, key=lambda m: len(m.faces))
    return mesh


def normalised_to_world(points: np.ndarray, transform: np.ndarray, scale: float) -> np.ndarray:
    """Invert nerfstudio's dataparser mapping x_norm = scale * (R x + t)."""
    rotation, translation = transform[:3, :3], transform[:3, 3]
    return (points / scale - translation) @ rotation  # R^T (x/scale - t), row vectors


def world_frame(pipeline) -> Tuple[np.ndarray, float]:
    outputs = pipeline.datamanager.train_dataparser_outputs
    return outputs.dataparser_transform.cpu().numpy().astype(np.float64), float(outputs.dataparser_scale)


def extract_mesh_to_file(
    pipeline,
    path: Path,
    resolution: int = 256,
    bounds_min=(-1.0, -1.0, -1.0),
    bounds_max=(1.0, 1.0, 1.0),
    world_units: bool = True,
    keep_largest_component: bool = True,
) -> Path:
    model = pipeline.model
    mesh = extract_mesh(
        lambda x: model.field.sdf(x),
        resolution,
        bounds_min,
        bounds_max,
        device=model.device,
        keep_largest_component=keep_largest_component,
        progress=True,
    )
    if world_units:
        transform, scale = world_frame(pipeline)
        mesh.vertices = normalised_to_world(np.asarray(mesh.vertices, dtype=np.float64), transform, scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(path)
    CONSOLE.print(f"Mesh: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces -> {path}")
    return path


@dataclass
class ExportMesh:
    """Extract the NeuFace surface as a mesh (CPU or GPU)."""

    load_config: Path
    """config.yml of a NeuFace training run."""
    output_dir: Path
    """Where mesh.ply is written."""
    resolution: int = 256
    """Grid points per axis (rounded up to 4k + 1)."""
    bounding_box_min: Tuple[float, float, float] = (-1.0, -1.0, -1.0)
    """In normalised scene units (the object lives in the unit sphere)."""
    bounding_box_max: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    world_units: bool = True
    """Write vertices in the dataset's world frame (False: normalised scene units)."""
    keep_largest_component: bool = True
    overwrite: bool = False
    """Replace an existing mesh.ply."""

    def main(self) -> None:
        from nerfstudio.utils.eval_utils import eval_setup

        if not self.load_config.exists():
            raise NeuFaceInputError(self.load_config, "config file not found")
        target = self.output_dir / "mesh.ply"
        if target.exists() and not self.overwrite:
            raise NeuFaceInputError(target, "already exists (pass --overwrite to replace it)")
        _, pipeline, _, _ = eval_setup(self.load_config, test_mode="inference")
        if not hasattr(pipeline.model, "field") or not hasattr(pipeline.model.field, "sdf"):
            raise NeuFaceInputError(self.load_config, "not a NeuFace model (no SDF field)")
        extract_mesh_to_file(
            pipeline,
            target,
            self.resolution,
            self.bounding_box_min,
            self.bounding_box_max,
            world_units=self.world_units,
            keep_largest_component=self.keep_largest_component,
        )


def entrypoint() -> None:
    tyro.cli(ExportMesh).main()


if __name__ == "__main__":
    entrypoint()
