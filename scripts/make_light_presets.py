#!/usr/bin/env python
"""Generate the bundled environment-light presets, neuface_ns/lights/<name>.npy.

    python scripts/make_light_presets.py                 # check the bundled files against their definitions
    python scripts/make_light_presets.py --write [--overwrite] [--output-dir DIR]

Each preset is a constant ambient term plus smooth lobes exp(k (d.u - 1)) around the direction u *towards* the
light, in the face frame of the bundled data (y up, the face looks towards +z, the subject's left at +x),
projected onto the real SH up to order 10 (neuface_ns/lighting/sh.py) by quadrature and scaled so that the mean
l = 0 coefficient equals the paper's initial light's (about 3.47). The runtime only reads the .npy files
(neuface_ns/lighting/presets.py); this script is how they were made, and checks that they still match.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import torch

from neuface_ns.lighting.light import PAPER_INITIAL_LIGHT_L2
from neuface_ns.lighting.presets import LIGHT_PRESET_DIR, LIGHT_PRESETS
from neuface_ns.lighting.sh import MAX_SH_ORDER, fibonacci_directions, real_spherical_harmonics

#: Entries: ambient RGB, then (direction, sharpness k, RGB) per lobe.
LIGHT_PRESET_DEFINITIONS = {
    # Key light above and to the camera's left of the face, a dim fill from the other side, dim ambient.
    "studio_key": ((0.03, 0.03, 0.03), (((-0.55, 0.55, 0.65), 12.0, (1.0, 0.97, 0.92)), ((0.8, 0.0, 0.6), 6.0, (0.25, 0.26, 0.3)))),
    # Soft, slightly blue sky dome from above plus a bright ambient (low contrast, weak highlights).
    "overcast": ((0.35, 0.37, 0.40), (((0.0, 1.0, 0.15), 1.5, (0.55, 0.58, 0.65)),)),
    # Warm low sun from the subject's left (+x), cool dim ambient.
    "warm_side": ((0.015, 0.02, 0.035), (((1.0, 0.15, 0.25), 8.0, (1.0, 0.62, 0.30)),)),
}


def fit_sh_light(
    radiance_fn: Callable[[torch.Tensor], torch.Tensor], order: int = MAX_SH_ORDER, num_directions: int = 20000
) -> torch.Tensor:
    """Project radiance_fn(directions [N, 3] float64) -> [N, C] onto the real SH up to `order`: [(order+1)^2, C]
    float64, by equal-weight quadrature over Fibonacci directions (4 pi / N each)."""
    directions = fibonacci_directions(num_directions)
    basis = real_spherical_harmonics(directions, order)
    return (4.0 * math.pi / num_directions) * basis.T @ radiance_fn(directions)


def build_light_preset(name: str, order: int = MAX_SH_ORDER) -> torch.Tensor:
    """The preset `name` from LIGHT_PRESET_DEFINITIONS as float32 [(order+1)^2, 3] coefficients."""
    ambient, lobes = LIGHT_PRESET_DEFINITIONS[name]

    def radiance(d: torch.Tensor) -> torch.Tensor:
        value = torch.tensor(ambient, dtype=torch.float64).expand(d.shape[0], 3).clone()
        for direction, sharpness, colour in lobes:
            u = torch.nn.functional.normalize(torch.tensor(direction, dtype=torch.float64), dim=0)
            value = value + torch.exp(sharpness * (d @ u - 1.0))[:, None] * torch.tensor(colour, dtype=torch.float64)
        return value

    coefficients = fit_sh_light(radiance, order)
    target_dc = torch.tensor(PAPER_INITIAL_LIGHT_L2[0], dtype=torch.float64).mean()
    coefficients = coefficients * (target_dc / coefficients[0].mean())
    return coefficients.float()


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="store_true", help="write the presets (default: only check the existing files)")
    p.add_argument("--output-dir", type=Path, default=LIGHT_PRESET_DIR)
    p.add_argument("--overwrite", action="store_true", help="with --write: replace existing files")
    args = p.parse_args(argv)
    if set(LIGHT_PRESET_DEFINITIONS) != set(LIGHT_PRESETS):
        print(f"error: definitions {sorted(LIGHT_PRESET_DEFINITIONS)} != presets.LIGHT_PRESETS {sorted(LIGHT_PRESETS)}",
              file=sys.stderr)
        return 2
    status = 0
    for name in LIGHT_PRESETS:
        light = build_light_preset(name).numpy().astype(np.float32)
        path = args.output_dir / f"{name}.npy"
        if args.write:
            if path.exists() and not args.overwrite:
                print(f"error: {path} exists; pass --overwrite to replace", file=sys.stderr)
                return 2
            args.output_dir.mkdir(parents=True, exist_ok=True)
            np.save(path, light)
            print(f"wrote {path}")
        elif not path.is_file():
            print(f"{path}: missing", file=sys.stderr)
            status = 1
        else:
            error = float(np.abs(np.load(path) - light).max())
            print(f"{path}: max |difference| {error:.2e}" + ("" if error <= 1e-5 else "  MISMATCH"))
            status = status or int(error > 1e-5)
    return status


if __name__ == "__main__":
    sys.exit(main())
