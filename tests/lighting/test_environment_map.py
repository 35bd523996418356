"""Equirectangular HDR maps as SH lights (neuface_ns/lighting/environment_map.py), against closed forms: a constant map,
maps that are one spherical harmonic, a small bright patch in a known direction, and the exact SH rotation."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from neuface_ns.lighting.environment_map import (
    equirectangular_directions,
    project_environment_map,
    read_environment_map,
)
from neuface_ns.lighting.presets import load_sh_light
from neuface_ns.lighting.sh import real_spherical_harmonics, rotate_sh, rotation_matrix


def test_pixel_solid_angles_sum_to_the_sphere_and_directions_are_unit():
    directions, solid_angle = equirectangular_directions(32, 64)
    assert float(solid_angle.sum()) == pytest.approx(4.0 * math.pi, rel=1e-12)
    assert torch.allclose(directions.norm(dim=-1), torch.ones(32, 64, dtype=torch.float64))


def test_constant_map_is_only_the_dc_term():
    """∫ L Y_00 dω = L sqrt(4 pi); every other coefficient vanishes."""
    radiance = np.ones((64, 128, 3), dtype=np.float32) * np.array([1.0, 2.0, 0.5], dtype=np.float32)
    coefficients = project_environment_map(radiance, order=10)
    assert coefficients[0].numpy() == pytest.approx(np.array([1.0, 2.0, 0.5]) * math.sqrt(4 * math.pi), rel=1e-5)
    # (midpoint quadrature in the polar angle: the zonal terms are off by ~3e-4 of the DC at 64 x 128)
    assert bool((coefficients[1:].abs() < 1e-3 * coefficients[0]).all())


def test_a_map_that_is_one_spherical_harmonic_projects_to_that_coefficient():
    directions, _ = equirectangular_directions(128, 256)
    basis = real_spherical_harmonics(directions.reshape(-1, 3), 10)
    for index in (1, 2, 3, 6, 8, 15, 40, 99, 120):
        radiance = basis[:, index].reshape(128, 256, 1).numpy()
        coefficients = project_environment_map(radiance, order=10)[:, 0].double()
        expected = torch.zeros(121, dtype=torch.float64)
        expected[index] = 1.0
        assert float((coefficients - expected).abs().max()) < 1e-2, (index, float((coefficients - expected).abs().max()))


def _patch_map(u: float, v: float, height: int = 64) -> np.ndarray:
    """A dark map with a small bright patch centred at image coordinates (u, v) in [0, 1]."""
    width = 2 * height
    image = np.zeros((height, width, 3), dtype=np.float32)
    row, col = int(v * height), int(u * width)
    rows = np.clip(np.arange(row - 1, row + 2), 0, height - 1)
    cols = np.arange(col - 1, col + 2) % width  # the map wraps around horizontally
    image[np.ix_(rows, cols)] = 50.0
    return image


@pytest.mark.parametrize(
    "u,v,direction",
    [(0.5, 0.5, (0.0, 0.0, 1.0)), (0.75, 0.5, (-1.0, 0.0, 0.0)), (0.25, 0.5, (1.0, 0.0, 0.0)),
     (0.0, 0.5, (0.0, 0.0, -1.0)), (0.5, 0.02, (0.0, 1.0, 0.0))],
)
def test_map_convention_top_is_up_centre_is_in_front_of_the_face(u, v, direction):
    """The l = 1 coefficients are proportional to (y, z, x) of the light's mean direction."""
    coefficients = project_environment_map(_patch_map(u, v), order=2)[:, 0]
    mean_direction = torch.stack([coefficients[3], coefficients[1], coefficients[2]])
    mean_direction = mean_direction / mean_direction.norm()
    assert torch.allclose(mean_direction, torch.tensor(direction), atol=0.1), mean_direction


def test_turning_the_map_equals_the_exact_sh_rotation():
    """Rolling the columns by a quarter turn moves +z to -x: the light rotated by yaw = -90 degrees."""
    g = np.random.default_rng(0)
    radiance = g.random((64, 128, 3)).astype(np.float32) + _patch_map(0.4, 0.3)
    rolled = np.roll(radiance, 32, axis=1)
    direct = project_environment_map(rolled, order=10).double()
    rotated = rotate_sh(project_environment_map(radiance, order=10).double(), rotation_matrix(yaw=-90.0))
    assert float((direct - rotated).abs().max()) < 1e-3 * float(direct.abs().max())


def test_exr_and_hdr_files_load_as_lights(tmp_path):
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2

    g = np.random.default_rng(1)
    radiance = (g.random((32, 64, 3)) * 4.0).astype(np.float32)
    cv2.imwrite(str(tmp_path / "env.exr"), radiance[..., ::-1])  # OpenCV writes BGR
    cv2.imwrite(str(tmp_path / "env.hdr"), radiance[..., ::-1])
    assert np.array_equal(read_environment_map(tmp_path / "env.exr"), radiance)
    assert np.allclose(read_environment_map(tmp_path / "env.hdr"), radiance, rtol=0.02, atol=0.02)  # RGBE: 8-bit mantissa
    light = load_sh_light(tmp_path / "env.exr", order=10)
    assert light.shape == (121, 3) and light.dtype == torch.float32
    assert torch.allclose(light, project_environment_map(radiance, 10))
    assert load_sh_light(tmp_path / "env.hdr", order=2).shape == (9, 3)


def test_bad_environment_maps_are_one_line_errors(tmp_path):
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2

    square = tmp_path / "square.exr"
    cv2.imwrite(str(square), np.ones((16, 16, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"square\.exr: .*twice as wide"):
        read_environment_map(square)
    broken = tmp_path / "broken.hdr"
    broken.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"broken\.hdr: not a readable HDR image"):
        read_environment_map(broken)
    with pytest.raises(FileNotFoundError, match="missing.exr"):
        load_sh_light(tmp_path / "missing.exr")


def test_viewer_light_list_takes_hdr_maps_from_neuface_lights(tmp_path, monkeypatch):
    """NEUFACE_LIGHTS=<folder> adds its .exr / .hdr / .npy files to the viewer's light list; choosing one renders
    with the map's SH projection (rotated and scaled by the same controls as the presets)."""
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2

    from neuface_ns.lighting.settings import RelightSettings as LightSettings
    from neuface_ns.viewer import LightingControls

    radiance = _patch_map(0.5, 0.3) + 0.1
    cv2.imwrite(str(tmp_path / "sky.exr"), radiance[..., ::-1])
    (tmp_path / "notes.txt").write_text("not a light")
    monkeypatch.setenv("NEUFACE_LIGHTS", str(tmp_path))
    controls = LightingControls(order=10)
    assert list(controls.extra_lights) == ["sky.exr"]
    assert "sky.exr" in controls.c1_light.options
    learned = torch.zeros(121, 3)
    learned[0] = 3.0
    chosen = controls.light_coefficients(learned, LightSettings(source="sky.exr", match_exposure=False))
    assert torch.allclose(chosen, project_environment_map(radiance, 10))
    turned = controls.light_coefficients(learned, LightSettings(source="sky.exr", match_exposure=False, yaw=-90.0))
    expected = rotate_sh(project_environment_map(radiance, 10).double(), rotation_matrix(yaw=-90.0)).float()
    assert torch.allclose(turned, expected, atol=1e-4)
