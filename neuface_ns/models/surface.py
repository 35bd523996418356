"""NeuFaceSurfaceModel: IDR surface rendering with the mask loss (docs/method.md sections 2 and 4, DTU variant).

The colour is evaluated once per ray, at IDR's differentiable surface point on the traced hit, so colour gradients
move the surface; rays that the network and the object mask disagree on are supervised by IDR's mask loss on the
smallest SDF along the ray, whose sharpness alpha doubles at milestones. There is no density (and no beta).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Literal, Optional, Tuple, Type

import torch
import torch.nn.functional as F

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation

from neuface_ns import losses
from neuface_ns.models.base import (
    OPTIONAL_SHADED_OUTPUTS,
    SHADED_OUTPUTS,
    NeuFaceBaseModel,
    NeuFaceBaseModelConfig,
    TracedRays,
    counted_rays,
    scatter_rays,
)
from neuface_ns.render.surface import differentiable_surface_points

#: State-dict key of the density beta that runs trained before the volume / surface split stored in surface mode
#: too (it never trained there); dropped when such a checkpoint is loaded.
LEGACY_UNUSED_KEYS = ("density.beta_param",)


@dataclass
class NeuFaceSurfaceModelConfig(NeuFaceBaseModelConfig):
    """NeuFace with IDR surface rendering and the mask loss (DTU / objects). Defaults are the paper's."""

    RENDERER: ClassVar[str] = "surface"

    _target: Type = field(default_factory=lambda: NeuFaceSurfaceModel)
    min_sdf_steps: Optional[int] = None
    """Uniform samples of the min-SDF search for the mask loss; None = dense_steps (IDR)."""
    min_sdf_parabolic_steps: int = 0
    """> 0: refine the min-SDF search with this many parabolic-interpolation steps (12 samples + 1 step place the
    minimum better than 100 uniform samples); 0 = IDR's uniform search."""
    mask_loss_mult: float = 100.0
    """IDR's mask loss weight."""
    mask_alpha: float = 50.0
    mask_alpha_milestones: Tuple[int, ...] = (250, 500, 750, 1000, 1250)
    """alpha doubles at each milestone."""
    milestone_unit: Literal["epochs", "steps"] = "epochs"
    """epochs: milestones x number of training images (the paper draws one image per step)."""


class NeuFaceSurfaceModel(NeuFaceBaseModel):
    """IDR surface rendering at the traced hit, the mask loss on the rays' smallest SDF."""

    config: NeuFaceSurfaceModelConfig

    def populate_modules(self):
        super().populate_modules()
        self.current_mask_alpha = self.config.mask_alpha
        self._register_load_state_dict_pre_hook(_drop_legacy_keys)

    def upgrade_optimizer_state(self, group: str, state: Dict[str, Any], num_params: int) -> Dict[str, Any]:
        """A "fields" state saved by the pre-split model in surface mode holds one parameter more: the density beta,
        last in the group, never stepped (no per-parameter entry). It is dropped so that the run resumes."""
        params = state["param_groups"][0]["params"] if len(state.get("param_groups", ())) == 1 else []
        if group != "fields" or len(params) != num_params + 1:
            return state
        beta = params[-1]
        groups = [{**state["param_groups"][0], "params": params[:-1]}]
        return {**state, "state": {k: v for k, v in state["state"].items() if k != beta}, "param_groups": groups}

    def _trace_options(self) -> Dict[str, Any]:
        # The mask loss needs, in training, the distance of the smallest SDF along each missed ray.
        return {
            "find_min_sdf": self.training,
            "min_sdf_steps": self.config.min_sdf_steps,
            "min_sdf_parabolic_steps": self.config.min_sdf_parabolic_steps,
        }

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        epoch = max(self.num_train_data, 1) if self.config.milestone_unit == "epochs" else 1
        milestones = [m * epoch for m in self.config.mask_alpha_milestones]

        def set_mask_alpha(step: int) -> None:
            # Derived from the step alone, so a resumed run continues with the right alpha.
            self.current_mask_alpha = self.config.mask_alpha * 2 ** sum(step >= m for m in milestones)

        return [
            *super().get_training_callbacks(training_callback_attributes),
            TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], set_mask_alpha, update_every_num_iters=1),
        ]

    def get_metrics_dict(self, outputs, batch) -> Dict[str, torch.Tensor]:
        return {**super().get_metrics_dict(outputs, batch), "mask_alpha": torch.tensor(float(self.current_mask_alpha))}

    def _render(self, rays: TracedRays) -> Dict[str, torch.Tensor]:
        """Shading at the hit (the differentiable surface point in training); in training also the mask-loss
        inputs "network_hit", "min_sdf", "mask_rays" and IDR's eikonal points (the hits plus one uniform point per
        ray in the bounding cube). See NeuFaceBaseModel._render for the outputs."""
        n = rays.count
        hits = rays.hit.nonzero().squeeze(-1)
        dirs = rays.directions[hits]
        x0 = rays.origins[hits] + rays.trace.t_hit[hits, None] * dirs
        sdf0, gradient0, residual = self.field.sdf_and_gradient(x0, create_graph=self.training)
        points = differentiable_surface_points(x0, dirs, sdf0, gradient0) if self.training else x0
        normals = F.normalize(gradient0, dim=-1)
        shaded = self._shade(points, normals, -dirs)
        per_ray = {name: shaded[name] for name in SHADED_OUTPUTS}
        per_ray.update({name: shaded[name] for name in OPTIONAL_SHADED_OUTPUTS if name in shaded})
        per_ray["normal_vector"] = normals
        per_ray["depth"] = rays.trace.t_hit[hits, None]
        per_ray["accumulation"] = torch.ones_like(per_ray["depth"])
        outputs = scatter_rays(per_ray, hits, n)
        if self.training:
            outputs["network_hit"] = rays.hit[:, None]
            r = self.config.bounding_sphere_radius
            uniform = (torch.rand(n, 3, device=rays.origins.device) * 2 - 1) * r
            _, gradient_uniform, _ = self.field.sdf_and_gradient(uniform, create_graph=True)
            outputs["eikonal_gradients"] = torch.cat([gradient0, gradient_uniform], dim=0)
            outputs["light_values"] = torch.cat([shaded["light_integral"], shaded["irradiance"]], dim=0)
            if "albedo_pairs" in shaded:  # the albedo-smoothness loss's inputs, per shaded point
                weight = torch.ones_like(shaded["albedo"][:, :1])
                outputs["albedo_pairs"] = torch.cat([shaded["albedo_pairs"], weight], dim=-1)
            if residual is not None:
                outputs["residual_sdf"] = residual
            outputs["min_sdf"] = self._min_sdf(rays, hits, sdf0)
            outputs["mask_rays"] = rays.valid[:, None]
        return outputs

    def _min_sdf(self, rays: TracedRays, hits: torch.Tensor, sdf_at_hits: torch.Tensor) -> torch.Tensor:
        """[N, 1] mask-loss input: the SDF at the hit for hit rays, the smallest SDF along the ray for the other
        valid rays (with gradient), 0 for rays outside the bounding sphere."""
        missed = (rays.valid & ~rays.hit).nonzero().squeeze(-1)
        min_sdf = torch.zeros(rays.count, 1, device=rays.origins.device)
        min_sdf = min_sdf.index_put((hits,), sdf_at_hits)
        if missed.numel() > 0:
            x_min = rays.origins[missed] + rays.trace.t_min_sdf[missed, None] * rays.directions[missed]
            min_sdf = min_sdf.index_put((missed,), self.field.sdf(x_min))
        return min_sdf

    def _colour_losses(self, outputs, batch, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        """IDR's colour loss on rays inside the object mask that the network hits, and its mask loss on the rays
        where the two disagree (weighted)."""
        cfg = self.config
        object_mask = batch["fg_mask"].to(self.device).reshape(-1, 1) > 0.5
        hit = outputs["network_hit"]
        counted = counted_rays(batch, self.device)  # rays on an uncertain mask edge teach neither term
        counted = torch.ones_like(hit) if counted is None else counted.reshape(-1, 1)
        loss_dict: Dict[str, torch.Tensor] = {}
        if cfg.color_loss_mult > 0:
            selected_color = (hit & object_mask & counted).reshape(-1)
            loss_dict["color_loss"] = cfg.color_loss_mult * losses.color_loss(outputs["rgb"], image, selected_color)
        if cfg.mask_loss_mult > 0:
            selected_mask = (~(hit & object_mask) & outputs["mask_rays"] & counted).reshape(-1)
            loss_dict["mask_loss"] = cfg.mask_loss_mult * losses.idr_mask_loss(
                outputs["min_sdf"], object_mask, selected_mask, self.current_mask_alpha
            )
        return loss_dict


def _drop_legacy_keys(state_dict, prefix, *args) -> None:
    """load_state_dict pre-hook: a checkpoint of the single pre-split model in surface mode also holds the
    (never trained) density beta; the surface model has none, so the key is dropped."""
    for key in LEGACY_UNUSED_KEYS:
        state_dict.pop(prefix + key, None)
