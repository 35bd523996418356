"""The SDF on a grid and its zero level set as a mesh (marching cubes), in the SDF's own frame.

Marching cubes of the SDF's zero level set over a box in normalised scene units (default
[-1, 1]^3, where the object lives), coarse to fine: the SDF is evaluated on a grid 4x coarser
first; only fine points in coarse cells that can hold the surface (a corner within `safety` cell
diagonals of it, plus one cell of margin) are evaluated exactly, every other fine point takes the
trilinear upsampling of the coarse values, whose sign is right there. Any resolution works (rounded
up to 4k + 1 grid points, i.e. a multiple of 4 cells); 512 runs on a CPU in minutes. The largest
connected component is kept by default.

Nothing here knows about nerfstudio pipelines: `sdf_fn` is any function of points [N, 3] (the tests
use analytic spheres).
"""

from __future__ import annotations

import math
from typing import Callable, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from nerfstudio.utils.rich_utils import CONSOLE

from neuface_ns.exporter.progress import progress_bar

COARSE_STRIDE = 4

SDFFunction = Callable[[torch.Tensor], torch.Tensor]  # [N, 3] -> [N] or [N, 1]


def grid_shape(resolution: int) -> Tuple[int, int]:
    """(coarse cells per axis, fine grid points per axis) for a requested resolution (grid points
    per axis, at least 2): the fine grid is rounded up to 4k + 1 points so that every coarse cell
    holds exactly COARSE_STRIDE fine cells per axis."""
    if resolution < 2:
        raise ValueError(f"resolution must be at least 2, got {resolution}")
    cells = max(1, math.ceil((resolution - 1) / COARSE_STRIDE))
    return cells, cells * COARSE_STRIDE + 1


NON_FINITE_SDF = 1e3
"""What a NaN / inf SDF value becomes on the export grid: far outside (no surface), and far from any cell."""


@torch.no_grad()
def sdf_grid(
    sdf_fn: SDFFunction,
    resolution: int,
    bounds_min: Tuple[float, float, float] = (-1.0, -1.0, -1.0),
    bounds_max: Tuple[float, float, float] = (1.0, 1.0, 1.0),
    device: torch.device | str = "cpu",
    chunk: int = 65536,
    safety: float = 2.0,
    progress: bool = False,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SDF values on a regular grid of `resolution`^3 points (rounded up to 4k + 1 per axis).

    Inputs: `sdf_fn` maps points [N, 3] (on `device`, at most `chunk` per call) to SDF values [N] or
    [N, 1]; the box `bounds_min`..`bounds_max` in the SDF's frame; `safety` (cell diagonals) decides
    which coarse cells are refined (1 is exact for a 1-Lipschitz SDF; 2 leaves room for a learnt one).
    Returns (values [R, R, R] float32 numpy, indexed [x, y, z], bounds_min, voxel size per axis).
    Exact near the surface, trilinear upsampling of a 4x coarser grid elsewhere (see the module doc):
    far fewer network calls than a dense grid, with the same zero crossings. Non-finite values become
    NON_FINITE_SDF (empty space) and are counted in one console line.
    """
    k = COARSE_STRIDE
    cells, n_fine = grid_shape(resolution)
    n_coarse = cells + 1
    lo = torch.tensor(bounds_min, dtype=torch.float32, device=device)
    hi = torch.tensor(bounds_max, dtype=torch.float32, device=device)
    if not bool((hi > lo).all()):
        raise ValueError(f"bounding box min {tuple(bounds_min)} must be below max {tuple(bounds_max)} on every axis")
    voxel = (hi - lo) / (n_fine - 1)

    non_finite = torch.zeros((), dtype=torch.long, device=device)

    def evaluate(points: torch.Tensor) -> torch.Tensor:
        # NaN / inf (a diverged network) count as empty space: no surface is made up there.
        values = sdf_fn(points).reshape(-1).float()
        finite = torch.isfinite(values)
        non_finite.add_((~finite).sum())
        return torch.where(finite, values, torch.full_like(values, NON_FINITE_SDF))

    with progress_bar(progress) as bar:
        # 1. coarse grid, every point (evaluated slab by slab along x)
        task = bar.add_task("SDF coarse grid", total=n_coarse)
        axes = [torch.linspace(0.0, 1.0, n_coarse, device=device) * (hi[i] - lo[i]) + lo[i] for i in range(3)]
        yz = torch.stack(torch.meshgrid(axes[1], axes[2], indexing="ij"), dim=-1).reshape(-1, 2)
        coarse = torch.empty(n_coarse, n_coarse * n_coarse, device=device)
        for ix in range(n_coarse):
            slab = torch.cat([axes[0][ix].expand(yz.shape[0], 1), yz], dim=-1)
            coarse[ix] = torch.cat([evaluate(slab[j : j + chunk]) for j in range(0, slab.shape[0], chunk)])
            bar.advance(task)
        coarse = coarse.reshape(n_coarse, n_coarse, n_coarse)

        # 2. fine grid: trilinear upsampling (exact at the coarse points: align_corners, stride k)
        fine = F.interpolate(coarse[None, None], size=(n_fine,) * 3, mode="trilinear", align_corners=True)[0, 0]

        # 3. cells that may hold the surface (a corner within `safety` cell diagonals of it: exact
        #    for a 1-Lipschitz SDF with safety 1). Each cell c owns the fine indices c*k .. c*k+k-1, so
        #    the cell after a near one (and one virtual cell past the end) is added for the corners.
        cell_diagonal = float((voxel * k).norm())
        corner_min = -F.max_pool3d(-coarse.abs()[None, None], kernel_size=2, stride=1)[0, 0]
        near = (corner_min < safety * cell_diagonal).float()
        near = F.max_pool3d(F.pad(near, (1, 1, 1, 1, 1, 1))[None, None], kernel_size=2, stride=1)[0, 0] > 0
        near_cells = near.nonzero()
        del near, corner_min

        offsets = torch.stack(
            torch.meshgrid(*[torch.arange(k, device=device)] * 3, indexing="ij"), dim=-1
        ).reshape(-1, 3)
        cells_per_chunk = max(1, chunk // offsets.shape[0])
        flat = fine.view(-1)
        strides = torch.tensor([n_fine * n_fine, n_fine, 1], device=device)
        task = bar.add_task("SDF near surface", total=int(near_cells.shape[0]))
        for start in range(0, near_cells.shape[0], cells_per_chunk):
            block = near_cells[start : start + cells_per_chunk]
            # past-the-end indices are clamped onto the last plane (evaluated twice, same value)
            idx = (block[:, None, :] * k + offsets[None]).reshape(-1, 3).clamp_(max=n_fine - 1)
            flat[(idx * strides).sum(-1)] = evaluate(torch.addcmul(lo, idx.float(), voxel))
            bar.advance(task, block.shape[0])
    if int(non_finite) > 0:
        CONSOLE.print(
            f"[yellow]neuface-ns: {int(non_finite)} SDF values on the grid were not finite; treated as empty space "
            f"(no surface there)[/yellow]",
            soft_wrap=True,
        )
    return fine.cpu().numpy(), lo.cpu().numpy(), voxel.cpu().numpy()


def extract_mesh(
    sdf_fn: SDFFunction,
    resolution: int = 256,
    bounds_min=(-1.0, -1.0, -1.0),
    bounds_max=(1.0, 1.0, 1.0),
    device="cpu",
    keep_largest_component: bool = True,
    progress: bool = False,
    chunk: int = 65536,
):
    """Marching cubes of `sdf_fn`'s zero level set -> trimesh.Trimesh in the SDF's own (normalised) frame.

    Inputs as `sdf_grid`; `keep_largest_component` drops floaters (`largest_component`). Faces are
    wound outwards (towards increasing SDF); vertices are float64, unprocessed (no merging or
    reordering, so the same SDF always gives the same mesh). Raises RuntimeError when the SDF has no
    zero crossing in the box.
    """
    import trimesh
    from skimage.measure import marching_cubes

    values, lo, voxel = sdf_grid(sdf_fn, resolution, bounds_min, bounds_max, device=device, progress=progress, chunk=chunk)
    if not (values.min() < 0 < values.max()):
        raise RuntimeError(
            f"the SDF has no zero crossing inside the box {tuple(bounds_min)}..{tuple(bounds_max)} "
            f"(range {values.min():.3g}..{values.max():.3g}): nothing to mesh"
        )
    if progress:
        CONSOLE.print(f"Marching cubes on {values.shape[0]}^3 points...")
    vertices, faces, _, _ = marching_cubes(values, level=0.0, spacing=tuple(float(v) for v in voxel))
    del values
    vertices = vertices.astype(np.float64) + lo
    # skimage's winding (gradient_direction="descent") already makes the face normals point towards
    # increasing SDF, i.e. outwards (the SDF is negative inside); tests/exporter/test_export.py checks it.
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    if keep_largest_component:
        mesh = largest_component(mesh)
    return mesh


def largest_component(mesh):
    """The connected component (over shared vertices) with the most faces, as a new trimesh.Trimesh
    (vertices in their original order, faces in theirs); the mesh itself when it is one component.

    Why vertex connectivity: two sheets of a marching-cubes surface that touch at one vertex (an
    exact SDF zero on a grid point) are one piece here. trimesh's `Trimesh.split` joins faces over
    shared edges instead and would cut them apart, so only its graph labelling
    (`connected_component_labels`, scipy's csgraph) and `submesh` are used. Ties go to the component
    of the lowest vertex index.
    """
    import trimesh

    faces = np.asarray(mesh.faces)
    if len(faces) == 0:
        return mesh
    labels = trimesh.graph.connected_component_labels(mesh.edges, node_count=len(mesh.vertices))
    if labels.max(initial=0) == 0:  # one component (unreferenced vertices count as their own)
        return mesh
    face_labels = labels[faces[:, 0]]
    keep = face_labels == np.bincount(face_labels).argmax()
    return mesh.submesh([keep], append=True)
