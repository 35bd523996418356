"""The numpy renderer: sphere tracing of the analytic face, its shading, and the image formation.

* Anti-aliasing: ``supersample x supersample`` samples per pixel at offsets
  ``(k + 0.5) / supersample - 0.5`` from the pixel centre in both u and v (2x2:
  {-0.25, +0.25}); colour = mean of the samples (misses count as black);
  mask = coverage >= 0.5.
* Image formation (linear, no gamma / tone curve):
  ``pixel = clip(G_i @ (diffuse + specular), 0, 1)``, quantised with
  ``round(255 * pixel)``.  ``diffuse = albedo / pi * E_sh(n)`` where
  ``E_sh`` is the order-2 spherical-harmonics irradiance (Ramamoorthi &
  Hanrahan 2001) of the environment; ``specular`` is a GGX microfacet lobe
  (Smith-Schlick G, Schlick Fresnel with spatially varying F0) lit by one
  directional key light.  ``G_i`` is a per-view diagonal 3x3 exposure/colour
  gain (view 0 = identity).
"""

import math
from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

from .conventions import BOUNDING_RADIUS, WORLD_CENTRE, WORLD_SCALE, Camera, camera_rays, undistort_normalised
from .face import face_normals, face_sdf, material

# ----------------------------------------------------------------------------
# Lighting and shading
# ----------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------
# Quantisation
# ----------------------------------------------------------------------------


def to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
