"""The trainer's non-finite guard (neuface_ns/trainer.py) on a real NeuFaceTrainer: a step with a NaN loss or a
NaN gradient changes nothing (parameters, Adam moments and step counts, learning-rate schedule), is counted and
reported; training goes on; only `max_consecutive_bad_steps` bad steps in a row stop it, after saving the last
good state; a checkpoint with a non-finite value is never written."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from neuface_ns.errors import TrainingDivergedError
from neuface_ns.trainer import NeuFaceTrainer


def _trainer(tmp_path: Path, max_bad: int = 3) -> NeuFaceTrainer:
    from neuface_ns.configs import dtu

    config = dtu.cpu_default()
    config.machine.device_type = "cpu"
    config.output_dir = tmp_path
    config.vis = "tensorboard"
    config.logging.local_writer.enable = False
    config.max_num_iterations = 100
    config.final_eval = False
    config.final_mesh_resolution = 0
    config.max_consecutive_bad_steps = max_bad
    config.pipeline.datamanager.train_num_rays_per_batch = 64
    field = config.pipeline.model.sdf_field
    field.sdf_network.hidden_dim = 64
    field.appearance.hidden_dim = 16
    field.integrated_basis.hidden_dim = 16
    config.set_timestamp()
    torch.manual_seed(0)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    return trainer


def _snapshot(trainer: NeuFaceTrainer):
    return {
        "params": {k: v.detach().clone() for k, v in trainer.pipeline.model.state_dict().items()},
        "optimizers": copy.deepcopy({k: o.state_dict() for k, o in trainer.optimizers.optimizers.items()}),
        "schedulers": copy.deepcopy({k: s.state_dict() for k, s in trainer.optimizers.schedulers.items()}),
    }


def _assert_same(a, b):
    for key in a["params"]:
        assert torch.equal(a["params"][key], b["params"][key]), key
    for group in a["optimizers"]:
        state_a, state_b = a["optimizers"][group]["state"], b["optimizers"][group]["state"]
        assert state_a.keys() == state_b.keys(), group
        for index in state_a:
            for name, value in state_a[index].items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(state_b[index][name])), (group, index, name)
    assert a["schedulers"] == b["schedulers"]


def _poison_loss(trainer, steps, kind: str):
    """Make get_loss_dict return a NaN colour loss (kind="loss") or a loss whose gradient is NaN (kind="grad")
    at the given steps."""
    model = trainer.pipeline.model
    original = model.get_loss_dict
    state = {"step": None}

    def poisoned(outputs, batch, metrics_dict=None):
        loss_dict = original(outputs, batch, metrics_dict)
        if state["step"] in steps:
            if kind == "loss":
                loss_dict["color_loss"] = loss_dict["color_loss"] * float("nan")
            else:  # finite value, NaN gradient: sqrt'(0) * 0 = inf * 0
                loss_dict["poison"] = torch.sqrt(model.light.coefficients[0, 0] * 0.0) * 0.0
        return loss_dict

    model.get_loss_dict = poisoned
    return state


@pytest.mark.parametrize("kind", ["loss", "grad"])
def test_a_bad_step_changes_nothing_and_training_goes_on(tmp_path, kind, capsys):
    trainer = _trainer(tmp_path)
    state = _poison_loss(trainer, {2}, kind)
    for step in range(2):
        state["step"] = step
        trainer.train_iteration(step)
    before = _snapshot(trainer)
    state["step"] = 2
    loss, loss_dict, metrics = trainer.train_iteration(2)
    assert trainer.skipped_updates == 1 and trainer.consecutive_bad_steps == 1
    assert float(metrics["skipped_updates"]) == 1.0
    _assert_same(before, _snapshot(trainer))
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if "update skipped" in line]
    assert len(lines) == 1 and "step 2" in lines[0]
    assert ("non-finite loss" if kind == "loss" else "non-finite gradient") in lines[0]
    # the next good step trains as usual and resets the run of bad steps
    state["step"] = 3
    trainer.train_iteration(3)
    assert trainer.consecutive_bad_steps == 0 and trainer.skipped_updates == 1
    after = _snapshot(trainer)
    assert not torch.equal(after["params"]["field.sdf_network.layers.0.parametrizations.weight.original1"],
                           before["params"]["field.sdf_network.layers.0.parametrizations.weight.original1"])
    for group, sched in after["schedulers"].items():
        assert sched["last_epoch"] == before["schedulers"][group]["last_epoch"] + 1, group


def test_consecutive_bad_steps_stop_with_the_last_good_state_saved(tmp_path):
    trainer = _trainer(tmp_path, max_bad=3)
    state = _poison_loss(trainer, set(range(2, 100)), "loss")
    for step in range(2):
        state["step"] = step
        trainer.train_iteration(step)
    good = _snapshot(trainer)
    state["step"] = 2
    trainer.train_iteration(2)
    state["step"] = 3
    trainer.train_iteration(3)
    state["step"] = 4
    with pytest.raises(TrainingDivergedError) as stopped:
        trainer.train_iteration(4)
    message = str(stopped.value)
    assert "\n" not in message
    assert "3 steps in a row" in message and "--load-dir" in message
    checkpoint = trainer.checkpoint_dir / "step-000000004.ckpt"
    assert str(checkpoint) in message and checkpoint.is_file()
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    for key, value in good["params"].items():
        assert torch.equal(saved["pipeline"][f"_model.{key}"], value), key
        assert torch.isfinite(value).all() or not value.is_floating_point(), key


def test_a_checkpoint_with_a_non_finite_value_is_refused(tmp_path):
    trainer = _trainer(tmp_path)
    with torch.no_grad():
        trainer.pipeline.model.light.coefficients[3, 1] = float("inf")
    with pytest.raises(TrainingDivergedError, match=r"light\.coefficients holds a non-finite value"):
        trainer.save_checkpoint(7)
    assert not list(trainer.checkpoint_dir.glob("*.ckpt"))
