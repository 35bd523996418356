"""NeuFaceModel: wires the SDF field, the tracer, the volume / surface renderers, the SH light,
the low-rank BRDF and the photometric calibration into a nerfstudio `Model`.

Data flow per ray: bounding sphere -> sphere tracing (no grad) -> samples around the hit
(volume mode) or the differentiable surface point (surface mode) -> SDF, normals and material
-> diffuse (SH irradiance) + specular (SH light integral x neural BRDF) -> compositing ->
per-image 3x3 colour calibration.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from torch.nn import Parameter

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.model_components.renderers import RGBRenderer
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps
from nerfstudio.utils.rich_utils import CONSOLE

from neuface_ns import losses
from neuface_ns.calibration import PhotometricCalibration
from neuface_ns.eval import describe_protocol, masked_image_metrics, predicted_mask
from neuface_ns.fields.neuface_field import NeuFaceField, NeuFaceFieldConfig
from neuface_ns.lighting.light import SHEnvironmentLight
from neuface_ns.lighting.settings import active_override
from neuface_ns.render.shading import shade
from neuface_ns.render.surface import differentiable_surface_points
from neuface_ns.render.tracing import ray_sphere_intersection, sphere_trace, trace_interval
from neuface_ns.render.volume import LaplaceDensity, compositing_weights, near_surface_distances
from neuface_ns.viewer import LIGHTING_PANEL, LightingControls

#: Outputs shown by the viewer, in its "Output type" order (rgb first = the default).
DISPLAY_OUTPUTS = ("rgb", "albedo", "diffuse", "specular", "roughness", "normal", "depth", "accumulation")


@dataclass
class NeuFaceModelConfig(ModelConfig):
    """NeuFace model. Defaults are the paper's face settings; neuface_ns/configs/ builds the presets."""

    _target: Type = field(default_factory=lambda: NeuFaceModel)
    sdf_field: NeuFaceFieldConfig = field(default_factory=NeuFaceFieldConfig)
    """SDF + BRDF networks (the attribute name `sdf_field` is what nerfstudio's exporter looks for)."""
    render_mode: Literal["volume", "surface"] = "volume"
    """volume: near-surface volume rendering (faces); surface: IDR surface rendering + mask loss (DTU)."""
    sh_order: int = 10
    bounding_sphere_radius: float = 1.0
    # Sphere tracing (docs/method.md section 2, step 1).
    trace_iterations: int = 10
    trace_threshold: float = 5e-4
    dense_steps: int = 100
    secant_steps: int = 8
    min_sdf_steps: Optional[int] = None
    """Uniform samples of the min-SDF search for the mask loss (surface mode); None = dense_steps (IDR)."""
    min_sdf_parabolic_steps: int = 0
    """> 0: refine the min-SDF search with this many parabolic-interpolation steps (12 samples + 1 step place the
    minimum better than 100 uniform samples); 0 = IDR's uniform search."""
    # Volume rendering (steps 2-3).
    num_samples: int = 32
    near_surface_half_width: float = 0.005
    beta_init: float = 0.01
    beta_min: float = 1e-4
    infinite_last_interval: bool = True
    eval_min_sample_weight: float = 1e-4
    """Volume mode, eval / viewer only: samples with a smaller compositing weight are not shaded (their colour
    would change a pixel by < 1e-4 x radiance each). 0 shades every sample. Training always shades all."""
    # Calibration.
    calibration_latent_dim: int = 50
    eval_latent: str = "mean"
    """Calibration latent for held-out views and the viewer: "mean" or a training image index."""
    # Loss weights (paper preset), 0 switches a term off.
    color_loss_mult: float = 1.0
    eikonal_loss_mult: float = 0.1
    white_light_loss_mult: float = 0.005
    specular_energy_loss_mult: float = 0.008
    residual_loss_mult: float = 0.001
    latent_loss_mult: float = 1000.0
    mask_loss_mult: float = 100.0
    """IDR mask loss, surface mode only."""
    mask_alpha: float = 50.0
    mask_alpha_milestones: Tuple[int, ...] = (250, 500, 750, 1000, 1250)
    """alpha doubles at each milestone."""
    milestone_unit: Literal["epochs", "steps"] = "epochs"
    """epochs: milestones x number of training images (the paper draws one image per step)."""
    eval_num_rays_per_chunk: int = 2048
    eval_ssim: Literal["masked-image", "pixel-list"] = "masked-image"
    """ssim_masked on the masked images (the project's protocol) or over the list of mask pixels (NeuFace's
    scripts); see neuface_ns/eval.py."""
    eval_mask: Literal["gt", "predicted"] = "gt"
    """Mask of the colour fit and the masked metrics: the ground truth's, or the network's (accumulation > 0.5,
    NeuFace's DTU script)."""


class NeuFaceModel(Model):
    config: NeuFaceModelConfig

    def populate_modules(self):
        super().populate_modules()
        self.collider = None  # the bounding sphere is handled by the tracer
        self.field: NeuFaceField = self.config.sdf_field.setup()
        self.light = SHEnvironmentLight(self.config.sh_order)
        self.calibration = PhotometricCalibration(self.num_train_data, self.config.calibration_latent_dim)
        self.density = LaplaceDensity(self.config.beta_init, self.config.beta_min)
        self.renderer_rgb = RGBRenderer(background_color="black")  # read by nerfstudio's get_rgba_image
        self.current_mask_alpha = self.config.mask_alpha
        # Viewer panel "NeuFace lighting" (relight, toggle terms when not training); no parameters, so
        # checkpoints are unchanged, and it never writes to self.light.
        self.add_module(LIGHTING_PANEL, LightingControls(self.config.sh_order))

    @property
    def lighting_controls(self) -> LightingControls:
        return self._modules[LIGHTING_PANEL]

    # ------------------------------------------------------------------ nerfstudio hooks
    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        prior = self.field.sdf_network
        latents = list(prior.latent_parameters().values())
        network = list(prior.network_parameters())
        # A pretrained prior declares `param_group = "prior"` on its config: its weights are then
        # fine-tuned with their own optimiser (lr / 100 in the face paper preset); an untrained P
        # (the IDR MLP) trains with the other networks in "fields".
        prior_group = getattr(prior.config, "param_group", "fields")
        # A grid appearance (tri-plane) gives its feature planes a group of their own, with a grid-sized lr.
        grid = self.field.appearance.grid_parameters()
        grid_ids = {id(p) for p in grid}
        groups = {
            "fields": [
                p for n, p in self.field.named_parameters() if not n.startswith("sdf_network.") and id(p) not in grid_ids
            ]
            + (network if prior_group == "fields" else [])
            + list(self.density.parameters()),
            "light": list(self.light.parameters()),
            "calibration": list(self.calibration.parameters()),
        }
        if grid:
            groups[getattr(self.field.appearance.config, "param_group", "appearance_grid")] = grid
        if prior_group != "fields" and network:
            groups[prior_group] = network
        if latents:
            groups["prior_latents"] = latents
        return groups

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        epoch = max(self.num_train_data, 1) if self.config.milestone_unit == "epochs" else 1
        milestones = [m * epoch for m in self.config.mask_alpha_milestones]

        def set_mask_alpha(step: int) -> None:
            # Derived from the step alone, so a resumed run continues with the right alpha.
            self.current_mask_alpha = self.config.mask_alpha * 2 ** sum(step >= m for m in milestones)

        return [TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], set_mask_alpha, update_every_num_iters=1)]

    def _fixed_latent_index(self) -> Optional[int]:
        if self.config.eval_latent == "mean":
            return None
        index = int(self.config.eval_latent)
        if not 0 <= index < self.calibration.latents.shape[0]:
            raise ValueError(f"eval_latent={index} is out of range (0..{self.calibration.latents.shape[0] - 1})")
        return index

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, torch.Tensor]:
        origins = ray_bundle.origins.reshape(-1, 3)
        directions = F.normalize(ray_bundle.directions.reshape(-1, 3), dim=-1)
        t_near, t_far, valid = trace_interval(
            origins, directions, self.config.bounding_sphere_radius, ray_bundle.nears, ray_bundle.fars
        )
        t_near = torch.where(valid, t_near, torch.zeros_like(t_near))
        t_far = torch.where(valid, t_far, torch.zeros_like(t_far))
        trace = sphere_trace(
            self.field.sdf,
            origins,
            directions,
            t_near,
            t_far,
            max_iterations=self.config.trace_iterations,
            threshold=self.config.trace_threshold,
            dense_steps=self.config.dense_steps,
            secant_steps=self.config.secant_steps,
            find_min_sdf=self.training and self.config.render_mode == "surface",
            min_sdf_steps=self.config.min_sdf_steps,
            min_sdf_parabolic_steps=self.config.min_sdf_parabolic_steps,
        )
        hit = trace.hit & valid

        if self.training and ray_bundle.camera_indices is not None:
            matrices = self.calibration.matrices(ray_bundle.camera_indices, None)
        else:
            matrices = self.calibration.matrices(None, self._fixed_latent_index())

        if self.config.render_mode == "volume":
            # The infinite last interval (docs/method.md section 2) stands for "the ray ends at the bounding sphere"; a ray the
            # caller cut short with its own far (nerfstudio's mesh texturing) must not paint what lies beyond.
            infinite_last = torch.full_like(valid, self.config.infinite_last_interval)
            if ray_bundle.fars is not None:
                _, sphere_exit, _ = ray_sphere_intersection(origins, directions, self.config.bounding_sphere_radius)
                infinite_last = infinite_last & (ray_bundle.fars.reshape(-1) >= sphere_exit)
            outputs = self._render_volume(origins, directions, trace.t_hit, hit, t_near, t_far, valid, infinite_last)
        else:
            outputs = self._render_surface(origins, directions, trace, hit, valid)

        outputs = self._calibrated_display(outputs, matrices)
        if not self.training:
            outputs = self._non_finite_as_misses({k: v.detach() for k, v in outputs.items() if k in DISPLAY_OUTPUTS})
        return outputs

    # Rays drawn as misses because the network returned NaN / inf for them (eval only; see _non_finite_as_misses).
    non_finite_rays: int = 0
    _non_finite_reported_at: float = float("-inf")

    def _non_finite_as_misses(self, outputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Rays with any non-finite output become misses (every output 0: black, no surface, no depth), so a
        diverged network can still be viewed, evaluated, rendered and exported; they are counted in
        `non_finite_rays` and reported by get_outputs_for_camera_ray_bundle."""
        n = outputs["rgb"].shape[0]
        bad = torch.zeros(n, dtype=torch.bool, device=outputs["rgb"].device)
        for value in outputs.values():
            bad |= ~torch.isfinite(value.reshape(n, -1)).all(-1)
        count = int(bad.sum())
        if count == 0:
            return outputs
        self.non_finite_rays += count
        return {k: torch.where(bad[:, None], torch.zeros_like(v), v) for k, v in outputs.items()}

    @torch.no_grad()
    def get_outputs_for_camera_ray_bundle(self, camera_ray_bundle: RayBundle) -> Dict[str, torch.Tensor]:
        """nerfstudio's chunked rendering of an image (viewer, ns-eval, ns-render, exports), plus one line when
        some of its rays returned non-finite values (at most one line every 5 s, so the viewer does not flood)."""
        before = self.non_finite_rays
        outputs = super().get_outputs_for_camera_ray_bundle(camera_ray_bundle)
        count = self.non_finite_rays - before
        if count and time.monotonic() - self._non_finite_reported_at > 5.0:
            self._non_finite_reported_at = time.monotonic()
            CONSOLE.print(
                f"[yellow]neuface-ns: {count} of {len(camera_ray_bundle)} rays returned non-finite values and are "
                f"drawn as misses (black, no surface); {self.non_finite_rays} such rays so far[/yellow]",
                soft_wrap=True,
            )
        return outputs

    # ------------------------------------------------------------------ shading
    def _shade(self, points: torch.Tensor, normals: torch.Tensor, view_out: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Diffuse + specular radiance at surface/sample points (docs/method.md section 3; render/shading.py); outside
        training under the relight settings of a script (lighting.settings.relight_override) or the viewer's panel."""
        settings = None
        if not self.training:
            settings = active_override() or self.lighting_controls.settings()
        return shade(self.field.material(points), self.field.integrated_basis, self.light, normals, view_out, settings)

    def _render_volume(
        self, origins, directions, t_hit, hit, t_near, t_far, valid, infinite_last: torch.Tensor
    ) -> Dict[str, torch.Tensor]:
        n, s = origins.shape[0], self.config.num_samples
        rays = valid.nonzero().squeeze(-1)
        t = near_surface_distances(
            t_hit[rays], hit[rays], t_near[rays], t_far[rays], s, self.config.near_surface_half_width
        )  # [M, S]
        dirs = directions[rays]
        points = (origins[rays, None, :] + t[..., None] * dirs[:, None, :]).reshape(-1, 3)
        view_out = (-dirs[:, None, :]).expand(-1, s, -1).reshape(-1, 3)
        if self.training:
            sdf, gradient, residual = self.field.sdf_and_gradient(points, create_graph=True)
        else:
            with torch.no_grad():
                sdf, gradient, residual = self.field.sdf(points), None, None
        weights, opacity = compositing_weights(
            self.density(sdf).reshape(-1, s), t, infinite_last=infinite_last[rays]
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
            out = torch.zeros(rays.shape[0], values.shape[-1], device=values.device, dtype=values.dtype)
            return out.index_add(0, sample_ray, sample_weight * values)

        per_ray = {name: composite_shaded(shaded[name]) for name in ("raw", "albedo", "diffuse", "specular", "roughness")}
        per_ray["normal_vector"] = composite_shaded(normals)
        per_ray["depth"] = (weights * t).sum(-1, keepdim=True) / weights.sum(-1, keepdim=True).clamp(min=1e-10)
        per_ray["accumulation"] = opacity
        outputs = _scatter_rays(per_ray, rays, n)
        if self.training:
            outputs["eikonal_gradients"] = gradient
            outputs["light_values"] = torch.cat([shaded["light_integral"], shaded["irradiance"]], dim=0)
            if residual is not None:
                outputs["residual_sdf"] = residual
        return outputs

    def _render_surface(self, origins, directions, trace, hit, valid) -> Dict[str, torch.Tensor]:
        n = origins.shape[0]
        rays = hit.nonzero().squeeze(-1)
        dirs = directions[rays]
        x0 = origins[rays] + trace.t_hit[rays, None] * dirs
        sdf0, gradient0, residual = self.field.sdf_and_gradient(x0, create_graph=self.training)
        points = differentiable_surface_points(x0, dirs, sdf0, gradient0) if self.training else x0
        normals = F.normalize(gradient0, dim=-1)
        shaded = self._shade(points, normals, -dirs)
        per_ray = {name: shaded[name] for name in ("raw", "albedo", "diffuse", "specular", "roughness")}
        per_ray["normal_vector"] = normals
        per_ray["depth"] = trace.t_hit[rays, None]
        per_ray["accumulation"] = torch.ones_like(per_ray["depth"])
        outputs = _scatter_rays(per_ray, rays, n)
        if self.training:
            outputs["network_hit"] = hit[:, None]
            # IDR eikonal points: the surface points plus one uniform point per ray in the bounding cube.
            r = self.config.bounding_sphere_radius
            uniform = (torch.rand(n, 3, device=origins.device) * 2 - 1) * r
            _, gradient_uniform, _ = self.field.sdf_and_gradient(uniform, create_graph=True)
            outputs["eikonal_gradients"] = torch.cat([gradient0, gradient_uniform], dim=0)
            outputs["light_values"] = torch.cat([shaded["light_integral"], shaded["irradiance"]], dim=0)
            if residual is not None:
                outputs["residual_sdf"] = residual
            # Mask loss input: SDF at the hit for hit rays, the smallest SDF along the ray otherwise.
            missed = (valid & ~hit).nonzero().squeeze(-1)
            min_sdf = torch.zeros(n, 1, device=origins.device)
            min_sdf = min_sdf.index_put((rays,), sdf0)
            if missed.numel() > 0:
                x_min = origins[missed] + trace.t_min_sdf[missed, None] * directions[missed]
                min_sdf = min_sdf.index_put((missed,), self.field.sdf(x_min))
            outputs["min_sdf"] = min_sdf
            outputs["mask_rays"] = valid[:, None]
        return outputs

    def _calibrated_display(self, outputs: Dict[str, torch.Tensor], matrices: torch.Tensor) -> Dict[str, torch.Tensor]:
        """rgb = clamp(raw A, 0, 1); albedo (x pi), diffuse, specular through the same A for display."""
        apply = PhotometricCalibration.apply
        display = {
            "rgb": torch.clamp(apply(outputs["raw"], matrices), 0.0, 1.0),
            "albedo": torch.clamp(apply(outputs["albedo"] * math.pi, matrices), 0.0, 1.0),
            "diffuse": torch.clamp(apply(outputs["diffuse"], matrices), 0.0, 1.0),
            "specular": torch.clamp(apply(outputs["specular"].expand(-1, 3), matrices), 0.0, 1.0),
            "roughness": outputs["roughness"].clamp(0.0, 1.0),
            "normal": (F.normalize(outputs["normal_vector"], dim=-1) + 1.0) / 2.0 * (outputs["accumulation"] > 0),
            "depth": outputs["depth"],
            "accumulation": outputs["accumulation"],
        }
        extras = {k: v for k, v in outputs.items() if k not in display}
        extras["specular_radiance"] = outputs["specular"]  # uncalibrated, for the specular energy loss
        return {**display, **extras}

    # ------------------------------------------------------------------ losses and metrics
    def get_metrics_dict(self, outputs, batch) -> Dict[str, torch.Tensor]:
        image = batch["image"][..., :3].to(self.device)
        metrics = {
            "psnr": -10.0 * torch.log10(F.mse_loss(outputs["rgb"].detach(), image).clamp(min=1e-10)),
            "beta": self.density.beta.detach(),
        }
        if self.config.render_mode == "surface":
            metrics["mask_alpha"] = torch.tensor(float(self.current_mask_alpha))
        return metrics

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, torch.Tensor]:
        cfg = self.config
        image = batch["image"][..., :3].to(self.device)
        loss_dict: Dict[str, torch.Tensor] = {}
        if cfg.render_mode == "surface":
            object_mask = batch["fg_mask"].to(self.device).reshape(-1, 1) > 0.5
            hit = outputs["network_hit"]
            selected_color = (hit & object_mask).reshape(-1)
            if cfg.color_loss_mult > 0:
                loss_dict["color_loss"] = cfg.color_loss_mult * losses.color_loss(outputs["rgb"], image, selected_color)
            if cfg.mask_loss_mult > 0:
                selected_mask = (~(hit & object_mask) & outputs["mask_rays"]).reshape(-1)
                loss_dict["mask_loss"] = cfg.mask_loss_mult * losses.idr_mask_loss(
                    outputs["min_sdf"], object_mask, selected_mask, self.current_mask_alpha
                )
        elif cfg.color_loss_mult > 0:
            loss_dict["color_loss"] = cfg.color_loss_mult * losses.color_loss(outputs["rgb"], image)
        if cfg.eikonal_loss_mult > 0:
            loss_dict["eikonal_loss"] = cfg.eikonal_loss_mult * losses.eikonal_loss(outputs["eikonal_gradients"])
        if cfg.white_light_loss_mult > 0:
            loss_dict["white_light_loss"] = cfg.white_light_loss_mult * losses.white_light_loss(outputs["light_values"])
        if cfg.specular_energy_loss_mult > 0:
            loss_dict["specular_energy_loss"] = cfg.specular_energy_loss_mult * losses.specular_energy_loss(
                outputs["specular_radiance"]
            )
        if cfg.residual_loss_mult > 0 and "residual_sdf" in outputs:
            loss_dict["residual_loss"] = cfg.residual_loss_mult * losses.residual_loss(outputs["residual_sdf"])
        latents = list(self.field.sdf_network.latent_parameters().values())
        if cfg.latent_loss_mult > 0 and latents:
            loss_dict["latent_loss"] = cfg.latent_loss_mult * losses.latent_loss(latents)
        return loss_dict

    def get_image_metrics_and_images(
        self, outputs: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, torch.Tensor]]:
        image = batch["image"][..., :3].to(outputs["rgb"].device)
        rgb = outputs["rgb"]
        mask = batch.get("fg_mask")
        mask = mask.to(rgb.device).reshape(*rgb.shape[:2], 1) > 0.5 if mask is not None else None
        if self.config.eval_mask == "predicted":
            mask = predicted_mask(outputs["accumulation"])
        if not getattr(self, "_eval_protocol_announced", False):
            self._eval_protocol_announced = True
            description = describe_protocol(self.config.eval_latent, self.config.eval_ssim, self.config.eval_mask)
            CONSOLE.print(f"neuface-ns: image metrics: {description}", soft_wrap=True)
        metrics = masked_image_metrics(rgb, image, mask, ssim_mode=self.config.eval_ssim)
        depth = colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"])
        images = {
            "img": torch.cat([image, rgb], dim=1),
            "albedo": outputs["albedo"],
            "diffuse": outputs["diffuse"],
            "specular": outputs["specular"],
            "normal": outputs["normal"],
            "depth": depth,
        }
        return metrics, images


def _scatter_rays(per_ray: Dict[str, torch.Tensor], rays: torch.Tensor, n: int) -> Dict[str, torch.Tensor]:
    """Place per-ray values of the rendered subset back into all n rays (zeros elsewhere = black)."""
    out = {}
    for name, value in per_ray.items():
        full = torch.zeros(n, value.shape[-1], device=value.device, dtype=value.dtype)
        out[name] = full.index_put((rays,), value)
    return out
