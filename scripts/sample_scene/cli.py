"""Command line of the generator (``python scripts/make_sample_scene.py --help``)."""

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from .layouts.facescape import _clear_facescape_outputs, write_facescape_layout
from .layouts.idr import _clear_previous_outputs, write_idr_layout
from .layouts.release import write_facescape_release
from .scene import generate_scene


LAYOUT_DEFAULTS = {
    # layout: (width, height, supersample)
    "idr": (200, 150, 2),
    "facescape": (800, 600, 1),  # trained at downscale 4 (200 x 150), like the real data
    "facescape-release": (160, 120, 1),
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Render the synthetic NeuFace sample scene (DTU/IDR or FaceScape layouts).")
    ap.add_argument("--output-dir", required=True, type=Path)
    ap.add_argument("--layout", choices=sorted(LAYOUT_DEFAULTS), default="idr",
                    help="idr: DTU/IDR layout; facescape: NeuFace FaceScape layout (bundled sample); "
                         "facescape-release: tiny FaceScape multi-view release layout (distorted, one invalid view)")
    ap.add_argument("--num-views", type=int, default=None, help="default 20 (facescape-release: 6)")
    ap.add_argument("--width", type=int, default=None, help="default: idr 200, facescape 800, facescape-release 160")
    ap.add_argument("--height", type=int, default=None, help="default: idr 150, facescape 600, facescape-release 120")
    ap.add_argument("--supersample", type=int, default=None, help="samples per pixel axis (default: idr 2, else 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mesh-resolution", type=int, default=128)
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    width, height, supersample = LAYOUT_DEFAULTS[args.layout]
    width = args.width if args.width is not None else width
    height = args.height if args.height is not None else height
    supersample = args.supersample if args.supersample is not None else supersample
    num_views = args.num_views if args.num_views is not None else (6 if args.layout == "facescape-release" else 20)
    out: Path = args.output_dir
    if out.exists() and not out.is_dir():
        print(f"error: {out} exists and is not a directory", file=sys.stderr)
        return 2
    if out.is_dir() and any(out.iterdir()):
        if not args.overwrite:
            print(f"error: output directory {out} is not empty (use --overwrite)", file=sys.stderr)
            return 2
        if args.layout == "idr":
            _clear_previous_outputs(out)
        else:
            _clear_facescape_outputs(out)
    if num_views < 1 or width < 8 or height < 8 or args.mesh_resolution < 0 or supersample < 1:
        print("error: need --num-views >= 1, --width/--height >= 8, --mesh-resolution >= 0, --supersample >= 1",
              file=sys.stderr)
        return 2
    if args.layout != "idr" and args.mesh_resolution == 0:
        print("error: the FaceScape layouts need a mesh (--mesh-resolution > 0)", file=sys.stderr)
        return 2
    t0 = time.time()
    scene = generate_scene(num_views, width, height, args.seed, args.mesh_resolution, supersample=supersample)
    if args.layout == "idr":
        write_idr_layout(scene, out)
    elif args.layout == "facescape":
        write_facescape_layout(scene, out)
    else:
        write_facescape_release(scene, out)
    print(f"wrote {num_views} views ({args.layout} layout) to {out} in {time.time() - t0:.1f}s")
    return 0
