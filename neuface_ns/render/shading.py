"""The NeuFace shading equation (docs/method.md section 3): radiance = diffuse + specular at surface / sample
points.

    diffuse  = albedo x E(n),                         E: SH irradiance (Lambertian convolution of the light)
    specular = s x LT(w_r, rho) x sigmoid(sum_k c_k B_k(w_o, n, rho))
               s: specular intensity, LT: SH light integral around the reflected direction w_r with the
               exp(-l(l+1)/2 rho) roughness attenuation, c_k B_k: the low-rank neural BRDF (brdf.py)

The light is the learned one, or (outside training) what `RelightSettings` make of it (lighting/settings.py).
Inputs are the field's material at the points and its integrated-basis network, so this module needs neither the
model nor the viewer.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import torch

from neuface_ns.brdf import material_integral, reflect
from neuface_ns.lighting.light import SHEnvironmentLight
from neuface_ns.lighting.settings import RelightSettings, relight_coefficients


def shade(
    material: Dict[str, torch.Tensor],
    integrated_basis: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    light: SHEnvironmentLight,
    normals: torch.Tensor,
    view_out: torch.Tensor,
    settings: Optional[RelightSettings] = None,
) -> Dict[str, torch.Tensor]:
    """Shade N points.

    material: the field's material at the points (NeuFaceField.material): "albedo" [N, 3], "roughness" [N, 1],
        "specular_intensity" [N, 1 or 3], "brdf_coefficients" [N, K].
    integrated_basis: (view_out, normals, roughness) -> the BRDF's integrated basis B (NeuFaceField.integrated_basis).
    light: the learned SH light; normals, view_out: unit [N, 3] (view_out points from the surface to the camera).
    settings: None (training: the learned light, both terms) or the relight settings of a viewer / script.

    Returns "raw" (diffuse + specular, before calibration), "albedo", "diffuse", "specular", "roughness", and the
    light terms "irradiance" and "light_integral" (the white-light loss regularises them), and
    "specular_reflectance", the specular term without the light (specular = specular_reflectance x light_integral).
    """
    coefficients, diffuse_on, specular_on = light.coefficients, True, True
    if settings is not None:
        coefficients = relight_coefficients(light.coefficients, settings)
        diffuse_on, specular_on = settings.diffuse, settings.specular
    irradiance = light.irradiance(normals, coefficients)
    diffuse = material["albedo"] * irradiance
    reflected = reflect(view_out, normals)
    light_integral = light.specular_light(reflected, material["roughness"], coefficients)
    basis = integrated_basis(view_out, normals, material["roughness"])
    integral = material_integral(material["brdf_coefficients"], basis)
    specular = material["specular_intensity"] * light_integral * integral  # the paper's order of the factors
    reflectance = material["specular_intensity"] * integral
    if not diffuse_on:
        diffuse = torch.zeros_like(diffuse)
    if not specular_on:
        specular = torch.zeros_like(specular)
    return {
        "raw": diffuse + specular,
        "albedo": material["albedo"],
        "diffuse": diffuse,
        "specular": specular,
        "roughness": material["roughness"],
        "irradiance": irradiance,
        "light_integral": light_integral,
        "specular_reflectance": reflectance,
    }
