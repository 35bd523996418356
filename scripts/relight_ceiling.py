#!/usr/bin/env python
"""What a perfect NeuFace-type model would score on a path-traced scene's held-out views (the ceiling of the
issue's relighting goals), computed from the scene's ground truth without training anything.

    python scripts/relight_ceiling.py [--scene neuface_ns/data/sample/scan] [--scan james.obj] [--output c.json]

Per held-out view: ray-cast the full scan (trimesh) through every pixel (OpenCV pixel centres) for the hit points
and smooth normals; take the true diffuse colour (shading/diffuse/<v>.png, sRGB-decoded) and the scene's SH lights
(lights/train.npy, lights/relight.npy: the environments projected to order 10 by render_scan_scene.py); predict

    sh:      albedo x E_SH(n)                                  (NeuFace's diffuse term, exact light and geometry)
    sh_vis:  albedo x sum_w L_SH(w) V(x, w) max(0, n.w) dw     (the same with the scan's own occlusion, 512 directions)
    sh_spec: albedo x E_SH(n) + k LT(w_r, rho)                 (+ NeuFace's SH specular lobe: the light integral
             around the reflected direction with the exp(-l(l+1)/2 rho) attenuation; one strength k and roughness
             rho for every view and both lights, the best of a grid, so an optimistic bound)

encode them as the renders are (exposure picked for the best score, sRGB) and score them with the project's
protocol (3x3 colour fit, masked PSNR) against the path-traced image under that light (image/ for "train",
relit/image/ for "relight"). The `linear_` keys are the same predictions for a model that, like the paper's, fits
the stored (sRGB-encoded) pixel values with linear shading: the encoded albedo times the shading, not encoded again.
`relight_vs_train_image` is the unrelit baseline of the relit goal (the training-light image scored against the relit
one). Cycles' subsurface and interreflection are the rest of the gap to a perfect render. Needs the scan (scene.json's
settings.scan_obj).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from neuface_ns.eval import masked_image_metrics  # noqa: E402
from neuface_ns.lighting.light import SHEnvironmentLight  # noqa: E402
from neuface_ns.lighting.sh import fibonacci_directions, lambertian_factors, real_spherical_harmonics, sh_degrees  # noqa: E402
from render_scan_scene import srgb_decode, srgb_encode  # noqa: E402  (the renders' own encoding)

ORDER = 10
#: The specular lobe's grid (roughness rho, strength k relative to the light integral).
ROUGHNESS_GRID = (0.025, 0.05, 0.1, 0.2)
STRENGTH_GRID = (0.08, 0.16, 0.24, 0.32)


def sh_basis(directions: np.ndarray) -> np.ndarray:
    return real_spherical_harmonics(torch.from_numpy(directions), ORDER).double().numpy()


def irradiance(normals: np.ndarray, light: np.ndarray) -> np.ndarray:
    factors = lambertian_factors(ORDER).double()[sh_degrees(ORDER).long()].numpy()
    return (sh_basis(normals) * factors) @ light


def specular_light(reflected: np.ndarray, roughness: float, light: np.ndarray) -> np.ndarray:
    """The model's own light integral around the reflected direction (SHEnvironmentLight.specular_light)."""
    model_light = SHEnvironmentLight(ORDER, torch.from_numpy(light)).double()
    with torch.no_grad():
        values = model_light.specular_light(torch.from_numpy(reflected), torch.full((len(reflected), 1), roughness,
                                                                                 dtype=torch.float64))
    return values.numpy()


def occluded_irradiance(mesh, points: np.ndarray, normals: np.ndarray, light: np.ndarray, count: int) -> np.ndarray:
    """Monte Carlo (Fibonacci directions) irradiance with visibility against the scan itself."""
    directions = fibonacci_directions(count).double().numpy()
    radiance = sh_basis(directions) @ light
    total = np.zeros((len(points), 3))
    for w, L in zip(directions, radiance):
        cosine = normals @ w
        front = cosine > 0
        if not front.any():
            continue
        origins = points[front] + 1e-3 * normals[front] + 0.05 * w  # mm: off the surface
        blocked = mesh.ray.intersects_any(origins, np.repeat(w[None], int(front.sum()), 0))
        total[front] += (~blocked)[:, None] * cosine[front, None] * L[None]
    return total * 4 * np.pi / count


def best_score(linear: np.ndarray, target: np.ndarray, mask: np.ndarray, encoded: bool = True) -> float:
    """Masked colour-fitted PSNR of the prediction at its best exposure (the renders' exposure is a free scale: the
    model learns it): sRGB-encoded (`encoded`), or clipped as it is (a model of the stored values)."""
    best = -np.inf
    median = max(float(np.median(linear[mask])), 1e-6)
    for scale in np.geomspace(0.2, 3.0, 15) * (0.5 / median):
        values = srgb_encode(linear * scale) if encoded else np.clip(linear * scale, 0.0, 1.0)
        metrics = masked_image_metrics(torch.from_numpy(values).float(), torch.from_numpy(target).float(),
                                       torch.from_numpy(mask)[..., None], lpips=False)
        best = max(best, metrics["psnr_masked"])
    return float(best)


def main(argv=None) -> int:
    import cv2
    import trimesh
    from PIL import Image

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scene", type=Path, default=REPO / "neuface_ns" / "data" / "sample" / "scan")
    p.add_argument("--scan", type=Path, default=None, help="the scan's .obj (default: scene.json's settings.scan_obj)")
    p.add_argument("--directions", type=int, default=512)
    p.add_argument("--output", type=Path, default=None)
    args = p.parse_args(argv)
    info = json.loads((args.scene / "scene.json").read_text())
    scan = args.scan or Path(info["settings"]["scan_obj"])
    if not scan.is_file():
        print(f"relight_ceiling: {scan}: scan not found (pass --scan)", file=sys.stderr)
        return 2
    mesh = trimesh.load(scan, force="mesh", process=False)
    vertex_normals = np.asarray(mesh.vertex_normals)
    faces = np.asarray(mesh.faces)
    cameras = np.load(args.scene / "cameras.npz")
    lights = {name: np.load(args.scene / "lights" / f"{name}.npy").astype(np.float64) for name in ("train", "relight")}
    rows = []
    for view in info["held_out_views"]:
        K, R, t = cv2.decomposeProjectionMatrix(cameras[f"world_mat_{view}"][:3])[:3]
        K, centre = K / K[2, 2], (t[:3] / t[3]).ravel()
        images = {"train": args.scene / "image" / f"{view:03d}.png",
                  "relight": args.scene / "relit" / "image" / f"{view:03d}.png"}
        images = {k: np.asarray(Image.open(v).convert("RGB"), dtype=np.float64) / 255.0 for k, v in images.items()}
        height, width = images["train"].shape[:2]
        j, i = np.meshgrid(np.arange(width), np.arange(height))
        pixels = np.stack([j, i, np.ones_like(j)], -1).reshape(-1, 3).astype(np.float64)
        directions = (np.linalg.inv(K) @ pixels.T).T @ R
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        points, ray, triangle = mesh.ray.intersects_location(np.repeat(centre[None], len(directions), 0), directions,
                                                             multiple_hits=False)
        bary = trimesh.triangles.points_to_barycentric(mesh.triangles[triangle], points)
        normals = (vertex_normals[faces[triangle]] * bary[..., None]).sum(1)
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        covered = np.zeros(height * width, bool)
        covered[ray] = True
        mask = (np.asarray(Image.open(args.scene / "mask" / f"{view:03d}.png").convert("L")) > 127)
        mask &= covered.reshape(height, width)
        albedo = srgb_decode(np.asarray(Image.open(args.scene / "shading" / "diffuse" / f"{view:03d}.png").convert("RGB"))
                             / 255.0)
        row = {"view": view}
        view_out = -directions[ray]
        reflected = 2.0 * (normals * view_out).sum(1, keepdims=True) * normals - view_out
        for name, light in lights.items():
            for label, values in (("sh", irradiance(normals, light)),
                                  ("sh_vis", occluded_irradiance(mesh, points, normals, light, args.directions))):
                shading = np.zeros((height * width, 3))
                shading[ray] = values
                diffuse = albedo * shading.reshape(height, width, 3)
                linear_diffuse = srgb_encode(albedo) * shading.reshape(height, width, 3)  # the paper's model
                row[f"{name}_{label}"] = best_score(diffuse, images[name], mask)
                row[f"linear_{name}_{label}"] = best_score(linear_diffuse, images[name], mask, encoded=False)
                if label != "sh":
                    continue
                for rho in ROUGHNESS_GRID:
                    lobe = np.zeros((height * width, 3))
                    lobe[ray] = specular_light(reflected, rho, light)
                    lobe = lobe.reshape(height, width, 3)
                    for k in STRENGTH_GRID:
                        row[f"{name}_sh_spec_{rho}_{k}"] = best_score(diffuse + k * lobe, images[name], mask)
                        row[f"linear_{name}_sh_spec_{rho}_{k}"] = best_score(linear_diffuse + k * lobe, images[name],
                                                                             mask, encoded=False)
        row["relight_vs_train_image"] = float(masked_image_metrics(
            torch.from_numpy(images["train"]).float(), torch.from_numpy(images["relight"]).float(),
            torch.from_numpy(mask)[..., None], lpips=False)["psnr_masked"])
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if "_spec_" not in k}), file=sys.stderr, flush=True)
    keys = [k for k in rows[0] if k != "view"]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    result = {"mean": {k: round(v, 2) for k, v in mean.items() if "_spec_" not in k},
              "views": [{k: v for k, v in r.items() if "_spec_" not in k} for r in rows]}
    for prefix in ("", "linear_"):  # one lobe for both lights: the best sum over the grid
        lobes = [(rho, k) for rho in ROUGHNESS_GRID for k in STRENGTH_GRID]
        rho, k = max(lobes, key=lambda g: sum(mean[f"{prefix}{n}_sh_spec_{g[0]}_{g[1]}"] for n in lights))
        for name in lights:
            result["mean"][f"{prefix}{name}_sh_spec"] = round(mean[f"{prefix}{name}_sh_spec_{rho}_{k}"], 2)
        result["mean"][f"{prefix}specular_lobe"] = {"roughness": rho, "strength": k}
    print(json.dumps(result))
    if args.output is not None:
        args.output.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
