"""Frames, the OpenCV camera and pixel conventions, and the camera rig of the synthetic scene.

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
* Lens distortion (FaceScape release layout only): OpenCV's (k1, k2, p1, p2, k3)
  model in normalised camera coordinates.
"""

import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

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
# Pixel rays and lens distortion
# ----------------------------------------------------------------------------


def camera_rays(cam: Camera, u: np.ndarray, v: np.ndarray, scale: float = WORLD_SCALE,
                centre: Sequence[float] = WORLD_CENTRE) -> Tuple[np.ndarray, np.ndarray]:
    """Origin (3,) and unit directions (N,3) in the normalised frame through OpenCV pixel coords (u, v)
    (pixel centres at integers)."""
    pix = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=-1)
    d_cam = pix @ np.linalg.inv(cam.K).T
    d = d_cam @ cam.R  # = (R^T d_cam^T)^T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return to_normalised(cam.centre_world, scale, centre), d


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
