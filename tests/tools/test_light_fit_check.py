"""scripts/light_fit_check.py's fit: with a truly constant albedo it must recover the light, in both encodings."""

import numpy as np
import pytest
import torch


@pytest.mark.parametrize("encoding", ["linear", "srgb"])
def test_fit_recovers_a_known_light_under_a_constant_albedo(load_script, encoding):
    check = load_script("light_fit_check")
    rng = np.random.default_rng(0)
    normals = rng.normal(size=(4000, 3))
    normals[:, 2] = np.abs(normals[:, 2])  # the front hemisphere, as a face's cameras see it
    normals = torch.tensor(normals / np.linalg.norm(normals, axis=1, keepdims=True), dtype=torch.float32)
    # Irradiance of a light from the front and above, written out in closed form (Ramamoorthi & Hanrahan:
    # E(n) = pi * L00 * Y00 + (2 pi / 3) * sum_m L1m Y1m(n) for an l <= 1 light), not with the code's SH.
    l00, l_y, l_z = 1.0, 0.25, 0.4
    c0, c1 = 0.282095, 0.488603
    irradiance = np.pi * l00 * c0 + (2 * np.pi / 3) * c1 * (l_y * normals[:, 1].numpy() + l_z * normals[:, 2].numpy())
    linear = 0.25 * np.clip(irradiance, 0, None)[:, None].repeat(3, 1)
    assert linear.max() < 1.0  # nothing clipped
    stored = linear if encoding == "linear" else np.where(linear <= 0.0031308, 12.92 * linear,
                                                          1.055 * linear ** (1 / 2.4) - 0.055)
    light, loss = check.fit_light(normals, torch.tensor(stored, dtype=torch.float32),
                                  torch.zeros(len(normals), dtype=torch.long), encoding)
    with torch.no_grad():
        fitted = light.irradiance(normals).mean(-1).numpy()
    # The light up to its scale (which the albedo shares): the ratio to the true irradiance is constant. Fitting the
    # sRGB values with a linear model instead flattens the light (the ratio varies by 10 %).
    ratio = fitted / irradiance
    assert ratio.std() / ratio.mean() < 0.02
    assert loss < 0.01


def test_light_agreement_closed_form(load_script):
    """E(n) = a + b n_z over normals whose n_z is uniform on [0, 1] (the front hemisphere, uniformly in area):
    mean a + b / 2, std b / sqrt(12). A light with ambient added keeps the direction (correlation 1) and loses
    contrast in the ratio of those; a scaled light is the same light; an opposite one correlates at -1."""
    check = load_script("light_fit_check")
    nz = (np.arange(20000) + 0.5) / 20000
    true = 1.0 + 2.0 * nz
    flatter = 3.0 + 2.0 * nz
    correlation, contrast = check.light_agreement(flatter, true)
    expected = ((2.0 / np.sqrt(12)) / (3.0 + 1.0)) / ((2.0 / np.sqrt(12)) / (1.0 + 1.0))  # 0.5
    assert correlation == pytest.approx(1.0, abs=1e-9) and contrast == pytest.approx(expected, rel=1e-6)
    assert check.light_agreement(5.0 * true, true) == pytest.approx((1.0, 1.0))
    assert check.light_agreement(4.0 - 1.0 * nz, true)[0] == pytest.approx(-1.0)


def test_saved_light_reads_one_light_from_a_benchmark_state(load_script, tmp_path):
    check = load_script("light_fit_check")
    coefficients = torch.arange(27, dtype=torch.float32).reshape(9, 3)
    torch.save({"pipeline": {"_model.light.coefficients": coefficients, "_model.light_first_albedo": torch.ones(3)}},
               tmp_path / "run.pt")
    assert torch.equal(check.saved_light(tmp_path / "run.pt"), coefficients)
    torch.save({"pipeline": {"_model.field.x": torch.ones(1)}}, tmp_path / "none.pt")
    with pytest.raises(SystemExit, match="none.pt: expected one light.coefficients entry, found 0"):
        check.saved_light(tmp_path / "none.pt")
    with pytest.raises(SystemExit, match="missing.pt: no such file"):
        check.saved_light(tmp_path / "missing.pt")
