"""neuface-albedo-shading: does the learned albedo hold shading? Its correlation with the ground-truth diffuse
shading of a path-traced scene's held-out views.

    python -m neuface_ns.albedo_shading --load-config outputs/.../config.yml [--scene neuface_ns/data/sample/scan]

A scene from scripts/render_scan_scene.py with --shading / --only-shading has, per held-out view v,
shading/<v>.png (the grey diffuse shading S of Cycles' passes under the training light) and shading/diffuse/<v>.png
(the true diffuse colour). The model's "albedo" output is rendered for every held-out view of the run and, over
the pixels inside the scene's mask (mask/<v>.png) that the model also covers (accumulation > 0.5), pooled over the
views:

- albedo_shading_corr: Pearson correlation between the albedo's luminance (Rec. 709 weights on the displayed,
  sRGB-like values) and S; an albedo with shading baked in follows S, a clean one does not;
- gt_albedo_shading_corr: the same for the true diffuse colour (in the same encoding), the reference floor: what
  a perfect albedo scores, since skin colour and light are not independent on a face;
- albedo_gt_corr: Pearson correlation between the albedo's and the true diffuse colour's luminance (fidelity).

Prints one JSON line (pooled values, pixel count and per-view values) and writes it to --output when given.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from neuface_ns.errors import NeuFaceInputError

#: shading/<v>.png holds round(S x SHADING_SCALE) in 16 bits (scripts/render_scan_scene.py).
SHADING_SCALE = 8192.0
#: Rec. 709 luminance weights.
LUMINANCE = np.array([0.2126, 0.7152, 0.0722])
#: Where the bundled scan sample lives.
SCAN_SAMPLE = Path(__file__).resolve().parent / "data" / "sample" / "scan"


def luminance(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float64)[..., :3] @ LUMINANCE


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally long samples (nan when either is constant or empty)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.size < 2 or a.size != b.size:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def _resize(array: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """Area-resize a [H, W] or [H, W, C] float array to (height, width) (identity when it already fits)."""
    from PIL import Image

    if array.shape[:2] == tuple(shape):
        return array
    channels = [array] if array.ndim == 2 else [array[..., c] for c in range(array.shape[-1])]
    resized = [np.asarray(Image.fromarray(c.astype(np.float32), mode="F").resize((shape[1], shape[0]), Image.BOX))
               for c in channels]
    return resized[0] if array.ndim == 2 else np.stack(resized, axis=-1)


def load_view(scene: Path, view: int, shape: Optional[Tuple[int, int]] = None):
    """(S [H, W], true diffuse colour [H, W, 3] sRGB in [0, 1], mask [H, W] bool) of one held-out view, resized
    to `shape` (mask: more than half covered) when given."""
    from PIL import Image

    paths = [scene / "shading" / f"{view:03d}.png", scene / "shading" / "diffuse" / f"{view:03d}.png",
             scene / "mask" / f"{view:03d}.png"]
    for path in paths:
        if not path.is_file():
            raise NeuFaceInputError(path, "missing (render the shading with scripts/render_scan_scene.py "
                                          "--only-shading SCENE)")
    shading = np.asarray(Image.open(paths[0]), dtype=np.float64) / SHADING_SCALE
    diffuse = np.asarray(Image.open(paths[1]).convert("RGB"), dtype=np.float64) / 255.0
    mask = np.asarray(Image.open(paths[2]).convert("L"), dtype=np.float64) / 255.0
    if shape is not None:
        shading, diffuse, mask = _resize(shading, shape), _resize(diffuse, shape), _resize(mask, shape)
    return shading, diffuse, mask > 0.5


def shading_views(scene: Path) -> List[int]:
    """The views with a ground-truth shading (scene.json's record, else the files present)."""
    info_path = scene / "scene.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if "shading" in info:
            return list(info["shading"]["views"])
    return sorted(int(p.stem) for p in (scene / "shading").glob("[0-9]*.png"))


def correlations(albedos: Mapping[int, np.ndarray], scene: Path,
                 covered: Optional[Mapping[int, np.ndarray]] = None) -> Dict[str, object]:
    """The metrics of the module doc for albedos {view: [H, W, 3] displayed albedo in [0, 1]}, each scored inside
    the scene's mask of that view (and `covered[view]` when given), pooled over the views; also per view."""
    pooled: Dict[str, List[np.ndarray]] = {"albedo": [], "gt": [], "shading": []}
    rows = []
    for view, albedo in albedos.items():
        albedo = np.asarray(albedo, dtype=np.float64)
        shading, diffuse, mask = load_view(scene, view, albedo.shape[:2])
        if covered is not None:
            mask = mask & np.asarray(covered[view], dtype=bool)
        values = {"albedo": luminance(albedo[mask]), "gt": luminance(diffuse[mask]), "shading": shading[mask]}
        for key, value in values.items():
            pooled[key].append(value)
        rows.append({"view": view, "pixels": int(mask.sum()),
                     "albedo_shading_corr": pearson(values["albedo"], values["shading"]),
                     "gt_albedo_shading_corr": pearson(values["gt"], values["shading"]),
                     "albedo_gt_corr": pearson(values["albedo"], values["gt"])})
    if not rows:
        raise NeuFaceInputError(scene, "no held-out view to score")
    albedo, gt, shading = (np.concatenate(pooled[k]) for k in ("albedo", "gt", "shading"))
    return {"albedo_shading_corr": pearson(albedo, shading), "gt_albedo_shading_corr": pearson(gt, shading),
            "albedo_gt_corr": pearson(albedo, gt), "pixels": int(albedo.size), "views": rows}


def _view_index(name: str) -> int:
    """Held-out view number from an image name (IDR: 006.png, FaceScape layout: 6.jpg)."""
    try:
        return int(Path(name).stem)
    except ValueError:
        raise NeuFaceInputError(name, "image name is not a view number") from None


def render_albedos(pipeline, views: Optional[List[int]] = None):
    """({view: albedo [H, W, 3]}, {view: accumulation > 0.5}) of the run's held-out views (those in `views`)."""
    import torch

    model = pipeline.model
    dataset = pipeline.datamanager.eval_dataset
    if dataset is None or len(dataset) == 0:
        raise NeuFaceInputError("eval dataset", "the run has no held-out views")
    was_training = model.training
    model.eval()
    albedos, covered = {}, {}
    try:
        for index in range(len(dataset)):
            view = _view_index(dataset._dataparser_outputs.image_filenames[index])
            if views is not None and view not in views:
                continue
            with torch.no_grad():
                outputs = model.get_outputs_for_camera(dataset.cameras[index : index + 1].to(model.device))
            albedos[view] = outputs["albedo"].float().cpu().numpy()
            covered[view] = outputs["accumulation"].float().cpu().numpy()[..., 0] > 0.5
            print(f"\rneuface-albedo-shading: {len(albedos)} views", end="", file=sys.stderr, flush=True)
    finally:
        model.train(was_training)
    print(file=sys.stderr)
    return albedos, covered


def albedo_shading_metrics(pipeline, scene: Path) -> Dict[str, object]:
    """The metrics of the module doc for a trained pipeline on `scene` (held-out views with shading/)."""
    views = shading_views(scene)
    albedos, covered = render_albedos(pipeline, views)
    missing = sorted(set(views) - set(albedos))
    if not albedos:
        raise NeuFaceInputError(scene, f"none of the shading views {views} is a held-out view of the run")
    result = correlations(albedos, scene, covered)
    if missing:
        result["views_without_render"] = missing
    return result


def scene_of(data: Path) -> Optional[Path]:
    """The scene folder with shading/ for a run's data path (the scene itself, or its facescape/ layout)."""
    for candidate in (data, data.parent):
        if (candidate / "shading").is_dir():
            return candidate
    return None


@dataclass
class AlbedoShading:
    load_config: Path
    """config.yml of a NeuFace training run on a path-traced scene."""
    scene: Optional[Path] = None
    """Scene folder with shading/ and mask/ (default: the run's data folder, or the one above its facescape/)."""
    output: Optional[Path] = None
    """Also write the JSON here (never overwrites an existing file)."""

    def main(self) -> Dict[str, object]:
        from nerfstudio.utils.eval_utils import eval_setup

        if not self.load_config.is_file():
            raise NeuFaceInputError(self.load_config, "config file not found")
        if self.output is not None and self.output.exists():
            raise NeuFaceInputError(self.output, "already exists (choose another --output)")
        config, pipeline, _, step = eval_setup(self.load_config, test_mode="test")
        scene = self.scene or scene_of(Path(config.pipeline.datamanager.data or config.data))
        if scene is None or not (scene / "shading").is_dir():
            raise NeuFaceInputError(scene or self.load_config, "no shading/ ground truth (give --scene)")
        result = {"step": step, "scene": str(scene), **albedo_shading_metrics(pipeline, scene)}
        line = json.dumps(result)
        print(line)
        if self.output is not None:
            self.output.write_text(line + "\n")
        return result


def entrypoint() -> None:
    import tyro

    tyro.cli(AlbedoShading).main()


if __name__ == "__main__":
    entrypoint()
