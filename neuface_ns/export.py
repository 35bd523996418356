"""`neuface-export`: extract the NeuFace surface as a mesh, on CPU or GPU.

    neuface-export --load-config outputs/.../config.yml --output-dir exports/ [--resolution 512]
        [--vertex-colors albedo|rgb|none] [--texture albedo|rgb|none] [--format ply|obj]
        [--no-world-units] [--no-keep-largest-component] [--overwrite]

Geometry. Marching cubes of the SDF's zero level set over a box in normalised scene units
(default [-1, 1]^3, where the object lives), coarse to fine: the SDF is evaluated on a grid 4x
coarser first; only fine points in coarse cells that can hold the surface (a corner within
`safety` cell diagonals of it, plus one cell of margin) are evaluated exactly, every other fine
point takes the trilinear upsampling of the coarse values, whose sign is right there. Any
resolution works (rounded up to 4k + 1 grid points, i.e. a multiple of 4 cells); 512 runs on a
CPU in minutes. The largest connected component is kept by default.

Units. By default vertices are written in the dataset's world frame by inverting the dataparser's
similarity (DTU: scale_mat, i.e. the scan's millimetres; FaceScape TU millimetres through the same
`dataparser_transform` / `dataparser_scale`). `--no-world-units` keeps normalised scene units.

Colours. Vertex colours (and texels of the optional textured OBJ) are the model's own `albedo`
or `rgb` output for a short ray cast at the point against its normal: the ray starts `offset`
outside the surface along the SDF normal (autograd gradient at the point), points along -normal
and is limited to [0, 2 offset] by the bundle's own near/far. The model therefore renders exactly
as it does for images (sphere tracing, volume or surface rendering, the fixed evaluation
calibration latent `eval_latent`, albedo x pi through the same 3x3 calibration as the `albedo`
image); `rgb` is the colour seen looking straight at the surface (view direction = normal: the
specular part is view dependent and this is the head-on choice). Points whose ray finds no surface
are retried once with a 4x longer ray; those left are counted in the summary.

Textured OBJ (`--texture`): xatlas unwraps the mesh, every texel centre inside a UV triangle is
mapped to its 3D point (barycentric), coloured as above, and uncovered texels take the colour of the
nearest covered one (no dark seams under bilinear filtering). xatlas time grows with the face
count: prefer resolution 256 or less for textures.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Literal, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
import tyro

from nerfstudio.utils.rich_utils import CONSOLE

from neuface_ns.errors import NeuFaceInputError

COARSE_STRIDE = 4

SDFFunction = Callable[[torch.Tensor], torch.Tensor]  # [N, 3] -> [N] or [N, 1]


# ---------------------------------------------------------------------------------------------------- progress


def _progress(enabled: bool):
    """A rich progress bar (or a no-op stand-in)."""
    if not enabled:
        return _NoProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=CONSOLE,
        transient=False,
    )


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False

    def add_task(self, *args, **kwargs):
        return 0

    def advance(self, *args, **kwargs):
        pass


# ---------------------------------------------------------------------------------------------------- geometry


def grid_shape(resolution: int) -> Tuple[int, int]:
    """(coarse cells per axis, fine grid points per axis) for a requested resolution."""
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

    Returns (values [R, R, R] float32 numpy, indexed [x, y, z], bounds_min, voxel size per axis).
    Exact near the surface, trilinear upsampling of a 4x coarser grid elsewhere (see the module doc).
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

    with _progress(progress) as bar:
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
    """Marching cubes of the zero level set -> trimesh.Trimesh in the SDF's own (normalised) frame."""
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
    # increasing SDF, i.e. outwards (the SDF is negative inside); tests/test_export.py checks it.
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    if keep_largest_component:
        mesh = largest_component(mesh)
    return mesh


def largest_component(mesh):
    """The connected component (over shared vertices) with the most faces."""
    import trimesh
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    faces = np.asarray(mesh.faces)
    n = len(mesh.vertices)
    if len(faces) == 0:
        return mesh
    rows = np.concatenate([faces[:, 0], faces[:, 1]])
    cols = np.concatenate([faces[:, 1], faces[:, 2]])
    graph = coo_matrix((np.ones(rows.shape[0], dtype=np.int8), (rows, cols)), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    if count <= 1:
        return mesh
    face_labels = labels[faces[:, 0]]
    keep_label = np.bincount(face_labels).argmax()
    kept_faces = faces[face_labels == keep_label]
    used = np.unique(kept_faces)
    remap = np.full(n, -1, dtype=np.int64)
    remap[used] = np.arange(used.shape[0])
    return trimesh.Trimesh(vertices=np.asarray(mesh.vertices)[used], faces=remap[kept_faces], process=False)


# ---------------------------------------------------------------------------------------------------- units


def normalised_to_world(points: np.ndarray, transform: np.ndarray, scale: float) -> np.ndarray:
    """Invert nerfstudio's dataparser mapping x_norm = scale * (R x + t)."""
    rotation, translation = transform[:3, :3], transform[:3, 3]
    return (np.asarray(points, dtype=np.float64) / scale - translation) @ rotation  # R^T (x/scale - t), row vectors


def world_to_normalised(points: np.ndarray, transform: np.ndarray, scale: float) -> np.ndarray:
    rotation, translation = transform[:3, :3], transform[:3, 3]
    return scale * (np.asarray(points, dtype=np.float64) @ rotation.T + translation)


def normals_to_world(normals: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Directions follow the rotation only (the dataparser transform is a similarity)."""
    return np.asarray(normals, dtype=np.float64) @ transform[:3, :3]


def world_frame(pipeline) -> Tuple[np.ndarray, float]:
    outputs = pipeline.datamanager.train_dataparser_outputs
    return outputs.dataparser_transform.cpu().numpy().astype(np.float64), float(outputs.dataparser_scale)


# ---------------------------------------------------------------------------------------------------- appearance


def sdf_normals(field, points: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Unit SDF gradients at points [N, 3] (zero where the gradient vanishes)."""
    out = []
    for start in range(0, points.shape[0], chunk):
        _, gradient, _ = field.sdf_and_gradient(points[start : start + chunk], create_graph=False)
        out.append(F.normalize(gradient.detach(), dim=-1))
    return torch.cat(out) if out else torch.zeros(0, 3, device=points.device)


def _short_rays(points: torch.Tensor, normals: torch.Tensor, offset: float):
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
    rays cast against the normal (see the module doc). Returns (colours [N, 3], rays that found no
    surface even with the 4x longer retry). `normals` default: the SDF gradient at the points."""
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
        with _progress(progress) as bar:
            task = bar.add_task(description, total=int(pts.shape[0]))
            for start in range(0, pts.shape[0], chunk):
                p, n = pts[start : start + chunk], nrm[start : start + chunk]
                out = model(_short_rays(p, n, offset))
                colors[start : start + chunk] = out[output].reshape(-1, 3)
                miss = (out["accumulation"].reshape(-1) < 0.5).nonzero().squeeze(-1) + start
                if miss.numel():
                    missed.append(miss)
                bar.advance(task, p.shape[0])
            if missed:
                retry = torch.cat(missed)
                out = model(_short_rays(pts[retry], nrm[retry], 4.0 * offset)) if retry.numel() <= chunk else None
                if out is None:  # many misses: chunk the retry as well
                    parts = [model(_short_rays(pts[retry[i : i + chunk]], nrm[retry[i : i + chunk]], 4.0 * offset))
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


# ---------------------------------------------------------------------------------------------------- texture


def rasterize_uv(uvs: np.ndarray, faces: np.ndarray, size: int, face_chunk: int = 65536):
    """Texel centres ((j + 0.5) / size, (i + 0.5) / size) inside the UV triangles.

    uvs [V, 2] in [0, 1] (u along columns j, v along rows i), faces [F, 3]. Returns (row i,
    column j, face index, barycentric weights [T, 3]) of every covered texel (first face wins).
    """
    rows, cols, face_ids, bary = [], [], [], []
    tex = uvs.astype(np.float64) * size - 0.5  # texel-centre coordinates
    for start in range(0, faces.shape[0], face_chunk):
        f = np.arange(start, min(start + face_chunk, faces.shape[0]))
        tri = tex[faces[f]]  # [f, 3, 2]
        lo = np.clip(np.floor(tri.min(1)).astype(np.int64), 0, size - 1)
        hi = np.clip(np.ceil(tri.max(1)).astype(np.int64), 0, size - 1)
        w = hi[:, 0] - lo[:, 0] + 1
        h = hi[:, 1] - lo[:, 1] + 1
        count = w * h
        owner = np.repeat(np.arange(f.shape[0]), count)
        local = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        x = lo[owner, 0] + local % w[owner]
        y = lo[owner, 1] + local // w[owner]
        a, b, c = tri[owner, 0], tri[owner, 1], tri[owner, 2]
        v0, v1 = b - a, c - a
        v2 = np.stack([x, y], -1) - a
        denom = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
        ok = np.abs(denom) > 1e-12
        denom = np.where(ok, denom, 1.0)
        l1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / denom
        l2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / denom
        l0 = 1.0 - l1 - l2
        eps = 1e-6
        inside = ok & (l0 >= -eps) & (l1 >= -eps) & (l2 >= -eps)
        rows.append(y[inside])
        cols.append(x[inside])
        face_ids.append(f[owner[inside]])
        bary.append(np.clip(np.stack([l0, l1, l2], -1)[inside], 0.0, 1.0))
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    face_ids, bary = np.concatenate(face_ids), np.concatenate(bary)
    bary = bary / bary.sum(-1, keepdims=True)
    # one face per texel (the first)
    _, first = np.unique(rows * size + cols, return_index=True)
    return rows[first], cols[first], face_ids[first], bary[first]


def fill_uncovered(image: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """Give every uncovered texel the colour of the nearest covered one."""
    from scipy import ndimage

    if covered.all() or not covered.any():
        return image
    _, (ri, ci) = ndimage.distance_transform_edt(~covered, return_indices=True)
    return image[ri, ci]


def unwrap(vertices: np.ndarray, faces: np.ndarray):
    """xatlas UV atlas: (vmapping [V'] -> original vertex, uv faces [F, 3] into V', uvs [V', 2])."""
    import xatlas

    vmapping, indices, uvs = xatlas.parametrize(vertices.astype(np.float32), faces.astype(np.uint32))
    return vmapping.astype(np.int64), indices.astype(np.int64), uvs.astype(np.float64)


def texture_points(
    vertices: np.ndarray, normals: np.ndarray, faces: np.ndarray, uv_faces: np.ndarray, uvs: np.ndarray, vmapping: np.ndarray, size: int
):
    """3D points and normals of the covered texels: (rows, cols, points [T, 3], normals [T, 3])."""
    rows, cols, face_ids, bary = rasterize_uv(uvs, uv_faces, size)
    corners = vmapping[uv_faces[face_ids]]  # [T, 3] original vertex ids (same triangle as `faces`)
    points = (vertices[corners] * bary[..., None]).sum(1)
    nrm = (normals[corners] * bary[..., None]).sum(1)
    nrm = nrm / np.maximum(np.linalg.norm(nrm, axis=-1, keepdims=True), 1e-12)
    return rows, cols, points, nrm


def write_textured_obj(
    path: Path,
    vertices: np.ndarray,
    normals: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray,
    uv_faces: np.ndarray,
    texture: np.ndarray,
) -> List[Path]:
    """OBJ + MTL + PNG (same stem). texture [S, S, 3] uint8, row 0 = v near 0 (written flipped to OBJ's v up)."""
    from PIL import Image

    mtl_path, png_path = path.with_suffix(".mtl"), path.with_suffix(".png")
    Image.fromarray(texture[::-1]).save(png_path)  # OBJ's v = 0 is the bottom row of the image
    mtl_path.write_text(
        "# neuface-export\nnewmtl material_0\nKa 1.000 1.000 1.000\nKd 1.000 1.000 1.000\nKs 0.000 0.000 0.000\n"
        f"d 1.0\nillum 1\nmap_Kd {png_path.name}\n"
    )
    with open(path, "w", encoding="utf-8") as obj:
        obj.write(f"# neuface-export\nmtllib {mtl_path.name}\nusemtl material_0\n")
        np.savetxt(obj, vertices, fmt="v %.6f %.6f %.6f")
        np.savetxt(obj, uvs, fmt="vt %.6f %.6f")
        np.savetxt(obj, normals, fmt="vn %.5f %.5f %.5f")
        triplets = np.stack([faces + 1, uv_faces + 1, faces + 1], axis=-1).reshape(-1, 9)
        np.savetxt(obj, triplets, fmt="f %d/%d/%d %d/%d/%d %d/%d/%d")
    return [path, mtl_path, png_path]


# ---------------------------------------------------------------------------------------------------- pipeline level


def extract_mesh_to_file(
    pipeline,
    path: Path,
    resolution: int = 256,
    bounds_min=(-1.0, -1.0, -1.0),
    bounds_max=(1.0, 1.0, 1.0),
    world_units: bool = True,
    keep_largest_component: bool = True,
    vertex_colors: Literal["none", "albedo", "rgb"] = "none",
    chunk: int = 65536,
) -> Path:
    """Mesh of a NeuFace pipeline's SDF written to `path` (.ply or .obj), world units by default
    (what the trainer writes after training)."""
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("ply", "obj"):
        raise ValueError(f"{path}: the mesh file must end in .ply or .obj")
    exporter = ExportMesh(
        load_config=Path("."),
        output_dir=path.parent,
        resolution=resolution,
        bounding_box_min=tuple(bounds_min),
        bounding_box_max=tuple(bounds_max),
        world_units=world_units,
        keep_largest_component=keep_largest_component,
        vertex_colors=vertex_colors,
        format=fmt,  # type: ignore[arg-type]
        chunk=chunk,
        overwrite=True,
    )
    return exporter.run(pipeline, mesh_path=path)[0]


@dataclass
class ExportMesh:
    """Extract the NeuFace surface as a mesh (CPU or GPU): marching cubes, optional vertex colours
    and textured OBJ, world units by default."""

    load_config: Path
    """config.yml of a NeuFace training run."""
    output_dir: Path
    """Where mesh.ply / mesh.obj (and mesh_textured.obj/.mtl/.png) are written."""
    resolution: int = 256
    """Grid points per axis (rounded up to 4k + 1; any value, e.g. 256, 300, 512, 1024)."""
    bounding_box_min: Tuple[float, float, float] = (-1.0, -1.0, -1.0)
    """In normalised scene units (the object lives in the unit sphere)."""
    bounding_box_max: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    world_units: bool = True
    """Write vertices in the dataset's world frame (DTU: undo scale_mat; FaceScape: TU mm). --no-world-units: normalised scene units."""
    keep_largest_component: bool = True
    vertex_colors: Literal["albedo", "rgb", "none"] = "albedo"
    """Per-vertex colour: the model's albedo, its rgb seen head-on, or none (geometry only)."""
    texture: Literal["none", "albedo", "rgb"] = "none"
    """Also write mesh_textured.obj/.mtl/.png (xatlas UV atlas) with this output as the texture."""
    texture_size: int = 1024
    """Texture image width and height in pixels."""
    format: Literal["ply", "obj"] = "ply"
    """File format of the (vertex-coloured) mesh."""
    chunk: int = 65536
    """SDF points per network call (lower it if the GPU runs out of memory)."""
    overwrite: bool = False
    """Replace existing output files."""

    def targets(self) -> List[Path]:
        paths = [self.output_dir / f"mesh.{self.format}"]
        if self.texture != "none":
            paths += [self.output_dir / f"mesh_textured.{ext}" for ext in ("obj", "mtl", "png")]
        return paths

    def main(self) -> None:
        from nerfstudio.utils.eval_utils import eval_setup

        if not self.load_config.exists():
            raise NeuFaceInputError(self.load_config, "config file not found")
        existing = [p for p in self.targets() if p.exists()]
        if existing and not self.overwrite:
            raise NeuFaceInputError(existing[0], "already exists (pass --overwrite to replace it)")
        if self.resolution < 8:
            raise NeuFaceInputError(self.load_config, f"--resolution {self.resolution} is too small (use 8 or more)")
        _, pipeline, _, _ = eval_setup(self.load_config, test_mode="inference")
        if not hasattr(pipeline.model, "field") or not hasattr(pipeline.model.field, "sdf"):
            raise NeuFaceInputError(self.load_config, "not a NeuFace model (no SDF field)")
        pipeline.eval()
        self.run(pipeline)

    def run(self, pipeline, mesh_path: Optional[Path] = None) -> List[Path]:
        """Everything after loading (the trainer and the tests call it with a pipeline in memory)."""
        model = pipeline.model
        start = time.perf_counter()
        CONSOLE.print(f"Extracting the surface at {grid_shape(self.resolution)[1]}^3 on {model.device}...")
        mesh = extract_mesh(
            lambda x: model.field.sdf(x),
            self.resolution,
            self.bounding_box_min,
            self.bounding_box_max,
            device=model.device,
            keep_largest_component=self.keep_largest_component,
            progress=True,
            chunk=self.chunk,
        )
        CONSOLE.print(f"  {len(mesh.vertices)} vertices, {len(mesh.faces)} faces ({time.perf_counter() - start:.1f} s)")
        vertices = np.asarray(mesh.vertices, dtype=np.float64)
        faces = np.asarray(mesh.faces, dtype=np.int64)
        voxel = (np.asarray(self.bounding_box_max) - np.asarray(self.bounding_box_min)) / (grid_shape(self.resolution)[1] - 1)
        offset = float(2.0 * voxel.max())
        normals = sdf_normals(model.field, torch.tensor(vertices, dtype=torch.float32, device=model.device), self.chunk)
        normals = normals.cpu().numpy().astype(np.float64)
        bad = np.linalg.norm(normals, axis=-1) < 0.5  # vanishing gradient: use the mesh's own normal
        if bad.any():
            normals[bad] = np.asarray(mesh.vertex_normals)[bad]

        if self.world_units:
            transform, scale = world_frame(pipeline)
            to_world = lambda p: normalised_to_world(p, transform, scale)  # noqa: E731
            rotate = lambda n: normals_to_world(n, transform)  # noqa: E731
        else:
            to_world = rotate = lambda x: x  # noqa: E731
        written: List[Path] = []
        self.output_dir.mkdir(parents=True, exist_ok=True)

        import trimesh

        out_mesh = trimesh.Trimesh(
            vertices=np.array(to_world(vertices)), faces=faces.copy(), vertex_normals=np.array(rotate(normals)), process=False
        )
        if self.vertex_colors != "none":
            colors, missed = model_colors(
                model, vertices, normals, self.vertex_colors, offset, progress=True,
                description=f"Vertex colours ({self.vertex_colors})",
            )
            rgba = np.concatenate([np.round(colors * 255).astype(np.uint8), np.full((len(colors), 1), 255, np.uint8)], 1)
            out_mesh.visual.vertex_colors = rgba
            if missed:
                CONSOLE.print(f"  {missed} vertices found no surface along their normal (colour left black)")
        target = mesh_path or self.output_dir / f"mesh.{self.format}"
        target.parent.mkdir(parents=True, exist_ok=True)
        out_mesh.export(target)
        written.append(target)

        if self.texture != "none":
            t0 = time.perf_counter()
            CONSOLE.print(f"Unwrapping {len(faces)} faces with xatlas...")
            vmapping, uv_faces, uvs = unwrap(vertices, faces)
            rows, cols, points, texel_normals = texture_points(vertices, normals, faces, uv_faces, uvs, vmapping, self.texture_size)
            colors, missed = model_colors(
                model, points, texel_normals, self.texture, offset, progress=True, description=f"Texels ({self.texture})"
            )
            image = np.zeros((self.texture_size, self.texture_size, 3), np.float32)
            covered = np.zeros((self.texture_size, self.texture_size), bool)
            image[rows, cols] = colors
            covered[rows, cols] = True
            image = fill_uncovered(image, covered)
            texture = np.round(image * 255).astype(np.uint8)
            written += write_textured_obj(
                self.output_dir / "mesh_textured.obj",
                to_world(vertices),
                rotate(normals),
                vmapping[uv_faces],  # the same triangles as `faces`, corner for corner
                uvs,
                uv_faces,
                texture,
            )
            CONSOLE.print(
                f"  texture {self.texture_size}^2, {covered.mean() * 100:.0f}% of texels on the surface, "
                f"{missed} texels without a surface hit ({time.perf_counter() - t0:.1f} s)"
            )
        units = "world units (dataset frame)" if self.world_units else "normalised scene units"
        CONSOLE.print(f"[bold green]Exported ({units}, {time.perf_counter() - start:.1f} s):[/bold green]")
        for path in written:
            CONSOLE.print(f"  {path}")
        return written


def entrypoint() -> None:
    tyro.extras.set_accent_color("bright_yellow")
    tyro.cli(ExportMesh).main()


if __name__ == "__main__":
    entrypoint()
