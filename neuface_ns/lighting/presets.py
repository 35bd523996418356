"""Lights that can replace the learned one: the bundled presets, SH files, HDR maps and the NEUFACE_LIGHTS list.

The bundled presets are SH lights in the basis of sh.py, [(10+1)^2, 3] float32, stored as
neuface_ns/lights/<name>.npy; scripts/make_light_presets.py generates them (it is not needed at run time).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Dict

import numpy as np
import torch

from neuface_ns.lighting.environment_map import ENVIRONMENT_MAP_SUFFIXES, load_environment_map_light
from neuface_ns.lighting.sh import MAX_SH_ORDER, resize_sh_light

#: Bundled environment lights (neuface_ns/lights/<name>.npy), in the basis of sh.py, [(10+1)^2, 3].
LIGHT_PRESET_DIR = Path(__file__).parent.parent / "lights"
LIGHT_PRESETS = ("studio_key", "overcast", "warm_side")

#: Environment variable listing extra lights for the viewer's light list (files or folders, os.pathsep-separated).
EXTRA_LIGHTS_VARIABLE = "NEUFACE_LIGHTS"
EXTRA_LIGHT_SUFFIXES = (".exr", ".hdr", ".npy")


def extra_light_files() -> Dict[str, Path]:
    """{file name: path} of the .exr / .hdr / .npy lights named by NEUFACE_LIGHTS (folders are listed, sorted).

    Lets a user offer their own HDR maps in the viewer without a code change; the first file of a name wins.
    """
    found: Dict[str, Path] = {}
    for entry in filter(None, os.environ.get(EXTRA_LIGHTS_VARIABLE, "").split(os.pathsep)):
        path = Path(entry).expanduser()
        candidates = sorted(path.iterdir()) if path.is_dir() else [path]
        for candidate in candidates:
            if candidate.suffix.lower() in EXTRA_LIGHT_SUFFIXES and candidate.is_file():
                found.setdefault(candidate.name, candidate)
    return found


def load_sh_light(source: str | Path, order: int = MAX_SH_ORDER) -> torch.Tensor:
    """A bundled preset name, a .npy file of shape [(L+1)^2, 3], or an equirectangular .exr / .hdr environment
    map (projected to SH, see environment_map.py) -> float32 [(order+1)^2, 3].

    Lights of a lower order are padded with zeros, higher orders are dropped. Errors are one line
    (FileNotFoundError for a missing light, ValueError for a malformed one), for the CLIs to print.
    """
    path = LIGHT_PRESET_DIR / f"{source}.npy" if str(source) in LIGHT_PRESETS else Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"no light '{source}': give one of {', '.join(LIGHT_PRESETS)}, a .npy file or an .exr / .hdr map"
        )
    if path.suffix.lower() in ENVIRONMENT_MAP_SUFFIXES:
        return load_environment_map_light(path, order)
    array = np.load(path, allow_pickle=False)
    if array.ndim != 2 or array.shape[1] != 3 or math.isqrt(array.shape[0]) ** 2 != array.shape[0]:
        raise ValueError(f"{path}: an SH light must have shape [(L+1)^2, 3], got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{path}: the light has non-finite values")
    return resize_sh_light(torch.from_numpy(array.astype(np.float32)), order)
