"""Stress test of the whole training step (neuface_ns/stress.py): both presets (surface and volume rendering) and
volume rendering on the DTU-layout data too, the bundled samples (the realistic scan too) and a freshly generated
scene, two seeds (with 1 and 2 threads), 200 steps each, a finite loss term and a finite gradient asserted at every
step.

Small batches (128 rays) keep it short; `python scripts/benchmark.py --stress` runs the presets' own
batches for longer. About 4.5 minutes on 2 idle cores.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from neuface_ns.stress import NonFiniteStep, stress_run

ROOT = Path(__file__).resolve().parents[1]
STEPS = 200
SMALL = {"pipeline.datamanager.train_num_rays_per_batch": 128}


@pytest.fixture(scope="module")
def generated_scene(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("make_sample_scene", ROOT / "scripts" / "make_sample_scene.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    scene = tmp_path_factory.mktemp("stress") / "scene"
    assert generator.main(["--output-dir", str(scene), "--num-views", "8", "--width", "64", "--height", "48",
                           "--seed", "3", "--mesh-resolution", "0"]) == 0
    return scene


CASES = [
    # (method, data: None = the preset's bundled sample / "generated", extra overrides)
    ("neuface-dtu", None, {}),
    ("neuface-dtu", "generated", {}),
    ("neuface-dtu", "generated", {"pipeline.model.render_mode": "volume", "pipeline.model.num_samples": 8}),
    ("neuface-facescape", None, {}),
    # the realistic sample (a real scan path-traced by Cycles), where the divergence was first seen
    ("neuface-dtu", "scan", {}),
    ("neuface-facescape", "scan/facescape", {"pipeline.datamanager.dataparser.downscale_factor": 1}),
]
SCAN = ROOT / "neuface_ns" / "data" / "sample" / "scan"


@pytest.mark.parametrize("seed,threads", [(0, 1), (1, 2)])
@pytest.mark.parametrize("method,data,extra", CASES, ids=["dtu-sample", "dtu-generated", "volume-generated",
                                                          "facescape-sample", "dtu-scan", "facescape-scan"])
def test_training_steps_stay_finite(method, data, extra, seed, threads, generated_scene):
    scene = {"generated": generated_scene, "scan": SCAN, "scan/facescape": SCAN / "facescape"}.get(data)
    result = stress_run(method, scene, steps=STEPS, seed=seed, threads=threads, overrides={**SMALL, **extra})
    assert result.steps == STEPS
    assert torch.isfinite(torch.tensor(result.final_loss))
    assert result.hit_fraction > 0.05, result  # the rays did reach the surface: the hit paths were exercised


def test_stress_run_reports_the_first_non_finite_step(monkeypatch):
    """The checker itself can fail: a light with a NaN coefficient makes the colour loss NaN at step 0."""
    from neuface_ns.lighting import light as lighting

    original = lighting.INITIAL_LIGHTS["paper"]

    def broken(order=lighting.MAX_SH_ORDER):
        light = original(order)
        light[0, 0] = float("nan")
        return light

    # the model builds its light from INITIAL_LIGHTS[config.initial_light] ("paper" in the presets)
    monkeypatch.setitem(lighting.INITIAL_LIGHTS, "paper", broken)
    with pytest.raises(NonFiniteStep, match=r"step 0: .*loss"):
        stress_run("neuface-dtu", None, steps=3, seed=0, threads=1, overrides=SMALL)


def test_set_config_fields_reaches_dataclass_fields_and_optimiser_dicts():
    """The benchmark's --set paths: dataclass attributes and the optimisers' dictionary keys; a wrong name is an
    AttributeError naming it, and the registered preset itself is never modified."""
    import copy

    from nerfstudio.configs.method_configs import all_methods

    from neuface_ns.stress import set_config_fields

    config = copy.deepcopy(all_methods["neuface-dtu"])
    set_config_fields(config, {"pipeline.model.dense_steps": 5, "optimizers.fields.scheduler.milestones": (1, 2)})
    assert config.pipeline.model.dense_steps == 5
    assert config.optimizers["fields"]["scheduler"].milestones == (1, 2)
    assert all_methods["neuface-dtu"].optimizers["fields"]["scheduler"].milestones != (1, 2)
    with pytest.raises(AttributeError, match="nonexistent"):
        set_config_fields(config, {"optimizers.nonexistent.scheduler.milestones": (1,)})
    with pytest.raises(AttributeError, match="no_such_field"):
        set_config_fields(config, {"pipeline.model.no_such_field": 1})
