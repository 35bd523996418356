"""neuface-train: ns-train, plus multi-process training on the CPU (gloo).

Why this exists: nerfstudio 1.1.5's ``ns-train --machine.num-devices N`` (N > 1) cannot start CPU processes.
Its spawned worker, `_distributed_worker` in ``nerfstudio/scripts/train.py``, asserts
``torch.cuda.is_available()`` (line 135) and ``num_devices_per_machine <= torch.cuda.device_count()`` (line 153)
before any method code runs, although it would pick gloo for the CPU. NeuFacePipeline already wraps the model in
DDP on the CPU; only the launcher is missing.

`neuface-train` has ns-train's command line exactly (nerfstudio's tyro union of every registered method, the
``--data`` / ``--prompt`` aliases and ``--load-config`` as in nerfstudio's `main`). It reuses nerfstudio's
`train_loop`, `_find_free_port`, `launch` and `comms`, and replaces only the multi-process worker when
``machine.device_type == "cpu"``. On CUDA (NCCL), MPS and for one process it hands over to nerfstudio's `launch`.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import tyro
import yaml

from nerfstudio.configs.base_config import MachineConfig
from nerfstudio.configs.config_utils import convert_markup_to_ansi
from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.scripts import train as ns_train
from nerfstudio.utils import comms, profiler
from nerfstudio.utils.rich_utils import CONSOLE

from neuface_ns.errors import ConfigError


def _threads_per_process(processes: int) -> int:
    """The cores shared out: N processes each running PyTorch's default (one OpenMP thread per core) would
    oversubscribe the CPU N times, and spinning OpenMP threads then make every step several times slower (2
    processes x 2 threads on 2 cores is much slower than 2 x 1). An explicit OMP_NUM_THREADS lower than the
    share is kept."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(torch.get_num_threads(), cores // processes))


def _cpu_worker(local_rank: int, config: TrainerConfig, dist_url: str, timeout: timedelta) -> None:
    """nerfstudio's `_distributed_worker` without its CUDA asserts: gloo group, per-machine group, train_loop."""
    machine = config.machine
    world_size = machine.num_machines * machine.num_devices
    global_rank = machine.machine_rank * machine.num_devices + local_rank
    threads = _threads_per_process(machine.num_devices)
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=dist_url, world_size=world_size, rank=global_rank, timeout=timeout)
    for i in range(machine.num_machines):  # every rank must create every group, in the same order
        group = dist.new_group(list(range(i * machine.num_devices, (i + 1) * machine.num_devices)))
        if i == machine.machine_rank:
            comms.LOCAL_PROCESS_GROUP = group
    CONSOLE.log(f"neuface-train: rank {global_rank} of world size {world_size} (gloo, {threads} torch threads)")
    ns_train.train_loop(local_rank, world_size, config, global_rank)
    comms.synchronize()
    dist.destroy_process_group()


def _launch_cpu(config: TrainerConfig, timeout: timedelta = ns_train.DEFAULT_TIMEOUT) -> None:
    """Spawn machine.num_devices gloo processes on this machine and wait for all of them."""
    machine = config.machine
    dist_url = machine.dist_url
    if dist_url == "auto":  # one machine only (checked in _check_machine)
        dist_url = f"tcp://127.0.0.1:{ns_train._find_free_port()}"
    CONSOLE.log(
        f"neuface-train: starting {machine.num_devices} CPU training processes on machine {machine.machine_rank} "
        f"(gloo, world size {machine.num_machines * machine.num_devices}, {dist_url})"
    )
    context = mp.spawn(_cpu_worker, args=(config, dist_url, timeout), nprocs=machine.num_devices, join=False)
    try:
        while not context.join():  # join() returns after each process; a failure stops the others and raises
            pass
    except mp.ProcessExitedException as error:  # e.g. a SystemExit (one-line error) in a worker, already printed
        raise SystemExit(f"neuface-train: training process {error.error_index} exited with code {error.exit_code}")
    except KeyboardInterrupt:
        for process in context.processes:
            if process.is_alive():
                process.terminate()
            process.join()
    finally:
        profiler.flush_profiler(config.logging)


def _check_machine(machine: MachineConfig) -> None:
    """One-line errors for what nerfstudio would only assert on (or hang on) later."""
    if machine.num_devices < 1 or machine.num_machines < 1:
        raise ConfigError(
            f"--machine.num-devices ({machine.num_devices}) and --machine.num-machines ({machine.num_machines}) "
            "must be at least 1"
        )
    if not 0 <= machine.machine_rank < machine.num_machines:
        raise ConfigError(
            f"--machine.machine-rank {machine.machine_rank} is not in 0..{machine.num_machines - 1} "
            f"(--machine.num-machines {machine.num_machines})"
        )
    if machine.dist_url == "auto" and machine.num_machines > 1:
        raise ConfigError("--machine.dist-url auto only works on one machine; give tcp://<rank-0 host>:<port>")


def main(config: TrainerConfig) -> None:
    """nerfstudio's `main` (aliases, --load-config, timestamp, config.yml), then the launcher for the device."""
    if config.data:
        CONSOLE.log("Using --data alias for --data.pipeline.datamanager.data")
        config.pipeline.datamanager.data = config.data
    if config.prompt:
        CONSOLE.log("Using --prompt alias for --data.pipeline.model.prompt")
        config.pipeline.model.prompt = config.prompt
    if config.load_config:
        CONSOLE.log(f"Loading pre-set config from: {config.load_config}")
        config = yaml.load(config.load_config.read_text(), Loader=yaml.Loader)
    machine = config.machine
    _check_machine(machine)
    # Set once here, before spawning: every rank writes into (and only rank 0 saves to) the same run directory.
    config.set_timestamp()
    config.print_to_terminal()
    config.save_config()
    if machine.device_type == "cpu" and machine.num_machines * machine.num_devices > 1:
        _launch_cpu(config)
    else:
        ns_train.launch(
            main_func=ns_train.train_loop,
            num_devices_per_machine=machine.num_devices,
            device_type=machine.device_type,
            num_machines=machine.num_machines,
            machine_rank=machine.machine_rank,
            dist_url=machine.dist_url,
            config=config,
        )


def entrypoint() -> None:
    """Console script `neuface-train`: the same tyro union of methods as nerfstudio's `ns-train` entrypoint."""
    tyro.extras.set_accent_color("bright_yellow")
    description = "neuface-train: ns-train that also runs --machine.num-devices N > 1 on the CPU (gloo).\n\n"
    main(tyro.cli(AnnotatedBaseConfigUnion, description=convert_markup_to_ansi(description + (ns_train.__doc__ or ""))))


if __name__ == "__main__":
    entrypoint()
