"""NeuFacePipeline: nerfstudio's VanillaPipeline with a DistributedDataParallel wrapping that also works on
the CPU (gloo) and with NeuFace's double backward.

nerfstudio 1.1.5 (`pipelines/base_pipeline.py`, VanillaPipeline.__init__) wraps the model with
``DDP(model, device_ids=[local_rank], find_unused_parameters=True)`` and then calls
``dist.barrier(device_ids=[local_rank])`` (base_pipeline.py:281-283); for a model on the CPU, DDP rejects the
device ids ("ValueError: DistributedDataParallel device_ids and output_device arguments only work with
single-device/multiple-device GPU modules or CPU modules"). Here the pipeline is built by VanillaPipeline as
one process and the model is wrapped afterwards with the device ids that fit its device: ``[index]`` of
``cuda:index`` (one process per GPU, what ns-train's launcher sets up), ``None`` on the CPU.

Why the multi-process run is consistent (`world_size > 1`):

- Everything NeuFace learns is a parameter of the wrapped model and is only changed by the optimisers from
  gradients of one ``loss.backward()``: the per-image calibration latents and their MLP, the SH light, the density
  beta (volume rendering), the SDF / residual / appearance / integrated-basis networks and the face prior's latents. DDP broadcasts
  rank 0's parameters and buffers when it wraps the model (each rank was seeded with ``seed + rank`` and so
  initialised differently) and averages the gradients in backward, so every rank takes the same optimiser step.
  The calibration's max-norm is applied in forward, not written into the parameter; the mask-loss alpha is a
  function of the step alone; the buffers are constants.
- The SDF gradient (normals, eikonal loss) is ``torch.autograd.grad(sdf, points, create_graph=True)`` inside
  forward. It differentiates with respect to the sample points only, so no parameter's gradient accumulator runs
  (and no DDP hook fires) in forward; the parameters' gradients, including the double-backward terms, arrive in
  the single ``backward``, where each accumulator runs once.
- No ``find_unused_parameters`` (nerfstudio passes True): every parameter that requires a gradient gets one at
  every step. The density beta belongs to the volume-rendering model only (models/volume.py), and nerfstudio's
  ``Model.device_indicator_param``, which no loss reaches, is marked ``requires_grad=False`` (models/base.py), so
  DDP does not wait for it. Without the search for unused parameters DDP does not walk the autograd graph after
  every forward. The model's outputs reach every parameter that the loss uses (the face prior's latents are inputs
  of its decoder, so the latent loss in ``get_loss_dict`` adds to a parameter already in the forward graph), so
  nothing is reported ready twice; a batch in which no ray hits the surface still reaches the appearance networks
  (with empty inputs, zero gradients).
- Only ``loss.backward()`` synchronises. The eval, viewer and export code call the unwrapped ``pipeline.model``,
  so rank 0 alone can evaluate or extract the mesh without a collective that the other ranks would have to join.
- Each rank draws different rays: nerfstudio's ``train_loop`` seeds python / numpy / torch with
  ``machine.seed + global_rank`` and the pixel samplers (nerfstudio's and MaskBBoxPixelSampler) draw from those
  global generators.
- Checkpoints are written by rank 0 only (nerfstudio's ``Trainer.save_checkpoint`` is ``@check_main_thread``);
  they hold ``_model.module.*`` keys, which ``load_pipeline`` / ``eval_setup`` strip.

Known limit, nerfstudio 1.1.5 itself: ``ns-train --machine.num-devices N`` with N > 1 on a machine without CUDA
stops in ``nerfstudio/scripts/train.py`` `_distributed_worker` at ``assert torch.cuda.is_available()`` (line
135) and ``assert num_devices_per_machine <= torch.cuda.device_count()`` (line 153), before any method code runs.
On the CPU, use ``neuface-train`` (``neuface_ns/launch.py``): ns-train's command line, whose CPU worker creates
the gloo group and runs nerfstudio's ``train_loop`` in each process (``tests/test_launch.py``;
``tests/test_multidevice.py`` starts the gloo processes itself to inspect every rank). On CUDA machines ns-train's
launcher (and neuface-train, which hands over to it) creates the NCCL group and this pipeline wraps with
``device_ids=[local_rank]`` as nerfstudio does.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Literal, Optional, Type

import torch.distributed as dist
from torch.cuda.amp.grad_scaler import GradScaler
from torch.nn.parallel import DistributedDataParallel as DDP

from nerfstudio.models.base_model import Model
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig


@dataclass
class NeuFacePipelineConfig(VanillaPipelineConfig):
    """VanillaPipelineConfig whose multi-process wrapping also runs on the CPU (gloo)."""

    _target: Type = field(default_factory=lambda: NeuFacePipeline)


class NeuFacePipeline(VanillaPipeline):
    config: NeuFacePipelineConfig

    def __init__(
        self,
        config: NeuFacePipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: Optional[GradScaler] = None,
    ):
        # Built as one process (VanillaPipeline's own DDP wrapping is CUDA-only), wrapped below. The datamanager's
        # world_size only sets its image-loading thread count.
        super().__init__(
            config, device, test_mode=test_mode, world_size=1, local_rank=local_rank, grad_scaler=grad_scaler
        )
        self.world_size = world_size
        if world_size > 1:
            if not dist.is_available() or not dist.is_initialized():
                raise RuntimeError(
                    f"neuface-ns: world_size={world_size} needs an initialised torch.distributed process group "
                    "(ns-train's launcher creates it for --machine.num-devices > 1)"
                )
            model_device = self.model.device
            # One process per GPU (the model on cuda:<local rank>, as nerfstudio's Trainer places it); None on the CPU.
            device_ids = [model_device.index or 0] if model_device.type == "cuda" else None
            self._model = typing.cast(
                Model,
                DDP(
                    self._model,
                    device_ids=device_ids,
                    # Every parameter that requires a gradient gets one (module docstring): no unused parameters.
                    find_unused_parameters=False,
                    # The buffers are constants (SH tables, frequency scales, the prior's centre), identical on
                    # every rank and synchronised once when wrapping: no per-step broadcast.
                    broadcast_buffers=False,
                ),
            )
            dist.barrier(device_ids=device_ids)
