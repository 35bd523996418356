"""Stage 4, NeuFace's face frame from the triangulated landmarks, and the metric scale.

Nose tip: the midpoint of MediaPipe's landmarks 1 and 4 (the pronasale lies between them), then moved along z
onto the skin by photo-consistency (`nose_depth.py`, applied by the CLI).
Axes: x from the subject's right iris centre to the left one (x points to the subject's left), y from the mouth
(mean of its corners) up to the middle of the eyes, made orthogonal to x, z = x cross y out of the face (the
side the cameras are on). Origin: 40 mm behind the nose tip along z. 100 mm per unit (the face sphere, radius 1,
is what NeuFace reconstructs), as in the FaceScape normalisation (neuface_ns/data/facescape.py).

Scale (SfM has none): `interpupillary_mm` / the distance between the triangulated iris centres, or a known
distance between two camera centres (`baseline`). The default interpupillary distance is the adult population
mean, 63 mm (Dodgson 2004: mean 63.4 mm, standard deviation 3.8 mm, range about 52-78 mm): for an unknown face
it sets the scale to about +-6 % (one standard deviation; the face sphere's radius is then 94-106 mm of the real
face), at worst about +-20 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from neuface_ns.capture.landmarks import IRIS_CENTRES, MOUTH_CORNERS, NOSE_TIP_PAIR

DEFAULT_INTERPUPILLARY_MM = 63.0
FACE_SPHERE_BEHIND_NOSE_MM = 40.0
MM_PER_UNIT = 100.0


@dataclass
class FaceFrame:
    rotation: np.ndarray  # [3, 3] columns: the face axes x, y, z in world (SfM) coordinates
    origin: np.ndarray  # [3] world: 40 mm behind the nose tip
    mm_per_world: float  # millimetres per SfM unit
    nose_tip: np.ndarray  # [3] world
    scale_source: str

    def world_to_mm(self, points: np.ndarray) -> np.ndarray:
        """World (SfM) points [N, 3] -> face frame millimetres (origin 40 mm behind the nose tip)."""
        return (np.asarray(points) - self.origin) @ self.rotation * self.mm_per_world

    def world_to_unit(self, points: np.ndarray) -> np.ndarray:
        return self.world_to_mm(points) / MM_PER_UNIT

    def nose_moved(self, offset_mm: float) -> "FaceFrame":
        """The same frame with the nose tip (and the origin 40 mm behind it) moved `offset_mm` along z."""
        shift = self.rotation[:, 2] * offset_mm / self.mm_per_world
        return FaceFrame(self.rotation, self.origin + shift, self.mm_per_world, self.nose_tip + shift, self.scale_source)

    def camera_to_mm(self, R: np.ndarray, t: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """World->camera (R, t) of an SfM camera -> world->camera in the face frame (mm)."""
        centre = self.world_to_mm((-R.T @ t)[None])[0]
        R_face = R @ self.rotation  # x_cam = R (origin + rotation x_face / s) + t
        return R_face, -R_face @ centre


def face_frame(points: np.ndarray, camera_centres: np.ndarray, interpupillary_mm: Optional[float] = None,
               baseline: Optional[Tuple[np.ndarray, np.ndarray, float]] = None) -> FaceFrame:
    """points: triangulated MediaPipe landmarks [478, 3] (world); camera_centres [V, 3] (world)."""
    eye_a, eye_b = points[IRIS_CENTRES[0]], points[IRIS_CENTRES[1]]
    mouth = points[list(MOUTH_CORNERS)].mean(0)
    nose = points[list(NOSE_TIP_PAIR)].mean(0)
    x = eye_b - eye_a
    x = x / np.linalg.norm(x)
    up = (eye_a + eye_b) / 2.0 - mouth
    y = up - (up @ x) * x
    y = y / np.linalg.norm(y)
    z = np.cross(x, y)
    if np.mean((camera_centres - nose) @ z) < 0:  # z must point out of the face, towards the cameras
        x, z = -x, -z
        eye_a, eye_b = eye_b, eye_a
    if baseline is not None:
        centre_a, centre_b, distance_mm = baseline
        mm_per_world = distance_mm / float(np.linalg.norm(centre_a - centre_b))
        source = f"camera baseline {distance_mm:g} mm"
    else:
        ipd = DEFAULT_INTERPUPILLARY_MM if interpupillary_mm is None else interpupillary_mm
        mm_per_world = ipd / float(np.linalg.norm(eye_b - eye_a))
        source = f"interpupillary distance {ipd:g} mm" + (" (population mean)" if interpupillary_mm is None else "")
    rotation = np.stack([x, y, z], axis=1)
    origin = nose - z * FACE_SPHERE_BEHIND_NOSE_MM / mm_per_world
    return FaceFrame(rotation, origin, mm_per_world, nose, source)
