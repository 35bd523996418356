#!/usr/bin/env python
"""Relight a trained NeuFace model: render it under another SH environment light.

    neuface-relight --load-config outputs/.../config.yml --light studio_key --output-dir relit/

Writes, under --output-dir:

    views/<output>/000.png ...            the eval cameras (or --orbit N cameras) under the new light
    rotating_light/<output>/000.png ...   one camera, the new light turning once about the up (y) axis
    views_<output>.mp4, rotating_light_<output>.mp4   when ffmpeg is on PATH (otherwise a one-line note)
    light.npy                             the light given ([(L+1)^2, 3], before rotation and exposure matching)
    relight.json                          the settings

--light is a bundled preset (studio_key, overcast, warm_side), "learned" (the model's own light), a .npy
file of SH coefficients [(L+1)^2, 3] in the model's basis (neuface_ns/lighting/sh.py; lower orders are padded),
or an equirectangular .exr / .hdr environment map, projected to SH l <= 10 (neuface_ns/lighting/environment_map.py:
top row up, centre column in front of the face; turn it with --yaw / --pitch / --roll).
By default the light gets the learned light's white balance and peak irradiance (--no-match-exposure: as is),
since the learned light's colour and scale only mean something together with the learned albedo and colour
calibration. Each frame is a `RelightSettings` (neuface_ns/lighting/settings.py, what the viewer's "NeuFace
lighting" panel produces) rendered under `relight_override`; the model and its checkpoint are not modified.
Existing outputs are never overwritten without --overwrite.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

OUTPUT_NAMES = ("rgb", "albedo", "diffuse", "specular", "roughness", "normal", "depth", "accumulation")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from neuface_ns.lighting.presets import LIGHT_PRESETS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--load-config", type=Path, required=True, help="config.yml of a trained run")
    p.add_argument("--light", required=True,
                   help=f"learned, {', '.join(LIGHT_PRESETS)}, a .npy SH file or an .exr / .hdr environment map")
    p.add_argument("--output-dir", type=Path, required=True)
    p.add_argument("--orbit", type=int, default=0, metavar="N", help="render N orbit cameras instead of the eval cameras")
    p.add_argument("--orbit-arc", type=float, default=90.0, help="degrees the camera orbit spans (centred on the first eval camera)")
    p.add_argument("--light-frames", type=int, default=24, help="frames of the rotating-light orbit (0: none)")
    p.add_argument("--yaw", type=float, default=0.0, help="light rotation about y, degrees")
    p.add_argument("--pitch", type=float, default=0.0, help="light rotation about x, degrees")
    p.add_argument("--roll", type=float, default=0.0, help="light rotation about z, degrees")
    p.add_argument("--intensity", type=float, default=1.0)
    p.add_argument(
        "--no-match-exposure",
        action="store_true",
        help="use the light's absolute values (default: give it the learned light's white balance and peak irradiance)",
    )
    p.add_argument("--no-diffuse", action="store_true")
    p.add_argument("--no-specular", action="store_true")
    p.add_argument("--outputs", default="rgb", help=f"comma-separated, from {', '.join(OUTPUT_NAMES)}")
    p.add_argument("--downscale", type=float, default=1.0, help="render at 1/downscale of the cameras' resolution")
    p.add_argument("--max-views", type=int, default=0, help="render at most this many eval cameras (0: all)")
    p.add_argument("--fps", type=int, default=12)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs in --output-dir")
    args = p.parse_args(argv)
    args.outputs = [o.strip() for o in args.outputs.split(",") if o.strip()]
    unknown = [o for o in args.outputs if o not in OUTPUT_NAMES]
    if unknown:
        p.error(f"unknown output(s) {unknown}; choose from {', '.join(OUTPUT_NAMES)}")
    if args.downscale <= 0:
        p.error("--downscale must be positive")
    return args


def planned_paths(args: argparse.Namespace) -> List[Path]:
    out = args.output_dir
    paths = [out / "views", out / "light.npy", out / "relight.json"]
    paths += [out / f"views_{name}.mp4" for name in args.outputs]
    if args.light_frames > 0:
        paths.append(out / "rotating_light")
        paths += [out / f"rotating_light_{name}.mp4" for name in args.outputs]
    return paths


def orbit_cameras(reference, all_cameras, count: int, arc_degrees: float):
    """`count` copies of `reference` (a single camera) turned about the mean camera up axis through the origin."""
    from nerfstudio.cameras.cameras import Cameras

    up = torch.nn.functional.normalize(all_cameras.camera_to_worlds[:, :3, 1].mean(0), dim=0)
    c2w = reference.camera_to_worlds.reshape(3, 4)
    matrices = []
    angles = np.linspace(-arc_degrees / 2, arc_degrees / 2, count) if count > 1 else [0.0]
    for angle in angles:
        rot = _axis_angle(up, math.radians(float(angle))).to(c2w)
        matrices.append(torch.cat([rot @ c2w[:, :3], rot @ c2w[:, 3:]], dim=1))
    n = len(matrices)
    return Cameras(
        camera_to_worlds=torch.stack(matrices),
        fx=reference.fx.reshape(1, 1).expand(n, 1),
        fy=reference.fy.reshape(1, 1).expand(n, 1),
        cx=reference.cx.reshape(1, 1).expand(n, 1),
        cy=reference.cy.reshape(1, 1).expand(n, 1),
        width=reference.width.reshape(1, 1).expand(n, 1),
        height=reference.height.reshape(1, 1).expand(n, 1),
        camera_type=reference.camera_type.reshape(1, 1).expand(n, 1),
    )


def _axis_angle(axis: torch.Tensor, angle: float) -> torch.Tensor:
    x, y, z = axis.tolist()
    k = torch.tensor([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return torch.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def to_image(name: str, outputs) -> np.ndarray:
    from nerfstudio.utils import colormaps

    value = outputs[name]
    if name == "depth":
        value = colormaps.apply_depth_colormap(value, accumulation=outputs["accumulation"])
    elif value.shape[-1] == 1:
        value = value.expand(*value.shape[:-1], 3)
    return (value.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)


def render(model, cameras, settings_list, names, folder: Path, label: str) -> None:
    from PIL import Image

    from neuface_ns.lighting.settings import relight_override

    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
    total = len(settings_list)
    for i, (camera_index, settings) in enumerate(settings_list):
        with torch.no_grad(), relight_override(settings):
            outputs = model.get_outputs_for_camera(cameras[camera_index : camera_index + 1].to(model.device))
        for name in names:
            Image.fromarray(to_image(name, outputs)).save(folder / name / f"{i:03d}.png")
        print(f"\r{label}: {i + 1}/{total}", end="", flush=True)
    print()


def make_video(frames: Path, target: Path, fps: int) -> None:
    cmd = [
        "ffmpeg", "-loglevel", "error", "-y", "-framerate", str(fps), "-i", str(frames / "%03d.png"),
        "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(target),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    existing = [p for p in planned_paths(args) if p.exists()]
    if existing and not args.overwrite:
        print(f"error: {existing[0]} exists (and {len(existing) - 1} more); pass --overwrite to replace", file=sys.stderr)
        return 2
    if not args.load_config.is_file():
        print(f"error: no config file {args.load_config}", file=sys.stderr)
        return 2

    from nerfstudio.utils.eval_utils import eval_setup

    from neuface_ns.lighting.presets import load_sh_light
    from neuface_ns.lighting.settings import LEARNED_LIGHT, RelightSettings
    from neuface_ns.lighting.sh import MAX_SH_ORDER, resize_sh_light

    given_light = None
    if args.light != LEARNED_LIGHT:
        try:  # before the (slow) model load: a bad light file is one line
            given_light = load_sh_light(args.light, MAX_SH_ORDER)
        except (FileNotFoundError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2

    _, pipeline, checkpoint, step = eval_setup(args.load_config, test_mode="test")
    model = pipeline.model
    model.eval()
    order = model.light.order
    learned = model.light.coefficients.detach().cpu()
    light = learned.clone() if given_light is None else resize_sh_light(given_light, order)

    dataset = pipeline.datamanager.eval_dataset
    if dataset is None or len(dataset) == 0:
        dataset = pipeline.datamanager.train_dataset
    cameras = dataset.cameras
    if args.downscale != 1.0:
        cameras = cameras.reshape(-1)
        cameras.rescale_output_resolution(1.0 / args.downscale)
    if args.orbit > 0:
        view_cameras = orbit_cameras(cameras[0:1], pipeline.datamanager.train_dataset.cameras, args.orbit, args.orbit_arc)
    else:
        view_cameras = cameras if args.max_views <= 0 else cameras[: args.max_views]

    if args.overwrite:
        for path in existing:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    args.output_dir.mkdir(parents=True, exist_ok=True)

    base = dict(
        custom=None if args.light == LEARNED_LIGHT else light,
        source=LEARNED_LIGHT,
        roll=args.roll,
        intensity=args.intensity,
        match_exposure=not args.no_match_exposure,
        diffuse=not args.no_diffuse,
        specular=not args.no_specular,
    )
    views = [(i, RelightSettings(yaw=args.yaw, pitch=args.pitch, **base)) for i in range(len(view_cameras))]
    render(model, view_cameras, views, args.outputs, args.output_dir / "views", "views")
    turning = []
    if args.light_frames > 0:
        for k in range(args.light_frames):
            yaw = args.yaw + 360.0 * k / args.light_frames
            turning.append((0, RelightSettings(yaw=yaw, pitch=args.pitch, **base)))
        render(model, view_cameras, turning, args.outputs, args.output_dir / "rotating_light", "rotating light")

    np.save(args.output_dir / "light.npy", light.numpy().astype(np.float32))
    settings = {k: v for k, v in vars(args).items() if k not in ("load_config", "output_dir")}
    settings.update(load_config=str(args.load_config), checkpoint=str(checkpoint), step=step, num_views=len(views))
    (args.output_dir / "relight.json").write_text(json.dumps(settings, indent=2, default=str) + "\n")

    videos = []
    if shutil.which("ffmpeg") is None:
        print("ffmpeg not found on PATH: wrote PNG frames only (install ffmpeg for the mp4 videos).")
    else:
        folders = ("views", "rotating_light") if args.light_frames > 0 else ("views",)
        for folder in folders:
            for name in args.outputs:
                target = args.output_dir / f"{folder}_{name}.mp4"
                make_video(args.output_dir / folder / name, target, args.fps)
                videos.append(target)
    print(f"Wrote {args.output_dir}" + (f" ({len(videos)} videos)" if videos else ""))
    return 0


def entrypoint() -> None:
    """Console script `neuface-relight` (argparse, not tyro: keeps the CLI of scripts/relight.py exactly)."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
