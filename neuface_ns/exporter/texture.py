"""Texture atlas: UV unwrapping (xatlas), texel rasterisation, seam filling, textured OBJ writing.

Textured OBJ (`--texture`): xatlas unwraps the mesh, every texel centre inside a UV triangle is
mapped to its 3D point (barycentric), coloured by `appearance.model_colors`, and uncovered texels take the colour of the
nearest covered one (no dark seams under bilinear filtering). xatlas time grows with the face
count: prefer resolution 256 or less for textures.

nerfstudio's `texture_utils.unwrap_mesh_with_xatlas` is not used: it gives xatlas the vertex
normals (other charts), maps every texel to the triangle with the nearest barycentric centre
(texels outside all charts get extrapolated, off-surface points), tests every texel against every
face (10 faces per step: O(faces x texels)), skips the last faces when their count is not a
multiple of 10, and returns per-face UVs without xatlas' vertex mapping, which the OBJ writer below
needs to share positions and normals with the plain mesh.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np


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
    """Give every uncovered texel of `image` [S, S, C] the colour of the nearest covered one
    (`covered` [S, S] bool; scipy's Euclidean distance transform), so that bilinear filtering across
    chart borders never blends in black. Returns the filled image (the input when nothing or
    everything is covered)."""
    from scipy import ndimage

    if covered.all() or not covered.any():
        return image
    _, (ri, ci) = ndimage.distance_transform_edt(~covered, return_indices=True)
    return image[ri, ci]


def unwrap(vertices: np.ndarray, faces: np.ndarray):
    """xatlas UV atlas of a mesh (vertices [V, 3], faces [F, 3]), with xatlas' default options and
    no normals: (vmapping [V'] -> original vertex, uv faces [F, 3] into V', uvs [V', 2] in [0, 1]).
    Vertices on chart seams are split (V' >= V); `vmapping[uv_faces]` is `faces`, corner for corner."""
    import xatlas

    vmapping, indices, uvs = xatlas.parametrize(vertices.astype(np.float32), faces.astype(np.uint32))
    return vmapping.astype(np.int64), indices.astype(np.int64), uvs.astype(np.float64)


def texture_points(
    vertices: np.ndarray, normals: np.ndarray, faces: np.ndarray, uv_faces: np.ndarray, uvs: np.ndarray, vmapping: np.ndarray, size: int
):
    """3D points and normals of the covered texels of a `size`^2 atlas (`unwrap`'s outputs):
    (rows, cols, points [T, 3], unit normals [T, 3]), barycentric interpolation of the vertices' and
    vertex normals' values; these are the points whose colours fill the texture."""
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
    """OBJ + MTL + PNG (same stem). texture [S, S, 3] uint8, row 0 = v near 0 (written flipped to OBJ's v up).

    Positions and normals are indexed by `faces` (the plain mesh's vertices), UVs by `uv_faces`, so the
    textured mesh has the plain mesh's vertices and triangles. Returns the three paths written.
    """
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
