"""NeuFaceTrainer: nerfstudio's Trainer plus what a NeuFace run needs around it.

- `epochs`: the paper counts epochs (one image per step); when set, the number of iterations and
  every multi-step learning-rate milestone are converted with the number of training images.
- A non-finite loss or gradient skips that update (optimisers and schedulers untouched), is counted
  (`skipped_updates` in the logs) and reported in one line; only `max_consecutive_bad_steps` bad steps
  in a row stop training, after saving the last good state (never a non-finite value) and saying how
  to resume. One bad batch must not cost a run; a model that keeps failing must not train on silently.
- After training: held-out metrics (`eval_metrics.json`) and the extracted mesh (`mesh.ply`, in the
  dataset's world units) are written next to the checkpoints and their paths printed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Type

import torch
import torch.distributed as dist

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
    max_steps are read as epochs (the paper presets). A --max-num-iterations below that only stops earlier."""
    final_eval: bool = True
    """Evaluate all held-out views after training and write eval_metrics.json."""
    final_mesh_resolution: int = 256
    """Marching-cubes resolution of the mesh written after training (0 = no mesh)."""
    max_consecutive_bad_steps: int = 20
    """A step whose loss or gradient is not finite is skipped; this many in a row stop training (after saving
    the last good state). 1 stops at the first one."""


class NeuFaceOptimizers(Optimizers):
    """nerfstudio's Optimizers whose `load_optimizers` (resume) first passes each saved group state through the
    model's `upgrade_optimizer_state(group, state, num_params)`: runs saved before the volume / surface model split
    resume (models/surface.py)."""

    def __init__(
        self,
        config: Dict,
        param_groups: Dict[str, List[torch.nn.Parameter]],
        upgrade: Optional[Callable[[str, Dict, int], Dict]] = None,
    ) -> None:
        super().__init__(config, param_groups)
        self.upgrade = upgrade

    def load_optimizers(self, loaded_state: Dict) -> None:
        if self.upgrade is not None:
            loaded_state = {
                name: self.upgrade(name, state, len(self.parameters[name])) if name in self.parameters else state
                for name, state in loaded_state.items()
            }
        super().load_optimizers(loaded_state)


def schedule_iterations(config: TrainerConfig, train_images: int) -> int:
    """The iterations a preset's schedule spans: epochs x training images for the epoch presets, else
    max_num_iterations (one definition for the trainer and the benchmark)."""
    epochs = getattr(config, "epochs", None)
    return epochs * train_images if epochs is not None else config.max_num_iterations


def schedule_optimizers(config: TrainerConfig, train_images: int) -> Dict[str, dict]:
    """The preset's optimiser configs with every multi-step schedule in iterations: for the epoch presets
    max_steps and milestones are read as epochs and multiplied by the training images, otherwise unchanged
    (a copy either way; one definition for the trainer and the benchmark)."""
    optimizers = {name: dict(group) for name, group in config.optimizers.items()}
    if getattr(config, "epochs", None) is None:
        return optimizers
    for group in optimizers.values():
        scheduler = group.get("scheduler")
        if isinstance(scheduler, MultiStepSchedulerConfig):
            group["scheduler"] = dataclasses.replace(
                scheduler,
                max_steps=scheduler.max_steps * train_images,
                milestones=tuple(m * train_images for m in scheduler.milestones),
            )
    return optimizers


class NeuFaceTrainer(Trainer):
    config: NeuFaceTrainerConfig

    def setup_optimizers(self) -> Optimizers:
        if self.config.epochs is not None:
            images = len(self.pipeline.datamanager.train_dataset)
            total = schedule_iterations(self.config, images)
            cap = self._explicit_iteration_cap()
            self.config.max_num_iterations = total if cap is None else min(cap, total)
            self.config.optimizers = schedule_optimizers(self.config, images)
            CONSOLE.print(
                f"{self.config.epochs} epochs x {images} training images = {total} iterations"
                + ("" if cap is None or cap >= total else f"; stopping at --max-num-iterations {cap}")
            )
        # nerfstudio's Trainer.setup_optimizers, with the optimiser states of older runs upgraded on resume.
        return NeuFaceOptimizers(
            self.config.optimizers.copy(),
            self.pipeline.get_param_groups(),
            getattr(self.pipeline.model, "upgrade_optimizer_state", None),
        )

    def _explicit_iteration_cap(self) -> Optional[int]:
        """--max-num-iterations when the user changed it from the preset's value, else None. The epoch presets
        schedule in epochs; a smaller iteration count given on the command line only stops the run earlier (it was
        silently replaced by epochs x images before, which made a short trial run of a paper preset take hours)."""
        from nerfstudio.configs.method_configs import all_methods

        preset = all_methods.get(self.config.method_name)
        if preset is None or self.config.max_num_iterations == preset.max_num_iterations:
            return None
        return int(self.config.max_num_iterations)

    def setup(self, test_mode="val") -> None:
        super().setup(test_mode=test_mode)
        self.callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN], self._finish, update_every_num_iters=1))

    def train_iteration(self, step: int):
        """nerfstudio's iteration (zero grads, forward, backward, optimiser and scheduler steps), except that a
        step whose loss or gradients are not finite changes nothing: its gradients are dropped, the optimisers
        and schedulers are not stepped."""
        needs_zero = [g for g in self.optimizers.parameters if step % self.gradient_accumulation_steps[g] == 0]
        self.optimizers.zero_grad_some(needs_zero)
        device_type = "cpu" if self.device.split(":")[0] == "mps" else self.device.split(":")[0]
        with torch.autocast(device_type=device_type, enabled=self.mixed_precision):
            _, loss_dict, metrics_dict = self.pipeline.get_train_loss_dict(step=step)
            loss = functools.reduce(torch.add, loss_dict.values())
        # backward() even for a non-finite loss: under DDP every rank must join the gradient all-reduce.
        self.grad_scaler.scale(loss).backward()  # type: ignore
        bad_grads = self._non_finite_gradients()
        if self._any_rank(not torch.isfinite(loss) or bool(bad_grads)):
            self._skip_update(step, loss_dict, bad_grads)
        else:
            self.consecutive_bad_steps = 0
            needs_step = [
                g for g in self.optimizers.parameters
                if step % self.gradient_accumulation_steps[g] == self.gradient_accumulation_steps[g] - 1
            ]
            self.optimizers.optimizer_scaler_step_some(self.grad_scaler, needs_step)
            scale = self.grad_scaler.get_scale()
            self.grad_scaler.update()
            # A reduced gradient scale means the scaler skipped the step: then the schedulers do not step either.
            if scale <= self.grad_scaler.get_scale():
                self.optimizers.scheduler_step_all(step)
        metrics_dict["skipped_updates"] = torch.tensor(float(self.skipped_updates))
        return loss, loss_dict, metrics_dict

    # Counters of the non-finite guard (class defaults, so a resumed or test-built trainer has them too).
    skipped_updates: int = 0
    consecutive_bad_steps: int = 0

    def _non_finite_gradients(self) -> List[str]:
        """Names of the parameters whose gradient holds a NaN or an infinity."""
        named = self.pipeline.model.named_parameters()
        grads = [(n, p.grad) for n, p in named if p.grad is not None]
        if not grads:
            return []
        finite = torch.stack([torch.isfinite(g).all() for _, g in grads]).cpu()
        return [name for (name, _), ok in zip(grads, finite.tolist()) if not ok]

    def _any_rank(self, flag: bool) -> bool:
        """True if `flag` is true on any process (gradients are all-reduced, the loss is not): all ranks skip together."""
        if self.world_size > 1 and dist.is_available() and dist.is_initialized():
            device = self.pipeline.model.device if dist.get_backend() == "nccl" else "cpu"
            value = torch.tensor([1.0 if flag else 0.0], device=device)
            dist.all_reduce(value, op=dist.ReduceOp.MAX)
            return bool(value.item() > 0)
        return flag

    def _skip_update(self, step: int, loss_dict: Dict[str, torch.Tensor], bad_grads: List[str]) -> None:
        for group in self.optimizers.parameters:
            self.optimizers.optimizers[group].zero_grad(set_to_none=True)
        self.skipped_updates += 1
        self.consecutive_bad_steps += 1
        terms = ", ".join(f"{k}={float(v):.4g}" for k, v in loss_dict.items())
        what = f"non-finite loss ({terms})" if not all(torch.isfinite(v) for v in loss_dict.values()) else (
            f"non-finite gradient in {len(bad_grads)} parameter(s), e.g. {bad_grads[0]}" if bad_grads else "non-finite values on another process"
        )
        limit = self.config.max_consecutive_bad_steps
        CONSOLE.print(
            f"neuface-ns: step {step}: {what}; update skipped "
            f"({self.consecutive_bad_steps} in a row, {self.skipped_updates} in this run, limit {limit})",
            soft_wrap=True,
        )
        if self.consecutive_bad_steps >= max(limit, 1):
            problem = self._non_finite_state()
            if problem is None:
                self.save_checkpoint(step)  # the last good step's parameters and optimiser states (main process)
                saved = f"The last good state is saved in {self.checkpoint_dir / f'step-{step:09d}.ckpt'}"
            else:  # finite gradients can still overflow a state (e.g. an absurd learning rate): never save that
                saved = (f"No checkpoint written: {problem} holds a non-finite value; last good checkpoint: "
                         f"{self._latest_checkpoint() or 'none'}")
            raise TrainingDivergedError(
                f"neuface-ns: training stopped at step {step}: {self.consecutive_bad_steps} steps in a row had a "
                f"non-finite loss or gradient ({what}). {saved}; resume with "
                f"`ns-train {self.config.method_name} --load-dir {self.checkpoint_dir} ...` and a lower learning rate."
            )

    def _non_finite_state(self) -> Optional[str]:
        """Where the pipeline or an optimiser state holds a NaN / inf (the first such tensor), or None."""
        pipeline = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline
        states = {"pipeline": pipeline.state_dict()}
        states.update({f"optimizer {k}": v.state_dict() for k, v in self.optimizers.optimizers.items()})
        return _first_non_finite(states)

    def save_checkpoint(self, step: int) -> None:
        """nerfstudio's checkpoint, refused (one line, nothing written) if any saved tensor is not finite."""
        problem = self._non_finite_state()
        if problem is not None:
            raise TrainingDivergedError(
                f"neuface-ns: step {step}: {problem} holds a non-finite value; no checkpoint written. "
                f"Last good checkpoint: {self._latest_checkpoint() or 'none'}."
            )
        super().save_checkpoint(step)

    def _latest_checkpoint(self) -> Optional[Path]:
        checkpoints = sorted(self.checkpoint_dir.glob("step-*.ckpt")) if self.checkpoint_dir.exists() else []
        return checkpoints[-1] if checkpoints else None

    def _finish(self, step: int) -> None:
        if not comms.is_main_process():  # global rank 0 only, also across machines
            return
        from neuface_ns.exporter import extract_mesh_to_file  # lazy: keeps trainer import light

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


def _first_non_finite(tree, prefix: str = "") -> Optional[str]:
    """The path of the first floating-point tensor holding a NaN or an infinity in a nested state, or None."""
    if torch.is_tensor(tree):
        return prefix if tree.is_floating_point() and not bool(torch.isfinite(tree).all()) else None
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return None
    for key, value in items:
        found = _first_non_finite(value, f"{prefix}.{key}" if prefix else str(key))
        if found is not None:
            return found
    return None
