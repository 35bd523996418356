"""The realistic scene generator's own maths (scripts/render_scan_scene.py), without Blender: the probe cameras
cover the sphere once, the SH from six probe images of a known environment match closed forms and the
equirectangular projection, cameras look at their target, and the iBUG landmark order from menpo's groups."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from neuface_ns.lighting.environment_map import equirectangular_directions, project_environment_map
from neuface_ns.lighting.sh import real_spherical_harmonics


@pytest.fixture(scope="module")
def generator(load_script):
    return load_script("render_scan_scene")


def _probe_images(generator, radiance_fn, size=48):
    images = {}
    for face in generator.PROBE_FACES:
        K = generator.intrinsics(size, size, size / 2.0)
        directions = generator.pixel_rays(K, generator.probe_rotation(face), size, size)
        images[face] = radiance_fn(directions.reshape(-1, 3)).reshape(size, size, 3)
    return images


def test_probe_cameras_are_rotations_looking_along_the_six_axes(generator):
    seen = []
    for face in generator.PROBE_FACES:
        rotation = generator.probe_rotation(face)
        assert np.allclose(rotation.T @ rotation, np.eye(3)) and np.isclose(np.linalg.det(rotation), 1.0)
        seen.append(tuple(np.round(rotation[:, 2]).astype(int)))
    assert sorted(seen) == sorted([(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)])


def test_probe_sh_of_a_constant_environment_is_the_closed_form(generator):
    images = _probe_images(generator, lambda d: np.ones((d.shape[0], 3)) * [1.0, 0.5, 2.0])
    coefficients = generator.sh_from_probes(images, order=4)
    assert coefficients[0] == pytest.approx(np.array([1.0, 0.5, 2.0]) * math.sqrt(4 * math.pi), rel=2e-3)
    assert np.abs(coefficients[1:]).max() < 5e-3


def test_probe_sh_agrees_with_the_equirectangular_projection(generator):
    """A smooth environment (a bright lobe from above-left plus sky colour) seen by the six probes and stored as
    an equirectangular map gives the same SH up to l = 10: both paths use the same face-frame directions."""
    lobe = np.array([-0.5, 0.7, 0.3]) / np.linalg.norm([-0.5, 0.7, 0.3])

    def radiance(d):
        return 0.2 + np.exp(6.0 * (d @ lobe - 1.0))[:, None] * np.array([1.0, 0.8, 0.6]) + 0.3 * d[:, 1:2].clip(0)

    from_probes = generator.sh_from_probes(_probe_images(generator, radiance, size=96), order=10)
    directions, _ = equirectangular_directions(192, 384)
    equirect = radiance(directions.reshape(-1, 3).numpy()).reshape(192, 384, 3)
    from_map = project_environment_map(equirect, order=10).numpy()
    assert np.abs(from_probes - from_map).max() < 0.02 * np.abs(from_map[0]).max()


def test_rig_cameras_look_at_the_face_from_the_front(generator):
    cameras = generator.capture_rig(24, np.random.default_rng(0), 5.5, yaw_deg=65.0, pitch_deg=(-20.0, 30.0))
    assert len(cameras) == 24
    for rotation, centre in cameras:
        assert np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-9)
        assert centre[2] > 1.0  # in front of the face (+z)
        to_origin = -centre / np.linalg.norm(centre)
        assert rotation[:, 2] @ to_origin > 0.99  # the optical axis points at the face
        assert rotation[:, 1][1] < 0  # image down is world down (y up)


def test_blender_camera_matrix_maps_the_optical_axis(generator):
    rotation = generator.look_at_c2w(np.array([0.0, 0.0, 5.0]), np.zeros(3))
    matrix = np.asarray(generator.blender_camera_matrix(rotation, np.array([0.0, 0.0, 5.0])))
    # Blender cameras look down their local -z; the face frame's -z is Blender's +y, and its +y is Blender's +z.
    assert np.allclose(-matrix[:3, 2], [0.0, 1.0, 0.0], atol=1e-9)
    assert np.allclose(matrix[:3, 1], [0.0, 0.0, 1.0], atol=1e-9)
    assert np.allclose(matrix[:3, 3], [0.0, -5.0, 0.0])


def test_ibug_order_from_menpo_groups(generator, tmp_path):
    """menpo's LJSON groups (chin, leye, reye, leyebrow, nose, reyebrow, mouth) reordered to iBUG's 68: the subject's
    right eyebrow and eye (at -x) first, nose tip at index 30."""
    points = np.zeros((68, 3))
    labels = [("chin", range(0, 17)), ("leye", range(17, 23)), ("reye", range(23, 29)), ("leyebrow", range(29, 34)),
              ("nose", range(34, 43)), ("reyebrow", range(43, 48)), ("mouth", range(48, 68))]
    for name, indices in labels:
        for k, i in enumerate(indices):
            side = -1.0 if name in ("reye", "reyebrow") else 1.0  # menpo's "r" = the subject's right = -x
            points[i] = [side * (10 + k) if name not in ("chin", "nose", "mouth") else k, i, 0.0]
    points[37] = [0.0, -30.0, 40.0]  # the nose tip: the nose group's 4th point
    data = {"groups": {"LJSON": {"labels": [{"label": n, "mask": list(ix)} for n, ix in labels],
                                 "landmarks": {"points": points.tolist()}}}, "version": 3}
    path = tmp_path / "face.ljson"
    path.write_text(json.dumps(data))
    ordered = generator.ibug_landmark_points(path)
    assert np.allclose(ordered[30], [0.0, -30.0, 40.0])
    assert (ordered[17:22, 0] < 0).all() and (ordered[22:27, 0] > 0).all()  # right eyebrow, then left
    assert (ordered[36:42, 0] < 0).all() and (ordered[42:48, 0] > 0).all()  # right eye, then left
    assert np.allclose(ordered[48:], points[48:])
