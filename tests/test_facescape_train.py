"""End to end: `ns-train neuface-facescape` on the bundled FaceScape-layout sample with tiny networks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from neuface_ns.data.facescape import SAMPLE_FACESCAPE_DIR

NS_TRAIN = Path(sys.executable).parent / "ns-train"


@pytest.mark.skipif(not NS_TRAIN.exists(), reason="ns-train not installed next to this interpreter")
def test_ns_train_neuface_facescape_tiny(tmp_path):
    cmd = [
        str(NS_TRAIN), "neuface-facescape",
        "--output-dir", str(tmp_path),
        "--max-num-iterations", "30",
        "--steps-per-save", "1000",
        "--steps-per-eval-image", "1000",
        "--final-mesh-resolution", "40",
        "--pipeline.datamanager.train-num-rays-per-batch", "128",
        "--pipeline.model.num-samples", "4",
        "--pipeline.model.dense-steps", "16",
        "--pipeline.model.eval-num-rays-per-chunk", "8192",
        "--pipeline.model.sdf-field.sdf-network.hidden-dim", "48",
        "--pipeline.model.sdf-field.sdf-network.num-layers", "2",
        "--pipeline.model.sdf-field.sdf-network.skip-layers", "1",
        "--pipeline.model.sdf-field.appearance.hidden-dim", "32",
        "--pipeline.model.sdf-field.appearance.num-layers", "2",
        "--pipeline.model.sdf-field.appearance.skip-layers", "1",
        "--pipeline.model.sdf-field.integrated-basis.hidden-dim", "16",
        "--pipeline.model.sdf-field.integrated-basis.num-layers", "2",
        "pipeline.model.sdf-field.residual:residual-sdf-config",
        "--pipeline.model.sdf-field.residual.hidden-dims", "16", "16",
        "neuface-facescape-data",
        "--downscale-factor", "16",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # tiny ops: threads only contend
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    elapsed = time.time() - t0
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    runs = list(tmp_path.glob("facescape/neuface-facescape/*"))
    assert len(runs) == 1
    run = runs[0]
    assert (run / "config.yml").is_file()
    assert list((run / "nerfstudio_models").glob("step-*.ckpt"))
    metrics = json.loads((run / "eval_metrics.json").read_text())["results"]
    assert np.isfinite(metrics["psnr_masked"]) and np.isfinite(metrics["psnr"])
    # the mesh is written in TU millimetres: marching cubes over the face frame's [-1, 1]^3 is the 200 mm cube
    # around nose_tip - (0, 0, 40)
    import trimesh

    mesh = trimesh.load(run / "mesh.ply", process=False)
    scene = json.loads((SAMPLE_FACESCAPE_DIR / "scene.json").read_text())
    centre = np.array(scene["nose_tip_tu_mm"]) - [0.0, 0.0, 40.0]
    local = (np.asarray(mesh.vertices) - centre) / 100.0
    assert len(mesh.vertices) > 100 and np.abs(local).max() <= 1.01
    assert (local.max(axis=0) - local.min(axis=0)).min() > 0.2  # tens of millimetres, not scene units
    transforms = json.loads((run / "dataparser_transforms.json").read_text())
    assert transforms["scale"] == pytest.approx(0.01)
    print(f"ns-train neuface-facescape (tiny, 30 iterations) took {elapsed:.1f} s")
