"""NeuFaceBaseModel: what NeuFace's two renderers share, as a nerfstudio `Model`.

Per ray (docs/method.md sections 2-3): bounding sphere -> sphere tracing without gradient (`TracedRays`) ->
the subclass's renderer (`_render`: samples around the hit in volume.py, the differentiable surface point in
surface.py) -> SDF, normals and material -> shading (diffuse SH irradiance + specular SH light integral x neural
BRDF) -> per-image 3x3 colour calibration (`_calibrated_display`).

The base owns the field (SDF + appearance + integrated basis), the SH light, the calibration, the viewer's
lighting panel, the shared losses (colour, eikonal, white light, specular energy, residual, latent), the metrics
and the image metrics. A subclass owns its renderer's config fields and parameters and adds its own terms
through the hooks `_trace_options`, `_render`, `_colour_losses`, `_renderer_parameters`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Literal, Optional, Tuple, Type

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
from neuface_ns.camera_response import encode, resolve_image_encoding
from neuface_ns.eval import describe_protocol, masked_image_metrics, predicted_mask
from neuface_ns.fields.neuface_field import NeuFaceFieldConfig
from neuface_ns.lighting.light import INITIAL_LIGHTS, SHEnvironmentLight
from neuface_ns.lighting.settings import active_override
from neuface_ns.render.shading import shade
from neuface_ns.render.tracing import TraceResult, sphere_trace, trace_interval
from neuface_ns.viewer import LIGHTING_PANEL, LightingControls

#: Outputs shown by the viewer, in its "Output type" order (rgb first = the default).
DISPLAY_OUTPUTS = ("rgb", "albedo", "diffuse", "specular", "roughness", "normal", "depth", "accumulation")

#: What the shading of one point gives, composited / scattered per ray by both renderers.
SHADED_OUTPUTS = ("raw", "albedo", "diffuse", "specular", "roughness")
#: Composited per ray like SHADED_OUTPUTS when _shade returns them (training only, loss inputs).
OPTIONAL_SHADED_OUTPUTS = ("specular_energy",)


@dataclass
class NeuFaceBaseModelConfig(ModelConfig):
    """What both NeuFace renderers share. Build `NeuFaceVolumeModelConfig` (faces) or `NeuFaceSurfaceModelConfig`
    (DTU); neuface_ns/configs/ builds the presets. Defaults are the paper's."""

    _target: Type = field(default_factory=lambda: NeuFaceBaseModel)
    sdf_field: NeuFaceFieldConfig = field(default_factory=NeuFaceFieldConfig)
    """SDF + BRDF networks (the attribute name `sdf_field` is what nerfstudio's exporter looks for)."""
    sh_order: int = 10
    initial_light: Literal["paper", "ambient"] = "paper"
    """The SH light's initial value: the paper's l <= 2 light, or a uniform grey light of the same mean
    (lighting/light.py; not in the paper)."""
    bounding_sphere_radius: float = 1.0
    # Sphere tracing (docs/method.md section 2, step 1).
    trace_iterations: int = 10
    trace_threshold: float = 5e-4
    dense_steps: int = 100
    secant_steps: int = 8
    # Calibration.
    calibration_latent_dim: int = 50
    eval_latent: str = "mean"
    """Calibration latent for held-out views and the viewer: "mean" or a training image index."""
    calibration_form: Literal["matrix", "white_balance"] = "matrix"
    """"matrix": the paper's 3x3 colour matrix; "white_balance": positive per-channel gains only, so relighting
    cannot clip channels to black (calibration.py)."""
    # Loss weights (paper preset), 0 switches a term off.
    color_loss_mult: float = 1.0
    eikonal_loss_mult: float = 0.1
    white_light_loss_mult: float = 0.005
    specular_energy_loss_mult: float = 0.008
    specular_energy_trains_light: bool = True
    """The paper's specular energy loss (mean specular radiance) trains the light too: it darkens the light in the
    directions the cameras see mirrored, i.e. from the cameras' side, the frontal light of a face capture. False
    (not in the paper): the loss sees the light detached, so it only lowers the material's specular reflectance."""
    residual_loss_mult: float = 0.001
    latent_loss_mult: float = 1000.0
    albedo_smoothness_loss_mult: float = 0.0
    """Not in the paper (0 = off): mean |albedo(x) - albedo(x + delta)| at the shaded points (losses.py): with one
    training light a free albedo can hold the shading; this makes the light explain it."""
    albedo_smoothness_radius: float = 0.02
    """Standard deviation of the random offset delta (world units; 0.02 = 2 mm in the face frame)."""
    albedo_smoothness_tangent: bool = False
    """Draw delta in the surface's tangent plane (the offset less its component along the normal), so that a
    long-range delta still compares two points of the surface rather than one in empty space."""
    light_first_steps: int = 0
    """Not in the paper (0 = off): for this many first training steps an extra loss fits the SH light alone to the
    pixels as one constant albedo x the irradiance on the rendered normals (normals, geometry and albedo held
    fixed; the constant is a parameter of its own). A free albedo otherwise absorbs the shading before the light
    moves: on the path-traced scan the trained light kept the paper's initial direction (from behind the face)."""
    light_first_loss_mult: float = 1.0
    """Weight of that loss (an L1 colour loss, like the colour loss at weight 1)."""
    image_encoding: Literal["auto", "linear", "srgb"] = "linear"
    """How the images store radiance (camera_response.py): "linear" (the paper's model: rendered colour = pixel
    value), "srgb" (render linear radiance, then encode it as a camera does) or "auto" (what the data folder's
    scene.json declares, sRGB when it declares nothing). Not in the paper."""
    eval_num_rays_per_chunk: int = 2048
    eval_ssim: Literal["masked-image", "pixel-list"] = "masked-image"
    """ssim_masked on the masked images (the project's protocol) or over the list of mask pixels (NeuFace's
    scripts); see neuface_ns/eval.py."""
    eval_mask: Literal["gt", "predicted"] = "gt"
    """Mask of the colour fit and the masked metrics: the ground truth's, or the network's (accumulation > 0.5,
    NeuFace's DTU script)."""

    #: Which renderer the config's class builds, "volume" or "surface" (a class constant, not a config field).
    RENDERER: ClassVar[str] = ""

    @property
    def render_mode(self) -> str:
        """Which renderer this config builds ("volume" / "surface"): fixed by the config class."""
        return type(self).RENDERER

    @render_mode.setter
    def render_mode(self, value: str) -> None:
        raise AttributeError(
            f"render_mode is fixed by the config class ({type(self).__name__}); to switch renderer use the other "
            f"class: neuface_ns.models.with_render_mode(config, {value!r})"
        )


@dataclass
class TracedRays:
    """The rays of one forward pass after sphere tracing: what a renderer needs, in one place.

    origins, directions: [N, 3], directions unit length. t_near, t_far: [N], the part of each ray to render (the
    bounding sphere cut to the bundle's own nears / fars; 0 where `valid` is false). valid: [N] bool, the ray
    crosses that interval. trace: the tracer's result (t_hit, hit, t_min_sdf). hit: [N] bool, valid and traced to
    the surface. bundle_fars: [N] the bundle's own far distances, None when it has none (nerfstudio's mesh
    texturing casts such short rays; the volume renderer must not paint beyond them).
    """

    origins: torch.Tensor
    directions: torch.Tensor
    t_near: torch.Tensor
    t_far: torch.Tensor
    valid: torch.Tensor
    trace: TraceResult
    hit: torch.Tensor
    bundle_fars: Optional[torch.Tensor]

    @property
    def count(self) -> int:
        return self.origins.shape[0]


class NeuFaceBaseModel(Model):
    """The shared NeuFace model; subclasses implement `_render`. Not built on its own."""

    config: NeuFaceBaseModelConfig

    def __init__(self, *args, **kwargs):
        if type(self) is NeuFaceBaseModel:
            raise TypeError("neuface-ns: NeuFaceBaseModel is abstract; build NeuFaceVolumeModel or NeuFaceSurfaceModel")
        super().__init__(*args, **kwargs)
        # nerfstudio's device marker takes no part in the loss: without requires_grad it is no DDP parameter
        # either, so DDP needs no find_unused_parameters (pipeline.py).
        self.device_indicator_param.requires_grad_(False)

    def populate_modules(self):
        super().populate_modules()
        self.collider = None  # the bounding sphere is handled by the tracer
        self.field = self.config.sdf_field.setup()
        self.light = SHEnvironmentLight(self.config.sh_order, INITIAL_LIGHTS[self.config.initial_light](self.config.sh_order))
        self.calibration = PhotometricCalibration(
            self.num_train_data, self.config.calibration_latent_dim, form=self.config.calibration_form
        )
        self.renderer_rgb = RGBRenderer(background_color="black")  # read by nerfstudio's get_rgba_image
        #: "linear" or "srgb": the config's image_encoding with "auto" resolved from the dataparser's metadata.
        self.image_encoding = resolve_image_encoding(self.config.image_encoding, self.kwargs.get("metadata"))
        if self.config.image_encoding == "auto":
            declared = (self.kwargs.get("metadata") or {}).get("image_encoding")
            CONSOLE.print(f"neuface-ns: image encoding {self.image_encoding} "
                          f"({'declared by the data' if declared else 'the data declare none; photos are sRGB'})")
        if self.config.light_first_steps > 0:
            # The constant albedo of the light-only fit (light_first_steps), starting at the display grey 0.5.
            self.light_first_albedo = Parameter(torch.full((3,), 0.5 / math.pi))
        # Viewer panel "NeuFace lighting" (relight, toggle terms when not training); no parameters, so
        # checkpoints are unchanged, and it never writes to self.light.
        self.add_module(LIGHTING_PANEL, LightingControls(self.config.sh_order))

    @property
    def lighting_controls(self) -> LightingControls:
        return self._modules[LIGHTING_PANEL]

    #: The trainer's step, set before each training iteration (light_first_steps reads it).
    training_step: int = 0

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        def set_step(step: int) -> None:
            self.training_step = step

        return [TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], set_step, update_every_num_iters=1)]

    # ------------------------------------------------------------------ hooks of the renderers
    def _trace_options(self) -> Dict[str, Any]:
        """Extra keyword arguments of `sphere_trace` (the surface renderer's min-SDF search)."""
        return {}

    def _render(self, rays: TracedRays) -> Dict[str, torch.Tensor]:
        """Per-ray [N, C] "raw", "albedo", "diffuse", "specular", "roughness", "normal_vector", "depth",
        "accumulation" (uncalibrated; zeros where nothing is rendered), plus in training the loss inputs
        "eikonal_gradients", "light_values" and, with a residual SDF, "residual_sdf"."""
        raise NotImplementedError

    def _renderer_parameters(self) -> List[Parameter]:
        """The renderer's own parameters, optimised in the "fields" group."""
        return []

    def _colour_losses(self, outputs, batch, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The photometric terms (weighted): the mean L1 colour loss over every ray whose pixel counts."""
        if self.config.color_loss_mult <= 0:
            return {}
        rgb = outputs["rgb"]
        counted = counted_rays(batch, self.device)
        if counted is not None:
            rgb, image = rgb[counted], image[counted]
        return {"color_loss": self.config.color_loss_mult * losses.color_loss(rgb, image)}

    # ------------------------------------------------------------------ nerfstudio hooks
    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        """Optimiser groups by name (the presets' optimisers use these names): "fields" (networks, the renderer's
        own parameters), "light", "calibration", and when present the appearance grid's group, the pretrained
        prior's group and "prior_latents"."""
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
            + self._renderer_parameters(),
            "light": list(self.light.parameters()) + ([self.light_first_albedo] if self.config.light_first_steps > 0 else []),
            "calibration": list(self.calibration.parameters()),
        }
        if grid:
            groups[getattr(self.field.appearance.config, "param_group", "appearance_grid")] = grid
        if prior_group != "fields" and network:
            groups[prior_group] = network
        if latents:
            groups["prior_latents"] = latents
        return groups

    def upgrade_optimizer_state(self, group: str, state: Dict[str, Any], num_params: int) -> Dict[str, Any]:
        """The saved torch optimiser state of param group `group` made to fit this model's group of `num_params`
        parameters, for runs saved by an older layout of the model (NeuFaceTrainer calls it on resume)."""
        return state

    def _fixed_latent_index(self) -> Optional[int]:
        if self.config.eval_latent == "mean":
            return None
        index = int(self.config.eval_latent)
        if not 0 <= index < self.calibration.latents.shape[0]:
            raise ValueError(f"eval_latent={index} is out of range (0..{self.calibration.latents.shape[0] - 1})")
        return index

    def trace_rays(self, ray_bundle: RayBundle) -> TracedRays:
        """Sphere-trace the bundle's rays (no gradient) inside the bounding sphere and the bundle's own [near, far]."""
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
            **self._trace_options(),
        )
        fars = ray_bundle.fars.reshape(-1) if ray_bundle.fars is not None else None
        return TracedRays(origins, directions, t_near, t_far, valid, trace, trace.hit & valid, fars)

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, torch.Tensor]:
        """Per-ray outputs [N, C] of a bundle: the display outputs (DISPLAY_OUTPUTS, rgb first) and, in training,
        the loss inputs. The calibration uses each ray's camera in training, the fixed latent (eval_latent)
        otherwise; outside training the outputs are detached and non-finite rays drawn as misses."""
        rays = self.trace_rays(ray_bundle)
        if self.training and ray_bundle.camera_indices is not None:
            matrices = self.calibration.matrices(ray_bundle.camera_indices, None)
        else:
            matrices = self.calibration.matrices(None, self._fixed_latent_index())
        outputs = self._calibrated_display(self._render(rays), matrices)
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
        """Diffuse + specular radiance at surface/sample points (docs/method.md section 3; render/shading.py).

        points, normals, view_out: [P, 3] (normals and view_out unit; view_out points to the camera). Returns
        render.shading.shade's outputs per point. Outside training under the relight settings of a script
        (lighting.settings.relight_override) or the viewer's panel."""
        settings = None
        if not self.training:
            settings = active_override() or self.lighting_controls.settings()
        shaded = shade(self.field.material(points), self.field.integrated_basis, self.light, normals, view_out, settings)
        if self.training and not self.config.specular_energy_trains_light:
            shaded["specular_energy"] = shaded["specular_reflectance"] * shaded["light_integral"].detach()
        if self.training and self.config.albedo_smoothness_loss_mult > 0:
            # The albedo at the points and a random small step away, [P, 6]; the points are detached so that the
            # prior shapes the albedo only, never the geometry.
            fixed = points.detach()
            offset = self.config.albedo_smoothness_radius * torch.randn_like(fixed)
            if self.config.albedo_smoothness_tangent:
                unit = normals.detach()  # unit already (_shade's contract)
                offset = offset - (offset * unit).sum(-1, keepdim=True) * unit
            pairs = self.field.material(torch.cat([fixed, fixed + offset]))["albedo"]
            shaded["albedo_pairs"] = torch.cat(pairs.chunk(2), dim=-1)
        return shaded

    def _calibrated_display(self, outputs: Dict[str, torch.Tensor], matrices: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The per-ray renderer outputs through the per-image colour calibration A (docs/method.md section 3).

        rgb = encode(clamp(raw A, 0, 1)) (the camera response, camera_response.py; the identity for "linear");
        albedo (x pi), diffuse, specular through the same A and encoding for display; normal as
        (n + 1) / 2 where something was rendered. The display outputs come first (rgb first: the viewer's
        default), then the renderer's extra (loss) outputs and the uncalibrated "specular_radiance"."""
        def colour(values: torch.Tensor) -> torch.Tensor:
            return encode(torch.clamp(PhotometricCalibration.apply(values, matrices), 0.0, 1.0), self.image_encoding)

        display = {
            "rgb": colour(outputs["raw"]),
            "albedo": colour(outputs["albedo"] * math.pi),
            "diffuse": colour(outputs["diffuse"]),
            "specular": colour(outputs["specular"].expand(-1, 3)),
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
        return {"psnr": -10.0 * torch.log10(F.mse_loss(outputs["rgb"].detach(), image).clamp(min=1e-10))}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, torch.Tensor]:
        """The renderer's photometric terms, then the shared regularisers (docs/method.md section 4), weighted."""
        cfg = self.config
        image = batch["image"][..., :3].to(self.device)
        loss_dict = self._colour_losses(outputs, batch, image)
        if cfg.eikonal_loss_mult > 0:
            loss_dict["eikonal_loss"] = cfg.eikonal_loss_mult * losses.eikonal_loss(outputs["eikonal_gradients"])
        if cfg.white_light_loss_mult > 0:
            loss_dict["white_light_loss"] = cfg.white_light_loss_mult * losses.white_light_loss(outputs["light_values"])
        if cfg.specular_energy_loss_mult > 0:
            # the per-ray specular, or the same value with the light detached (specular_energy_trains_light)
            specular = outputs.get("specular_energy", outputs["specular_radiance"])
            loss_dict["specular_energy_loss"] = cfg.specular_energy_loss_mult * losses.specular_energy_loss(specular)
        if cfg.residual_loss_mult > 0 and "residual_sdf" in outputs:
            loss_dict["residual_loss"] = cfg.residual_loss_mult * losses.residual_loss(outputs["residual_sdf"])
        latents = list(self.field.sdf_network.latent_parameters().values())
        if cfg.latent_loss_mult > 0 and latents:
            loss_dict["latent_loss"] = cfg.latent_loss_mult * losses.latent_loss(latents)
        if self.training_step < cfg.light_first_steps and cfg.light_first_loss_mult > 0:
            loss_dict["light_first_loss"] = cfg.light_first_loss_mult * self._light_first_loss(outputs, batch, image)
        elif cfg.light_first_steps > 0:
            # Its constant albedo has no use after the light-first steps, but multi-process training (DDP without
            # the search for unused parameters, pipeline.py) waits for a gradient of every parameter: a zero one.
            loss_dict["light_first_loss"] = 0.0 * self.light_first_albedo.sum()
        if cfg.albedo_smoothness_loss_mult > 0 and "albedo_pairs" in outputs:
            albedo, neighbour, weights = outputs["albedo_pairs"].split((3, 3, 1), dim=-1)
            loss_dict["albedo_smoothness_loss"] = cfg.albedo_smoothness_loss_mult * losses.albedo_smoothness_loss(
                albedo, neighbour, weights
            )
        return loss_dict

    def _light_first_loss(self, outputs, batch, image: torch.Tensor) -> torch.Tensor:
        """L1 between the counted pixels that the object covers and encode(c x E(n)), c the constant albedo
        parameter, E the SH irradiance on the rendered normals (detached): only the light and c learn from it.
        A batch that covers nothing gives 0 (losses.color_loss's mean of nothing)."""
        covered = outputs["accumulation"][:, 0].detach() > 0.5
        counted = counted_rays(batch, self.device)
        if counted is not None:
            covered = covered & counted
        normals = F.normalize(outputs["normal_vector"][covered].detach(), dim=-1)
        shading = self.light_first_albedo * self.light.irradiance(normals)
        predicted = encode(torch.clamp(shading, 0.0, 1.0), self.image_encoding)
        return losses.color_loss(predicted, image[covered])

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


def counted_rays(batch: Dict[str, torch.Tensor], device) -> Optional[torch.Tensor]:
    """[N] bool: the training rays whose pixels count in the photometric losses, from the batch's "loss_mask"
    (a capture's uncertain band around the mask edge is 0 there); None when the dataset gave no loss mask."""
    loss_mask = batch.get("loss_mask")
    if loss_mask is None:
        return None
    return loss_mask.to(device).reshape(-1) > 0.5


def scatter_rays(per_ray: Dict[str, torch.Tensor], rays: torch.Tensor, n: int) -> Dict[str, torch.Tensor]:
    """Place per-ray values [M, C] of the rendered subset `rays` (indices [M]) back into all n rays (zeros
    elsewhere = black, no surface)."""
    out = {}
    for name, value in per_ray.items():
        full = torch.zeros(n, value.shape[-1], device=value.device, dtype=value.dtype)
        out[name] = full.index_put((rays,), value)
    return out
