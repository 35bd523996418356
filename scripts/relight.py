"""Moved to neuface_ns/tools/relight.py (console script `neuface-relight`); kept for old commands and loaders."""
from neuface_ns.tools.relight import *  # noqa: F401,F403
from neuface_ns.tools.relight import entrypoint, main  # noqa: F401

if __name__ == "__main__":
    entrypoint()
