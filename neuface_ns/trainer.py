"""NeuFaceTrainer: nerfstudio's Trainer plus what a NeuFace run needs around it.

- `epochs`: the paper counts epochs (one image per step); when set, the number of iterations and
  every multi-step learning-rate milestone are converted with the number of training images.
- A non-finite loss stops training with one clear line, before any broken checkpoint is written.
- After training: held-out metrics (`eval_metrics.json`) and the extracted mesh (`mesh.ply`, in the
  dataset's world units) are written next to the checkpoints and their paths printed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Type

import torch

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation
from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.engine.schedulers import MultiStepSchedulerConfig
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils import comms
from nerfstudio.utils.rich_utils import CONSOLE

from neuface_ns.errors import TrainingDivergedError


@dataclass
class NeuFaceTrainerConfig(TrainerConfig):
    _target: Type = field(default_factory=lambda: NeuFaceTrainer)
    epochs: Optional[int] = None
    """If set: max_num_iterations = epochs x training images, and multi-step scheduler milestones /
    max_steps are read as epochs (the paper presets)."""
    final_eval: bool = True
    """Evaluate all held-out views after training and write eval_metrics.json."""
    final_mesh_resolution: int = 256
    """Marching-cubes resolution of the mesh written after training (0 = no mesh)."""


class NeuFaceTrainer(Trainer):
    config: NeuFaceTrainerConfig

    def setup_optimizers(self) -> Optimizers:
        if self.config.epochs is not None:
            images = len(self.pipeline.datamanager.train_dataset)
            self.config.max_num_iterations = self.config.epochs * images
            for group in self.config.optimizers.values():
                scheduler = group.get("scheduler")
                if isinstance(scheduler, MultiStepSchedulerConfig):
                    group["scheduler"] = dataclasses.replace(
                        scheduler,
                        max_steps=scheduler.max_steps * images,
                        milestones=tuple(m * images for m in scheduler.milestones),
                    )
            CONSOLE.print(
                f"{self.config.epochs} epochs x {images} training images = {self.config.max_num_iterations} iterations"
            )
        return super().setup_optimizers()

    def setup(self, test_mode="val") -> None:
        super().setup(test_mode=test_mode)
        self.callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN], self._finish, update_every_num_iters=1))

    def train_iteration(self, step: int):
        loss, loss_dict, metrics_dict = super().train_iteration(step)
        if not torch.isfinite(loss):
            terms = ", ".join(f"{k}={float(v):.4g}" for k, v in loss_dict.items())
            raise TrainingDivergedError(
                f"neuface-ns: non-finite loss at step {step} ({terms}); training stopped without saving. "
                f"Last good checkpoint: {self._latest_checkpoint() or 'none'}. Try a lower learning rate."
            )
        return loss, loss_dict, metrics_dict

    def _latest_checkpoint(self) -> Optional[Path]:
        checkpoints = sorted(self.checkpoint_dir.glob("step-*.ckpt")) if self.checkpoint_dir.exists() else []
        return checkpoints[-1] if checkpoints else None

    def _finish(self, step: int) -> None:
        if not comms.is_main_process():  # global rank 0 only, also across machines
            return
        from neuface_ns.export import extract_mesh_to_file  # lazy: keeps trainer import light

        base = self.config.get_base_dir()
        rows = [("Config", base / "config.yml"), ("Checkpoint", self._latest_checkpoint())]
        pipeline = self.pipeline
        pipeline.eval()
        if self.config.final_eval and pipeline.datamanager.eval_dataset and len(pipeline.datamanager.eval_dataset) > 0:
            metrics = pipeline.get_average_eval_image_metrics(step=step, get_std=False)
            path = base / "eval_metrics.json"
            path.write_text(json.dumps({"step": step, "results": metrics}, indent=2))
            rows.append(("Held-out metrics", path))
            summary = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))
            CONSOLE.print(f"Held-out views: {summary}")
        if self.config.final_mesh_resolution > 0:
            mesh_path = extract_mesh_to_file(pipeline, base / "mesh.ply", resolution=self.config.final_mesh_resolution)
            rows.append(("Mesh (world units)", mesh_path))
        pipeline.train()
        CONSOLE.print("[bold green]NeuFace outputs:[/bold green]")
        for name, value in rows:
            CONSOLE.print(f"  {name:<20} {value}")
