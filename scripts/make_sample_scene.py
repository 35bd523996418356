#!/usr/bin/env python
"""Synthetic face scene generator (independent numpy reference renderer): the command line entry.

Renders a face-like analytic signed distance function (SDF) with a small,
self-contained numpy sphere tracer and a physically based shading model, and
writes the DTU "IDR layout" that the NeuFace dataparser reads::

    <out>/image/000.png ...   RGB, 8 bit, one per view (background black)
    <out>/mask/000.png ...    8 bit, 255 = object, 0 = background
    <out>/cameras.npz         world_mat_i, scale_mat_i (4x4 float64) per view i
    <out>/gt_mesh.ply         ground-truth mesh in WORLD units (binary PLY)
    <out>/scene.json          independent ground truth for tests

or one of the two FaceScape layouts (``--layout facescape``: NeuFace's FaceScape
layout, the bundled sample; ``--layout facescape-release``: a tiny FaceScape
multi-view release, the input of scripts/prepare_facescape.py).

The code lives in the package ``scripts/sample_scene/`` (conventions, the face,
the renderer, the scene, one module per layout, the command line; its
``__init__`` lists them).  This file loads that package by path, so it works
both as a script and when a test loads it with ``importlib`` by file path, and
re-exports the package's public names (``gen.face_sdf``, ``gen.generate_scene``,
``gen.write_idr_layout``, ``gen.main``, ...).  The frames and the camera / pixel
conventions are documented in ``sample_scene/conventions.py``, the shading and
image formation in ``sample_scene/renderer.py``.

This module and the package deliberately import nothing from ``neuface_ns``:
they are the reference the model/dataparser are tested against.

CLI::

    python scripts/make_sample_scene.py --output-dir DIR [--layout idr|facescape|facescape-release]
        [--num-views 20] [--width 200] [--height 150] [--supersample 2] [--seed 0]
        [--mesh-resolution 128] [--overwrite]
"""

import importlib.util
import sys
from pathlib import Path


def _load_package():
    """Import scripts/sample_scene (as the top-level package ``sample_scene``) without touching sys.path."""
    name = "sample_scene"
    if name not in sys.modules:
        init = Path(__file__).resolve().parent / name / "__init__.py"
        spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


_load_package()

from sample_scene import *  # noqa: E402,F401,F403  (the generator's public names, see sample_scene.__all__)
from sample_scene import __all__, main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
