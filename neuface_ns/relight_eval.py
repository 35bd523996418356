"""neuface-eval-relight: how well a trained model relights, against photos (or path-traced views) taken under
another light.

    neuface-eval-relight --load-config outputs/.../config.yml --light courtyard.exr --relit-images scan/relit/image

renders every held-out view under `--light` (an .exr / .hdr map, a .npy SH file or a bundled preset, with the
viewer's yaw / pitch / roll and exposure matching) and scores it with the NeuFace protocol (colour-fitted,
masked PSNR / SSIM, LPIPS where its weights exist) against the image of the same name in `--relit-images`; the
same metrics for the render under the learned light are the baseline a relighting has to beat. Prints one JSON
line (means over the views, and per view) and writes it to `--output` when given.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
import tyro

from neuface_ns.errors import NeuFaceInputError


@dataclass
class EvalRelight:
    load_config: Path
    """config.yml of a NeuFace training run."""
    light: str
    """The light of the ground-truth images: an .exr / .hdr map, a .npy SH file or a bundled preset."""
    relit_images: Path
    """Folder with the held-out views under that light, named like the dataset's images."""
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    match_exposure: bool = True
    """Give the light the learned light's white balance and peak irradiance (as the viewer does)."""
    output: Optional[Path] = None
    """Also write the JSON here (never overwrites an existing file)."""

    def main(self) -> Dict[str, object]:
        from nerfstudio.utils.eval_utils import eval_setup

        from neuface_ns.lighting.presets import load_sh_light
        from neuface_ns.lighting.sh import MAX_SH_ORDER

        if not self.load_config.is_file():
            raise NeuFaceInputError(self.load_config, "config file not found")
        if not self.relit_images.is_dir():
            raise NeuFaceInputError(self.relit_images, "folder of relit ground-truth images not found")
        if self.output is not None and self.output.exists():
            raise NeuFaceInputError(self.output, "already exists (choose another --output)")
        try:
            light = load_sh_light(self.light, MAX_SH_ORDER)
        except (FileNotFoundError, ValueError) as error:
            raise NeuFaceInputError(self.light, str(error)) from None
        _, pipeline, _, step = eval_setup(self.load_config, test_mode="test")
        means, views = relight_metrics(pipeline, light, self.relit_images, self.yaw, self.pitch, self.roll,
                                       self.match_exposure, source=self.load_config)
        result = {"step": step, "light": str(self.light), "mean": means, "views": views}
        line = json.dumps(result)
        print(line)
        if self.output is not None:
            self.output.write_text(line + "\n")
        return result


def relight_metrics(pipeline, light: torch.Tensor, relit_images: Path, yaw: float = 0.0, pitch: float = 0.0,
                    roll: float = 0.0, match_exposure: bool = True, source: Optional[Path] = None):
    """Masked metrics of every held-out view rendered under `light` ([(l+1)^2, 3] SH) against the image of the same
    name in `relit_images`, and of the render under the learned light against the same images (the baseline).
    Returns (means with `relit_gain_db`, per-view rows)."""
    from neuface_ns.lighting.settings import RelightSettings
    from neuface_ns.lighting.sh import resize_sh_light

    model = pipeline.model
    was_training = model.training
    model.eval()
    dataset = pipeline.datamanager.eval_dataset
    if dataset is None or len(dataset) == 0:
        raise NeuFaceInputError(source or relit_images, "the run has no held-out views")
    relit = RelightSettings(yaw=yaw, pitch=pitch, roll=roll, match_exposure=match_exposure,
                            custom=resize_sh_light(light, model.light.order))
    views: List[Dict[str, object]] = []
    try:
        for index in range(len(dataset)):
            name = Path(dataset._dataparser_outputs.image_filenames[index]).name
            target_path = relit_images / name
            if not target_path.is_file():
                raise NeuFaceInputError(target_path, f"no relit image for held-out view {name}")
            batch = dataset[index]
            target = _load_image(target_path, batch["image"].shape[:2])
            mask = batch.get("fg_mask")
            row = {"view": name}
            for label, settings in (("relit", relit), ("unrelit", None)):
                model.lighting_controls.fixed_settings = settings
                with torch.no_grad():
                    outputs = model.get_outputs_for_camera(dataset.cameras[index : index + 1].to(model.device))
                metrics, _ = model.get_image_metrics_and_images(outputs, {"image": target, "fg_mask": mask})
                row.update({f"{label}_{k}": float(v) for k, v in metrics.items() if k.endswith("_masked")})
            views.append(row)
            print(f"\rneuface-eval-relight: {index + 1}/{len(dataset)} views", end="", file=sys.stderr, flush=True)
    finally:
        model.lighting_controls.fixed_settings = None
        model.train(was_training)
    print(file=sys.stderr)
    keys = [k for k in views[0] if k != "view"]
    means = {k: float(np.mean([v[k] for v in views])) for k in keys}
    if "relit_psnr_masked" in means:
        means["relit_gain_db"] = means["relit_psnr_masked"] - means["unrelit_psnr_masked"]
    return means, views


def _load_image(path: Path, shape) -> torch.Tensor:
    """[H, W, 3] float in [0, 1], resized (area filter) to the dataset's resolution when it differs."""
    from PIL import Image

    try:
        image = Image.open(path).convert("RGB")
    except OSError as error:
        raise NeuFaceInputError(path, f"not a readable image ({error})") from None
    height, width = int(shape[0]), int(shape[1])
    if image.size != (width, height):
        image = image.resize((width, height), Image.BOX)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)


def entrypoint() -> None:
    tyro.cli(EvalRelight).main()


if __name__ == "__main__":
    entrypoint()
