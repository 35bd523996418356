"""Deprecated: the exporter is now neuface_ns.exporter (library) and neuface_ns.exporter.cli (`neuface-export`); this re-export keeps old imports working."""

from neuface_ns.exporter import *  # noqa: F401,F403
from neuface_ns.exporter.cli import ExportMesh, entrypoint  # noqa: F401

if __name__ == "__main__":
    entrypoint()
