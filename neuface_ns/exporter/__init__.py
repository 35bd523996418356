"""NeuFace mesh exporter (library): the SDF's zero level set as a mesh, coloured by the model, in world units.

    grid.py        SDF on a coarse-to-fine grid, marching cubes, largest connected component
    appearance.py  vertex / texel colours: the model's albedo or rgb from short rays against the normal
    texture.py     xatlas atlas, texel rasterisation, seam filling, textured OBJ + MTL + PNG
    units.py       normalised scene units <-> the dataset's world frame (DTU scan, FaceScape TU mm)
    mesh.py        a pipeline's surface to files (export_mesh; extract_mesh_to_file for the trainer)
    cli.py         `neuface-export`, a tyro layer over mesh.export_mesh (not imported here)

Data flows one way: cli -> mesh -> grid / appearance / texture / units -> progress. Nothing in the
library imports the CLI (or tyro).
"""

from neuface_ns.exporter.appearance import model_colors, sdf_normals, short_rays
from neuface_ns.exporter.grid import (
    COARSE_STRIDE,
    NON_FINITE_SDF,
    SDFFunction,
    extract_mesh,
    grid_shape,
    largest_component,
    sdf_grid,
)
from neuface_ns.exporter.mesh import export_mesh, extract_mesh_to_file
from neuface_ns.exporter.texture import fill_uncovered, rasterize_uv, texture_points, unwrap, write_textured_obj
from neuface_ns.exporter.units import normalised_to_world, normals_to_world, world_frame, world_to_normalised

__all__ = [
    "COARSE_STRIDE",
    "NON_FINITE_SDF",
    "SDFFunction",
    "export_mesh",
    "extract_mesh",
    "extract_mesh_to_file",
    "fill_uncovered",
    "grid_shape",
    "largest_component",
    "model_colors",
    "normalised_to_world",
    "normals_to_world",
    "rasterize_uv",
    "sdf_grid",
    "sdf_normals",
    "short_rays",
    "texture_points",
    "unwrap",
    "world_frame",
    "world_to_normalised",
    "write_textured_obj",
]
