"""Multi-process (DDP) training on the CPU: 2 gloo processes run nerfstudio's own `train_loop` on the presets.

`ns-train --machine.num-devices 2` cannot start CPU processes in nerfstudio 1.1.5: its `_distributed_worker`
(nerfstudio/scripts/train.py:135 and :153) asserts CUDA before any method code runs; `neuface-train`
(neuface_ns/launch.py, tested end to end in tests/test_launch.py) is the command-line way. To look inside every
rank, this test starts the processes itself and does what neuface-train's CPU worker does (init the gloo
process group, the local group, nerfstudio's `train_loop(local_rank, world_size,
config, global_rank)` = seed with machine.seed + rank, Trainer setup and train, barrier) and checks, after a few
iterations of the real trainer with NeuFacePipeline's DDP wrapping:

- every parameter and buffer (calibration latents and MLP, SH light, density beta, networks) is bit-identical on
  both ranks, and the ones that train have moved;
- the two ranks drew different rays and saw different losses (so the equality comes from the all-reduce);
- only rank 0 wrote checkpoints, each once, and the DDP checkpoint loads into a single-process pipeline.

Throughput (not a test): ``python tests/test_multidevice.py --benchmark [--iterations N] [--preset dtu]`` runs
1 and 2 processes the same way and prints rays/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Dict, List
from unittest import mock

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from neuface_ns.trainer import NeuFaceTrainer

ITERATIONS = 8
STEPS_PER_SAVE = 4  # checkpoints at step 4 and at the end (step 7)
RAYS_PER_BATCH = 256


class RecordingTrainer(NeuFaceTrainer):
    """NeuFaceTrainer that records, per rank, the rays, the losses, the checkpoint writes and the parameters."""

    def setup(self, test_mode="val") -> None:
        super().setup(test_mode=test_mode)
        self.rays: List[torch.Tensor] = []
        self.losses: List[float] = []
        self.iteration_seconds: List[float] = []
        datamanager = self.pipeline.datamanager
        next_train = datamanager.next_train

        def recording_next_train(step: int):
            ray_bundle, batch = next_train(step)
            self.rays.append(batch["indices"].detach().cpu().clone())
            return ray_bundle, batch

        datamanager.next_train = recording_next_train

    def train_iteration(self, step: int):
        start = time.perf_counter()
        loss, loss_dict, metrics_dict = super().train_iteration(step)
        self.iteration_seconds.append(time.perf_counter() - start)
        self.losses.append(float(loss))
        return loss, loss_dict, metrics_dict

    def train(self) -> None:
        model = self.pipeline.model
        initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
        wrapped = self.pipeline._model
        with mock.patch.object(torch, "save", wraps=torch.save) as save:
            start = time.perf_counter()
            super().train()
            train_seconds = time.perf_counter() - start
        checkpoints = [Path(call.args[1]).name for call in save.call_args_list if str(call.args[1]).endswith(".ckpt")]
        record = {
            "rank": dist.get_rank() if dist.is_initialized() else 0,
            "wrapper": type(wrapped).__name__,
            "device_ids": getattr(wrapped, "device_ids", "n/a"),
            "initial": initial,
            "final": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "rays": self.rays,
            "losses": self.losses,
            "iteration_seconds": self.iteration_seconds,
            "train_seconds": train_seconds,
            "checkpoints_written": checkpoints,
            "checkpoint_dir": str(self.checkpoint_dir),
        }
        torch.save(record, Path(self.config.output_dir) / f"record-rank{record['rank']}.pt")


def _worker(local_rank: int, world_size: int, init_method: str, config) -> None:
    """What nerfstudio's `_distributed_worker` does, with gloo and without its CUDA asserts."""
    from nerfstudio.scripts.train import train_loop
    from nerfstudio.utils import comms

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=init_method, world_size=world_size, rank=local_rank, timeout=timedelta(minutes=5)
    )
    comms.LOCAL_PROCESS_GROUP = dist.new_group(list(range(world_size)))
    train_loop(local_rank, world_size, config, global_rank=local_rank)
    comms.synchronize()
    dist.destroy_process_group()


def _config(preset: str, output_dir: Path, iterations: int, **model_settings):
    from neuface_ns.configs import dtu, facescape

    presets = {"dtu": dtu.cpu_default, "facescape": facescape.cpu_default, "facescape-relight": facescape.relightable}
    config = presets[preset]()
    for name, value in model_settings.items():
        setattr(config.pipeline.model, name, value)
    config._target = RecordingTrainer
    config.machine.device_type = "cpu"
    config.output_dir = output_dir
    config.vis = "tensorboard"
    config.logging.local_writer.enable = False
    config.max_num_iterations = iterations
    config.steps_per_save = STEPS_PER_SAVE
    config.steps_per_eval_image = 10_000
    config.final_eval = False
    config.final_mesh_resolution = 0
    config.pipeline.datamanager.train_num_rays_per_batch = RAYS_PER_BATCH
    field = config.pipeline.model.sdf_field
    field.sdf_network.hidden_dim = 64
    field.appearance.hidden_dim = 32
    field.integrated_basis.hidden_dim = 32
    config.set_timestamp()
    return config


def run(preset: str, world_size: int, output_dir: Path, iterations: int = ITERATIONS, **model_settings) -> List[Dict]:
    """Train `iterations` steps with `world_size` CPU processes; the per-rank records."""
    output_dir.mkdir(parents=True, exist_ok=True)
    config = _config(preset, output_dir, iterations, **model_settings)
    if world_size == 1:
        from nerfstudio.scripts.train import train_loop

        train_loop(0, 1, config)
    else:
        init_method = f"file://{output_dir.resolve()}/rendezvous"
        mp.spawn(_worker, args=(world_size, init_method, config), nprocs=world_size, join=True)
    return [torch.load(output_dir / f"record-rank{rank}.pt", weights_only=False) for rank in range(world_size)]


# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["dtu", "facescape"])
def two_ranks(request, tmp_path_factory):
    """neuface-dtu (surface rendering, beta unused) and neuface-facescape (volume rendering, residual SDF,
    mask-box sampler), each trained ITERATIONS steps by 2 gloo processes."""
    output_dir = tmp_path_factory.mktemp(f"ddp-{request.param}")
    return request.param, output_dir, run(request.param, 2, output_dir)


def test_ranks_are_wrapped_for_cpu(two_ranks):
    _, _, records = two_ranks
    for record in records:
        assert record["wrapper"] == "DistributedDataParallel"
        assert record["device_ids"] is None  # CPU: no device ids (nerfstudio passes [local_rank])


def test_parameters_identical_across_ranks(two_ranks):
    preset, _, (rank0, rank1) = two_ranks
    assert rank0["final"].keys() == rank1["final"].keys()
    differing = [k for k in rank0["final"] if not torch.equal(rank0["final"][k], rank1["final"][k])]
    assert not differing, f"parameters differ between ranks: {differing}"
    # DDP broadcast rank 0's initial state (the ranks were seeded differently), then both trained.
    assert all(torch.equal(rank0["initial"][k], rank1["initial"][k]) for k in rank0["initial"])
    moved = {k for k in rank0["final"] if not torch.equal(rank0["initial"][k], rank0["final"][k])}
    trained = ["light.coefficients", "calibration.latents", "calibration.mlp."]
    trained += ["field.sdf_network.", "field.appearance.", "field.integrated_basis."]
    if preset == "facescape":
        trained.append("field.residual.")
    for prefix in trained:
        matches = [k for k in rank0["final"] if k.startswith(prefix)]
        assert matches, f"no parameter {prefix}* in {sorted(rank0['final'])}"
        assert any(k in moved for k in matches), f"{prefix}* did not train"
    beta = "density.beta_param"
    if preset == "facescape":  # volume rendering uses the Laplace density
        assert beta in moved
    else:  # surface rendering never uses it: unused by DDP, unchanged
        assert beta not in moved


def test_ranks_sample_different_rays(two_ranks):
    _, _, (rank0, rank1) = two_ranks
    assert len(rank0["rays"]) == len(rank1["rays"]) == ITERATIONS
    for step, (a, b) in enumerate(zip(rank0["rays"], rank1["rays"])):
        assert a.shape == b.shape == (RAYS_PER_BATCH, 3)
        assert not torch.equal(a, b), f"both ranks drew the same rays at step {step}"
    assert rank0["losses"] != rank1["losses"]


def test_checkpoints_written_once_by_rank0(two_ranks):
    preset, output_dir, (rank0, rank1) = two_ranks
    expected = [f"step-{step:09d}.ckpt" for step in (STEPS_PER_SAVE, ITERATIONS - 1)]
    assert rank0["checkpoints_written"] == expected
    assert rank1["checkpoints_written"] == []
    config = _config(preset, output_dir / "reload", ITERATIONS)
    kept = expected[-1:] if config.save_only_latest_checkpoint else expected  # nerfstudio's default: latest only
    checkpoint_dir = Path(rank0["checkpoint_dir"])
    assert sorted(p.name for p in checkpoint_dir.glob("*.ckpt")) == kept

    # The DDP checkpoint (`_model.module.*` keys) loads into a single-process pipeline.
    from neuface_ns.pipeline import NeuFacePipeline

    pipeline = config.pipeline.setup(device="cpu", test_mode="val")
    assert isinstance(pipeline, NeuFacePipeline) and pipeline._model is pipeline.model
    state = torch.load(checkpoint_dir / expected[-1], map_location="cpu", weights_only=False)
    assert any(k.startswith("_model.module.") for k in state["pipeline"])
    pipeline.load_pipeline(state["pipeline"], state["step"])
    loaded = pipeline.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in rank0["final"].items())


def test_relight_preset_trains_past_its_light_first_steps(tmp_path):
    """`neuface-facescape-relight` on 2 ranks: the light-first loss's constant albedo, used only for its first steps,
    must still give DDP a gradient afterwards; without one the next step stops with "Expected to have finished
    reduction in the prior iteration"."""
    rank0, rank1 = run("facescape-relight", 2, tmp_path, light_first_steps=3)
    assert len(rank0["losses"]) == len(rank1["losses"]) == ITERATIONS
    assert all(torch.equal(rank0["final"][k], rank1["final"][k]) for k in rank0["final"])
    assert not torch.equal(rank0["initial"]["light.coefficients"], rank0["final"]["light.coefficients"])


def test_world_size_without_process_group_is_a_clear_error(tmp_path):
    config = _config("dtu", tmp_path, ITERATIONS)
    with pytest.raises(RuntimeError, match="process group"):
        config.pipeline.setup(device="cpu", test_mode="val", world_size=2, local_rank=0)


# ---------------------------------------------------------------------------------------------------------------


def _benchmark() -> None:
    parser = argparse.ArgumentParser(description="1- vs 2-process CPU training throughput (gloo DDP)")
    parser.add_argument("--benchmark", action="store_true")
    parser.add_argument("--preset", default="dtu", choices=["dtu", "facescape"])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--output-dir", type=Path, default=Path("/tmp/neuface-multidevice-benchmark"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average before: {os.getloadavg()}  cpus: {os.cpu_count()}")
    for world_size in (1, 2):
        output_dir = args.output_dir / f"{args.preset}-{world_size}-{time.time_ns()}"
        records = run(args.preset, world_size, output_dir, args.iterations)
        skip = min(3, args.iterations - 1)  # warm-up steps
        per_rank = [statistics.median(r["iteration_seconds"][skip:]) for r in records]
        slowest = max(per_rank)
        wall = max(r["train_seconds"] for r in records)
        print(
            f"{world_size} process(es): median step {slowest * 1000:.1f} ms, "
            f"{world_size * RAYS_PER_BATCH / slowest:.0f} rays/s (median step); "
            f"{world_size * RAYS_PER_BATCH * args.iterations / wall:.0f} rays/s over the whole loop ({wall:.1f} s)"
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    if "--benchmark" not in sys.argv:
        sys.exit("usage: python tests/test_multidevice.py --benchmark [--preset dtu] [--iterations 30]")
    _benchmark()
