"""neuface-eval (both protocols) and ns-eval's protocol line, on a tiny run written by the fixture: the
neuface-dtu preset with tiny networks on a 24 x 18 generated scene, an untrained pipeline saved as its
step-0 checkpoint (no ns-train). The metric functions themselves are tested in test_eval.py."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
NEUFACE_EVAL = Path(sys.executable).with_name("neuface-eval")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, save_tiny_dtu_run):
    root = tmp_path_factory.mktemp("neuface_eval")
    config, pipeline = save_tiny_dtu_run(root)
    return {"root": root, "config": config.get_base_dir() / "config.yml", "num_train": pipeline.model.num_train_data}


def _env():
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore", CUDA_VISIBLE_DEVICES="")
    return env


def test_reference_latent_defaults_and_clamp():
    from neuface_ns.evaluate_cli import dataset_kind, reference_latent

    assert reference_latent("facescape", 50) == (6, None)
    assert reference_latent("dtu", 49) == (4, None)
    index, note = reference_latent("facescape", 5)
    assert index == 4 and "6" in note and "5 training images" in note
    assert dataset_kind("neuface-facescape-paper", "surface") == "facescape"
    assert dataset_kind("neuface-dtu", "volume") == "dtu"
    assert dataset_kind("my-method", "surface") == "dtu" and dataset_kind("my-method", "volume") == "facescape"


def test_neuface_eval_reference_protocol_via_the_console_script(tiny_run, tmp_path):
    """The console script, reference protocol on a DTU run: latent 4, pixel-list SSIM, predicted mask; the JSON
    records them and its numbers are the ones the model computes with those choices."""
    from nerfstudio.utils.eval_utils import eval_setup

    from neuface_ns.eval import masked_image_metrics, predicted_mask

    out = tmp_path / "reference.json"
    proc = subprocess.run([str(NEUFACE_EVAL), "--load-config", str(tiny_run["config"]), "--output-path", str(out),
                           "--protocol", "reference"], capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "neuface-eval: protocol reference" in proc.stdout
    result = json.loads(out.read_text())
    assert result["method_name"] == "neuface-dtu"
    assert result["protocol"]["name"] == "reference"
    assert {k: result["protocol"][k] for k in ("dataset", "latent", "ssim", "mask")} == {
        "dataset": "dtu", "latent": "4", "ssim": "pixel-list", "mask": "predicted"}
    assert all(isinstance(v, float) for v in result["results"].values())
    assert {"psnr_masked", "ssim_masked", "psnr_masked_std"} <= set(result["results"])

    # The same numbers by hand: render each held-out view with latent 4, score over accumulation > 0.5.
    _, pipeline, _, _ = eval_setup(tiny_run["config"], test_mode="test")
    pipeline.model.config.eval_latent = "4"
    psnrs, ssims, psnrs_gt = [], [], []
    for camera, batch in pipeline.datamanager.fixed_indices_eval_dataloader:
        outputs = pipeline.model.get_outputs_for_camera(camera=camera)
        image = batch["image"][..., :3]
        mask = predicted_mask(outputs["accumulation"])
        gt_mask = batch["fg_mask"].reshape(*image.shape[:2], 1) > 0.5
        assert not torch.equal(mask, gt_mask)  # the two variants score different pixels here
        values = masked_image_metrics(outputs["rgb"], image, mask, lpips=False, ssim_mode="pixel-list")
        psnrs.append(values["psnr_masked"])
        ssims.append(values["ssim_masked"])
        psnrs_gt.append(masked_image_metrics(outputs["rgb"], image, gt_mask, lpips=False)["psnr_masked"])
    assert result["results"]["psnr_masked"] == pytest.approx(sum(psnrs) / len(psnrs), abs=1e-4)
    assert result["results"]["ssim_masked"] == pytest.approx(sum(ssims) / len(ssims), abs=1e-5)
    assert not math.isclose(result["results"]["psnr_masked"], sum(psnrs_gt) / len(psnrs_gt), abs_tol=1e-3)


def test_neuface_eval_default_protocol_matches_ns_eval_and_both_say_so(tiny_run, tmp_path, capsys):
    from nerfstudio.scripts.eval import ComputePSNR

    from neuface_ns.evaluate_cli import EvaluateNeuFace

    ours = EvaluateNeuFace(load_config=tiny_run["config"], output_path=tmp_path / "ours.json").main()
    assert ours["protocol"]["name"] == "neuface-ns"
    assert {k: ours["protocol"][k] for k in ("latent", "ssim", "mask")} == {
        "latent": "mean", "ssim": "masked-image", "mask": "gt"}
    capsys.readouterr()

    ComputePSNR(load_config=tiny_run["config"], output_path=tmp_path / "ns.json").main()
    out = capsys.readouterr().out
    assert "neuface-ns: image metrics: protocol neuface-ns" in " ".join(out.split())
    ns = json.loads((tmp_path / "ns.json").read_text())["results"]
    for key in ("psnr", "ssim", "psnr_masked", "ssim_masked"):
        assert ns[key] == pytest.approx(ours["results"][key], abs=1e-5)

    # an override makes it "custom", and a bad latent stops with one line
    custom = EvaluateNeuFace(load_config=tiny_run["config"], output_path=tmp_path / "c.json", ssim="pixel-list").main()
    assert custom["protocol"]["name"] == "custom" and custom["protocol"]["ssim"] == "pixel-list"
    with pytest.raises(SystemExit, match="out of range"):
        EvaluateNeuFace(load_config=tiny_run["config"], output_path=tmp_path / "x.json",
                        latent=str(tiny_run["num_train"])).main()
