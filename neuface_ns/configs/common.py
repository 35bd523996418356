"""Pieces shared by the presets: device choice, data manager, optimisers."""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch

from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.pixel_samplers import PixelSamplerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import MultiStepSchedulerConfig

from neuface_ns.data.dataset import NeuFaceDataset
from neuface_ns.pipeline import NeuFacePipelineConfig
from neuface_ns.trainer import NeuFaceTrainerConfig


def default_machine() -> MachineConfig:
    """nerfstudio defaults to CUDA; pick the CPU by itself where there is none."""
    return MachineConfig(device_type="cuda" if torch.cuda.is_available() else "cpu")


def datamanager(
    dataparser,
    rays_per_batch: int,
    images_per_batch: int = -1,
    pixel_sampler: Optional[PixelSamplerConfig] = None,
    dataset: type = NeuFaceDataset,
    collate_fn: Optional[Callable] = None,
) -> VanillaDataManagerConfig:
    """The one data manager of every preset. images_per_batch = 1 with a fresh image every step is the paper's DTU
    sampling; -1 caches every image once (a pixel sampler such as the FaceScape mask-box one then picks pixels).
    FaceScape passes its dataset and `variable_res_collate` (its cameras mix resolutions)."""
    extra = {} if collate_fn is None else {"collate_fn": collate_fn}
    if pixel_sampler is not None:
        extra["pixel_sampler"] = pixel_sampler
    return VanillaDataManagerConfig(
        _target=VanillaDataManager[dataset],
        data=dataparser.data,  # names the experiment after the scene; `--data` overrides both
        dataparser=dataparser,
        train_num_rays_per_batch=rays_per_batch,
        eval_num_rays_per_batch=rays_per_batch,
        train_num_images_to_sample_from=images_per_batch,
        train_num_times_to_repeat_images=0 if images_per_batch > 0 else -1,
        **extra,
    )


def optimizers(
    lr: float,
    max_steps: int,
    milestones: Tuple[int, ...],
    light_lr: float,
    calibration_lr: float,
    grid_lr: float = 1e-2,
    prior_lr: Optional[float] = None,
    latent_lr: Optional[float] = None,
) -> Dict[str, dict]:
    """The one optimiser builder: Adam (eps 1e-15) + step decay x 0.5 at `milestones` for every param group.
    "appearance_grid" is used only by a grid appearance (TriplaneAppearanceConfig: feature planes want a higher
    lr); "prior" / "prior_latents" (the face presets) only by a shape prior declaring those groups."""

    def group(group_lr: float) -> dict:
        return {
            "optimizer": AdamOptimizerConfig(lr=group_lr, eps=1e-15),
            "scheduler": MultiStepSchedulerConfig(max_steps=max_steps, gamma=0.5, milestones=tuple(milestones)),
        }

    groups = {"fields": group(lr), "light": group(light_lr), "calibration": group(calibration_lr)}
    if prior_lr is not None:
        groups["prior"] = group(prior_lr)
    if latent_lr is not None:
        groups["prior_latents"] = group(latent_lr)
    groups["appearance_grid"] = group(grid_lr)
    return groups


def viewer() -> ViewerConfig:
    return ViewerConfig(num_rays_per_chunk=2048, quit_on_train_completion=True)


def trainer_config(method_name: str, datamanager, model, optimizers, **settings) -> NeuFaceTrainerConfig:
    """What every NeuFace preset shares (no per-step eval batches, no mixed precision, the device picked
    by itself, the DDP-aware pipeline, the viewer settings); `settings` are the preset's own
    trainer fields (iterations or epochs, eval / save cadence, vis, final mesh resolution)."""
    return NeuFaceTrainerConfig(
        method_name=method_name,
        steps_per_eval_batch=0,
        steps_per_eval_all_images=0,
        mixed_precision=False,
        machine=default_machine(),
        pipeline=NeuFacePipelineConfig(datamanager=datamanager, model=model),
        optimizers=optimizers,
        viewer=viewer(),
        **settings,
    )
