"""The analytic face: a 1-Lipschitz signed distance function built from smooth unions of
ellipsoids, spheres and capsules (normalised frame, see ``conventions``), its spatially varying
materials, the rays that define its landmarks, and its marching-cubes ground-truth mesh.
"""

from typing import Dict, Sequence, Tuple

import numpy as np

from .conventions import WORLD_CENTRE, WORLD_SCALE, to_world

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
# Materials
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


# ----------------------------------------------------------------------------
# Landmark rays and the ground-truth mesh
# ----------------------------------------------------------------------------

# Each landmark is the first surface hit of a ray from (x, y, 2) along -z.
LANDMARK_RAYS = {
    "nose_tip": (0.0, -0.075),
    "left_eye": EYE_CENTRES["left"][:2],  # subject's left eye (+x), pupil centre
    "right_eye": EYE_CENTRES["right"][:2],
    "mouth_centre": (0.0, -0.232),
    "chin": (0.0, -0.44),
}


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
