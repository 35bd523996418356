"""neuface-eval: image metrics of a trained run under either protocol, without editing its config.yml.

    neuface-eval --load-config outputs/.../config.yml --output-path metrics.json --protocol reference

Like nerfstudio's ``ns-eval`` (its ``eval_setup`` and the pipeline's ``get_average_eval_image_metrics``, means and
standard deviations over the held-out views), with the choices of ``neuface_ns/eval.py`` as options:

* ``--protocol neuface-ns`` (default; what ``ns-eval`` computes): the run's ``eval_latent`` (``mean`` unless it
  was trained with another), the colour fit and masked metrics over the ground-truth mask, ``ssim_masked`` on the
  masked images.
* ``--protocol reference``: NeuFace's own scripts: the calibration latent of training image 6 (FaceScape) or 4
  (DTU), ``ssim_masked`` over the list of mask pixels, the ground-truth mask (FaceScape) or the network's mask
  (DTU). A run with fewer training images uses its last one, and says so.

``--latent``, ``--ssim``, ``--mask`` override one choice; ``--dataset`` picks the reference's FaceScape or DTU
defaults when the method name (``neuface-facescape*`` / ``neuface-dtu*``) does not tell. The JSON holds
``experiment_name``, ``method_name``, ``checkpoint``, ``results`` (floats, as ``ns-eval`` writes them) and
``protocol``: the name, dataset, latent, ssim and mask mode that produced the numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Literal, Optional, Tuple

import tyro

from neuface_ns.errors import ConfigError, NeuFaceInputError
from neuface_ns.eval import REFERENCE_LATENT, REFERENCE_MASK, describe_protocol

Dataset = Literal["facescape", "dtu"]


def dataset_kind(method_name: str, render_mode: str) -> Dataset:
    """FaceScape or DTU, for the reference's defaults: from the method name, else from the render mode (the
    FaceScape presets volume-render, the DTU ones surface-render)."""
    name = (method_name or "").lower()
    if "facescape" in name:
        return "facescape"
    if "dtu" in name:
        return "dtu"
    return "dtu" if render_mode == "surface" else "facescape"


def reference_latent(dataset: Dataset, num_train_images: int) -> Tuple[int, Optional[str]]:
    """(index, note): the reference's latent, or the last training image's when the run has fewer images (note
    says so; None otherwise)."""
    index = REFERENCE_LATENT[dataset]
    if index < num_train_images:
        return index, None
    last = max(num_train_images - 1, 0)
    return last, (
        f"the reference's calibration latent {index} ({dataset}) does not exist in this run "
        f"({num_train_images} training images); using {last}, the last one"
    )


def check_latent(latent: str, num_train_images: int) -> str:
    """'mean' or a valid training image index (as a string), else one line."""
    if latent == "mean":
        return latent
    try:
        index = int(latent)
    except ValueError:
        raise ConfigError(f"--latent must be 'mean' or a training image index, not {latent!r}") from None
    if not 0 <= index < num_train_images:
        raise ConfigError(f"--latent {index} is out of range: this run has {num_train_images} training images")
    return str(index)


@dataclass
class EvaluateNeuFace:
    """Image metrics of a NeuFace run under the project's protocol or NeuFace's reference one; writes JSON."""

    load_config: Path
    """config.yml of a NeuFace training run."""
    output_path: Path = Path("metrics.json")
    """JSON file to write (as ns-eval, it is replaced if it exists)."""
    protocol: Literal["neuface-ns", "reference"] = "neuface-ns"
    """neuface-ns: the project's protocol (ns-eval's); reference: NeuFace's evaluation scripts."""
    latent: Optional[str] = None
    """Calibration latent: 'mean' or a training image index; default: the run's eval_latent (neuface-ns), 6 for
    FaceScape / 4 for DTU (reference)."""
    ssim: Optional[Literal["masked-image", "pixel-list"]] = None
    """Override the protocol's SSIM: on the masked images, or over the list of mask pixels."""
    mask: Optional[Literal["gt", "predicted"]] = None
    """Override the protocol's mask: the ground truth's, or the network's (accumulation > 0.5)."""
    dataset: Optional[Dataset] = None
    """Which reference defaults (latent, mask); default: from the method name, else the render mode."""
    render_output_path: Optional[Path] = None
    """Optional folder for the rendered images (as ns-eval's)."""

    def main(self) -> Dict[str, object]:
        from nerfstudio.utils.eval_utils import eval_setup
        from nerfstudio.utils.rich_utils import CONSOLE

        if not self.load_config.is_file():
            raise NeuFaceInputError(self.load_config, "config file not found")
        if self.output_path.suffix != ".json":
            raise NeuFaceInputError(self.output_path, "the output path must end in .json")
        config, pipeline, checkpoint_path, _ = eval_setup(self.load_config, test_mode="test")
        model = pipeline.model
        model_config = model.config
        num_train = int(model.calibration.latents.shape[0])
        dataset = self.dataset or dataset_kind(config.method_name, model_config.render_mode)

        latent_note = None
        if self.latent is not None:
            latent = check_latent(self.latent, num_train)
        elif self.protocol == "reference":
            index, latent_note = reference_latent(dataset, num_train)
            latent = str(index)
        else:
            latent = check_latent(str(model_config.eval_latent), num_train)
        if self.protocol == "reference":
            ssim_mode, mask_mode = "pixel-list", REFERENCE_MASK[dataset]
        else:
            ssim_mode, mask_mode = "masked-image", "gt"
        ssim_mode = self.ssim or ssim_mode
        mask_mode = self.mask or mask_mode
        if latent_note is not None:
            CONSOLE.print(f"[yellow]neuface-eval: {latent_note}[/yellow]", soft_wrap=True)

        model_config.eval_latent = latent
        model_config.eval_ssim = ssim_mode
        model_config.eval_mask = mask_mode
        model._eval_protocol_announced = True  # the model's own line would not know the name; ours follows
        if self.render_output_path is not None:
            self.render_output_path.mkdir(parents=True, exist_ok=True)
        results = pipeline.get_average_eval_image_metrics(output_path=self.render_output_path, get_std=True)

        # The protocol's name when its choices were kept (neuface-ns allows any latent, as eval_latent does),
        # "custom" when an override changed one.
        if self.protocol == "reference":
            kept = (ssim_mode, mask_mode) == ("pixel-list", REFERENCE_MASK[dataset]) and latent == str(
                reference_latent(dataset, num_train)[0]
            )
        else:
            kept = (ssim_mode, mask_mode) == ("masked-image", "gt")
        name = self.protocol if kept else "custom"
        record = {
            "name": name,
            "dataset": dataset,
            "latent": latent,
            "ssim": ssim_mode,
            "mask": mask_mode,
            "description": describe_protocol(latent, ssim_mode, mask_mode, name),
        }
        if latent_note is not None:
            record["note"] = latent_note
        output = {
            "experiment_name": config.experiment_name,
            "method_name": config.method_name,
            "checkpoint": str(checkpoint_path),
            "protocol": record,
            "results": {key: float(value) for key, value in results.items()},
        }
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        self.output_path.write_text(json.dumps(output, indent=2), "utf8")
        CONSOLE.print(f"neuface-eval: {record['description']} ({dataset}); saved results to {self.output_path}",
                      soft_wrap=True)
        return output


def entrypoint() -> None:
    tyro.extras.set_accent_color("bright_yellow")
    tyro.cli(EvaluateNeuFace).main()


if __name__ == "__main__":
    entrypoint()
