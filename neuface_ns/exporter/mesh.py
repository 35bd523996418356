"""A NeuFace pipeline's surface to mesh files: geometry, units, vertex colours, optional textured OBJ.

What `neuface-export` (exporter/cli.py) and the trainer (mesh after training) call with a pipeline in
memory; it composes grid.py (marching cubes), appearance.py (colours), texture.py (atlas) and
units.py (world frame).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Literal, Optional, Tuple

import numpy as np
import torch

from nerfstudio.utils.rich_utils import CONSOLE

from neuface_ns.exporter.appearance import model_colors, sdf_normals
from neuface_ns.exporter.grid import extract_mesh, grid_shape
from neuface_ns.exporter.texture import fill_uncovered, texture_points, unwrap, write_textured_obj
from neuface_ns.exporter.units import normalised_to_world, normals_to_world, world_frame


def export_mesh(
    pipeline,
    mesh_path: Path,
    resolution: int = 256,
    bounds_min: Tuple[float, float, float] = (-1.0, -1.0, -1.0),
    bounds_max: Tuple[float, float, float] = (1.0, 1.0, 1.0),
    world_units: bool = True,
    keep_largest_component: bool = True,
    vertex_colors: Literal["albedo", "rgb", "none"] = "albedo",
    texture: Literal["none", "albedo", "rgb"] = "none",
    texture_size: int = 1024,
    textured_path: Optional[Path] = None,
    chunk: int = 65536,
    cut_to_masks: bool = False,
) -> List[Path]:
    """Write a NeuFace pipeline's surface to `mesh_path` (.ply or .obj, by its suffix) and, with
    `texture`, a textured OBJ + MTL + PNG at `textured_path` (default: mesh_textured.obj next to
    the mesh). Returns the paths written, the mesh first.

    Inputs: a pipeline (eval mode) whose model has a NeuFace `field` (`sdf`, `sdf_and_gradient`) and
    whose datamanager holds `train_dataparser_outputs` (only read with `world_units`); the grid
    (`resolution` points per axis, box in normalised units, `chunk` points per network call); the
    colour outputs. Vertex normals are the SDF's gradients (the mesh's own where it vanishes); colours
    come from short rays against them (appearance.py), cast `2 voxels` outside the surface. With
    `world_units` vertices and normals are written in the dataset's world frame (units.py),
    otherwise in normalised scene units. With `cut_to_masks` only the triangles some training view shows
    inside its foreground mask are kept (neuface_ns/visibility.py: not the closed back behind an open scan, nor
    sheets seen only against the background; needs the run's masks). Raises RuntimeError when the SDF has no
    surface in the box or nothing is left after the cut.
    """
    import trimesh

    model = pipeline.model
    start = time.perf_counter()
    CONSOLE.print(f"Extracting the surface at {grid_shape(resolution)[1]}^3 on {model.device}...")
    mesh = extract_mesh(
        lambda x: model.field.sdf(x),
        resolution,
        bounds_min,
        bounds_max,
        device=model.device,
        keep_largest_component=keep_largest_component,
        progress=True,
        chunk=chunk,
    )
    CONSOLE.print(f"  {len(mesh.vertices)} vertices, {len(mesh.faces)} faces ({time.perf_counter() - start:.1f} s)")
    if cut_to_masks:
        mesh = _cut_to_training_masks(pipeline, mesh)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    voxel = (np.asarray(bounds_max) - np.asarray(bounds_min)) / (grid_shape(resolution)[1] - 1)
    offset = float(2.0 * voxel.max())
    normals = sdf_normals(model.field, torch.tensor(vertices, dtype=torch.float32, device=model.device), chunk)
    normals = normals.cpu().numpy().astype(np.float64)
    bad = np.linalg.norm(normals, axis=-1) < 0.5  # vanishing gradient: use the mesh's own normal
    if bad.any():
        normals[bad] = np.asarray(mesh.vertex_normals)[bad]

    if world_units:
        transform, scale = world_frame(pipeline)
        to_world = lambda p: normalised_to_world(p, transform, scale)  # noqa: E731
        rotate = lambda n: normals_to_world(n, transform)  # noqa: E731
    else:
        to_world = rotate = lambda x: x  # noqa: E731
    written: List[Path] = []

    out_mesh = trimesh.Trimesh(
        vertices=np.array(to_world(vertices)), faces=faces.copy(), vertex_normals=np.array(rotate(normals)), process=False
    )
    if vertex_colors != "none":
        colors, missed = model_colors(
            model, vertices, normals, vertex_colors, offset, progress=True,
            description=f"Vertex colours ({vertex_colors})",
        )
        rgba = np.concatenate([np.round(colors * 255).astype(np.uint8), np.full((len(colors), 1), 255, np.uint8)], 1)
        out_mesh.visual.vertex_colors = rgba
        if missed:
            CONSOLE.print(f"  {missed} vertices found no surface along their normal (colour left black)")
    mesh_path.parent.mkdir(parents=True, exist_ok=True)
    out_mesh.export(mesh_path)
    written.append(mesh_path)

    if texture != "none":
        textured_path = textured_path or mesh_path.parent / "mesh_textured.obj"
        textured_path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        CONSOLE.print(f"Unwrapping {len(faces)} faces with xatlas...")
        vmapping, uv_faces, uvs = unwrap(vertices, faces)
        rows, cols, points, texel_normals = texture_points(vertices, normals, faces, uv_faces, uvs, vmapping, texture_size)
        colors, missed = model_colors(
            model, points, texel_normals, texture, offset, progress=True, description=f"Texels ({texture})"
        )
        image = np.zeros((texture_size, texture_size, 3), np.float32)
        covered = np.zeros((texture_size, texture_size), bool)
        image[rows, cols] = colors
        covered[rows, cols] = True
        image = fill_uncovered(image, covered)
        texels = np.round(image * 255).astype(np.uint8)
        written += write_textured_obj(
            textured_path,
            to_world(vertices),
            rotate(normals),
            vmapping[uv_faces],  # the same triangles as `faces`, corner for corner
            uvs,
            uv_faces,
            texels,
        )
        CONSOLE.print(
            f"  texture {texture_size}^2, {covered.mean() * 100:.0f}% of texels on the surface, "
            f"{missed} texels without a surface hit ({time.perf_counter() - t0:.1f} s)"
        )
    units = "world units (dataset frame)" if world_units else "normalised scene units"
    CONSOLE.print(f"[bold green]Exported ({units}, {time.perf_counter() - start:.1f} s):[/bold green]")
    for path in written:
        CONSOLE.print(f"  {path}")
    return written


def _cut_to_training_masks(pipeline, mesh):
    from neuface_ns.visibility import cut_to_masks, training_views

    start = time.perf_counter()
    cameras, masks = training_views(pipeline)
    CONSOLE.print(f"Cutting to what {len(masks)} training views show inside their masks...")
    try:
        cut = cut_to_masks(np.asarray(mesh.vertices), np.asarray(mesh.faces), cameras, masks)
    except ValueError as error:
        raise RuntimeError(f"--cut-to-masks: {error} (the surface is not where the cameras look)") from None
    CONSOLE.print(
        f"  kept {len(cut.faces)} of {len(mesh.faces)} faces ({100.0 * len(cut.faces) / len(mesh.faces):.0f}%,"
        f" {time.perf_counter() - start:.1f} s)"
    )
    return cut


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
    """Mesh of a NeuFace pipeline's SDF written to `path` (.ply or .obj), world units and no colours
    by default (what the trainer writes after training, and the benchmark scores). Returns `path`.
    Raises ValueError for another suffix."""
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("ply", "obj"):
        raise ValueError(f"{path}: the mesh file must end in .ply or .obj")
    return export_mesh(
        pipeline,
        path,
        resolution=resolution,
        bounds_min=tuple(bounds_min),
        bounds_max=tuple(bounds_max),
        world_units=world_units,
        keep_largest_component=keep_largest_component,
        vertex_colors=vertex_colors,
        chunk=chunk,
    )[0]
