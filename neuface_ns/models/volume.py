"""NeuFaceVolumeModel: NeuFace's near-surface volume rendering (docs/method.md section 2, the face presets).

Rays that hit get `num_samples` uniform samples in [t_hit - w, t_hit + w]; rays that miss get them between their
two bounding-sphere intersections (this replaces IDR's mask loss). Densities are VolSDF's Laplace CDF of the SDF
with a learnable beta (the model's own parameter), composited with the last interval infinite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Dict, List, Literal, Type

import torch
import torch.nn.functional as F
from torch.nn import Parameter

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
from neuface_ns.render.tracing import ray_sphere_intersection
from neuface_ns.render.volume import LaplaceDensity, compositing_weights, near_surface_distances


@dataclass
class NeuFaceVolumeModelConfig(NeuFaceBaseModelConfig):
    """NeuFace with near-surface volume rendering (faces). Defaults are the paper's face settings."""

    RENDERER: ClassVar[str] = "volume"

    _target: Type = field(default_factory=lambda: NeuFaceVolumeModel)
    # Volume rendering (docs/method.md section 2, steps 2-3).
    num_samples: int = 32
    near_surface_half_width: float = 0.005
    beta_init: float = 0.01
    beta_min: float = 1e-4
    infinite_last_interval: bool = True
    uncertain_pixels: Literal["ignore", "black_or_image"] = "black_or_image"
    """The colour loss on the pixels a loss mask marks uncertain (only captures have loss masks: their mask edges
    and the sphere cuts the visual hull leaves open). "black_or_image": the L1 to black (the pixel's first surface
    lies outside the face sphere) or to the photo (inside it), whichever is smaller; "ignore": skipped, which
    leaves the surface there free and lets it grow at the sphere's edge (a processed capture trained to 3.24 mm
    face Chamfer with "ignore", 2.02 mm with "black_or_image"; README, "Your own face")."""
    background_mask_loss_mult: float = 0.0
    """Not in the paper (0 = off): IDR's mask loss (alpha `background_mask_alpha`, fixed) on the rays the tracer
    hits although their mask says background, at the SDF of the hit. Without it a surface outside the mask costs
    nothing as long as its colour is black (the background colour): on the path-traced scan the face preset grew
    such black flaps past the scan's open rim. With it (10) they go, but the sheet then closes into a solid whose
    back the side views see: face Chamfer 0.93 -> 1.67 mm there (docs/performance-log.md), so it stays off; not
    measured on a whole head. Rays on a capture's uncertain pixels are left out."""
    background_mask_alpha: float = 50.0
    eval_min_sample_weight: float = 1e-4
    """Eval / viewer only: samples with a smaller compositing weight are not shaded (their colour would change a
    pixel by < 1e-4 x radiance each). 0 shades every sample. Training always shades all."""


class NeuFaceVolumeModel(NeuFaceBaseModel):
    """Near-surface volume rendering around the traced hit; owns the Laplace density (its beta)."""

    config: NeuFaceVolumeModelConfig

    def populate_modules(self):
        super().populate_modules()
        self.density = LaplaceDensity(self.config.beta_init, self.config.beta_min)

    def _renderer_parameters(self) -> List[Parameter]:
        return list(self.density.parameters())

    def get_metrics_dict(self, outputs, batch) -> Dict[str, torch.Tensor]:
        return {**super().get_metrics_dict(outputs, batch), "beta": self.density.beta.detach()}

    def _colour_losses(self, outputs, batch, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The mean L1 colour loss; on a capture's uncertain pixels as `uncertain_pixels` says."""
        counted = counted_rays(batch, self.device)
        if counted is None or self.config.uncertain_pixels == "ignore" or self.config.color_loss_mult <= 0:
            return super()._colour_losses(outputs, batch, image)
        loss = losses.black_or_image_color_loss(outputs["rgb"], image, counted)
        return {"color_loss": self.config.color_loss_mult * loss}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, torch.Tensor]:
        loss_dict = super().get_loss_dict(outputs, batch, metrics_dict)
        cfg = self.config
        if cfg.background_mask_loss_mult > 0 and batch.get("fg_mask") is not None and "hit_sdf" in outputs:
            object_mask = batch["fg_mask"].to(self.device).reshape(-1, 1) > 0.5
            selected = outputs["network_hit"] & ~object_mask
            counted = counted_rays(batch, self.device)
            if counted is not None:
                selected = selected & counted.reshape(-1, 1)
            loss_dict["background_mask_loss"] = cfg.background_mask_loss_mult * losses.idr_mask_loss(
                outputs["hit_sdf"], object_mask, selected.reshape(-1), cfg.background_mask_alpha
            )
        return loss_dict

    def _infinite_last(self, rays: TracedRays) -> torch.Tensor:
        """[N] bool: whether a ray's last interval is infinite. The infinite last interval (docs/method.md
        section 2) stands for "the ray ends at the bounding sphere"; a ray the caller cut short with its own far
        (nerfstudio's mesh texturing) must not paint what lies beyond."""
        infinite_last = torch.full_like(rays.valid, self.config.infinite_last_interval)
        if rays.bundle_fars is not None:
            _, sphere_exit, _ = ray_sphere_intersection(rays.origins, rays.directions, self.config.bounding_sphere_radius)
            infinite_last = infinite_last & (rays.bundle_fars >= sphere_exit)
        return infinite_last

    def _render(self, rays: TracedRays) -> Dict[str, torch.Tensor]:
        """Samples around the hit (or across the sphere for misses), Laplace densities, compositing weights; the
        shading of the samples that matter, composited per ray. See NeuFaceBaseModel._render for the outputs."""
        n, s = rays.count, self.config.num_samples
        rendered = rays.valid.nonzero().squeeze(-1)
        t = near_surface_distances(
            rays.trace.t_hit[rendered], rays.hit[rendered], rays.t_near[rendered], rays.t_far[rendered], s,
            self.config.near_surface_half_width,
        )  # [M, S]
        dirs = rays.directions[rendered]
        points = (rays.origins[rendered, None, :] + t[..., None] * dirs[:, None, :]).reshape(-1, 3)
        view_out = (-dirs[:, None, :]).expand(-1, s, -1).reshape(-1, 3)
        if self.training:
            sdf, gradient, residual = self.field.sdf_and_gradient(points, create_graph=True)
        else:
            with torch.no_grad():
                sdf, gradient, residual = self.field.sdf(points), None, None
        weights, opacity = compositing_weights(
            self.density(sdf).reshape(-1, s), t, infinite_last=self._infinite_last(rays)[rendered]
        )
        # Samples to shade: all of them in training; at eval (viewer, ns-eval, ns-render) only those whose weight
        # reaches eval_min_sample_weight: most rays miss the object and their samples carry ~0 weight.
        flat_weights = weights.reshape(-1)
        if self.training or self.config.eval_min_sample_weight <= 0:
            shaded_samples = torch.arange(flat_weights.shape[0], device=points.device)
        else:
            shaded_samples = (flat_weights >= self.config.eval_min_sample_weight).nonzero().squeeze(-1)
        if gradient is None:
            # Normals for the kept samples only: their SDF is evaluated a second time, with the gradient, which is
            # far cheaper than the gradient at every sample when most samples are dropped.
            _, gradient, _ = self.field.sdf_and_gradient(points[shaded_samples], create_graph=False)
        normals = F.normalize(gradient, dim=-1)
        shaded = self._shade(points[shaded_samples], normals, view_out[shaded_samples])
        sample_ray = shaded_samples // s  # samples are stored ray-major, s per ray
        sample_weight = flat_weights[shaded_samples, None]

        def composite_shaded(values: torch.Tensor) -> torch.Tensor:
            """sum_i w_i v_i per ray over the shaded samples."""
            out = torch.zeros(rendered.shape[0], values.shape[-1], device=values.device, dtype=values.dtype)
            return out.index_add(0, sample_ray, sample_weight * values)

        per_ray = {name: composite_shaded(shaded[name]) for name in SHADED_OUTPUTS}
        per_ray.update({name: composite_shaded(shaded[name]) for name in OPTIONAL_SHADED_OUTPUTS if name in shaded})
        per_ray["normal_vector"] = composite_shaded(normals)
        per_ray["depth"] = (weights * t).sum(-1, keepdim=True) / weights.sum(-1, keepdim=True).clamp(min=1e-10)
        per_ray["accumulation"] = opacity
        outputs = scatter_rays(per_ray, rendered, n)
        if self.training:
            outputs["eikonal_gradients"] = gradient
            if self.config.background_mask_loss_mult > 0:  # the SDF at each traced hit, with its gradient
                hits = rays.hit.nonzero().squeeze(-1)
                x0 = rays.origins[hits] + rays.trace.t_hit[hits, None] * rays.directions[hits]
                outputs["hit_sdf"] = torch.zeros(n, 1, device=x0.device).index_put((hits,), self.field.sdf(x0))
                outputs["network_hit"] = rays.hit[:, None]
            outputs["light_values"] = torch.cat([shaded["light_integral"], shaded["irradiance"]], dim=0)
            if "albedo_pairs" in shaded:  # the albedo-smoothness loss's inputs, per shaded point
                weight = sample_weight.detach()  # near-surface samples count, empty space does not
                outputs["albedo_pairs"] = torch.cat([shaded["albedo_pairs"], weight], dim=-1)
            if residual is not None:
                outputs["residual_sdf"] = residual
        return outputs
