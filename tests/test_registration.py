"""Entry points (neuface_ns/dataparser_configs.py, neuface_ns/configs/methods.py): nerfstudio discovers both
dataparsers without importing a model or a method module, and all five methods by their names."""

from __future__ import annotations

import subprocess
import sys


def test_entry_points_register_dataparsers_without_the_model_and_the_methods():
    code = (
        "import sys\n"
        "from nerfstudio.plugins.registry_dataparser import discover_dataparsers\n"
        "from neuface_ns.data.dtu import NeuFaceDTUDataParserConfig\n"
        "from neuface_ns.data.facescape import NeuFaceFaceScapeDataParserConfig\n"
        "parsers, descriptions = discover_dataparsers()\n"
        "assert isinstance(parsers['neuface-dtu-data'], NeuFaceDTUDataParserConfig), parsers\n"
        "assert isinstance(parsers['neuface-facescape-data'], NeuFaceFaceScapeDataParserConfig), parsers\n"
        "assert descriptions['neuface-dtu-data']\n"
        "bad = [m for m in sys.modules if m.startswith('neuface_ns') and ('method' in m or 'model' in m)]\n"
        "assert not bad, bad\n"
        "from nerfstudio.plugins.registry import discover_methods\n"
        "methods, _ = discover_methods()\n"
        "for name in ('neuface-dtu', 'neuface-dtu-paper', 'neuface-facescape', 'neuface-facescape-relight',\n"
        "             'neuface-facescape-paper'):\n"
        "    assert methods[name].method_name == name, name\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
