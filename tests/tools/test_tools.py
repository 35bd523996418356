"""The user-facing tools are package modules (neuface_ns/tools/) with console scripts; scripts/<name>.py stay as
wrappers so that old commands and loaders keep working."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = {"eval_mesh": "neuface-eval-mesh", "relight": "neuface-relight", "prepare_facescape": "neuface-prepare-facescape"}


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_console_script_points_at_the_module_entrypoint(name):
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get(TOOLS[name]) == f"neuface_ns.tools.{name}:entrypoint"
    module = importlib.import_module(f"neuface_ns.tools.{name}")
    assert callable(module.entrypoint) and callable(module.main)


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_old_script_path_re_exports_the_module(name):
    spec = importlib.util.spec_from_file_location(f"old_{name}", ROOT / "scripts" / f"{name}.py")
    wrapper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wrapper)
    module = importlib.import_module(f"neuface_ns.tools.{name}")
    assert wrapper.main is module.main and wrapper.entrypoint is module.entrypoint
    public = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_") and v.__module__ == module.__name__]
    assert public and all(getattr(wrapper, n) is getattr(module, n) for n in public)
