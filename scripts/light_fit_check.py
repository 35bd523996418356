#!/usr/bin/env python
"""How well can a single-light capture pin down the light? Fits an SH light (l <= 2) to a path-traced scan's
training photos on the scan's TRUE normals under simple albedo priors, and compares it with the true light.

    python scripts/light_fit_check.py [--scene neuface_ns/data/sample/scan] [--step 2] [--state RUN.pt ...]

Normals come from ray casting the scene's gt_mesh.ply (trimesh) through every `step`-th pixel inside the masks.
For each prior the script prints the irradiance correlation with the true light over those normals (1 = the
right light up to scale) and the fitted l = 1 / DC ratios (y, z, x). The prediction is encoded as the scene's
scene.json declares its photos (sRGB for the scan), as the model's light-first fit does. Priors: one constant albedo (what
`light_first_steps` assumes), and one albedo per chromaticity cluster (k-means on r/(r+g+b), g/(r+g+b); under a
white-ish light the chromaticity of a diffuse pixel is its albedo's). On scenes with shading/ (the held-out views'
Cycles shading S and true diffuse colour) it also prints how the true albedo correlates with S: a face whose skin
is darker where the light is brighter biases any fit that prefers a uniform albedo. No training, about a minute.

Every light is scored by `light_agreement` over those normals: the correlation of its irradiance with the true
light's (the direction, up to scale and offset) and its contrast, std / mean of its irradiance over that of the true
light (1: as much shading as the truth; below 1: too flat, so an albedo under it keeps the rest of the shading).
`--state` scores the learned light of runs saved with `scripts/benchmark.py --save-state` on this scene (the
dataparsers keep the scan's orientation, so its normals apply).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent


def pixels_with_normals(scene: Path, step: int):
    """(normals [N, 3], pixels [N, 3] in [0, 1], number of views) of the training views' masked pixels whose ray hits
    the mesh on a front-facing triangle; normals interpolated from the mesh's vertex normals. The training views,
    their cameras and masks are eval_mesh's (all views minus scene.json's held_out_views)."""
    import trimesh
    from PIL import Image

    from neuface_ns.tools.eval_mesh import training_masks, training_views

    mesh = trimesh.load(str(scene / "gt_mesh.ply"), force="mesh", process=False)
    images, projections = training_views(scene)
    normals, pixels = [], []
    for image_path, projection, mask in zip(images, projections, training_masks(scene)):
        m = projection[:, :3]
        centre = -np.linalg.solve(m, projection[:, 3])
        with Image.open(image_path) as stored:
            image = np.asarray(stored.convert("RGB"), dtype=np.float64) / 255
        rows, cols = np.mgrid[0 : mask.shape[0] : step, 0 : mask.shape[1] : step]
        rows, cols = rows.ravel(), cols.ravel()
        keep = mask[rows, cols]
        rows, cols = rows[keep], cols[keep]
        # OpenCV pixel centres at integer coordinates (the scan's cameras are OpenCV).
        directions = np.linalg.solve(m, np.stack([cols, rows, np.ones_like(rows)]).astype(np.float64)).T
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        hits, ray, triangle = mesh.ray.intersects_location(
            np.repeat(centre[None], len(directions), 0), directions, multiple_hits=False
        )
        bary = trimesh.triangles.points_to_barycentric(mesh.triangles[triangle], hits)
        n = (mesh.vertex_normals[mesh.faces[triangle]] * bary[..., None]).sum(1)
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        front = (n * directions[ray]).sum(1) < -0.05
        normals.append(n[front])
        pixels.append(image[rows[ray][front], cols[ray][front]])
    return np.concatenate(normals), np.concatenate(pixels), len(images)


def fit_light(normals: torch.Tensor, pixels: torch.Tensor, labels: torch.Tensor, encoding: str = "linear",
              iterations: int = 1500):
    """L1 fit of pixels = encode(albedo[label] * E(n; L)), L an order-2 SH light (DC starts at 1), albedo per label,
    encode the images' encoding (camera_response.encode, clamped to [0, 1] as the model's light-first fit)."""
    from neuface_ns.camera_response import encode
    from neuface_ns.lighting.light import SHEnvironmentLight

    light = SHEnvironmentLight(2, torch.zeros(9, 3))
    with torch.no_grad():
        light.coefficients[0] = 1.0
    albedo = torch.nn.Parameter(torch.full((int(labels.max()) + 1, 3), 0.5))
    optimiser = torch.optim.Adam([light.coefficients, albedo], lr=0.02)
    for _ in range(iterations):
        predicted = encode(torch.clamp(albedo[labels] * light.irradiance(normals), 0.0, 1.0), encoding)
        loss = (predicted - pixels).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return light, float(loss.detach())


def light_agreement(irradiance: np.ndarray, true_irradiance: np.ndarray) -> tuple:
    """(correlation, contrast) of an irradiance against the true one over the same normals (module docstring)."""
    from neuface_ns.albedo_shading import pearson

    correlation = pearson(irradiance, true_irradiance)
    contrast = float((irradiance.std() / irradiance.mean()) / (true_irradiance.std() / true_irradiance.mean()))
    return correlation, contrast


def saved_light(path: Path) -> torch.Tensor:
    """The SH light coefficients [(order + 1)^2, 3] of a state saved by benchmark.py --save-state (or a checkpoint)."""
    if not path.is_file():
        raise SystemExit(f"light_fit_check: {path}: no such file")
    state = torch.load(path, map_location="cpu", weights_only=False)
    state = state.get("pipeline", state)
    found = [value for key, value in state.items() if key.split(".")[-2:] == ["light", "coefficients"]]
    if len(found) != 1:
        raise SystemExit(f"light_fit_check: {path}: expected one light.coefficients entry, found {len(found)}")
    return found[0].float()


def main() -> None:
    from scipy.cluster.vq import kmeans2

    from neuface_ns.camera_response import UNDECLARED_ENCODING, declared_image_encoding
    from neuface_ns.lighting.light import SHEnvironmentLight
    from neuface_ns.lighting.presets import load_sh_light
    from neuface_ns.lighting.sh import MAX_SH_ORDER, resize_sh_light

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scene", type=Path, default=REPO / "neuface_ns" / "data" / "sample" / "scan")
    parser.add_argument("--step", type=int, default=2, help="use every step-th pixel in each direction")
    parser.add_argument("--state", type=Path, nargs="+", action="extend", default=[],
                        help="also score the learned light of these saved runs (benchmark.py --save-state)")
    args = parser.parse_args()
    scene = args.scene
    torch.manual_seed(0)

    learned_lights = {path: saved_light(path) for path in args.state}  # a bad file fails before the ray casting
    normals, pixels, view_count = pixels_with_normals(scene, args.step)
    n = torch.tensor(normals, dtype=torch.float32)
    p = torch.tensor(pixels, dtype=torch.float32)
    true = resize_sh_light(load_sh_light(str(scene / "lights" / "train.npy"), MAX_SH_ORDER), 2)
    reference = SHEnvironmentLight(2, true)
    with torch.no_grad():
        true_irradiance = reference.irradiance(n).mean(-1).numpy()

    def ratios(coefficients: torch.Tensor):
        c = coefficients.detach().mean(-1)
        return [round(float(v), 3) for v in c[1:4] / c[0]]

    encoding = declared_image_encoding(scene) or UNDECLARED_ENCODING
    print(f"{len(n)} pixels from {view_count} training views ({encoding}); true light l1/DC (y, z, x) "
          f"{ratios(true)}")
    chromaticity = (pixels / np.clip(pixels.sum(-1, keepdims=True), 1e-4, None))[:, :2]
    priors = {"one constant albedo": np.zeros(len(n), dtype=np.int64)}
    for k in (4, 8, 16):
        priors[f"albedo per chromaticity cluster, k = {k}"] = kmeans2(chromaticity, k, seed=0, minit="++")[1]
    for name, labels in priors.items():
        light, loss = fit_light(n, p, torch.tensor(labels), encoding)
        with torch.no_grad():
            fitted = light.irradiance(n).mean(-1).numpy()
        correlation, contrast = light_agreement(fitted, true_irradiance)
        print(f"{name:40s} irradiance correlation {correlation:.3f}, contrast {contrast:.3f}, "
              f"l1/DC {ratios(light.coefficients)}, L1 {loss:.4f}")
    for path, coefficients in learned_lights.items():
        with torch.no_grad():
            learned = SHEnvironmentLight(math.isqrt(len(coefficients)) - 1, coefficients).irradiance(n).mean(-1).numpy()
        correlation, contrast = light_agreement(learned, true_irradiance)
        print(f"{str(path):40s} irradiance correlation {correlation:.3f}, contrast {contrast:.3f}, "
              f"l1/DC {ratios(coefficients)}")

    if (scene / "shading" / "diffuse").is_dir():
        from neuface_ns.albedo_shading import load_view, luminance, pearson, shading_views

        views = [load_view(scene, view) for view in shading_views(scene)]
        shading = np.concatenate([s[mask] for s, _, mask in views])
        albedo = np.concatenate([luminance(diffuse[mask]) for _, diffuse, mask in views])
        print(f"held-out views: correlation of the true diffuse colour with the true shading "
              f"{pearson(albedo, shading):.3f}")


if __name__ == "__main__":
    main()
