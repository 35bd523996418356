"""Synthetic face scene generator (independent numpy reference renderer), split along its seams.

Renders a face-like analytic signed distance function (SDF) with a small, self-contained numpy
sphere tracer and a physically based shading model, and writes the layouts the NeuFace
dataparsers read.  Nothing here imports ``neuface_ns``: it is the reference the model and the
dataparsers are tested against.

Modules (each depends only on those above it)::

    conventions   frames (normalised / world), OpenCV camera and pixel conventions, camera
                  matrices, the camera rig, pixel rays, OpenCV lens distortion
    face          the analytic SDF face, its materials, landmark rays, ground-truth mesh
    renderer      SH irradiance + GGX shading, sphere tracer, view rendering, quantisation
    scene         Scene: cameras, renders, landmarks and their per-view visibility, mesh
    layouts/      idr (DTU / IDR), facescape_frames, facescape (NeuFace FaceScape), release
                  (FaceScape multi-view release)
    cli           the command line (scripts/make_sample_scene.py, ``python -m sample_scene``)

``scripts/make_sample_scene.py`` is the entry point; it re-exports everything in ``__all__``.
"""

from .cli import LAYOUT_DEFAULTS, main
from .conventions import (
    BOUNDING_RADIUS,
    CAMERA_CONVENTION,
    CAMERA_DISTANCE,
    FILL_FRACTION,
    HEAD_HEIGHT,
    NORMALISED_FRAME,
    PIXEL_CONVENTION,
    WORLD_CENTRE,
    WORLD_SCALE,
    Camera,
    camera_rays,
    make_cameras,
    scale_matrix,
    to_normalised,
    to_world,
    undistort_normalised,
)
from .face import (
    EYE_CENTRES,
    EYE_RADIUS,
    LANDMARK_RAYS,
    MATERIAL_PARAMETERS,
    SOCKET_CENTRES,
    SOCKET_RADIUS,
    extract_gt_mesh,
    face_components,
    face_normals,
    face_sdf,
    material,
)
from .layouts.facescape import FACESCAPE_OUTPUTS, landmark_vertex_ids, tu_mesh, write_facescape_layout, write_obj
from .layouts.facescape_frames import (
    FACE_FRAME_Z_OFFSET_MM,
    FACESCAPE_EXPRESSIONS,
    FACESCAPE_SPLIT_RULE,
    FACESCAPE_TEST_EVERY,
    MVIEW_ROTATION_ANGLE,
    MVIEW_ROTATION_AXIS,
    MVIEW_SCALE,
    MVIEW_TRANSLATION_MM,
    NOSE_TIP_LANDMARK,
    TU_MM_PER_UNIT,
    TU_ORIGIN_MM,
    axis_angle,
    expression_dirname,
    face_frame,
    facescape_split,
    mview_camera,
    mview_transform,
    normalised_to_tu,
    tu_to_mview,
)
from .layouts.idr import OUTPUT_FILES, scene_metadata, write_idr_layout
from .layouts.release import RELEASE_DISTORTION, write_facescape_release
from .renderer import (
    KEY_LIGHT_DIRECTION,
    KEY_LIGHT_IRRADIANCE,
    SH_BASIS,
    SH_COEFFS,
    RenderResult,
    render_distorted_view,
    render_view,
    sh_irradiance,
    shade,
    sphere_trace,
    to_u8,
)
from .scene import Scene, compute_landmarks, generate_scene, landmark_in_view

__all__ = [
    # conventions
    "WORLD_SCALE", "WORLD_CENTRE", "BOUNDING_RADIUS", "CAMERA_DISTANCE", "HEAD_HEIGHT", "FILL_FRACTION",
    "PIXEL_CONVENTION", "CAMERA_CONVENTION", "NORMALISED_FRAME", "Camera", "scale_matrix", "to_world",
    "to_normalised", "make_cameras", "camera_rays", "undistort_normalised",
    # face
    "EYE_CENTRES", "EYE_RADIUS", "SOCKET_CENTRES", "SOCKET_RADIUS", "face_components", "face_sdf", "face_normals",
    "MATERIAL_PARAMETERS", "material", "LANDMARK_RAYS", "extract_gt_mesh",
    # renderer
    "SH_BASIS", "SH_COEFFS", "KEY_LIGHT_DIRECTION", "KEY_LIGHT_IRRADIANCE", "sh_irradiance", "shade",
    "sphere_trace", "RenderResult", "render_view", "render_distorted_view", "to_u8",
    # scene
    "compute_landmarks", "landmark_in_view", "Scene", "generate_scene",
    # layouts
    "scene_metadata", "OUTPUT_FILES", "write_idr_layout",
    "FACESCAPE_EXPRESSIONS", "TU_MM_PER_UNIT", "TU_ORIGIN_MM", "MVIEW_SCALE", "MVIEW_ROTATION_AXIS",
    "MVIEW_ROTATION_ANGLE", "MVIEW_TRANSLATION_MM", "FACE_FRAME_Z_OFFSET_MM", "NOSE_TIP_LANDMARK",
    "FACESCAPE_TEST_EVERY", "FACESCAPE_SPLIT_RULE", "axis_angle", "mview_transform", "normalised_to_tu",
    "tu_to_mview", "mview_camera", "face_frame", "facescape_split", "expression_dirname",
    "tu_mesh", "landmark_vertex_ids", "write_obj", "write_facescape_layout", "FACESCAPE_OUTPUTS",
    "RELEASE_DISTORTION", "write_facescape_release",
    # cli
    "LAYOUT_DEFAULTS", "main",
]
