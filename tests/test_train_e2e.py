"""End to end: the real `ns-train neuface-dtu` on a tiny generated IDR scene, then nerfstudio's own
`eval_setup` on the checkpoint, a `--load-dir` resume, and a bad data directory.

One module fixture runs everything that needs a subprocess, concurrently where it can (the bad
input run beside the training run, the resume beside the in-process checks), because each
`ns-train` start costs several seconds of imports.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
NS_TRAIN = Path(sys.executable).with_name("ns-train")
ITERATIONS = 40
RESUME_ITERATIONS = 3

# Tiny networks and batches: the method and its code paths, not its quality.
COMMON_FLAGS = [
    "--vis", "tensorboard",
    "--logging.steps-per-log", "1",
    "--steps-per-save", "1000",
    "--steps-per-eval-image", "1000",
    "--pipeline.datamanager.train-num-rays-per-batch", "256",
    "--pipeline.model.sdf-field.sdf-network.hidden-dim", "64",
    "--pipeline.model.sdf-field.appearance.hidden-dim", "32",
    "--pipeline.model.sdf-field.integrated-basis.hidden-dim", "16",
    "--pipeline.model.dense-steps", "16",
]


def _env():
    env = dict(os.environ)
    # one intra-op thread: the networks are tiny, and on a shared CPU OpenMP spinning costs 4x here
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return env


def _start(args, log_dir: Path, name: str) -> subprocess.Popen:
    out = open(log_dir / f"{name}.stdout", "w")
    err = open(log_dir / f"{name}.stderr", "w")
    return subprocess.Popen([str(NS_TRAIN), "neuface-dtu", *args], stdout=out, stderr=err, env=_env(), cwd=log_dir)


def _finish(proc: subprocess.Popen, log_dir: Path, name: str, timeout: float = 400):
    rc = proc.wait(timeout=timeout)
    return rc, (log_dir / f"{name}.stdout").read_text(), (log_dir / f"{name}.stderr").read_text()


def _run_dir(output_dir: Path) -> Path:
    runs = sorted(output_dir.glob("*/neuface-dtu/*/config.yml"))
    assert len(runs) == 1, runs
    return runs[0].parent


def _scalars(run_dir: Path, tag: str):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(run_dir.glob("events.out.tfevents.*"))
    assert files, f"no tensorboard event file in {run_dir}"
    steps, values = [], []
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            for event in acc.Scalars(tag):
                steps.append(event.step)
                values.append(event.value)
    order = np.argsort(steps)
    return np.asarray(steps)[order], np.asarray(values)[order]


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    # 1. bad input first (it only needs images and masks, no cameras.npz): runs beside everything else
    bad = root / "no_cameras"
    sample = ROOT / "neuface_ns" / "data" / "sample" / "dtu"
    for sub in ("image", "mask"):
        (bad / sub).mkdir(parents=True)
        shutil.copy(sample / sub / "000.png", bad / sub / "000.png")
    bad_run = _start(["--data", str(bad), "--output-dir", str(root / "out_bad"), "--max-num-iterations", "2",
                      *COMMON_FLAGS], root, "bad")

    # 2. a tiny scene from the sample generator: 6 views (1 held out) at 48 x 36
    spec = importlib.util.spec_from_file_location("make_sample_scene", ROOT / "scripts" / "make_sample_scene.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    scene = root / "scene"
    assert generator.main(["--output-dir", str(scene), "--num-views", "6", "--width", "48", "--height", "36",
                           "--mesh-resolution", "0"]) == 0

    # 3. the training run; meanwhile import what the in-process checks need
    train = _start(["--data", str(scene), "--output-dir", str(root / "out"), "--max-num-iterations", str(ITERATIONS),
                    "--final-mesh-resolution", "32", *COMMON_FLAGS], root, "train")
    import nerfstudio.utils.eval_utils  # noqa: F401  (several seconds of imports, overlapped with training)

    result = {"root": root, "scene": scene, "bad_dir": bad}
    result["bad"] = _finish(bad_run, root, "bad")
    result["train"] = _finish(train, root, "train")
    rc, stdout, stderr = result["train"]
    assert rc == 0, f"ns-train failed (rc={rc}):\n{stdout[-3000:]}\n{stderr[-3000:]}"
    run_dir = _run_dir(root / "out")
    result["run_dir"] = run_dir
    # 4. resume in the background while the in-process checks run
    result["resume_proc"] = _start(
        ["--data", str(scene), "--output-dir", str(root / "out_resume"), "--max-num-iterations", str(RESUME_ITERATIONS),
         "--load-dir", str(run_dir / "nerfstudio_models"), "--final-eval", "False", "--final-mesh-resolution", "0",
         *COMMON_FLAGS], root, "resume")
    yield result
    proc = result["resume_proc"]
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_training_writes_checkpoint_metrics_and_mesh(e2e):
    run_dir = e2e["run_dir"]
    checkpoint = run_dir / "nerfstudio_models" / f"step-{ITERATIONS - 1:09d}.ckpt"
    assert checkpoint.is_file()
    metrics = json.loads((run_dir / "eval_metrics.json").read_text())
    assert metrics["step"] == ITERATIONS - 1
    for key in ("psnr", "ssim", "psnr_masked", "ssim_masked"):
        assert np.isfinite(metrics["results"][key]), key
    assert metrics["results"]["psnr_masked"] > 10.0

    import trimesh

    mesh = trimesh.load(run_dir / "mesh.ply", force="mesh")
    assert len(mesh.faces) > 100
    # written in the dataset's world units: back in the normalised frame it lies inside the unit sphere
    info = json.loads((e2e["scene"] / "scene.json").read_text())
    normalised = (np.asarray(mesh.vertices) - np.asarray(info["centre"])) / info["scale"]
    radius = np.linalg.norm(normalised, axis=-1)
    assert radius.max() < 1.05 and radius.min() > 0.05
    stdout = e2e["train"][1]
    assert "eval_metrics.json" in stdout and "mesh.ply" in stdout


def test_training_loss_goes_down(e2e):
    steps, loss = _scalars(e2e["run_dir"], "Train Loss")
    assert steps.tolist() == list(range(ITERATIONS))
    assert np.isfinite(loss).all()
    first, last = loss[:8].mean(), loss[-8:].mean()
    assert last < 0.8 * first, (first, last, loss.round(3).tolist())
    _, mask_loss = _scalars(e2e["run_dir"], "Train Loss Dict/mask_loss")
    assert mask_loss[-8:].mean() < mask_loss[:8].mean()


def test_bad_data_dir_fails_with_one_line(e2e):
    rc, stdout, stderr = e2e["bad"]
    assert rc != 0
    assert "Traceback" not in stderr and "Traceback" not in stdout
    missing = str(e2e["bad_dir"] / "cameras.npz")
    lines = [line for line in stderr.splitlines() if "cameras.npz" in line]
    assert len(lines) == 1, stderr[-2000:]
    assert missing in lines[0]


def test_checkpoint_loads_through_eval_setup_and_renders(e2e):
    from nerfstudio.utils.eval_utils import eval_setup

    run_dir = e2e["run_dir"]
    config, pipeline, checkpoint_path, step = eval_setup(run_dir / "config.yml", test_mode="test")
    assert step == ITERATIONS - 1
    assert Path(checkpoint_path).name == f"step-{ITERATIONS - 1:09d}.ckpt"

    # every tensor of the pipeline equals the checkpoint file's, including the light, latents and networks
    saved = torch.load(checkpoint_path, map_location="cpu")["pipeline"]
    state = pipeline.state_dict()
    for key in ("_model.light.coefficients", "_model.calibration.latents", "_model.field.integrated_basis.mlp.0.weight"):
        assert key in saved, key
    assert not any(key.startswith("_model.density.") for key in saved)  # surface rendering has no density beta
    assert set(saved) == set(state)
    for key, value in saved.items():
        assert torch.equal(state[key].cpu(), value), key

    model = pipeline.model
    assert not model.training
    camera = pipeline.datamanager.eval_dataset.cameras[0:1].to(model.device)
    with torch.no_grad():
        outputs = model.get_outputs_for_camera(camera)
    assert list(outputs)[0] == "rgb"
    assert outputs["rgb"].shape == (36, 48, 3)
    assert 0.0 <= float(outputs["rgb"].min()) and float(outputs["rgb"].max()) <= 1.0
    # after 40 iterations the silhouette already overlaps the object mask
    mask = pipeline.datamanager.eval_dataset[0]["fg_mask"][..., 0].to(model.device) > 0.5
    rendered = outputs["accumulation"][..., 0] > 0.5
    iou = float((mask & rendered).sum()) / max(float((mask | rendered).sum()), 1.0)
    assert iou > 0.3, iou


def test_eval_relight_scores_a_light_against_relit_images(e2e, tmp_path):
    """neuface-eval-relight on ground truth that the model itself rendered under the warm_side preset: the relit
    render matches it almost exactly, the render under the learned light does not (the baseline)."""
    from PIL import Image

    from nerfstudio.utils.eval_utils import eval_setup

    from neuface_ns.lighting.presets import load_sh_light
    from neuface_ns.lighting.settings import RelightSettings as LightSettings
    from neuface_ns.relight_eval import EvalRelight

    _, pipeline, _, _ = eval_setup(e2e["run_dir"] / "config.yml", test_mode="test")
    model, dataset = pipeline.model, pipeline.datamanager.eval_dataset
    relit_dir = tmp_path / "relit"
    relit_dir.mkdir()
    model.lighting_controls.fixed_settings = LightSettings(custom=load_sh_light("warm_side"))
    for index in range(len(dataset)):
        with torch.no_grad():
            rgb = model.get_outputs_for_camera(dataset.cameras[index : index + 1])["rgb"]
        name = Path(dataset._dataparser_outputs.image_filenames[index]).name
        Image.fromarray((rgb.numpy() * 255).round().astype(np.uint8)).save(relit_dir / name)
    model.lighting_controls.fixed_settings = None

    result = EvalRelight(load_config=e2e["run_dir"] / "config.yml", light="warm_side", relit_images=relit_dir,
                         output=tmp_path / "relit.json").main()
    mean = result["mean"]
    assert mean["relit_psnr_masked"] > 40.0, mean  # the same renderer, up to 8-bit rounding
    assert mean["relit_gain_db"] > 5.0, mean
    assert json.loads((tmp_path / "relit.json").read_text())["mean"] == mean
    assert len(result["views"]) == len(dataset)


def test_resume_continues_from_the_saved_step(e2e):
    rc, stdout, stderr = _finish(e2e["resume_proc"], e2e["root"], "resume")
    assert rc == 0, f"resume failed (rc={rc}):\n{stdout[-3000:]}\n{stderr[-3000:]}"
    first_checkpoint = e2e["run_dir"] / "nerfstudio_models" / f"step-{ITERATIONS - 1:09d}.ckpt"
    assert "Done loading Nerfstudio checkpoint" in stdout and first_checkpoint.name in stdout
    run_dir = _run_dir(e2e["root"] / "out_resume")
    last = ITERATIONS - 1 + RESUME_ITERATIONS
    assert sorted(p.name for p in (run_dir / "nerfstudio_models").iterdir()) == [f"step-{last:09d}.ckpt"]
    steps, loss = _scalars(run_dir, "Train Loss")
    assert steps.tolist() == list(range(ITERATIONS, last + 1))  # starts right after the saved step
    _, first_loss = _scalars(e2e["run_dir"], "Train Loss")
    assert loss.mean() < 0.8 * first_loss[:5].mean()  # continues from trained weights, not from scratch

    before = torch.load(first_checkpoint, map_location="cpu")
    after = torch.load(run_dir / "nerfstudio_models" / f"step-{last:09d}.ckpt", map_location="cpu")
    assert after["step"] == last
    # parameters moved by at most a few Adam steps from the saved ones (lr per group; Adam's step <~ 3 lr)
    lrs = {"_model.light.coefficients": 5e-3, "_model.calibration.latents": 1e-3,
           "_model.field.integrated_basis.mlp.0.weight": 5e-4}
    for key, lr in lrs.items():
        change = (after["pipeline"][key] - before["pipeline"][key]).abs().max()
        assert float(change) <= 3.5 * lr * RESUME_ITERATIONS, (key, float(change))
    # the optimiser state was restored too: Adam's step counters continue
    for group, state in after["optimizers"].items():
        counts = {int(s["step"]) for s in state["state"].values()}
        assert counts == {ITERATIONS + RESUME_ITERATIONS}, (group, counts)


def test_non_finite_steps_are_skipped_then_stop_with_one_line(e2e, tmp_path):
    """An absurd learning rate breaks the model within a step or two: every following step is non-finite and
    skipped with a line on the console; after --max-consecutive-bad-steps of them ns-train stops with one line
    (no traceback, non-zero exit) that says how to resume, and whatever checkpoint exists holds finite values."""
    out = tmp_path / "out_nan"
    proc = _start(["--data", str(e2e["scene"]), "--output-dir", str(out), "--max-num-iterations", "30",
                   "--optimizers.fields.optimizer.lr", "1e20", "--optimizers.light.optimizer.lr", "1e20",
                   "--max-consecutive-bad-steps", "4", "--final-mesh-resolution", "0", *COMMON_FLAGS], tmp_path, "nan")
    rc, stdout, stderr = _finish(proc, tmp_path, "nan")
    assert rc != 0
    assert "Traceback" not in stderr and "Traceback" not in stdout
    skipped = [line for line in stdout.splitlines() if "update skipped" in line]
    assert len(skipped) == 4, stdout[-3000:]
    assert "4 in a row" in skipped[-1]
    lines = [line for line in stderr.splitlines() if "training stopped at step" in line]
    assert len(lines) == 1, stderr[-2000:]
    assert "4 steps in a row" in lines[0] and "--load-dir" in lines[0]
    for checkpoint in out.glob("*/neuface-dtu/*/nerfstudio_models/*.ckpt"):
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)["pipeline"]
        for key, value in state.items():
            assert not value.is_floating_point() or torch.isfinite(value).all(), (checkpoint.name, key)
