"""Moved to neuface_ns/tools/prepare_facescape.py (console script `neuface-prepare-facescape`); kept for old commands and loaders."""
from neuface_ns.tools.prepare_facescape import *  # noqa: F401,F403
from neuface_ns.tools.prepare_facescape import entrypoint, main  # noqa: F401

if __name__ == "__main__":
    entrypoint()
