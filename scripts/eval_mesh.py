"""Moved to neuface_ns/tools/eval_mesh.py (console script `neuface-eval-mesh`); kept for old commands and loaders."""
from neuface_ns.tools.eval_mesh import *  # noqa: F401,F403
from neuface_ns.tools.eval_mesh import entrypoint, main  # noqa: F401

if __name__ == "__main__":
    entrypoint()
