#!/usr/bin/env python
"""Realistic scene generator: a real head scan path-traced with Blender's Cycles (CPU, headless) under HDR light.

    python scripts/render_scan_scene.py --scan-obj <dir>/james.obj --texture <dir>/james.jpg \\
        --landmarks <dir>/james.ljson --output-dir scan_scene

The scan (default: the 3dMD scan "james" from menpo3d's source distribution, BSD-3, a face and neck in
millimetres with a photo texture) is rendered with a physically based skin material (its colour map, a
Principled BSDF with skin-range specular and roughness and a little subsurface scattering) under an
equirectangular HDR environment (Debian's blender-data ships CC0 maps, e.g. studio / courtyard), from a frontal
cap of cameras with jitter, like a capture rig. Blender runs as a subprocess (`--blender`); nothing else here
needs it, and tests never do.

Written (IDR layout, what `neuface-dtu-data` reads; world units = the scan's millimetres):

    <out>/image/000.png ...   8-bit sRGB, black outside the mask; training views rendered with --samples (noisy
                              like a photo; .jpg with --train-image-format jpg), held-out views (every
                              --eval-interval-th, from view 0) with --clean-samples (clean ground truth)
    <out>/mask/000.png ...    255 where the first surface hit of the pixel's ray lies inside NeuFace's face
                              sphere (100 mm around the point 40 mm behind the nose tip), else 0
    <out>/cameras.npz         world_mat_i = K [R | t] (OpenCV, pixel centres at integers), scale_mat_i (unit
                              sphere -> face sphere in mm)
    <out>/relit/image/000.png ...  the held-out views under --relight-environment (relighting ground truth)
    <out>/gt_mesh.ply         the scan cut to the face sphere (mm)
    <out>/lights/<env>.npy    each environment's SH (l <= 10, [121, 3]) in the normalised face frame, projected
                              from six 90-degree Cycles renders of it (the radiance the renderer actually used)
    <out>/scene.json          settings, frames, split, timings
    <out>/shading/000.png ... with --shading (or --only-shading for an existing scene): the ground-truth diffuse
                              shading of the held-out views under the training light, from Cycles' passes of the
                              held-out render itself (same camera, samples, seed and exposure): per channel
                              S_c = DiffDir + DiffInd (Cycles divides its diffuse light passes by the colour
                              pass DiffCol: diffuse light = DiffCol x S), stored grey (the mean of S_c over
                              RGB) as a 16-bit PNG of round(S x SHADING_SCALE), 0 outside the mask
    <out>/shading/diffuse/000.png  the diffuse colour there (DiffCol: the skin's base colour, the texture), 8-bit
                              sRGB, black outside the mask (Blender 3's Cycles counts the subsurface scattering
                              in the diffuse passes, so DiffCol is the whole base colour)

and the same views in NeuFace's FaceScape layout under <out>/facescape/ (what `neuface-facescape-data` reads:
subject 1, expression 1_neutral; the scan plays both the multi-view and the TU mesh, so Rt_scale_dict is the
identity; relit/<view>.jpg the relit held-out views; landmark_indices.npz 'v10' holds the scan vertices nearest to the 68 landmarks in iBUG order, index 30
the nose tip; JPEG images and masks in train/ and test/; gt_mesh.ply in TU millimetres).

Frames: the scan is y-up with the face looking +z (mm). Normalised face frame: x_n = (X_mm - c) / 100 with
c = nose tip - (0, 0, 40 mm), the frame NeuFace's FaceScape normalisation produces. Blender's world is z-up:
(x, y, z)_face -> (x, -z, y)_blender.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BLENDER_SCRIPT = REPO / "scripts" / "blender" / "render_views.py"
ENVIRONMENT_DIR = Path("/usr/share/blender/datafiles/studiolights/world")

#: Face frame -> Blender world (z up): (x, y, z) -> (x, -z, y).
FACE_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
#: OpenCV camera axes (x right, y down, z forward) -> Blender camera axes (x right, y up, looking down -z).
CV_TO_BLENDER_CAMERA = np.diag([1.0, -1.0, -1.0])
FACE_SPHERE_RADIUS_MM = 100.0
FACE_SPHERE_BEHIND_NOSE_MM = 40.0
#: Index of the nose tip in the 68-point iBUG / menpo landmark scheme.
NOSE_TIP = 30
#: shading/<v>.png holds round(S x SHADING_SCALE) in 16 bits: S up to 8, steps of 1.2e-4.
SHADING_SCALE = 8192.0


# ---------------------------------------------------------------------------------------------------- inputs


def load_scan(obj_path: Path):
    """(vertices [V, 3] mm, faces [F, 3], uv [V, 2]) with one UV per vertex (seams split by the loader)."""
    import trimesh

    mesh = trimesh.load(obj_path, force="mesh", process=False)
    uv = getattr(mesh.visual, "uv", None)
    if uv is None or len(uv) != len(mesh.vertices):
        raise SystemExit(f"render_scan_scene: {obj_path}: the scan needs texture coordinates (vt) on every vertex")
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64), np.asarray(uv)


# ---------------------------------------------------------------------------------------------------- cameras


def look_at_c2w(position: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0), roll_deg: float = 0.0) -> np.ndarray:
    """OpenCV camera-to-world rotation [3, 3] (columns: x right, y down, z forward) looking at `target`."""
    forward = target - position
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward], axis=1)
    roll = math.radians(roll_deg)
    about_forward = np.array([[math.cos(roll), -math.sin(roll), 0.0], [math.sin(roll), math.cos(roll), 0.0], [0.0, 0.0, 1.0]])
    return rotation @ about_forward


def capture_rig(count: int, rng: np.random.Generator, distance: float, yaw_deg: float, pitch_deg: Tuple[float, float]):
    """`count` OpenCV cameras (c2w rotation, centre) in the normalised face frame on a frontal cap: a jittered
    grid in yaw (+-yaw_deg) and pitch, each looking near the origin with a small roll, like a capture rig."""
    columns = max(1, int(round(math.sqrt(count * 2.5))))
    rows = int(math.ceil(count / columns))
    cameras = []
    for k in range(count):
        row, col = divmod(k, columns)
        yaw = -yaw_deg + 2 * yaw_deg * (col + 0.5) / columns + rng.uniform(-0.3, 0.3) * 2 * yaw_deg / columns
        pitch = pitch_deg[0] + (pitch_deg[1] - pitch_deg[0]) * (row + 0.5) / rows + rng.uniform(-2.0, 2.0)
        yaw_r, pitch_r = math.radians(yaw), math.radians(pitch)
        direction = np.array([math.sin(yaw_r) * math.cos(pitch_r), math.sin(pitch_r), math.cos(yaw_r) * math.cos(pitch_r)])
        centre = direction * distance * rng.uniform(0.95, 1.05)
        target = rng.normal(0.0, 0.03, 3) + np.array([0.0, 0.0, 0.2])
        cameras.append((look_at_c2w(centre, target, roll_deg=rng.normal(0.0, 2.0)), centre))
    return cameras


def intrinsics(width: int, height: int, focal_px: float) -> np.ndarray:
    """OpenCV K: pixel centres at integer coordinates, principal point at the image centre."""
    return np.array([[focal_px, 0.0, width / 2.0 - 0.5], [0.0, focal_px, height / 2.0 - 0.5], [0.0, 0.0, 1.0]])


def blender_camera_matrix(rotation_cv: np.ndarray, centre: np.ndarray) -> List[List[float]]:
    """4x4 Blender camera-to-world (Blender world, z up) of an OpenCV camera given in the face frame."""
    matrix = np.eye(4)
    matrix[:3, :3] = FACE_TO_BLENDER @ rotation_cv @ CV_TO_BLENDER_CAMERA
    matrix[:3, 3] = FACE_TO_BLENDER @ centre
    return matrix.tolist()


def pixel_rays(K: np.ndarray, rotation_cv: np.ndarray, width: int, height: int) -> np.ndarray:
    """Unit ray directions [H, W, 3] (world) through the pixel centres (OpenCV: integer coordinates)."""
    j, i = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    camera = np.stack([j, i, np.ones_like(j)], axis=-1) @ np.linalg.inv(K).T
    world = camera @ rotation_cv.T
    return world / np.linalg.norm(world, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------------------- probes / SH


#: Cube-face cameras for the environment probes, as OpenCV c2w rotations in the face frame (forward, down).
PROBE_FACES = {
    "px": ((1, 0, 0), (0, -1, 0)), "nx": ((-1, 0, 0), (0, -1, 0)),
    "py": ((0, 1, 0), (0, 0, 1)), "ny": ((0, -1, 0), (0, 0, -1)),
    "pz": ((0, 0, 1), (0, -1, 0)), "nz": ((0, 0, -1), (0, -1, 0)),
}


def probe_rotation(face: str) -> np.ndarray:
    forward, down = (np.asarray(v, dtype=np.float64) for v in PROBE_FACES[face])
    right = np.cross(down, forward)
    return np.stack([right, down, forward], axis=1)


def sh_from_probes(images: Dict[str, np.ndarray], order: int = 10) -> np.ndarray:
    """SH coefficients [(order+1)^2, 3] (face frame) of the radiance seen by six 90-degree cube cameras:
    sum over every pixel of L Y(d) dOmega, dOmega = (1/f^2) / (x^2 + y^2 + 1)^1.5 (x, y in focal units)."""
    import torch

    from neuface_ns.lighting.sh import real_spherical_harmonics

    total = np.zeros(((order + 1) ** 2, 3))
    for face, image in images.items():
        size = image.shape[0]
        focal = size / 2.0
        K = intrinsics(size, size, focal)
        rotation = probe_rotation(face)
        directions = pixel_rays(K, rotation, size, size).reshape(-1, 3)
        j, i = np.meshgrid(np.arange(size), np.arange(size))
        x, y = (j - K[0, 2]) / focal, (i - K[1, 2]) / focal
        solid_angle = (1.0 / focal**2) / (x**2 + y**2 + 1.0) ** 1.5
        basis = real_spherical_harmonics(torch.from_numpy(directions), order).numpy()
        total += basis.T @ (image.reshape(-1, 3) * solid_angle.reshape(-1, 1))
    return total


# ---------------------------------------------------------------------------------------------------- outputs


def write_obj(path: Path, vertices: np.ndarray, uv: np.ndarray, faces: np.ndarray) -> None:
    with open(path, "w") as f:
        f.write("".join(f"v {a:.6f} {b:.6f} {c:.6f}\n" for a, b, c in vertices))
        f.write("".join(f"vt {a:.6f} {b:.6f}\n" for a, b in uv))
        f.write("".join(f"f {a}/{a} {b}/{b} {c}/{c}\n" for a, b, c in faces + 1))


def face_masks(vertices_mm, faces, centre_mm, cameras_mm, K, width, height, radius_mm=FACE_SPHERE_RADIUS_MM):
    """Per view: pixels whose first hit on the whole scan lies inside the face sphere (`centre_mm`, `radius_mm`),
    and pixels that hit the scan at all (both [H, W] bool; trimesh + embree)."""
    import trimesh

    mesh = trimesh.Trimesh(vertices_mm, faces, process=False)
    masks, hits = [], []
    for rotation, centre in cameras_mm:
        directions = pixel_rays(K, rotation, width, height).reshape(-1, 3)
        origins = np.broadcast_to(centre, directions.shape)
        locations, ray_ids, _ = mesh.ray.intersects_location(origins, directions, multiple_hits=False)
        mask = np.zeros(width * height, dtype=bool)
        inside = np.linalg.norm(locations - centre_mm, axis=-1) < radius_mm
        mask[ray_ids[inside]] = True
        masks.append(mask.reshape(height, width))
        hit = np.zeros(width * height, dtype=bool)
        hit[ray_ids] = True
        hits.append(hit.reshape(height, width))
    return masks, hits


def ibug_landmark_points(path: Path) -> np.ndarray:
    """The 68 landmarks [68, 3] of a menpo LJSON file in the iBUG 68 order (menpo groups them as chin, eyes,
    eyebrows, nose, mouth; the subject's right eye and eyebrow, at -x, come first in iBUG's order)."""
    data = json.loads(path.read_text())
    group = data["groups"][next(iter(data["groups"]))]
    points = np.asarray(group["landmarks"]["points"], dtype=np.float64)
    masks = {entry["label"]: entry["mask"] for entry in group["labels"]}
    if not {"chin", "leye", "reye", "leyebrow", "reyebrow", "nose", "mouth"} <= set(masks):
        raise SystemExit(f"render_scan_scene: {path}: not a 68-point menpo LJSON (labels {sorted(masks)})")
    by_side = lambda a, b: (a, b) if points[masks[a]][:, 0].mean() < points[masks[b]][:, 0].mean() else (b, a)  # noqa: E731
    right_brow, left_brow = by_side("leyebrow", "reyebrow")
    right_eye, left_eye = by_side("leye", "reye")
    order = masks["chin"] + masks[right_brow] + masks[left_brow] + masks["nose"] + masks[right_eye] + masks[left_eye] + masks["mouth"]
    return points[order]


def write_facescape_layout(root: Path, vertices_mm, faces, landmarks_mm, K, cameras_mm, images, masks, held_out,
                           width, height, gt_mesh, relit_images=None) -> None:
    """NeuFace's FaceScape layout (see the module doc) for subject 1, expression 1_neutral; the relit held-out
    views (relighting ground truth) go to relit/<view>.jpg, named like the test images."""
    from PIL import Image
    from scipy.spatial import cKDTree

    import trimesh

    subject, expression = "1", "1_neutral"
    (root / "imface_model" / subject).mkdir(parents=True, exist_ok=True)
    trimesh.Trimesh(vertices_mm, faces, process=False).export(root / "imface_model" / subject / f"{expression}.obj")
    _, nearest = cKDTree(vertices_mm).query(landmarks_mm)
    np.savez(root / "landmark_indices.npz", v10=nearest.astype(np.int64))
    (root / "Rt_scale_dict.json").write_text(json.dumps({subject: {"1": [1.0, np.eye(4).tolist()]}}))
    params = {}
    for index, ((rotation, centre), image, mask) in enumerate(zip(cameras_mm, images, masks)):
        split = "test" if index in held_out else "train"
        for kind, array in (("imface_image", image), ("imface_mask", (mask * 255).astype(np.uint8))):
            folder = root / kind / subject / expression / split
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(folder / f"{index}.jpg", quality=95)
        params[f"{index}_K"] = K.tolist()
        params[f"{index}_Rt"] = np.concatenate([rotation.T, (-rotation.T @ centre)[:, None]], axis=1).tolist()
        params[f"{index}_width"], params[f"{index}_height"], params[f"{index}_valid"] = width, height, True
    for index, image in (relit_images or {}).items():
        (root / "relit").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "relit" / f"{index}.jpg", quality=95)
    (root / "imface_image" / subject / expression / "params.json").write_text(json.dumps(params, indent=1))
    gt_mesh.export(root / "gt_mesh.ply")


def save_view(stem: Path, image: np.ndarray, image_format: str) -> Path:
    """Write an 8-bit RGB view as <stem>.png, or as <stem>.jpg with JPEG quality 95 (4:2:0, PIL's default)."""
    from PIL import Image

    path = stem.with_suffix(f".{image_format}")
    Image.fromarray(image).save(path, **({"quality": 95} if image_format == "jpg" else {}))
    return path


def cut_to_sphere(vertices, faces, centre, radius):
    """The faces whose three vertices lie inside the sphere (the NeuFace ground truth: the scan cut to it)."""
    import trimesh

    inside = np.linalg.norm(vertices - centre, axis=-1) < radius
    keep = inside[faces].all(axis=1)
    mesh = trimesh.Trimesh(vertices, faces[keep], process=False)
    mesh.remove_unreferenced_vertices()
    return mesh


def run_blender(blender: str, job: dict, work: Path) -> None:
    job_path = work / "job.json"
    job_path.write_text(json.dumps(job))
    command = [blender, "-b", "--factory-startup", "--python", str(BLENDER_SCRIPT), "--", str(job_path)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        log = []
        for line in process.stdout:
            log.append(line)
            if line.startswith("render_views:"):
                print("  " + line.strip(), flush=True)
        # (Blender's compositor leaves one "Error: Not freed memory blocks" line at exit: harmless)
        tail = [line for line in log[-20:] if "Not freed memory blocks" not in line]
        if process.wait() != 0 or "Error" in "".join(tail):
            raise SystemExit("render_scan_scene: blender failed:\n" + "".join(log[-30:]))


def environment_strength(path: Path, target_mean: float) -> float:
    """Strength that gives the map a solid-angle-weighted mean radiance of `target_mean` (maps differ by orders
    of magnitude)."""
    from neuface_ns.lighting.environment_map import equirectangular_directions, read_environment_map

    radiance = read_environment_map(path)
    _, solid_angle = equirectangular_directions(*radiance.shape[:2])
    mean = float((radiance.mean(-1) * solid_angle.numpy()).sum() / (4 * math.pi))
    return target_mean / max(mean, 1e-12)


def check_sh_against_cycles(blender: str, environments: Dict[str, Path], exposure: float, size: int = 96,
                            samples: int = 256, probe_size: int = 64) -> Dict[str, Dict[str, float]]:
    """Render a diffuse white sphere (albedo 0.8, radius 0.5) under each environment with Cycles and compare it
    with the SH irradiance of the environment's probe-projected coefficients: albedo / pi x E(n) per pixel.
    Returns per environment the median ratio rendered / predicted and their correlation over the sphere."""
    import trimesh

    from neuface_ns.lighting.light import SHEnvironmentLight

    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2
    import torch

    albedo, radius, distance = 0.8, 0.5, 3.0
    results = {}
    work = Path(tempfile.mkdtemp(prefix="render_scan_scene_sh_"))
    try:
        sphere = trimesh.creation.icosphere(subdivisions=5, radius=radius)
        write_obj(work / "sphere.obj", np.asarray(sphere.vertices) @ FACE_TO_BLENDER.T,
                  np.zeros((len(sphere.vertices), 2)), np.asarray(sphere.faces))
        focal = size / 2.0 / math.tan(math.radians(12.0))
        K = intrinsics(size, size, focal)
        rotation = look_at_c2w(np.array([0.0, 0.0, distance]), np.zeros(3))
        views = []
        for name in environments:
            views.append({"c2w": blender_camera_matrix(rotation, np.array([0.0, 0.0, distance])),
                          "lens_mm": focal * 36.0 / size, "sensor_mm": 36.0, "width": size, "height": size,
                          "samples": samples, "environment": name, "format": "EXR",
                          "output": str(work / f"sphere_{name}.exr")})
            for face in PROBE_FACES:
                views.append({"c2w": blender_camera_matrix(probe_rotation(face), np.zeros(3)), "lens_mm": 18.0,
                              "sensor_mm": 36.0, "width": probe_size, "height": probe_size, "samples": 16,
                              "environment": name, "format": "EXR", "hide_scan": True,
                              "output": str(work / f"probe_{name}_{face}.exr")})
        job = {"mesh": str(work / "sphere.obj"), "texture": "", "material": {"diffuse_albedo": albedo},
               "environments": {n: {"path": str(p), "strength": environment_strength(p, exposure)}
                                for n, p in environments.items()},
               "views": views}
        run_blender(blender, job, work)
        # Normals of the sphere where each pixel's ray hits it (analytic), away from the silhouette.
        directions = pixel_rays(K, rotation, size, size).reshape(-1, 3)
        origin = np.array([0.0, 0.0, distance])
        b = directions @ origin
        disc = b * b - (origin @ origin - radius**2)
        inner = disc > (0.3 * radius) ** 2  # keep pixels well inside the silhouette (no edge anti-aliasing)
        t = -b - np.sqrt(np.clip(disc, 0, None))
        normals = (origin + t[:, None] * directions) / radius
        for name in environments:
            probes = {face: cv2.imread(str(work / f"probe_{name}_{face}.exr"), cv2.IMREAD_UNCHANGED)[..., :3][..., ::-1]
                      for face in PROBE_FACES}
            coefficients = torch.from_numpy(sh_from_probes(probes)).float()
            light = SHEnvironmentLight(10, initial=coefficients)
            with torch.no_grad():
                predicted = albedo / math.pi * light.irradiance(torch.from_numpy(normals[inner]).float()).numpy()
            rendered = cv2.imread(str(work / f"sphere_{name}.exr"), cv2.IMREAD_UNCHANGED)[..., :3][..., ::-1]
            rendered = rendered.reshape(-1, 3)[inner]
            ratio = rendered.mean(-1) / np.clip(predicted.mean(-1), 1e-6, None)
            results[name] = {"median_ratio": float(np.median(ratio)),
                             "correlation": float(np.corrcoef(rendered.ravel(), predicted.ravel())[0, 1]),
                             "pixels": int(inner.sum())}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def skin_material(specular: float, roughness: float, subsurface: float,
                  scale: float = FACE_SPHERE_RADIUS_MM) -> dict:
    """The job's Principled BSDF settings (render_views.py)."""
    # skin's mean free paths (red, green, blue) in mm, in Blender units of 100 mm
    return {"specular": specular, "roughness": roughness, "subsurface": subsurface,
            "subsurface_radius": [3.67 / scale, 1.37 / scale, 0.68 / scale]}


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Linear -> sRGB in [0, 1] (clipped), the 'Standard' view transform the renders use."""
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


def srgb_decode(encoded: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] -> linear (the inverse of srgb_encode on [0, 1])."""
    x = np.asarray(encoded, dtype=np.float64)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def read_passes(folder: Path) -> Dict[str, np.ndarray]:
    """The EXRs render_views.py wrote for a view with "passes": name -> [H, W, 3] linear RGB (Image: RGBA)."""
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2

    passes = {}
    for path in sorted(folder.glob("*.exr")):
        name = path.stem.rstrip("0123456789")
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float64)
        passes[name] = np.concatenate([image[..., 2::-1], image[..., 3:]], axis=-1)  # BGR(A) -> RGB(A)
    return passes


def shading_from_passes(passes: Dict[str, np.ndarray]):
    """(S [H, W, 3] per channel, the diffuse shading; the diffuse colour [H, W, 3], linear; coverage [H, W]).
    Blender composes the diffuse light as DiffCol x (DiffDir + DiffInd): Cycles divides its direct and indirect
    light by the colour pass, so S = DiffDir + DiffInd is (DiffDir + DiffInd) / DiffCol of passes that include
    the colour. The colour passes are premultiplied by the pixel's coverage (divided out here), the light passes
    are ratios and are not."""
    coverage = passes["Image"][..., 3]
    inverse = np.where(coverage > 1e-6, 1.0 / np.maximum(coverage, 1e-6), 0.0)[..., None]
    shading = np.where(coverage[..., None] > 1e-6, passes["DiffDir"] + passes["DiffInd"], 0.0)
    return shading, passes["DiffCol"] * inverse, coverage


def _masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    mse = float(np.mean((a[mask] - b[mask]) ** 2))
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def write_shading(out: Path, index: int, passes: Dict[str, np.ndarray], mask: np.ndarray) -> Dict[str, float]:
    """Write shading/<index>.png and shading/diffuse/<index>.png (see the module doc) and check them against the
    held-out image <out>/image/<index>.png (8-bit, over black, masked), each as a masked PSNR in dB:
    combined (the pass render's own image: same camera, samples and seed), passes (DiffCol x S + the glossy
    passes), stored (the stored diffuse colour x the stored grey S + the same glossy light)."""
    from PIL import Image

    shading, base, coverage = shading_from_passes(passes)
    grey = shading.mean(-1) * mask
    stored_shading = np.clip(np.round(grey * SHADING_SCALE), 0, 65535).astype(np.uint16)
    stored_base = np.round(srgb_encode(base) * mask[..., None] * 255).astype(np.uint8)
    (out / "shading" / "diffuse").mkdir(parents=True, exist_ok=True)
    Image.fromarray(stored_shading).save(out / "shading" / f"{index:03d}.png", optimize=True)
    Image.fromarray(stored_base).save(out / "shading" / "diffuse" / f"{index:03d}.png", optimize=True)

    target = np.asarray(Image.open(out / "image" / f"{index:03d}.png").convert("RGB"), dtype=np.float64) / 255.0
    alpha = np.maximum(coverage, 1e-6)[..., None]
    glossy = passes["GlossCol"] * (passes["GlossDir"] + passes["GlossInd"])
    decoded_base = srgb_decode(np.asarray(stored_base, dtype=np.float64) / 255.0)
    candidates = {
        "combined": passes["Image"][..., :3],
        "passes": base * shading * coverage[..., None] + glossy,
        "stored": decoded_base * (stored_shading / SHADING_SCALE)[..., None] * coverage[..., None] + glossy,
    }
    psnr = {}
    for name, linear in candidates.items():
        image = np.round(srgb_encode(linear / alpha) * coverage[..., None] * mask[..., None] * 255) / 255.0
        psnr[f"{name}_psnr"] = round(_masked_psnr(image, target, mask), 2)
    psnr["shading_mean"] = round(float(grey[mask].mean()), 4)
    return psnr


def cameras_from_npz(path: Path, K: np.ndarray, views: Sequence[int]):
    """[(OpenCV c2w rotation, centre mm)] of `views` from an IDR cameras.npz (world_mat = K [R^T | -R^T c])."""
    data = np.load(path)
    cameras = []
    for index in views:
        extrinsic = np.linalg.inv(K) @ data[f"world_mat_{index}"][:3, :4]
        rotation = extrinsic[:, :3].T
        cameras.append((rotation, -rotation @ extrinsic[:, 3]))
    return cameras


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scan-obj", type=Path, help="scan mesh (OBJ with vt), millimetres, y up, face +z")
    p.add_argument("--texture", type=Path, help="its colour texture")
    p.add_argument("--landmarks", type=Path, help="menpo LJSON with the 68 iBUG landmarks (nose tip)")
    p.add_argument("--output-dir", type=Path)
    p.add_argument("--environment", default="studio", help="training light: a name in blender-data or an .exr")
    p.add_argument("--relight-environment", default="courtyard", help="second light for the relit held-out views")
    p.add_argument("--num-views", type=int, default=64)
    p.add_argument("--eval-interval", type=int, default=8, help="views 0, k, 2k, ... are held out (IDR's interval)")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--focal-px", type=float, default=None, help="default: 2.5 x height")
    p.add_argument("--distance", type=float, default=5.5, help="camera distance in face-frame units (100 mm)")
    p.add_argument("--samples", type=int, default=64, help="Cycles samples of the training views (photo-like noise)")
    p.add_argument("--clean-samples", type=int, default=512, help="samples of the held-out and relit views")
    p.add_argument("--train-image-format", choices=("png", "jpg"), default="png",
                   help="training views of the IDR layout as PNG, or JPEG (quality 95) like a camera's photos and "
                        "5x smaller (the bundled sample); held-out and relit views stay PNG")
    p.add_argument("--probe-size", type=int, default=64)
    p.add_argument("--exposure", type=float, default=0.8, help="mean environment radiance after normalisation")
    p.add_argument("--specular", type=float, default=0.35)
    p.add_argument("--roughness", type=float, default=0.45)
    p.add_argument("--subsurface", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--blender", default="blender")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--shading", action="store_true",
                   help="also write the ground-truth diffuse shading of the held-out views (shading/, from Cycles' "
                        "passes of the held-out renders themselves)")
    p.add_argument("--only-shading", type=Path, default=None, metavar="SCENE_DIR",
                   help="render only the shading passes for an existing scene (its scene.json and cameras.npz give "
                        "every setting and camera; nothing else is re-rendered) and add shading/ to it")
    p.add_argument("--shading-views", type=int, nargs="+", default=None,
                   help="with --only-shading: these views (default: the scene's held-out views)")
    p.add_argument("--shading-samples", type=int, default=None,
                   help="with --only-shading: Cycles samples (default: the scene's --clean-samples, which with the "
                        "same seed repeats the held-out render exactly)")
    p.add_argument("--check-sh", action="store_true",
                   help="only check the SH projection: a diffuse sphere rendered by Cycles under each environment "
                        "against the SH irradiance (prints one JSON line)")
    return p.parse_args(argv)


def resolve_environment(name: str) -> Path:
    path = Path(name)
    if path.suffix.lower() in (".exr", ".hdr"):
        if not path.is_file():
            raise SystemExit(f"render_scan_scene: {path}: environment map not found")
        return path
    path = ENVIRONMENT_DIR / f"{name}.exr"
    if not path.is_file():
        raise SystemExit(f"render_scan_scene: {path}: no such environment (install blender-data, or give an .exr)")
    return path


def shading_record(views, samples, seconds, checks, how: str) -> dict:
    """What scene.json records about shading/."""
    return {"views": list(views), "samples": samples, "render_seconds": round(seconds, 1), "rendered_by": how,
            "environment": "train",
            "encoding": f"shading/<v>.png: uint16 round(S x {SHADING_SCALE:g}), S = mean over RGB of "
                        "DiffDir + DiffInd (Blender's passes: diffuse light = DiffCol x (DiffDir + DiffInd)), "
                        "0 outside the mask; shading/diffuse/<v>.png: DiffCol "
                        "(the base colour; Blender 3 counts subsurface in the diffuse passes), 8-bit sRGB, "
                        "black outside the mask",
            "check_psnr_db": {"about": "masked PSNR against image/<v>.png of: combined = the pass render's own image, "
                                       "passes = DiffCol x S + the glossy passes, stored = the stored "
                                       "diffuse colour x the stored grey S + the same glossy",
                              **{f"{v:03d}": c for v, c in checks.items()}}}


def render_shading_only(args) -> int:
    """--only-shading: the shading passes of an existing scene's views, with its own settings and cameras."""
    from PIL import Image

    out = args.only_shading
    started = time.time()
    info = json.loads((out / "scene.json").read_text())
    settings = info["settings"]
    views = args.shading_views or info["held_out_views"]
    samples = args.shading_samples or settings["clean_samples"]
    scan_obj = args.scan_obj or Path(settings["scan_obj"])
    texture = args.texture or Path(settings["texture"])
    centre_mm = np.asarray(info["face_sphere"]["centre_mm"], dtype=np.float64)
    scale = float(info["face_sphere"]["radius_mm"])
    K = np.asarray(info["intrinsics"], dtype=np.float64)
    width, height = settings["width"], settings["height"]
    environment = resolve_environment(settings["environment"])
    cameras_mm = cameras_from_npz(out / "cameras.npz", K, views)
    # The cameras.npz poses against the capture rig regenerated from the recorded seed (they must agree).
    rig = capture_rig(settings["num_views"], np.random.default_rng(settings["seed"]), settings["distance"],
                      yaw_deg=65.0, pitch_deg=(-20.0, 30.0))
    pose_error = max(max(float(np.abs(rotation - rig[v][0]).max()),
                         float(np.abs((centre - centre_mm) / scale - rig[v][1]).max()))
                     for v, (rotation, centre) in zip(views, cameras_mm))
    if pose_error > 1e-6:
        raise SystemExit(f"render_scan_scene: cameras.npz differs from the recorded rig by {pose_error:g}")
    vertices_mm, faces, uv = load_scan(scan_obj)
    work = Path(tempfile.mkdtemp(prefix="render_scan_scene_shading_"))
    try:
        write_obj(work / "scan.obj", (vertices_mm - centre_mm) / scale @ FACE_TO_BLENDER.T, uv, faces)
        jobs = []
        for index, (rotation, centre) in zip(views, cameras_mm):
            (work / f"passes_{index:03d}").mkdir()
            jobs.append({"c2w": blender_camera_matrix(rotation, (centre - centre_mm) / scale),
                         "lens_mm": K[0, 0] * 36.0 / width, "sensor_mm": 36.0, "width": width, "height": height,
                         "seed": settings["seed"] * 1000 + index, "samples": samples, "environment": "train",
                         "output": str(work / f"train_{index:03d}.png"), "passes": str(work / f"passes_{index:03d}")})
        job = {"mesh": str(work / "scan.obj"), "texture": str(texture.resolve()),
               "material": skin_material(settings["specular"], settings["roughness"], settings["subsurface"], scale),
               "environments": {"train": {"path": str(environment),
                                          "strength": environment_strength(environment, settings["exposure"])}},
               "views": jobs}
        print(f"render_scan_scene: {len(jobs)} Cycles renders with passes ({samples} samples)")
        render_start = time.time()
        run_blender(args.blender, job, work)
        render_seconds = time.time() - render_start
        checks = {}
        for index in views:
            mask = np.asarray(Image.open(out / "mask" / f"{index:03d}.png")) > 127
            checks[index] = write_shading(out, index, read_passes(work / f"passes_{index:03d}"), mask)
            print(f"render_scan_scene: view {index}: {checks[index]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info["shading"] = shading_record(views, samples, render_seconds, checks, "--only-shading")
    (out / "scene.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"render_scan_scene: wrote {out / 'shading'} in {time.time() - started:.0f} s")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.only_shading is not None:
        if shutil.which(args.blender) is None:
            raise SystemExit(f"render_scan_scene: '{args.blender}' not found (apt-get install blender python3-numpy)")
        return render_shading_only(args)
    if args.check_sh:
        if shutil.which(args.blender) is None:
            raise SystemExit(f"render_scan_scene: '{args.blender}' not found (apt-get install blender python3-numpy)")
        environments = {name: resolve_environment(name) for name in (args.environment, args.relight_environment)}
        print(json.dumps(check_sh_against_cycles(args.blender, environments, args.exposure)))
        return 0
    missing = [flag for flag in ("scan_obj", "texture", "landmarks", "output_dir") if getattr(args, flag) is None]
    if missing:
        raise SystemExit(f"render_scan_scene: missing --{missing[0].replace('_', '-')} (see --help)")
    out = args.output_dir
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise SystemExit(f"render_scan_scene: {out} exists and is not empty (pass --overwrite to replace it)")
    if shutil.which(args.blender) is None:
        raise SystemExit(f"render_scan_scene: '{args.blender}' not found (apt-get install blender python3-numpy)")
    environments = {"train": resolve_environment(args.environment), "relight": resolve_environment(args.relight_environment)}
    started = time.time()
    rng = np.random.default_rng(args.seed)

    vertices_mm, faces, uv = load_scan(args.scan_obj)
    # The nose tip is the scan vertex nearest to landmark 30, as the FaceScape layout's v10[30] names it.
    landmark_nose = ibug_landmark_points(args.landmarks)[NOSE_TIP]
    nose = vertices_mm[np.argmin(np.linalg.norm(vertices_mm - landmark_nose, axis=-1))]
    centre_mm = nose - np.array([0.0, 0.0, FACE_SPHERE_BEHIND_NOSE_MM])
    scale = FACE_SPHERE_RADIUS_MM
    to_face = lambda p: (p - centre_mm) / scale  # noqa: E731

    focal = args.focal_px or 2.5 * args.height
    K = intrinsics(args.width, args.height, focal)
    cameras = capture_rig(args.num_views, rng, args.distance, yaw_deg=65.0, pitch_deg=(-20.0, 30.0))
    held_out = list(range(0, args.num_views, args.eval_interval))

    for sub in ("image", "mask", "relit/image", "lights"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="render_scan_scene_"))
    try:
        write_obj(work / "scan.obj", to_face(vertices_mm) @ FACE_TO_BLENDER.T, uv, faces)
        lens = focal * 36.0 / args.width
        views = []
        for index, (rotation, centre) in enumerate(cameras):
            clean = index in held_out
            base = {"c2w": blender_camera_matrix(rotation, centre), "lens_mm": lens, "sensor_mm": 36.0,
                    "width": args.width, "height": args.height, "seed": args.seed * 1000 + index}
            views.append({**base, "environment": "train", "samples": args.clean_samples if clean else args.samples,
                          "output": str(work / f"train_{index:03d}.png")})
            if clean and args.shading:
                (work / f"passes_{index:03d}").mkdir()
                views[-1]["passes"] = str(work / f"passes_{index:03d}")
            if clean:
                views.append({**base, "environment": "relight", "samples": args.clean_samples,
                              "output": str(work / f"relit_{index:03d}.png")})
        for name in environments:
            for face in PROBE_FACES:
                views.append({"c2w": blender_camera_matrix(probe_rotation(face), np.zeros(3)), "lens_mm": 18.0,
                              "sensor_mm": 36.0, "width": args.probe_size, "height": args.probe_size,
                              "samples": 16, "environment": name, "format": "EXR", "hide_scan": True,
                              "output": str(work / f"probe_{name}_{face}.exr")})
        job = {
            "mesh": str(work / "scan.obj"),
            "texture": str(args.texture.resolve()),
            "material": skin_material(args.specular, args.roughness, args.subsurface, scale),
            "environments": {name: {"path": str(path), "strength": environment_strength(path, args.exposure)}
                             for name, path in environments.items()},
            "views": views,
        }
        print(f"render_scan_scene: {len(views)} Cycles renders ({args.num_views} views, {len(held_out)} held out)")
        render_start = time.time()
        run_blender(args.blender, job, work)
        render_seconds = time.time() - render_start

        os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
        import cv2
        from PIL import Image

        cameras_mm = [(rotation, centre * scale + centre_mm) for rotation, centre in cameras]
        masks, hits = face_masks(vertices_mm, faces, centre_mm, cameras_mm, K, args.width, args.height)
        arrays, alignment, final_images, relit_images = {}, [], [], {}
        for index, mask in enumerate(masks):
            rgba = np.asarray(Image.open(work / f"train_{index:03d}.png"), dtype=np.float64) / 255.0
            # Cameras check: Cycles' coverage (alpha) against the scan hit by our own rays through the same camera.
            covered = rgba[..., 3] > 0.5
            alignment.append(float((covered & hits[index]).sum() / max((covered | hits[index]).sum(), 1)))
            rgb = rgba[..., :3] * rgba[..., 3:]  # over black
            final_images.append(np.round(rgb * mask[..., None] * 255).astype(np.uint8))
            save_view(out / "image" / f"{index:03d}", final_images[-1],
                      "png" if index in held_out else args.train_image_format)
            Image.fromarray((mask * 255).astype(np.uint8)).save(out / "mask" / f"{index:03d}.png")
            if index in held_out:
                rgba = np.asarray(Image.open(work / f"relit_{index:03d}.png"), dtype=np.float64) / 255.0
                relit = rgba[..., :3] * rgba[..., 3:] * mask[..., None]
                relit_images[index] = np.round(relit * 255).astype(np.uint8)
                Image.fromarray(relit_images[index]).save(out / "relit" / "image" / f"{index:03d}.png")
            world = np.eye(4)
            rotation, centre = cameras_mm[index]
            world[:3, :4] = K @ np.concatenate([rotation.T, (-rotation.T @ centre)[:, None]], axis=1)
            arrays[f"world_mat_{index}"] = world
            scale_mat = np.diag([scale, scale, scale, 1.0])
            scale_mat[:3, 3] = centre_mm
            arrays[f"scale_mat_{index}"] = scale_mat
        np.savez(out / "cameras.npz", **arrays)
        for name in environments:
            images = {face: cv2.imread(str(work / f"probe_{name}_{face}.exr"), cv2.IMREAD_UNCHANGED)[..., :3][..., ::-1]
                      for face in PROBE_FACES}
            np.save(out / "lights" / f"{name}.npy", sh_from_probes(images).astype(np.float32))
        gt_mesh = cut_to_sphere(vertices_mm, faces, centre_mm, FACE_SPHERE_RADIUS_MM)
        gt_mesh.export(out / "gt_mesh.ply")
        write_facescape_layout(out / "facescape", vertices_mm, faces, ibug_landmark_points(args.landmarks), K,
                               cameras_mm, final_images, masks, held_out, args.width, args.height, gt_mesh,
                               relit_images)
        info = {
            "generator": "scripts/render_scan_scene.py",
            "image_encoding": "srgb",  # Cycles' "Standard" view transform (read by camera_response.py's "auto")
            "scan": args.scan_obj.name, "texture": args.texture.name,
            "nose_tip_mm": nose.tolist(), "face_sphere": {"centre_mm": centre_mm.tolist(), "radius_mm": scale},
            "frames": "x_face = (X_mm - centre_mm) / 100; Blender world = (x, -z, y) of the face frame",
            "environments": {name: path.name for name, path in environments.items()},
            "held_out_views": held_out, "intrinsics": K.tolist(),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "render_seconds": round(render_seconds, 1), "total_seconds": round(time.time() - started, 1),
            "mask_pixels": [int(m.sum()) for m in masks],
            "alpha_vs_ray_cast_iou": [round(v, 4) for v in alignment],
        }
        if args.shading:
            checks = {index: write_shading(out, index, read_passes(work / f"passes_{index:03d}"), masks[index])
                      for index in held_out}
            info["shading"] = shading_record(held_out, args.clean_samples, render_seconds, checks, "--shading")
        (out / "scene.json").write_text(json.dumps(info, indent=1) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"render_scan_scene: wrote {out} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
