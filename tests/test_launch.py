"""`neuface-train` (neuface_ns/launch.py): the real console script trains with 2 CPU (gloo) processes.

One module fixture starts, side by side, a 6-iteration 2-process run on the bundled DTU sample and a run with a bad
option; the checks read their logs and outputs. DDP correctness itself (identical parameters, different rays) is
tested in tests/test_multidevice.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nerfstudio.configs.base_config import MachineConfig

from neuface_ns.errors import ConfigError
from neuface_ns.launch import _check_machine

NEUFACE_TRAIN = Path(sys.executable).with_name("neuface-train")
ITERATIONS = 6
STEPS_PER_SAVE = 3  # checkpoints at step 3 and at the end (step 5)

FLAGS = [
    "--machine.num-devices", "2",
    "--max-num-iterations", str(ITERATIONS),
    "--steps-per-save", str(STEPS_PER_SAVE),
    "--save-only-latest-checkpoint", "False",  # keep every checkpoint: each save step must appear once
    "--vis", "tensorboard",
    "--final-mesh-resolution", "32",  # the preset's 192 costs more than the training here
    "--pipeline.datamanager.train-num-rays-per-batch", "256",
]


def _start(args, log_dir: Path, name: str) -> subprocess.Popen:
    env = dict(os.environ)
    # one intra-op thread per process (see tests/test_train_e2e.py); a wide console keeps log lines whole
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore", COLUMNS="200")
    out, err = open(log_dir / f"{name}.stdout", "w"), open(log_dir / f"{name}.stderr", "w")
    return subprocess.Popen([str(NEUFACE_TRAIN), "neuface-dtu", *args], stdout=out, stderr=err, env=env, cwd=log_dir)


def _finish(proc: subprocess.Popen, log_dir: Path, name: str, timeout: float = 300):
    try:
        rc = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return rc, (log_dir / f"{name}.stdout").read_text(), (log_dir / f"{name}.stderr").read_text()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("launch")
    train = _start([*FLAGS, "--output-dir", str(root / "out")], root, "train")
    bad = _start(["--machine.num-devices", "2", "--machine.num-machines", "2", "--output-dir", str(root / "out_bad")],
                 root, "bad")
    return {"root": root, "bad": _finish(bad, root, "bad"), "train": _finish(train, root, "train")}


@pytest.fixture(scope="module")
def run_dir(runs):
    rc, stdout, stderr = runs["train"]
    assert rc == 0, f"neuface-train failed (rc={rc}):\n{stdout[-3000:]}\n{stderr[-3000:]}"
    configs = sorted((runs["root"] / "out").glob("**/config.yml"))
    assert len(configs) == 1, configs  # one run directory: rank 1 did not make its own
    return configs[0].parent


def test_two_processes_train_and_write_outputs_once(runs, run_dir):
    _, stdout, _ = runs["train"]
    assert "starting 2 CPU training processes" in stdout
    for rank in (0, 1):
        assert f"rank {rank} of world size 2 (gloo, 1 torch threads)" in stdout, stdout[-3000:]
    checkpoints = sorted(p.name for p in (run_dir / "nerfstudio_models").iterdir())
    assert checkpoints == [f"step-{step:09d}.ckpt" for step in (STEPS_PER_SAVE, ITERATIONS - 1)]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1  # rank 0 logs
    # NeuFaceTrainer's after-training outputs: rank 0 only, once
    assert stdout.count("NeuFace outputs:") == 1 and stdout.count("Held-out views:") == 1
    assert json.loads((run_dir / "eval_metrics.json").read_text())["step"] == ITERATIONS - 1
    assert (run_dir / "mesh.ply").stat().st_size > 0


def test_ddp_checkpoint_loads_through_eval_setup(run_dir):
    from nerfstudio.utils.eval_utils import eval_setup

    checkpoint = run_dir / "nerfstudio_models" / f"step-{ITERATIONS - 1:09d}.ckpt"
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)["pipeline"]
    model_keys = [k for k in saved if k.startswith("_model.")]
    assert model_keys and all(k.startswith("_model.module.") for k in model_keys)  # saved from the DDP wrapper

    config, pipeline, checkpoint_path, step = eval_setup(run_dir / "config.yml", test_mode="test")
    assert config.machine.num_devices == 2 and step == ITERATIONS - 1 and Path(checkpoint_path) == checkpoint
    assert pipeline._model is pipeline.model  # a single-process pipeline: no wrapper
    state = pipeline.model.state_dict()
    for key in model_keys:
        assert torch.equal(state[key[len("_model.module."):]].cpu(), saved[key]), key


def test_bad_option_is_one_line(runs):
    rc, stdout, stderr = runs["bad"]
    assert rc != 0
    assert "Traceback" not in stdout + stderr
    assert stderr.strip().splitlines()[-1] == (
        "neuface-ns: configuration: --machine.dist-url auto only works on one machine; give tcp://<rank-0 host>:<port>"
    )
    assert not (runs["root"] / "out_bad").exists()  # stopped before writing config.yml


@pytest.mark.parametrize(
    "machine, message",
    [
        (MachineConfig(num_devices=0), "--machine.num-devices"),
        (MachineConfig(num_machines=0), "--machine.num-machines"),
        (MachineConfig(num_machines=2, machine_rank=2, dist_url="tcp://127.0.0.1:1"), "--machine.machine-rank"),
        (MachineConfig(num_machines=2, dist_url="auto"), "--machine.dist-url auto"),
    ],
)
def test_bad_machine_settings_are_config_errors(machine, message):
    with pytest.raises(ConfigError, match=message) as error:
        _check_machine(machine)
    assert isinstance(error.value, SystemExit) and "\n" not in str(error.value)
