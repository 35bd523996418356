"""`neuface-export`: extract the NeuFace surface as a mesh, on CPU or GPU (a tyro layer over the library).

    neuface-export --load-config outputs/.../config.yml --output-dir exports/ [--resolution 512]
        [--vertex-colors albedo|rgb|none] [--texture albedo|rgb|none] [--format ply|obj]
        [--no-world-units] [--no-keep-largest-component] [--cut-to-masks] [--overwrite]

Loads a run (nerfstudio's eval_setup), checks the inputs, then calls `neuface_ns.exporter.export_mesh`
(see its modules for the geometry, units, colours and texture atlas). The library never imports this
module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Literal, Optional, Tuple

import tyro

from neuface_ns.errors import NeuFaceInputError
from neuface_ns.exporter.mesh import export_mesh


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
    cut_to_masks: bool = False
    """Keep only the triangles some training view shows inside its foreground mask: drops the back the SDF closes
    behind an open face scan and sheets seen only against the background (needs the run's masks)."""
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
        """Everything after loading (the tests call it with a pipeline in memory): the library's
        export_mesh with these options; mesh.<format> (or `mesh_path`) and mesh_textured.* in
        output_dir. Returns the paths written."""
        return export_mesh(
            pipeline,
            mesh_path or self.output_dir / f"mesh.{self.format}",
            resolution=self.resolution,
            bounds_min=self.bounding_box_min,
            bounds_max=self.bounding_box_max,
            world_units=self.world_units,
            keep_largest_component=self.keep_largest_component,
            vertex_colors=self.vertex_colors,
            texture=self.texture,
            texture_size=self.texture_size,
            textured_path=self.output_dir / "mesh_textured.obj",
            chunk=self.chunk,
            cut_to_masks=self.cut_to_masks,
        )


def entrypoint() -> None:
    tyro.extras.set_accent_color("bright_yellow")
    tyro.cli(ExportMesh).main()


if __name__ == "__main__":
    entrypoint()
