"""Training-step stress test: many short seeded runs of a preset, every step checked for a finite loss (each
term) and finite gradients (each parameter).

The trainer skips a non-finite step instead of failing (trainer.py), so a rare NaN would only show up as a
counter; this runs the step without that guard and stops at the first non-finite value with the step, the term
or parameter and the settings that reproduce it. `tests/test_stress.py` runs a small grid in CI;
`python scripts/benchmark.py --stress ...` runs a longer one.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch


class NonFiniteStep(AssertionError):
    """A loss term or a gradient was NaN / inf at some step of a stress run."""


@dataclass
class StressResult:
    method: str
    data: str
    seed: int
    threads: int
    steps: int
    seconds: float
    final_loss: float
    hit_fraction: float
    """Fraction of the last step's rays with accumulation > 0.1 (a run that sees nothing tests nothing; volume
    rendering at the initial beta reaches about 0.4 on a hit)."""


def set_config_fields(config, overrides: Dict[str, object]) -> None:
    """Set dotted-path fields of a trainer config ("pipeline.model.num_samples": 16); the benchmark and the stress
    test share it. Raises AttributeError naming the missing part.

    "pipeline.model.render_mode": "volume" / "surface" replaces the model config by the other renderer's class
    with the same shared settings (neuface_ns.models.with_render_mode); later overrides then apply to it."""
    from neuface_ns.models import NeuFaceBaseModelConfig, with_render_mode

    for path, value in overrides.items():
        *parents, leaf = path.split(".")
        owner, holder = config, None
        for name in parents:  # dataclass fields, or dictionary keys (the optimisers: "optimizers.fields.scheduler")
            holder = owner
            owner = owner.get(name) if isinstance(owner, dict) else getattr(owner, name, None)
            if owner is None:
                raise AttributeError(f"the config has no {name!r}")
        if leaf == "render_mode" and isinstance(owner, NeuFaceBaseModelConfig) and holder is not None:
            setattr(holder, parents[-1], with_render_mode(owner, value))
            continue
        if isinstance(owner, dict):
            if leaf not in owner:
                raise AttributeError(f"the config has no {leaf!r}")
            owner[leaf] = value
            continue
        if not hasattr(owner, leaf):
            raise AttributeError(f"{type(owner).__name__} has no field {leaf!r}")
        setattr(owner, leaf, value)


def build_stress_pipeline(method: str, data: Optional[Path], seed: int, overrides: Dict[str, object]):
    """The registered preset `method` on `data` with dotted-path `overrides`, its pipeline and optimisers (CPU)."""
    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.engine.optimizers import Optimizers

    config = copy.deepcopy(all_methods[method])
    set_config_fields(config, overrides)
    if data is not None:
        config.pipeline.datamanager.data = data
        config.pipeline.datamanager.dataparser.data = data
    torch.manual_seed(seed)
    np.random.seed(seed)
    pipeline = config.pipeline.setup(device="cpu", test_mode="val")
    optimizers = Optimizers(copy.deepcopy(config.optimizers), pipeline.get_param_groups())
    return config, pipeline, optimizers


def stress_run(
    method: str,
    data: Optional[Path] = None,
    steps: int = 200,
    seed: int = 0,
    threads: int = 1,
    overrides: Optional[Dict[str, object]] = None,
) -> StressResult:
    """Train `steps` steps; raise NonFiniteStep at the first non-finite loss term or gradient."""
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        config, pipeline, optimizers = build_stress_pipeline(method, data, seed, overrides or {})
        model = pipeline.model
        attributes = TrainingCallbackAttributes(optimizers=optimizers, grad_scaler=None, pipeline=pipeline, trainer=None)
        callbacks = pipeline.get_training_callbacks(attributes)
        where = f"{method} data={data or 'bundled'} seed={seed} threads={threads} overrides={overrides or {}}"
        pipeline.train()
        start = time.perf_counter()
        loss = torch.zeros(())
        hit_fraction = 0.0
        for step in range(steps):
            for callback in callbacks:
                callback.run_callback_at_location(step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
            optimizers.zero_grad_all()
            ray_bundle, batch = pipeline.datamanager.next_train(step)
            outputs = model(ray_bundle)
            loss_dict = model.get_loss_dict(outputs, batch, model.get_metrics_dict(outputs, batch))
            for name, value in loss_dict.items():
                if not bool(torch.isfinite(value)):
                    raise NonFiniteStep(f"step {step}: {name} = {float(value)} ({where})")
            loss = sum(loss_dict.values())
            loss.backward()
            for name, parameter in model.named_parameters():
                if parameter.grad is not None and not bool(torch.isfinite(parameter.grad).all()):
                    raise NonFiniteStep(f"step {step}: gradient of {name} is not finite ({where})")
            optimizers.optimizer_step_all()
            optimizers.scheduler_step_all(step)
            hit_fraction = float((outputs["accumulation"].detach() > 0.1).float().mean())
        return StressResult(
            method=method,
            data=str(data or "bundled"),
            seed=seed,
            threads=threads,
            steps=steps,
            seconds=time.perf_counter() - start,
            final_loss=float(loss.detach()),
            hit_fraction=hit_fraction,
        )
    finally:
        torch.set_num_threads(previous_threads)


def stress_grid(
    runs: Sequence[tuple], seeds: Sequence[int], threads: Sequence[int], steps: int, log=print
) -> List[StressResult]:
    """Every (method, data, overrides) in `runs` x seed x thread count; returns the results, raises at the first
    non-finite step."""
    results = []
    for method, data, overrides in runs:
        for seed in seeds:
            for count in threads:
                result = stress_run(method, data, steps=steps, seed=seed, threads=count, overrides=overrides)
                log(
                    f"stress: {method} {result.data} seed {seed} threads {count}: {steps} finite steps in "
                    f"{result.seconds:.1f} s, final loss {result.final_loss:.4f}, hits {result.hit_fraction:.2f}"
                )
                results.append(result)
    return results
