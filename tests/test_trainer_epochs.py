"""The paper presets count epochs (iterations = epochs x training images, learning-rate milestones in epochs);
an explicit, smaller --max-num-iterations stops such a run earlier instead of being silently replaced (a short trial
of `neuface-dtu-paper --max-num-iterations 300` ran 34 000 steps before)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def _paper_trainer(tmp_path: Path, max_num_iterations=None):
    from neuface_ns.configs import dtu

    config = dtu.paper()
    config.machine.device_type = "cpu"
    config.output_dir = tmp_path
    config.vis = "tensorboard"
    config.logging.local_writer.enable = False
    if max_num_iterations is not None:
        config.max_num_iterations = max_num_iterations
    config.set_timestamp()
    torch.manual_seed(0)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    return trainer


@pytest.mark.parametrize("asked", [None, 30, 10**9])
def test_epochs_set_the_iterations_and_a_smaller_explicit_count_caps_them(tmp_path, asked):
    trainer = _paper_trainer(tmp_path, asked)
    images = len(trainer.pipeline.datamanager.train_dataset)
    assert images > 1
    total = 2000 * images  # the DTU paper preset: 2000 epochs
    expected = total if asked is None else min(asked, total)
    assert trainer.config.max_num_iterations == expected
    # the schedule stays in epochs either way: lr x 0.5 at epochs 1000 and 1500
    scheduler = trainer.config.optimizers["fields"]["scheduler"]
    assert tuple(scheduler.milestones) == (1000 * images, 1500 * images)


def test_schedule_optimizers_converts_epoch_schedules_only():
    from neuface_ns.configs import dtu
    from neuface_ns.trainer import schedule_optimizers

    paper = schedule_optimizers(dtu.paper(), 7)["fields"]["scheduler"]
    assert tuple(paper.milestones) == (7000, 10500) and paper.max_steps == 14000  # epochs 1000 / 1500 / 2000 x 7
    default = dtu.cpu_default()
    assert schedule_optimizers(default, 7)["fields"]["scheduler"] == default.optimizers["fields"]["scheduler"]


def test_benchmark_halves_the_paper_lr_at_the_trainers_milestone(load_script):
    """The benchmark builds its optimisers with the trainer's conversion (they had drifted: it kept the milestones
    in epochs, so the paper preset's lr halved at step 1000 instead of epoch 1000)."""
    benchmark = load_script("benchmark")
    _, pipeline, optimizers = benchmark.build("neuface-dtu-paper", None, torch.device("cpu"), 0)
    images = len(pipeline.datamanager.train_dataset)
    scheduler = optimizers.schedulers["fields"]
    base = scheduler.get_last_lr()[0]
    for _ in range(1000 * images - 1):
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(base)  # still before epoch 1000
    scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(0.5 * base)
