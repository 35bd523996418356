#!/usr/bin/env python
"""Synthetic face scene generator (independent numpy reference renderer).

Renders a face-like analytic signed distance function (SDF) with a small,
self-contained numpy sphere tracer and a physically based shading model, and
writes the DTU "IDR layout" that the NeuFace dataparser reads::

    <out>/image/000.png ...   RGB, 8 bit, one per view (background black)
    <out>/mask/000.png ...    8 bit, 255 = object, 0 = background
    <out>/cameras.npz         world_mat_i, scale_mat_i (4x4 float64) per view i
    <out>/gt_mesh.ply         ground-truth mesh in WORLD units (binary PLY)
    <out>/scene.json          independent ground truth for tests

This module deliberately imports nothing from ``neuface_ns``: it is the
reference the model/dataparser are tested against.

Conventions
-----------
* Normalised frame: the object lies inside the unit sphere (radius < 0.8),
  y is up and the face looks towards +z.  "left_eye" is the subject's
  (anatomical) left eye, which sits at +x.
* World frame (DTU-like millimetres): ``X_world = s * x_norm + c`` with
  ``s = 150`` and ``c = (12, -35, 620)``.  ``scale_mat = [[s,0,0,cx],
  [0,s,0,cy], [0,0,s,cz], [0,0,0,1]]`` (the same for every view).
* Cameras are OpenCV cameras: x right, y down, z forward; ``R, t`` map world
  to camera, ``x_cam = R @ X_world + t``; camera centre ``C = -R^T t``.
  ``world_mat_i`` is 4x4 with the top three rows ``K @ [R | t]`` and last
  row ``0 0 0 1``; ``world_mat_i @ scale_mat_i`` projects normalised points.
* Pixel convention: OpenCV's, as in DTU / IDR ``cameras.npz`` and FaceScape's
  ``params.json``: pixel centres sit at integer coordinates, so the ray of
  pixel (row i, column j) passes through ``(u, v) = (j, i)``, i.e. its
  camera-space direction is ``K^-1 @ [j, i, 1]``, and the image spans
  ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``.  Reported landmark pixels are the
  continuous coordinates ``(u, v) = (x/z, y/z)`` of ``K @ x_cam``, so landmark
  (u, v) lies in pixel ``(row, col) = (round(v), round(u))``.  (Renderers
  that measure from the image corner, like nerfstudio, use cx + 0.5, cy + 0.5.)
* Anti-aliasing: 2x2 supersampling at sub-pixel offsets {-0.25, +0.25} from
  the pixel centre in both u and v; colour = mean of the four samples (misses
  count as black); mask = (number of hitting samples >= 2), i.e. coverage >= 0.5.
* Image formation (linear, no gamma / tone curve):
  ``pixel = clip(G_i @ (diffuse + specular), 0, 1)``, quantised with
  ``round(255 * pixel)``.  ``diffuse = albedo / pi * E_sh(n)`` where
  ``E_sh`` is the order-2 spherical-harmonics irradiance (Ramamoorthi &
  Hanrahan 2001) of the environment; ``specular`` is a GGX microfacet lobe
  (Smith-Schlick G, Schlick Fresnel with spatially varying F0) lit by one
  directional key light.  ``G_i`` is a per-view diagonal 3x3 exposure/colour
  gain (view 0 = identity).

CLI::

    python scripts/make_sample_scene.py --output-dir DIR [--num-views 20]
        [--width 200] [--height 150] [--seed 0] [--mesh-resolution 128]
        [--overwrite]
"""


import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

# ----------------------------------------------------------------------------
# Global scene constants
# ----------------------------------------------------------------------------

WORLD_SCALE = 150.0
WORLD_CENTRE = (12.0, -35.0, 620.0)
BOUNDING_RADIUS = 0.85  # normalised; the object lies strictly inside (~0.75)
CAMERA_DISTANCE = 3.0  # normalised units (nominal)
HEAD_HEIGHT = 1.1  # normalised extent along y used to pick the focal length
FILL_FRACTION = 0.65  # head height / image height

PIXEL_CONVENTION = (
    "OpenCV: pixel centres at integer coordinates; the ray of pixel (row i, col j) passes through "
    "(u, v) = (j, i), direction_cam = K^-1 @ [j, i, 1]; the image spans [-0.5, W-0.5] x [-0.5, H-0.5]; "
    "landmark pixels are continuous (u, v) = projection through K, lying in pixel (row, col) = "
    "(round(v), round(u)); a corner-based renderer (nerfstudio) uses cx + 0.5, cy + 0.5"
)
CAMERA_CONVENTION = (
    "OpenCV: x right, y down, z forward; x_cam = R @ X_world + t; "
    "camera centre = -R^T t; world_mat = [[K @ [R | t]], [0, 0, 0, 1]]; "
    "X_world = scale * x_normalised + centre; scale_mat = "
    "[[s,0,0,c0],[0,s,0,c1],[0,0,s,c2],[0,0,0,1]]"
)
NORMALISED_FRAME = "object inside the unit sphere, y up, face looks towards +z, subject's left at +x"

# ----------------------------------------------------------------------------
# SDF primitives (all 1-Lipschitz, so sphere tracing never oversteps)
# ----------------------------------------------------------------------------


def _sd_sphere(p: np.ndarray, c: Sequence[float], r: float) -> np.ndarray:
    return np.linalg.norm(p - np.asarray(c, dtype=p.dtype), axis=-1) - r


def _sd_ellipsoid(p: np.ndarray, c: Sequence[float], radii: Sequence[float]) -> np.ndarray:
    """Conservative ellipsoid distance: (|q / r| - 1) * min(r).

    The zero set is the exact ellipsoid and the function is 1-Lipschitz (the
    map q -> q / r has Lipschitz constant 1 / min(r)), hence it is a lower
    bound of the true distance and safe for sphere tracing.  Its gradient is
    parallel to the exact ellipsoid normal on the surface.
    """
    radii = np.asarray(radii, dtype=p.dtype)
    q = (p - np.asarray(c, dtype=p.dtype)) / radii
    return (np.linalg.norm(q, axis=-1) - 1.0) * float(radii.min())


def _sd_capsule(p: np.ndarray, a: Sequence[float], b: Sequence[float], r: float) -> np.ndarray:
    a = np.asarray(a, dtype=p.dtype)
    b = np.asarray(b, dtype=p.dtype)
    pa = p - a
    ba = b - a
    h = np.clip(pa @ ba / float(ba @ ba), 0.0, 1.0)
    return np.linalg.norm(pa - h[..., None] * ba, axis=-1) - r


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum; gradient = h*grad(a) + (1-h)*grad(b), so 1-Lipschitz."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    return -_smin(-a, -b, k)


# ----------------------------------------------------------------------------
# The face
# ----------------------------------------------------------------------------

EYE_CENTRES = {"left": (0.15, 0.075, 0.345), "right": (-0.15, 0.075, 0.345)}
EYE_RADIUS = 0.07
SOCKET_CENTRES = {"left": (0.15, 0.085, 0.45), "right": (-0.15, 0.085, 0.45)}
SOCKET_RADIUS = 0.09


def face_components(p: np.ndarray) -> Dict[str, np.ndarray]:
    """Distances of the individual parts plus the composed SDF under key "sdf".

    ``p`` is (..., 3) in the normalised frame.
    """
    p = np.asarray(p, dtype=np.float64)
    comp: Dict[str, np.ndarray] = {}
    head = _sd_ellipsoid(p, (0.0, 0.04, -0.03), (0.42, 0.54, 0.47))
    jaw = _sd_ellipsoid(p, (0.0, -0.26, 0.10), (0.30, 0.25, 0.32))
    d = _smin(head, jaw, 0.12)
    chin = _sd_ellipsoid(p, (0.0, -0.41, 0.25), (0.13, 0.09, 0.11))
    d = _smin(d, chin, 0.08)
    brow = _sd_ellipsoid(p, (0.0, 0.165, 0.345), (0.31, 0.065, 0.11))
    comp["brow"] = brow
    d = _smin(d, brow, 0.06)
    cheeks = np.minimum(
        _sd_ellipsoid(p, (0.2, -0.07, 0.29), (0.13, 0.1, 0.12)),
        _sd_ellipsoid(p, (-0.2, -0.07, 0.29), (0.13, 0.1, 0.12)),
    )
    d = _smin(d, cheeks, 0.08)
    ears = np.minimum(
        _sd_ellipsoid(p, (0.425, 0.03, -0.04), (0.05, 0.12, 0.08)),
        _sd_ellipsoid(p, (-0.425, 0.03, -0.04), (0.05, 0.12, 0.08)),
    )
    comp["ears"] = ears
    d = _smin(d, ears, 0.03)
    # eye sockets (smooth subtraction)
    sockets = np.minimum(
        _sd_sphere(p, SOCKET_CENTRES["left"], SOCKET_RADIUS),
        _sd_sphere(p, SOCKET_CENTRES["right"], SOCKET_RADIUS),
    )
    d = _smax(d, -sockets, 0.03)
    # nose: bridge capsule + tip ball + alae
    nose = _sd_capsule(p, (0.0, 0.11, 0.43), (0.0, -0.06, 0.545), 0.035)
    nose = _smin(nose, _sd_sphere(p, (0.0, -0.075, 0.545), 0.05), 0.03)
    alae = np.minimum(
        _sd_sphere(p, (0.045, -0.095, 0.5), 0.035),
        _sd_sphere(p, (-0.045, -0.095, 0.5), 0.035),
    )
    nose = _smin(nose, alae, 0.02)
    comp["nose"] = nose
    d = _smin(d, nose, 0.05)
    # lips and the mouth groove
    lips = np.minimum(
        _sd_ellipsoid(p, (0.0, -0.2, 0.425), (0.11, 0.035, 0.06)),
        _sd_ellipsoid(p, (0.0, -0.265, 0.415), (0.1, 0.036, 0.06)),
    )
    comp["lips"] = lips
    d = _smin(d, lips, 0.02)
    groove = _sd_capsule(p, (-0.085, -0.232, 0.49), (0.085, -0.232, 0.49), 0.011)
    d = _smax(d, -groove, 0.01)
    # eyeballs (hard union)
    eyes = np.minimum(
        _sd_sphere(p, EYE_CENTRES["left"], EYE_RADIUS),
        _sd_sphere(p, EYE_CENTRES["right"], EYE_RADIUS),
    )
    comp["eyes"] = eyes
    d = np.minimum(d, eyes)
    comp["sdf"] = d
    return comp


def face_sdf(points: np.ndarray) -> np.ndarray:
    """Analytic (1-Lipschitz) SDF of the face in the normalised frame; negative inside."""
    return face_components(points)["sdf"]


def face_normals(points: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Unit outward normals by central differences of :func:`face_sdf`."""
    points = np.asarray(points, dtype=np.float64)
    grad = np.empty_like(points)
    for k in range(3):
        e = np.zeros(3)
        e[k] = h
        grad[..., k] = face_sdf(points + e) - face_sdf(points - e)
    return grad / np.maximum(np.linalg.norm(grad, axis=-1, keepdims=True), 1e-12)


# ----------------------------------------------------------------------------
# Materials and lighting
# ----------------------------------------------------------------------------


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _mix(a: np.ndarray, b, w: np.ndarray) -> np.ndarray:
    return a * (1.0 - w[..., None]) + np.asarray(b, dtype=np.float64) * w[..., None]


MATERIAL_PARAMETERS = {
    "skin_albedo": [0.80, 0.60, 0.50],
    "skin_variation": "albedo *= 1 + 0.06 sin(7x+1) sin(5y) + 0.04 sin(9z+2); cheeks blend towards [0.82, 0.5, 0.45]",
    "lip_albedo": [0.62, 0.20, 0.22],
    "sclera_albedo": [0.86, 0.83, 0.80],
    "iris_albedo": [0.28, 0.16, 0.08],
    "pupil_albedo": [0.03, 0.03, 0.03],
    "brow_albedo": [0.20, 0.13, 0.09],
    "hair_albedo": [0.14, 0.09, 0.07],
    "roughness": {"skin": 0.5, "t_zone": 0.3, "lips": 0.35, "eyes": 0.12, "hair": 0.6, "brows": 0.6},
    "specular_f0": {"skin": 0.03, "t_zone": 0.06, "lips": 0.05, "eyes": 0.06, "hair": 0.02, "brows": 0.02},
    "diffuse_model": "lambertian: albedo / pi * E_sh(n)",
    "specular_model": (
        "GGX: D*G*F / (4 NdotL NdotV) * key_irradiance * NdotL, alpha = roughness^2, "
        "D = alpha^2 / (pi ((NdotH^2)(alpha^2 - 1) + 1)^2), G = Smith-Schlick with k = alpha / 2, "
        "F = F0 + (1 - F0)(1 - VdotH)^5"
    ),
}


def material(points: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Albedo (N,3), roughness (N,) and specular F0 (N,) at surface points (normalised frame)."""
    p = np.asarray(points, dtype=np.float64)
    comp = face_components(p)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    mp = MATERIAL_PARAMETERS
    var = 1.0 + 0.06 * np.sin(7 * x + 1) * np.sin(5 * y) + 0.04 * np.sin(9 * z + 2)
    albedo = np.asarray(mp["skin_albedo"])[None] * var[..., None]
    cheek = np.exp(-(((np.abs(x) - 0.22) / 0.08) ** 2 + ((y + 0.08) / 0.07) ** 2)) * (z > 0.1)
    albedo = _mix(albedo, [0.82, 0.50, 0.45], 0.6 * cheek)
    rough = np.full(p.shape[:-1], mp["roughness"]["skin"])
    f0 = np.full(p.shape[:-1], mp["specular_f0"]["skin"])
    # T-zone: forehead and nose are shinier
    tz = np.maximum(
        _smoothstep(0.17, 0.23, y) * _smoothstep(0.24, 0.16, np.abs(x)) * _smoothstep(0.15, 0.3, z),
        _smoothstep(0.03, 0.0, comp["nose"]),
    )
    rough = rough + (mp["roughness"]["t_zone"] - rough) * tz
    f0 = f0 + (mp["specular_f0"]["t_zone"] - f0) * tz
    # hair: hairline high at the front, low at the back; ears excluded
    hairline = 0.38 - 0.42 * _smoothstep(0.3, -0.2, z)
    hair = _smoothstep(-0.015, 0.015, y - hairline) * _smoothstep(0.0, 0.03, comp["ears"])
    albedo = _mix(albedo, mp["hair_albedo"], hair)
    rough = rough + (mp["roughness"]["hair"] - rough) * hair
    f0 = f0 + (mp["specular_f0"]["hair"] - f0) * hair
    # eyebrows: elliptic bands above the eyes, on the front
    ex = (np.abs(x) - 0.155) / 0.095
    ey = (y - 0.175 - 0.02 * (1 - ex**2)) / 0.022
    brows = _smoothstep(1.0, 0.7, ex**2 + ey**2) * _smoothstep(0.2, 0.3, z)
    albedo = _mix(albedo, mp["brow_albedo"], brows)
    rough = rough + (mp["roughness"]["brows"] - rough) * brows
    f0 = f0 + (mp["specular_f0"]["brows"] - f0) * brows
    # lips
    lips = _smoothstep(0.02, 0.003, comp["lips"]) * _smoothstep(0.3, 0.36, z)
    albedo = _mix(albedo, mp["lip_albedo"], lips)
    rough = rough + (mp["roughness"]["lips"] - rough) * lips
    f0 = f0 + (mp["specular_f0"]["lips"] - f0) * lips
    # eyes: sclera, iris, pupil by angle from the eye's forward (+z) axis
    on_eye = _smoothstep(0.004, 0.0005, comp["eyes"])
    eye_c = np.where((x >= 0)[..., None], np.asarray(EYE_CENTRES["left"]), np.asarray(EYE_CENTRES["right"]))
    cosang = (p - eye_c)[..., 2] / EYE_RADIUS
    eye_col = _mix(np.broadcast_to(np.asarray(mp["sclera_albedo"]), albedo.shape).copy(), mp["iris_albedo"],
                   _smoothstep(0.86, 0.90, cosang))
    eye_col = _mix(eye_col, mp["pupil_albedo"], _smoothstep(0.965, 0.98, cosang))
    albedo = albedo * (1 - on_eye[..., None]) + eye_col * on_eye[..., None]
    rough = rough + (mp["roughness"]["eyes"] - rough) * on_eye
    f0 = f0 + (mp["specular_f0"]["eyes"] - f0) * on_eye
    return np.clip(albedo, 0.0, 1.0), rough, f0


# Real SH basis order used for the coefficients below (l <= 2):
SH_BASIS = ["Y00", "Y1-1(y)", "Y10(z)", "Y11(x)", "Y2-2(xy)", "Y2-1(yz)", "Y20(3z^2-1)", "Y21(xz)", "Y22(x^2-y^2)"]
# Radiance SH coefficients L_lm per RGB channel, in the normalised/world axes
# (y up, +z towards the face's front).  Brighter from the front and the top.
SH_COEFFS = np.array(
    [
        [2.05, 2.00, 1.90],  # L00
        [0.45, 0.45, 0.48],  # L1-1  (y: top brighter)
        [0.70, 0.68, 0.64],  # L10   (z: front brighter)
        [0.10, 0.09, 0.08],  # L11   (x)
        [0.02, 0.02, 0.02],  # L2-2
        [0.10, 0.10, 0.10],  # L2-1
        [-0.10, -0.10, -0.10],  # L20
        [0.05, 0.05, 0.05],  # L21
        [0.05, 0.05, 0.04],  # L22
    ],
    dtype=np.float64,
)
KEY_LIGHT_DIRECTION = np.array([0.35, 0.55, 0.75]) / np.linalg.norm([0.35, 0.55, 0.75])  # towards the light
KEY_LIGHT_IRRADIANCE = np.array([2.6, 2.5, 2.3])

_SH_C1, _SH_C2, _SH_C3, _SH_C4, _SH_C5 = 0.429043, 0.511664, 0.743125, 0.886227, 0.247708


def sh_irradiance(normals: np.ndarray, coeffs: np.ndarray = SH_COEFFS) -> np.ndarray:
    """Irradiance E(n) (N,3) of an order-2 SH environment (Ramamoorthi & Hanrahan 2001, eq. 13)."""
    n = np.asarray(normals, dtype=np.float64)
    x, y, z = n[..., 0:1], n[..., 1:2], n[..., 2:3]
    L00, L1m1, L10, L11, L2m2, L2m1, L20, L21, L22 = coeffs
    return (
        _SH_C1 * L22 * (x * x - y * y)
        + _SH_C3 * L20 * z * z
        + _SH_C4 * L00
        - _SH_C5 * L20
        + 2 * _SH_C1 * (L2m2 * x * y + L21 * x * z + L2m1 * y * z)
        + 2 * _SH_C2 * (L11 * x + L1m1 * y + L10 * z)
    )


def shade(points: np.ndarray, view_dirs: np.ndarray) -> np.ndarray:
    """Linear outgoing radiance (N,3) at surface points; ``view_dirs`` point from the camera to the point."""
    n = face_normals(points)
    albedo, rough, f0 = material(points)
    diffuse = albedo / math.pi * sh_irradiance(n)
    v = -view_dirs / np.linalg.norm(view_dirs, axis=-1, keepdims=True)
    l = KEY_LIGHT_DIRECTION[None]
    hvec = v + l
    hvec /= np.maximum(np.linalg.norm(hvec, axis=-1, keepdims=True), 1e-12)
    ndl = np.sum(n * l, axis=-1)
    ndv = np.sum(n * v, axis=-1)
    ndh = np.clip(np.sum(n * hvec, axis=-1), 0.0, 1.0)
    vdh = np.clip(np.sum(v * hvec, axis=-1), 0.0, 1.0)
    alpha = rough**2
    a2 = alpha**2
    dterm = a2 / (math.pi * (ndh**2 * (a2 - 1.0) + 1.0) ** 2)
    kk = alpha / 2.0
    ndl_c = np.clip(ndl, 1e-6, 1.0)
    ndv_c = np.clip(ndv, 1e-6, 1.0)
    gterm = (ndl_c / (ndl_c * (1 - kk) + kk)) * (ndv_c / (ndv_c * (1 - kk) + kk))
    fterm = f0 + (1.0 - f0) * (1.0 - vdh) ** 5
    spec = dterm * gterm * fterm / (4.0 * ndl_c * ndv_c) * ndl_c
    spec = np.where((ndl > 0) & (ndv > 0), spec, 0.0)
    return diffuse + spec[..., None] * KEY_LIGHT_IRRADIANCE[None]


# ----------------------------------------------------------------------------
# Cameras
# ----------------------------------------------------------------------------


@dataclass
class Camera:
    K: np.ndarray  # 3x3
    R: np.ndarray  # 3x3 world -> camera
    t: np.ndarray  # 3, world units
    width: int
    height: int
    exposure: np.ndarray  # 3x3 diagonal colour gain
    azimuth_deg: float = 0.0
    elevation_deg: float = 0.0
    roll_deg: float = 0.0

    @property
    def centre_world(self) -> np.ndarray:
        return -self.R.T @ self.t

    def world_mat(self) -> np.ndarray:
        P = np.eye(4)
        P[:3, :4] = self.K @ np.concatenate([self.R, self.t[:, None]], axis=1)
        return P


def scale_matrix(scale: float = WORLD_SCALE, centre: Sequence[float] = WORLD_CENTRE) -> np.ndarray:
    S = np.diag([scale, scale, scale, 1.0])
    S[:3, 3] = centre
    return S


def to_world(x_norm: np.ndarray, scale: float = WORLD_SCALE, centre: Sequence[float] = WORLD_CENTRE) -> np.ndarray:
    return scale * np.asarray(x_norm, dtype=np.float64) + np.asarray(centre, dtype=np.float64)


def to_normalised(x_world: np.ndarray, scale: float = WORLD_SCALE, centre: Sequence[float] = WORLD_CENTRE) -> np.ndarray:
    return (np.asarray(x_world, dtype=np.float64) - np.asarray(centre, dtype=np.float64)) / scale


def _look_at_rotation(cam_pos: np.ndarray, target: np.ndarray, roll_deg: float) -> np.ndarray:
    """World->camera rotation of an OpenCV camera at cam_pos looking at target (world y up)."""
    fwd = target - cam_pos
    fwd /= np.linalg.norm(fwd)
    up = np.array([0.0, 1.0, 0.0])
    right = np.cross(fwd, up)  # camera +x
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)  # camera +y (image down)
    R = np.stack([right, down, fwd], axis=0)
    c, s = math.cos(math.radians(roll_deg)), math.sin(math.radians(roll_deg))
    Rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return Rz @ R


def make_cameras(
    num_views: int = 20,
    width: int = 200,
    height: int = 150,
    seed: int = 0,
    scale: float = WORLD_SCALE,
    centre: Sequence[float] = WORLD_CENTRE,
) -> List[Camera]:
    """Deterministic cameras over the frontal hemisphere, looking at the origin.

    View 0 is (near) frontal with identity exposure.  The other views are
    stratified in azimuth over [-70, 70] deg, with low-discrepancy elevation in
    [-25, 35] deg, distance 3 +- 0.1, roll within +-4 deg, and exposure gains
    uniform in [0.85, 1.15] per channel.
    """
    if num_views < 1:
        raise ValueError("num_views must be >= 1")
    rng = np.random.default_rng(seed)
    fx = FILL_FRACTION * height * CAMERA_DISTANCE / HEAD_HEIGHT
    # OpenCV principal point (pixel centres at integers: the image centre is (W/2 - 0.5, H/2 - 0.5)), off-centre
    cx = width / 2.0 - 0.5 + 1.3 * width / 200.0
    cy = height / 2.0 - 0.5 - 0.8 * height / 150.0
    K = np.array([[fx, 0.0, cx], [0.0, fx, cy], [0.0, 0.0, 1.0]])
    phase = rng.uniform()
    cams: List[Camera] = []
    m = max(num_views - 1, 1)
    for i in range(num_views):
        if i == 0:
            az, el, dist, roll = 0.0, 5.0, CAMERA_DISTANCE, 0.0
            gains = np.ones(3)
        else:
            az = -70.0 + 140.0 * ((i - 1) + rng.uniform(0.2, 0.8)) / m
            el = -25.0 + 60.0 * ((phase + i * 0.6180339887498949) % 1.0)
            dist = CAMERA_DISTANCE + rng.uniform(-0.1, 0.1)
            roll = rng.uniform(-4.0, 4.0)
            gains = rng.uniform(0.85, 1.15, size=3)
        a, e = math.radians(az), math.radians(el)
        pos_n = dist * np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])
        R = _look_at_rotation(pos_n, np.zeros(3), roll)  # rotation is the same in both frames
        C_w = to_world(pos_n, scale, centre)
        t = -R @ C_w
        cams.append(Camera(K=K.copy(), R=R, t=t, width=width, height=height, exposure=np.diag(gains),
                           azimuth_deg=az, elevation_deg=el, roll_deg=roll))
    return cams


# ----------------------------------------------------------------------------
# Sphere tracing and rendering
# ----------------------------------------------------------------------------


def sphere_trace(
    origins: np.ndarray,
    dirs: np.ndarray,
    radius: float = BOUNDING_RADIUS,
    eps: float = 1e-6,
    max_steps: int = 600,
) -> Tuple[np.ndarray, np.ndarray]:
    """Sphere trace rays (normalised frame, unit ``dirs``); returns (hit mask, ray parameter t)."""
    origins = np.asarray(origins, dtype=np.float64)
    dirs = np.asarray(dirs, dtype=np.float64)
    n = dirs.shape[0]
    origins = np.broadcast_to(origins, dirs.shape)
    b = np.sum(origins * dirs, axis=-1)
    c = np.sum(origins * origins, axis=-1) - radius**2
    disc = b * b - c
    sq = np.sqrt(np.maximum(disc, 0.0))
    t_near = np.maximum(-b - sq, 0.0)
    t_far = -b + sq
    t = t_near.copy()
    hit = np.zeros(n, dtype=bool)
    active = np.nonzero((disc > 0) & (t_far > 0))[0]
    for _ in range(max_steps):
        if active.size == 0:
            break
        p = origins[active] + t[active, None] * dirs[active]
        f = face_sdf(p)
        done = f < eps
        hit[active[done]] = True
        t[active[~done]] += f[~done]
        keep = ~done & (t[active] < t_far[active])
        active = active[keep]
    if active.size:  # out of steps: accept those that are very close
        p = origins[active] + t[active, None] * dirs[active]
        hit[active[face_sdf(p) < 1e-4]] = True
    return hit, t


def camera_rays(cam: Camera, u: np.ndarray, v: np.ndarray, scale: float = WORLD_SCALE,
                centre: Sequence[float] = WORLD_CENTRE) -> Tuple[np.ndarray, np.ndarray]:
    """Origin (3,) and unit directions (N,3) in the normalised frame through OpenCV pixel coords (u, v)
    (pixel centres at integers)."""
    pix = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=-1)
    d_cam = pix @ np.linalg.inv(cam.K).T
    d = d_cam @ cam.R  # = (R^T d_cam^T)^T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return to_normalised(cam.centre_world, scale, centre), d


@dataclass
class RenderResult:
    rgb: np.ndarray  # (H, W, 3) float in [0, 1], after exposure and clipping
    mask: np.ndarray  # (H, W) bool, coverage >= 0.5
    coverage: np.ndarray  # (H, W) float in {0, .25, .5, .75, 1}
    radiance: np.ndarray  # (H, W, 3) linear radiance before exposure (not clipped)


def render_view(cam: Camera, supersample: int = 2, scale: float = WORLD_SCALE,
                centre: Sequence[float] = WORLD_CENTRE) -> RenderResult:
    """Render one view with ``supersample x supersample`` samples per pixel."""
    H, W = cam.height, cam.width
    offs = (np.arange(supersample) + 0.5) / supersample - 0.5  # from the pixel centre
    jj, ii = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    rad_acc = np.zeros((H * W, 3))
    cov_acc = np.zeros(H * W)
    for oy in offs:
        for ox in offs:
            origin, dirs = camera_rays(cam, jj + ox, ii + oy, scale, centre)
            hit, t = sphere_trace(origin, dirs)
            idx = np.nonzero(hit)[0]
            if idx.size:
                pts = origin[None] + t[idx, None] * dirs[idx]
                rad_acc[idx] += shade(pts, dirs[idx])
            cov_acc += hit
    ns = supersample * supersample
    radiance = (rad_acc / ns).reshape(H, W, 3)
    coverage = (cov_acc / ns).reshape(H, W)
    rgb = np.clip(radiance @ cam.exposure.T, 0.0, 1.0)
    return RenderResult(rgb=rgb, mask=coverage >= 0.5, coverage=coverage, radiance=radiance)


# ----------------------------------------------------------------------------
# Landmarks and ground-truth mesh
# ----------------------------------------------------------------------------

# Each landmark is the first surface hit of a ray from (x, y, 2) along -z.
LANDMARK_RAYS = {
    "nose_tip": (0.0, -0.075),
    "left_eye": EYE_CENTRES["left"][:2],  # subject's left eye (+x), pupil centre
    "right_eye": EYE_CENTRES["right"][:2],
    "mouth_centre": (0.0, -0.232),
    "chin": (0.0, -0.44),
}


def compute_landmarks() -> Dict[str, Dict[str, np.ndarray]]:
    """Known surface points (normalised frame) and their outward normals."""
    names = list(LANDMARK_RAYS)
    origins = np.array([[*LANDMARK_RAYS[k], 2.0] for k in names], dtype=np.float64)
    dirs = np.tile(np.array([0.0, 0.0, -1.0]), (len(names), 1))
    # start inside the bounding sphere is handled by sphere_trace (it clips to it)
    hit, t = sphere_trace(origins, dirs, eps=1e-9, max_steps=2000)
    if not hit.all():
        raise RuntimeError("landmark ray missed the face")
    pts = origins + t[:, None] * dirs
    normals = face_normals(pts)
    return {k: {"point": pts[i], "normal": normals[i]} for i, k in enumerate(names)}


def landmark_in_view(cam: Camera, point_n: np.ndarray, normal_n: np.ndarray, scale: float = WORLD_SCALE,
                     centre: Sequence[float] = WORLD_CENTRE) -> Dict[str, object]:
    """Pixel (continuous OpenCV u, v), camera depth and visibility of a landmark in one view.

    Visible = in front of the camera, at least 1 px inside the image (whose
    border is at -0.5 and W - 0.5), facing the
    camera (cos(normal, to-camera) >= 0.3) and not occluded (the first hit of the
    camera ray towards it is the landmark itself).
    """
    X = to_world(point_n, scale, centre)
    xc = cam.R @ X + cam.t
    uvw = cam.K @ xc
    u, v = uvw[0] / uvw[2], uvw[1] / uvw[2]
    origin_n = to_normalised(cam.centre_world, scale, centre)
    to_pt = point_n - origin_n
    dist = float(np.linalg.norm(to_pt))
    d = to_pt / dist
    facing = float(-(d @ normal_n))
    inside = (xc[2] > 0) and (0.5 <= u <= cam.width - 1.5) and (0.5 <= v <= cam.height - 1.5)
    visible = False
    if inside and facing >= 0.3:
        hit, t = sphere_trace(origin_n, d[None], eps=1e-8, max_steps=2000)
        visible = bool(hit[0] and abs(t[0] - dist) < 2e-3)
    return {"pixel": [float(u), float(v)], "depth": float(xc[2]), "visible": visible, "facing_cosine": facing}


def extract_gt_mesh(resolution: int = 128, scale: float = WORLD_SCALE, centre: Sequence[float] = WORLD_CENTRE):
    """Marching cubes of the analytic SDF on a resolution^3 grid over [-1, 1]^3, returned in WORLD units."""
    import trimesh
    from skimage import measure

    xs = np.linspace(-1.0, 1.0, resolution)
    vol = np.empty((resolution, resolution, resolution), dtype=np.float64)
    yy, zz = np.meshgrid(xs, xs, indexing="ij")
    for i, x in enumerate(xs):
        pts = np.stack([np.full(yy.size, x), yy.ravel(), zz.ravel()], axis=-1)
        vol[i] = face_sdf(pts).reshape(resolution, resolution)
    h = xs[1] - xs[0]
    verts, faces, _, _ = measure.marching_cubes(vol, level=0.0, spacing=(h, h, h))
    verts = verts - 1.0
    mesh = trimesh.Trimesh(vertices=to_world(verts, scale, centre), faces=faces, process=True)
    if mesh.volume < 0:
        mesh.invert()
    return mesh


# ----------------------------------------------------------------------------
# Scene assembly and writers
# ----------------------------------------------------------------------------


@dataclass
class Scene:
    cameras: List[Camera]
    renders: List[RenderResult]
    landmarks: Dict[str, Dict[str, np.ndarray]]
    landmark_views: List[Dict[str, Dict[str, object]]]
    scale: float = WORLD_SCALE
    centre: Tuple[float, float, float] = WORLD_CENTRE
    seed: int = 0
    mesh: Optional[object] = None
    extra: Dict[str, object] = field(default_factory=dict)


def generate_scene(num_views: int = 20, width: int = 200, height: int = 150, seed: int = 0,
                   mesh_resolution: int = 128, verbose: bool = True, supersample: int = 2) -> Scene:
    cams = make_cameras(num_views, width, height, seed)
    landmarks = compute_landmarks()
    renders: List[RenderResult] = []
    lm_views: List[Dict[str, Dict[str, object]]] = []
    for i, cam in enumerate(cams):
        t0 = time.time()
        r = render_view(cam, supersample=supersample)
        renders.append(r)
        lm_views.append({k: landmark_in_view(cam, v["point"], v["normal"]) for k, v in landmarks.items()})
        if verbose:
            nvis = sum(int(x["visible"]) for x in lm_views[-1].values())
            print(
                f"[view {i + 1:3d}/{num_views}] az={cam.azimuth_deg:6.1f} el={cam.elevation_deg:6.1f} "
                f"mask={r.mask.mean() * 100:5.1f}% landmarks visible={nvis}/{len(landmarks)} "
                f"({time.time() - t0:.2f}s)",
                flush=True,
            )
    mesh = None
    if mesh_resolution > 0:
        t0 = time.time()
        mesh = extract_gt_mesh(mesh_resolution)
        if verbose:
            print(f"[mesh] {len(mesh.vertices)} vertices, {len(mesh.faces)} faces ({time.time() - t0:.2f}s)", flush=True)
    return Scene(cameras=cams, renders=renders, landmarks=landmarks, landmark_views=lm_views, seed=seed, mesh=mesh)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def scene_metadata(scene: Scene) -> Dict[str, object]:
    """JSON-serialisable ground truth (see module docstring for conventions)."""
    s, c = scene.scale, np.asarray(scene.centre, dtype=np.float64)
    cam0 = scene.cameras[0]
    views = []
    for i, (cam, lmv) in enumerate(zip(scene.cameras, scene.landmark_views)):
        Cw = cam.centre_world
        views.append(
            {
                "index": i,
                "image": f"image/{i:03d}.png",
                "mask": f"mask/{i:03d}.png",
                "K": cam.K.tolist(),
                "R": cam.R.tolist(),
                "t": cam.t.tolist(),
                "camera_centre_world": Cw.tolist(),
                "camera_centre_normalised": to_normalised(Cw, s, c).tolist(),
                "azimuth_deg": cam.azimuth_deg,
                "elevation_deg": cam.elevation_deg,
                "roll_deg": cam.roll_deg,
                "exposure": cam.exposure.tolist(),
                "mask_fraction": float(scene.renders[i].mask.mean()),
                "landmarks": lmv,
            }
        )
    return {
        "format": "idr",
        "generator": "scripts/make_sample_scene.py",
        "seed": scene.seed,
        "num_views": len(scene.cameras),
        "width": cam0.width,
        "height": cam0.height,
        "scale": s,
        "centre": c.tolist(),
        "scale_mat": scale_matrix(s, c).tolist(),
        "normalised_frame": NORMALISED_FRAME,
        "object_radius_normalised": 0.8,
        "pixel_convention": PIXEL_CONVENTION,
        "camera_convention": CAMERA_CONVENTION,
        "supersampling": {"samples_per_axis": 2, "offsets_from_pixel_centre": [-0.25, 0.25],
                          "mask_rule": "coverage >= 0.5"},
        "image_formation": "pixel = clip(exposure @ (diffuse + specular), 0, 1); linear (no gamma); uint8 = round(255 * pixel); background = 0",
        "landmarks": {
            k: {
                "world": to_world(v["point"], s, c).tolist(),
                "normalised": v["point"].tolist(),
                "normal": v["normal"].tolist(),
            }
            for k, v in scene.landmarks.items()
        },
        "lighting": {
            "sh_basis": SH_BASIS,
            "sh_coefficients": SH_COEFFS.tolist(),
            "sh_irradiance": "Ramamoorthi & Hanrahan 2001 eq. 13, c1..c5 = 0.429043, 0.511664, 0.743125, 0.886227, 0.247708",
            "sh_frame": "normalised/world axes (y up, +z = face front)",
            "key_light_direction": KEY_LIGHT_DIRECTION.tolist(),
            "key_light_direction_meaning": "unit vector from the surface towards the light",
            "key_light_irradiance": KEY_LIGHT_IRRADIANCE.tolist(),
        },
        "material": MATERIAL_PARAMETERS,
        "exposure_matrices": [cam.exposure.tolist() for cam in scene.cameras],
        "views": views,
    }


OUTPUT_FILES = ("cameras.npz", "gt_mesh.ply", "scene.json")


def write_idr_layout(scene: Scene, out_dir) -> Path:
    """Write the DTU/IDR layout (image/, mask/, cameras.npz, gt_mesh.ply, scene.json)."""
    from PIL import Image

    out = Path(out_dir)
    (out / "image").mkdir(parents=True, exist_ok=True)
    (out / "mask").mkdir(parents=True, exist_ok=True)
    S = scale_matrix(scene.scale, scene.centre)
    npz = {}
    for i, (cam, r) in enumerate(zip(scene.cameras, scene.renders)):
        Image.fromarray(_to_u8(r.rgb), mode="RGB").save(out / "image" / f"{i:03d}.png", optimize=True)
        Image.fromarray(np.where(r.mask, 255, 0).astype(np.uint8), mode="L").save(out / "mask" / f"{i:03d}.png", optimize=True)
        npz[f"world_mat_{i}"] = cam.world_mat()
        npz[f"scale_mat_{i}"] = S.copy()
    np.savez(out / "cameras.npz", **npz)
    if scene.mesh is not None:
        scene.mesh.export(out / "gt_mesh.ply", file_type="ply", encoding="binary")
    with open(out / "scene.json", "w") as f:
        json.dump(scene_metadata(scene), f, indent=1)
    return out


def _clear_previous_outputs(out: Path) -> None:
    """Remove only files this generator writes (so --overwrite never deletes foreign data)."""
    for sub in ("image", "mask"):
        d = out / sub
        if d.is_dir():
            for f in d.glob("[0-9][0-9][0-9].png"):
                f.unlink()
    for name in OUTPUT_FILES:
        if (out / name).is_file():
            (out / name).unlink()


# ----------------------------------------------------------------------------
# FaceScape layouts: the NeuFace layout (bundled sample) and a tiny multi-view
# release layout (input of scripts/prepare_facescape.py)
# ----------------------------------------------------------------------------
#
# Frames.  TU millimetres: X_TU = 100 * x_norm + TU_ORIGIN_MM (same axes as the
# normalised frame: y up, face towards +z).  The "multi-view" frame of the
# FaceScape cameras and meshes is tied to TU space by the Rt_scale_dict entry
# [scale, Rt]: X_TU = R_s @ (scale * X_mview) + t_s.  The NeuFace face frame is
# x_face = (X_TU - nose_tip_TU + (0, 0, 40)) / 100 = x_norm - nose_norm + (0, 0, 0.4).
# FaceScape cameras are OpenCV cameras in the multi-view frame:
# x_cam = R_mv @ X_mview + t_mv with R_mv = R @ R_s (R: the generator's rotation).

FACESCAPE_EXPRESSIONS = (
    "neutral", "smile", "mouth_stretch", "anger", "jaw_left", "jaw_right", "jaw_forward", "mouth_left",
    "mouth_right", "dimpler", "chin_raiser", "lip_puckerer", "lip_funneler", "sadness", "lip_roll", "grin",
    "cheek_blowing", "eye_closed", "brow_raiser", "brow_lower",
)
TU_MM_PER_UNIT = 100.0
TU_ORIGIN_MM = (4.0, -18.0, -55.0)
MVIEW_SCALE = 180.0  # mm per multi-view unit (FaceScape's are of the order of 100-500)
MVIEW_ROTATION_AXIS = (0.3, 1.0, -0.2)
MVIEW_ROTATION_ANGLE = 0.35  # radians
MVIEW_TRANSLATION_MM = (12.0, -30.0, 25.0)
FACE_FRAME_Z_OFFSET_MM = 40.0
NOSE_TIP_LANDMARK = 30
FACESCAPE_TEST_EVERY = 8
FACESCAPE_SPLIT_RULE = (
    "test = every 8th valid view in ascending view-id order, starting with the first "
    "(positions 0, 8, 16, ... of the sorted valid views); train = the other valid views"
)
RELEASE_DISTORTION = (-0.8, 0.5, 0.01, -0.008, 0.2)  # k1 k2 p1 p2 k3 (OpenCV); strong, so that undistortion is measurable


def _axis_angle(axis: Sequence[float], angle: float) -> np.ndarray:
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    x, y, z = a
    c, s_ = math.cos(angle), math.sin(angle)
    cross = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return c * np.eye(3) + s_ * cross + (1 - c) * np.outer(a, a)


def mview_transform() -> Tuple[float, np.ndarray, np.ndarray]:
    """(scale, R_s, t_s) of the Rt_scale_dict entry: X_TU = R_s @ (scale * X_mview) + t_s."""
    return MVIEW_SCALE, _axis_angle(MVIEW_ROTATION_AXIS, MVIEW_ROTATION_ANGLE), np.asarray(MVIEW_TRANSLATION_MM)


def normalised_to_tu(x_norm: np.ndarray) -> np.ndarray:
    return TU_MM_PER_UNIT * np.asarray(x_norm, dtype=np.float64) + np.asarray(TU_ORIGIN_MM)


def tu_to_mview(x_tu: np.ndarray) -> np.ndarray:
    scale, R_s, t_s = mview_transform()
    return ((np.asarray(x_tu, dtype=np.float64) - t_s) @ R_s) / scale  # row vectors: R_s^T (X - t) / s


def mview_camera(cam: Camera) -> Tuple[np.ndarray, np.ndarray]:
    """(R_mv, t_mv): the camera as an OpenCV camera of the multi-view frame."""
    _, R_s, _ = mview_transform()
    R_mv = cam.R @ R_s
    C_mv = tu_to_mview(normalised_to_tu(to_normalised(cam.centre_world)))
    return R_mv, -R_mv @ C_mv


def face_frame(x_norm: np.ndarray, nose_norm: np.ndarray) -> np.ndarray:
    """Normalised generator frame -> NeuFace face frame (nose tip at (0, 0, 0.4), 100 mm per unit)."""
    return np.asarray(x_norm, dtype=np.float64) - nose_norm + np.array([0.0, 0.0, FACE_FRAME_Z_OFFSET_MM / TU_MM_PER_UNIT])


def facescape_split(view_ids: Sequence[int], test_every: int = FACESCAPE_TEST_EVERY) -> Tuple[List[int], List[int]]:
    """(train, test) view ids by FACESCAPE_SPLIT_RULE."""
    ordered = sorted(view_ids)
    test = [v for k, v in enumerate(ordered) if k % test_every == 0]
    return [v for v in ordered if v not in test], test


def expression_dirname(expression_id: int) -> str:
    return f"{expression_id}_{FACESCAPE_EXPRESSIONS[expression_id - 1]}"


def tu_mesh(resolution: int, nose_norm: np.ndarray):
    """Mesh of the face in TU millimetres with one vertex exactly at the nose tip; (mesh, nose vertex id)."""
    mesh = extract_gt_mesh(resolution, scale=TU_MM_PER_UNIT, centre=TU_ORIGIN_MM)
    nose_tu = normalised_to_tu(nose_norm)
    vertices = np.asarray(mesh.vertices, dtype=np.float64).copy()
    vid = int(np.argmin(np.linalg.norm(vertices - nose_tu, axis=1)))
    vertices[vid] = nose_tu
    mesh.vertices = vertices
    return mesh, vid


def landmark_vertex_ids(mesh, landmarks_norm: Dict[str, np.ndarray], nose_vid: int) -> np.ndarray:
    """68 'v10' ids (iBUG order): the nose tip exactly at 30, the other known landmarks near their iBUG slots."""
    vertices = np.asarray(mesh.vertices)

    def nearest(name: str) -> int:
        return int(np.argmin(np.linalg.norm(vertices - normalised_to_tu(landmarks_norm[name]), axis=1)))

    ids = np.full(68, nearest("chin"), dtype=np.int64)  # 0-16: jaw line (chin at 8)
    ids[17:27] = nearest("left_eye")  # brows: no analytic landmark, placeholder
    ids[27:36] = nose_vid
    ids[36:42] = nearest("right_eye")
    ids[42:48] = nearest("left_eye")
    ids[48:68] = nearest("mouth_centre")
    ids[NOSE_TIP_LANDMARK] = nose_vid
    return ids


def write_obj(mesh, path: Path) -> None:
    """Plain Wavefront OBJ (vertex order kept; faces 1-based)."""
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces, dtype=np.int64) + 1
    with open(path, "w") as fh:
        fh.write("# synthetic TU mesh (millimetres), scripts/make_sample_scene.py\n")
        fh.write("".join(f"v {a:.5f} {b:.5f} {c:.5f}\n" for a, b, c in v))
        fh.write("".join(f"f {a} {b} {c}\n" for a, b, c in f))


def _save_jpeg(arr: np.ndarray, path: Path, quality: int) -> None:
    from PIL import Image

    mode = "RGB" if arr.ndim == 3 else "L"
    Image.fromarray(arr, mode=mode).save(path, quality=quality, subsampling=0)


def _mesh_in_tu(scene: Scene):
    mesh = scene.mesh.copy()
    mesh.vertices = normalised_to_tu(to_normalised(np.asarray(mesh.vertices), scene.scale, scene.centre))
    return mesh


def _write_face_support_files(scene: Scene, root: Path, subject_id: int, expression_id: int,
                              tu_path: Path, tu_mesh_resolution: int) -> Dict[str, object]:
    """Rt_scale_dict.json, landmark_indices.npz and the TU mesh; returns facts for scene.json."""
    nose_norm = scene.landmarks["nose_tip"]["point"]
    mesh, nose_vid = tu_mesh(tu_mesh_resolution, nose_norm)
    tu_path.parent.mkdir(parents=True, exist_ok=True)
    write_obj(mesh, tu_path)
    ids = landmark_vertex_ids(mesh, {k: v["point"] for k, v in scene.landmarks.items()}, nose_vid)
    np.savez(root / "landmark_indices.npz", v10=ids)
    scale, R_s, t_s = mview_transform()
    Rt = np.eye(4)
    Rt[:3, :3], Rt[:3, 3] = R_s, t_s
    with open(root / "Rt_scale_dict.json", "w") as fh:
        json.dump({str(subject_id): {str(expression_id): [scale, Rt.tolist()]}}, fh, indent=1)
    return {"nose_vertex_id": nose_vid, "nose_tip_tu_mm": normalised_to_tu(nose_norm).tolist(),
            "mview_scale": scale, "mview_Rt": Rt.tolist(), "tu_mesh_vertices": int(len(mesh.vertices))}


def _facescape_view_record(scene: Scene, i: int, nose_norm: np.ndarray) -> Dict[str, object]:
    cam = scene.cameras[i]
    R_mv, t_mv = mview_camera(cam)
    centre_norm = to_normalised(cam.centre_world, scene.scale, scene.centre)
    return {
        "view": str(i),
        "K": cam.K.tolist(),
        "Rt": np.concatenate([R_mv, t_mv[:, None]], axis=1).tolist(),
        "camera_centre_face": face_frame(centre_norm, nose_norm).tolist(),
        "camera_centre_tu_mm": normalised_to_tu(centre_norm).tolist(),
        "rotation_c2w_face_opencv": cam.R.T.tolist(),
        "exposure": cam.exposure.tolist(),
        "landmarks": scene.landmark_views[i],
    }


def _facescape_common_metadata(scene: Scene, fmt: str, subject_id: int, expression_id: int,
                               support: Dict[str, object]) -> Dict[str, object]:
    nose_norm = scene.landmarks["nose_tip"]["point"]
    cam0 = scene.cameras[0]
    return {
        "format": fmt,
        "generator": "scripts/make_sample_scene.py",
        "seed": scene.seed,
        "subject_id": subject_id,
        "expression_id": expression_id,
        "expression": expression_dirname(expression_id),
        "num_views": len(scene.cameras),
        "width": cam0.width,
        "height": cam0.height,
        "tu_frame": f"X_TU_mm = {TU_MM_PER_UNIT} * x_norm + {list(TU_ORIGIN_MM)} (generator normalised frame x_norm)",
        "face_frame": "x_face = (X_TU - nose_tip_TU + (0, 0, 40)) / 100  (one unit = 100 mm, nose tip at (0, 0, 0.4))",
        "mview_frame": "X_TU = R_s @ (scale * X_mview) + t_s  (Rt_scale_dict.json)",
        "split_rule": FACESCAPE_SPLIT_RULE,
        "pixel_convention": PIXEL_CONVENTION,
        "landmarks": {
            k: {
                "face": face_frame(v["point"], nose_norm).tolist(),
                "tu_mm": normalised_to_tu(v["point"]).tolist(),
                "normal": v["normal"].tolist(),
            }
            for k, v in scene.landmarks.items()
        },
        **support,
    }


def write_facescape_layout(scene: Scene, out_dir, subject_id: int = 1, expression_id: int = 1,
                           test_every: int = FACESCAPE_TEST_EVERY, jpeg_quality: int = 95,
                           tu_mesh_resolution: int = 64) -> Path:
    """Write the NeuFace FaceScape layout (spec section 7) of a rendered scene.

    <out>/Rt_scale_dict.json, landmark_indices.npz, imface_image/<id>/<e>_<expr>/{params.json, train/, test/},
    imface_mask/<id>/<e>_<expr>/{train,test}/<v>.jpg, imface_model/<id>/<e>_<expr>.obj, gt_mesh.ply (TU mm),
    scene.json.  Views are named by their index; the split follows FACESCAPE_SPLIT_RULE.
    """
    out = Path(out_dir)
    expr = expression_dirname(expression_id)
    image_dir = out / "imface_image" / str(subject_id) / expr
    mask_dir = out / "imface_mask" / str(subject_id) / expr
    for d in (image_dir / "train", image_dir / "test", mask_dir / "train", mask_dir / "test"):
        d.mkdir(parents=True, exist_ok=True)
    support = _write_face_support_files(scene, out, subject_id, expression_id,
                                        out / "imface_model" / str(subject_id) / f"{expr}.obj", tu_mesh_resolution)
    nose_norm = scene.landmarks["nose_tip"]["point"]
    train, test = facescape_split(list(range(len(scene.cameras))), test_every)
    params: Dict[str, object] = {}
    views = []
    for i, (cam, r) in enumerate(zip(scene.cameras, scene.renders)):
        split = "test" if i in test else "train"
        rec = _facescape_view_record(scene, i, nose_norm)
        params[f"{i}_K"] = rec["K"]
        params[f"{i}_Rt"] = rec["Rt"]
        params[f"{i}_width"] = cam.width
        params[f"{i}_height"] = cam.height
        params[f"{i}_valid"] = True
        _save_jpeg(_to_u8(r.rgb), image_dir / split / f"{i}.jpg", jpeg_quality)
        _save_jpeg(np.where(r.mask, 255, 0).astype(np.uint8), mask_dir / split / f"{i}.jpg", jpeg_quality)
        rec.update({"split": split, "image": f"imface_image/{subject_id}/{expr}/{split}/{i}.jpg",
                    "mask": f"imface_mask/{subject_id}/{expr}/{split}/{i}.jpg",
                    "mask_fraction": float(r.mask.mean())})
        views.append(rec)
    with open(image_dir / "params.json", "w") as fh:
        json.dump(params, fh, indent=1)
    if scene.mesh is not None:
        _mesh_in_tu(scene).export(out / "gt_mesh.ply", file_type="ply", encoding="binary")
    meta = _facescape_common_metadata(scene, "facescape-neuface", subject_id, expression_id, support)
    meta.update({"train_views": [str(v) for v in train], "test_views": [str(v) for v in test],
                 "gt_mesh": "gt_mesh.ply (TU millimetres)", "views": views})
    with open(out / "scene.json", "w") as fh:
        json.dump(meta, fh, indent=1)
    return out


def undistort_normalised(xd: np.ndarray, yd: np.ndarray, dist: Sequence[float], iterations: int = 50):
    """Invert OpenCV's (k1, k2, p1, p2, k3) distortion by fixed-point iteration (normalised coordinates)."""
    k1, k2, p1, p2, k3 = dist
    x, y = xd.copy(), yd.copy()
    for _ in range(iterations):
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 ** 3
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x, y = (xd - dx) / radial, (yd - dy) / radial
    return x, y


def render_distorted_view(cam: Camera, dist: Sequence[float], supersample: int = 1) -> RenderResult:
    """Render what a camera with OpenCV lens distortion ``dist`` records (pixel convention as above)."""
    H, W = cam.height, cam.width
    offs = (np.arange(supersample) + 0.5) / supersample - 0.5  # from the pixel centre
    jj, ii = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    Kinv = np.linalg.inv(cam.K)
    rad_acc = np.zeros((H * W, 3))
    cov_acc = np.zeros(H * W)
    for oy in offs:
        for ox in offs:
            u, v = (jj + ox).ravel(), (ii + oy).ravel()
            xd = Kinv[0, 0] * u + Kinv[0, 1] * v + Kinv[0, 2]
            yd = Kinv[1, 1] * v + Kinv[1, 2]
            x, y = undistort_normalised(xd, yd, dist)
            uu = cam.K[0, 0] * x + cam.K[0, 1] * y + cam.K[0, 2]
            vv = cam.K[1, 1] * y + cam.K[1, 2]
            origin, dirs = camera_rays(cam, uu, vv)
            hit, t = sphere_trace(origin, dirs)
            idx = np.nonzero(hit)[0]
            if idx.size:
                rad_acc[idx] += shade(origin[None] + t[idx, None] * dirs[idx], dirs[idx])
            cov_acc += hit
    ns = supersample * supersample
    radiance = (rad_acc / ns).reshape(H, W, 3)
    coverage = (cov_acc / ns).reshape(H, W)
    return RenderResult(rgb=np.clip(radiance @ cam.exposure.T, 0.0, 1.0), mask=coverage >= 0.5,
                        coverage=coverage, radiance=radiance)


def write_facescape_release(scene: Scene, out_dir, subject_id: int = 1, expression_id: int = 1,
                            invalid_views: Sequence[int] = (2,), distortion: Sequence[float] = RELEASE_DISTORTION,
                            jpeg_quality: int = 95, tu_mesh_resolution: int = 48) -> Path:
    """Write a tiny FaceScape multi-view *release* layout (the input of scripts/prepare_facescape.py).

    <out>/images/<id>/<e>_<expr>/{<v>.jpg, params.json}   distorted images; params: <v>_K (3x3), <v>_Rt (3x4),
                                                         <v>_distortion (k1 k2 p1 p2 k3), <v>_width, <v>_height,
                                                         <v>_valid, <v>_matches, <v>_sn, <v>_ori
    <out>/meshes/<id>/<e>_<expr>.ply                     multi-view mesh (multi-view frame)
    <out>/tu/<id>/models_reg/<e>_<expr>.obj              TU mesh (mm)
    <out>/Rt_scale_dict.json, <out>/landmark_indices.npz
    <out>/scene.json                                     ground truth (undistorted views, expected cameras)

    Views in ``invalid_views`` get ``_valid = False`` and a wrong Rt (as unreliable FaceScape views have).
    ``scene.renders`` are the *undistorted* reference images; the written images are rendered with distortion.
    """
    out = Path(out_dir)
    expr = expression_dirname(expression_id)
    image_dir = out / "images" / str(subject_id) / expr
    image_dir.mkdir(parents=True, exist_ok=True)
    (out / "meshes" / str(subject_id)).mkdir(parents=True, exist_ok=True)
    support = _write_face_support_files(scene, out, subject_id, expression_id,
                                        out / "tu" / str(subject_id) / "models_reg" / f"{expr}.obj",
                                        tu_mesh_resolution)
    nose_norm = scene.landmarks["nose_tip"]["point"]
    params: Dict[str, object] = {}
    views = []
    for i, cam in enumerate(scene.cameras):
        rec = _facescape_view_record(scene, i, nose_norm)
        valid = i not in invalid_views
        Rt = np.asarray(rec["Rt"])
        if not valid:
            Rt = np.concatenate([_axis_angle((1.0, 0.2, 0.0), 0.5) @ Rt[:, :3], Rt[:, 3:] + 0.3], axis=1)
        params[f"{i}_K"] = rec["K"]
        params[f"{i}_Rt"] = Rt.tolist()
        params[f"{i}_distortion"] = list(distortion)
        params[f"{i}_width"] = cam.width
        params[f"{i}_height"] = cam.height
        params[f"{i}_matches"] = 1000 if valid else 3
        params[f"{i}_valid"] = valid
        params[f"{i}_sn"] = f"SYN{i:04d}"
        params[f"{i}_ori"] = f"IMG_{i:04d}.JPG"
        distorted = render_distorted_view(cam, distortion)
        _save_jpeg(_to_u8(distorted.rgb), image_dir / f"{i}.jpg", jpeg_quality)
        rec.update({"valid": valid, "distorted_mask_fraction": float(distorted.mask.mean())})
        views.append(rec)
    with open(image_dir / "params.json", "w") as fh:
        json.dump(params, fh, indent=1)
    if scene.mesh is not None:
        mview_mesh = _mesh_in_tu(scene)
        mview_mesh.vertices = tu_to_mview(np.asarray(mview_mesh.vertices))
        mview_mesh.export(out / "meshes" / str(subject_id) / f"{expr}.ply", file_type="ply", encoding="binary")
    valid_ids = [i for i in range(len(scene.cameras)) if i not in invalid_views]
    train, test = facescape_split(valid_ids)
    meta = _facescape_common_metadata(scene, "facescape-release", subject_id, expression_id, support)
    meta.update({"distortion": list(distortion), "invalid_views": [str(v) for v in invalid_views],
                 "expected_train_views": [str(v) for v in train], "expected_test_views": [str(v) for v in test],
                 "views": views})
    with open(out / "scene.json", "w") as fh:
        json.dump(meta, fh, indent=1)
    return out


LAYOUT_DEFAULTS = {
    # layout: (width, height, supersample)
    "idr": (200, 150, 2),
    "facescape": (800, 600, 1),  # trained at downscale 4 (200 x 150), like the real data
    "facescape-release": (160, 120, 1),
}
FACESCAPE_OUTPUTS = ("imface_image", "imface_mask", "imface_model", "images", "meshes", "tu",
                     "Rt_scale_dict.json", "landmark_indices.npz", "gt_mesh.ply", "scene.json")


def _clear_facescape_outputs(out: Path) -> None:
    """Remove only the folders / files the FaceScape writers create."""
    import shutil

    for name in FACESCAPE_OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.is_file():
            path.unlink()


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Render the synthetic NeuFace sample scene (DTU/IDR or FaceScape layouts).")
    ap.add_argument("--output-dir", required=True, type=Path)
    ap.add_argument("--layout", choices=sorted(LAYOUT_DEFAULTS), default="idr",
                    help="idr: DTU/IDR layout; facescape: NeuFace FaceScape layout (bundled sample); "
                         "facescape-release: tiny FaceScape multi-view release layout (distorted, one invalid view)")
    ap.add_argument("--num-views", type=int, default=None, help="default 20 (facescape-release: 6)")
    ap.add_argument("--width", type=int, default=None, help="default: idr 200, facescape 800, facescape-release 160")
    ap.add_argument("--height", type=int, default=None, help="default: idr 150, facescape 600, facescape-release 120")
    ap.add_argument("--supersample", type=int, default=None, help="samples per pixel axis (default: idr 2, else 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mesh-resolution", type=int, default=128)
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    width, height, supersample = LAYOUT_DEFAULTS[args.layout]
    width = args.width if args.width is not None else width
    height = args.height if args.height is not None else height
    supersample = args.supersample if args.supersample is not None else supersample
    num_views = args.num_views if args.num_views is not None else (6 if args.layout == "facescape-release" else 20)
    out: Path = args.output_dir
    if out.exists() and not out.is_dir():
        print(f"error: {out} exists and is not a directory", file=sys.stderr)
        return 2
    if out.is_dir() and any(out.iterdir()):
        if not args.overwrite:
            print(f"error: output directory {out} is not empty (use --overwrite)", file=sys.stderr)
            return 2
        if args.layout == "idr":
            _clear_previous_outputs(out)
        else:
            _clear_facescape_outputs(out)
    if num_views < 1 or width < 8 or height < 8 or args.mesh_resolution < 0 or supersample < 1:
        print("error: need --num-views >= 1, --width/--height >= 8, --mesh-resolution >= 0, --supersample >= 1",
              file=sys.stderr)
        return 2
    if args.layout != "idr" and args.mesh_resolution == 0:
        print("error: the FaceScape layouts need a mesh (--mesh-resolution > 0)", file=sys.stderr)
        return 2
    t0 = time.time()
    scene = generate_scene(num_views, width, height, args.seed, args.mesh_resolution, supersample=supersample)
    if args.layout == "idr":
        write_idr_layout(scene, out)
    elif args.layout == "facescape":
        write_facescape_layout(scene, out)
    else:
        write_facescape_release(scene, out)
    print(f"wrote {num_views} views ({args.layout} layout) to {out} in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
