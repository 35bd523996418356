"""neuface-process-data (neuface_ns/capture): the stages on synthetic cases with known answers, bad input, and
the whole pipeline on a small Cycles-rendered capture (tests/capture/capture_james: 24 views of the menpo3d
"james" scan in a textured room, rendered by scripts/render_capture_scene.py) given without its cameras,
checked against the true cameras, nose tip and face masks kept in its truth.npz."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from neuface_ns.capture.errors import CaptureError

DATA = Path(__file__).parent / "capture_james"


def _random_rotation(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _look_at(centre, target=np.zeros(3)):
    forward = (target - centre) / np.linalg.norm(target - centre)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R_c2w = np.stack([right, down, forward], 1)
    return R_c2w.T, -R_c2w.T @ centre


# ---------------------------------------------------------------------------------------------- pure stages


def test_umeyama_recovers_a_known_similarity():
    from neuface_ns.capture.evaluate import umeyama

    rng = np.random.default_rng(0)
    source = rng.normal(size=(20, 3))
    R = _random_rotation(rng)
    target = 2.5 * source @ R.T + np.array([1.0, -2.0, 3.0])
    s, R_est, t_est = umeyama(source, target)
    assert s == pytest.approx(2.5, rel=1e-9)
    assert np.allclose(R_est, R, atol=1e-9) and np.allclose(t_est, [1.0, -2.0, 3.0], atol=1e-9)


def test_triangulation_survives_a_wrong_view():
    from neuface_ns.capture.landmarks import Detection, project, triangulate

    rng = np.random.default_rng(1)
    K = np.array([[500.0, 0, 160], [0, 500.0, 120], [0, 0, 1]])
    points = rng.uniform(-0.5, 0.5, (30, 3))
    projections = {}
    for k, yaw in enumerate(np.linspace(-0.8, 0.8, 7)):
        R, t = _look_at(5.0 * np.array([math.sin(yaw), 0.1 * k - 0.3, math.cos(yaw)]))
        projections[f"{k:03d}"] = K @ np.concatenate([R, t[:, None]], 1)
    detections = {}
    for name, P in projections.items():
        uv, _ = project(P[None], points)
        uv = uv[:, 0] + rng.normal(0.0, 0.3, (30, 2))
        if name == "003":
            uv[:15] += 40.0  # a detector's confident mistake in one view
        detections[name] = Detection(uv, 100.0)
    result = triangulate(projections, detections, threshold_px=2.0)
    assert np.abs(result.points - points).max() < 0.01  # 1 % of the 1-unit object
    assert not result.inliers[:15, 3].any() and result.inliers[15:, 3].all()


def test_face_frame_axes_origin_and_scale():
    from neuface_ns.capture.face_frame import face_frame
    from neuface_ns.capture.landmarks import IRIS_CENTRES, MOUTH_CORNERS, NOSE_TIP_PAIR

    # a face in mm in its own frame (x to the subject's left, y up, z out of the face), then moved anywhere
    face_mm = np.zeros((478, 3))
    face_mm[IRIS_CENTRES[0]] = [-31.0, 35.0, 10.0]  # the subject's right eye
    face_mm[IRIS_CENTRES[1]] = [31.0, 35.0, 10.0]
    face_mm[MOUTH_CORNERS[0]], face_mm[MOUTH_CORNERS[1]] = [-25.0, -30.0, 10.0], [25.0, -30.0, 10.0]
    face_mm[NOSE_TIP_PAIR[0]], face_mm[NOSE_TIP_PAIR[1]] = [0.0, -3.0, 40.0], [0.0, 3.0, 40.0]  # tip between
    rng = np.random.default_rng(2)
    R = _random_rotation(rng)
    to_world = lambda p: (p @ R.T) * 0.01 + np.array([3.0, 1.0, -2.0])  # noqa: E731  (world: 1 unit = 100 mm)
    cameras = to_world(np.array([[0.0, 0.0, 500.0], [200.0, 0.0, 450.0]]))
    frame = face_frame(to_world(face_mm), cameras, interpupillary_mm=62.0)
    assert np.allclose(frame.rotation, R, atol=1e-9)  # same axes, x to the subject's left, z towards the cameras
    assert frame.mm_per_world == pytest.approx(100.0)
    assert np.allclose(frame.world_to_mm(frame.nose_tip[None])[0], [0.0, 0.0, 40.0], atol=1e-9)
    assert np.allclose(frame.world_to_mm(frame.origin[None])[0], 0.0, atol=1e-9)
    # baseline scale: two cameras 206.2 mm apart in the face's millimetres
    baseline = (cameras[0], cameras[1], float(np.linalg.norm([200.0, 0.0, -50.0])))
    assert face_frame(to_world(face_mm), cameras, baseline=baseline).mm_per_world == pytest.approx(100.0)


def test_sphere_cut_of_the_first_hit_against_a_ball_in_closed_form():
    """A solid ball of radius a at the origin seen from distance d: every first hit lies at |p| = a (to a voxel),
    so the mask is the ball's silhouette, a disc of angular radius asin(a / d), when the ball lies inside the unit
    face sphere (a < 1), and empty when the ball is larger than it (a > 1: its visible surface is outside)."""
    from neuface_ns.capture.masks import sphere_cut_of_first_hit

    resolution, extent, d, f, size = 96, 1.25, 4.0, 200.0, 160
    axis = (np.arange(resolution) + 0.5) / resolution * 2 * extent - extent
    X, Y, Z = np.meshgrid(axis, axis, axis, indexing="ij")
    R, t = _look_at(np.array([0.0, 0.0, d]))
    K = np.array([[f, 0, size / 2 - 0.5], [0, f, size / 2 - 0.5], [0, 0, 1.0]])
    j, i = np.meshgrid(np.arange(size), np.arange(size))
    angle = np.arctan(np.hypot(j - (size / 2 - 0.5), i - (size / 2 - 0.5)) / f)
    a = 0.8
    disc = angle < math.asin(a / d)
    voxel_px = f * (2 * extent / resolution) / (d - a)  # a voxel's size at the ball's front, in pixels
    ring = np.abs(angle - math.asin(a / d)) * f < 1.5 * voxel_px
    inside, _ = sphere_cut_of_first_hit(X**2 + Y**2 + Z**2 < a**2, extent, K, R, t, size, size, 0.0)
    assert np.mean(inside[~ring] == disc[~ring]) == 1.0
    assert not sphere_cut_of_first_hit(X**2 + Y**2 + Z**2 < 1.15**2, extent, K, R, t, size, size, 0.0)[0].any()


def test_open_sphere_cut_behind_the_first_hit_in_closed_form():
    """A ball of radius a = 1.1 (larger than the unit sphere) as the hull, seen from distance d: every first hit is
    outside the sphere. A ray at distance b < 1 from the centre re-enters the sphere sqrt(a^2 - b^2) - sqrt(1 - b^2)
    behind its first hit, so with a depth margin m its cut is open exactly where that depth is <= m: a disc."""
    from scipy.optimize import brentq

    from neuface_ns.capture.masks import sphere_cut_of_first_hit

    resolution, extent, d, f, size, a, margin = 160, 1.25, 4.0, 200.0, 160, 1.1, 0.2
    axis = (np.arange(resolution) + 0.5) / resolution * 2 * extent - extent
    X, Y, Z = np.meshgrid(axis, axis, axis, indexing="ij")
    R, t = _look_at(np.array([0.0, 0.0, d]))
    K = np.array([[f, 0, size / 2 - 0.5], [0, f, size / 2 - 0.5], [0, 0, 1.0]])
    j, i = np.meshgrid(np.arange(size), np.arange(size))
    b = d * np.sin(np.arctan(np.hypot(j - (size / 2 - 0.5), i - (size / 2 - 0.5)) / f))  # ray's distance to the centre
    b_open = brentq(lambda x: math.sqrt(a * a - x * x) - math.sqrt(1 - x * x) - margin, 0.0, 1.0)
    expected = b < b_open
    ring = np.abs(b - b_open) < 0.05  # two voxels of the hull either side of the disc's edge
    inside, uncertain = sphere_cut_of_first_hit(X**2 + Y**2 + Z**2 < a**2, extent, K, R, t, size, size, margin)
    assert not inside.any()
    assert np.mean(uncertain[~ring] == expected[~ring]) == 1.0 and expected.sum() > 100
    assert not sphere_cut_of_first_hit(X**2 + Y**2 + Z**2 < a**2, extent, K, R, t, size, size, 0.0)[1].any()


@pytest.mark.parametrize("width", [1, 2])
def test_uncertain_band_is_every_pixel_within_its_width_of_the_edge(width):
    """Against scipy's chessboard distance transform: a pixel is in the band when the nearest pixel of the other
    class is at most `width` away; a mask touching the image border has no edge there; width 0 is no band."""
    from scipy.ndimage import distance_transform_cdt

    from neuface_ns.capture.masks import uncertain_band

    i, j = np.mgrid[0:40, 0:50]
    mask = ((i - 18) ** 2 + (j - 20) ** 2 < 12**2) | ((j > 38) & (i < 25))  # a disc and a block on the border
    # the mask extended past the image border by copying its edge pixels: the border is no edge
    pad = width + 1
    padded = np.pad(mask, pad, mode="edge")
    to_outside = distance_transform_cdt(padded, metric="chessboard")[pad:-pad, pad:-pad]  # inside: to the outside
    to_inside = distance_transform_cdt(~padded, metric="chessboard")[pad:-pad, pad:-pad]
    expected = np.where(mask, to_outside <= width, to_inside <= width)
    band = uncertain_band(mask, width)
    np.testing.assert_array_equal(band, expected)
    assert band[mask].sum() > 0 and band[~mask].sum() > 0
    assert not uncertain_band(mask, 0).any()


def test_photos_are_turned_by_their_exif_orientation(tmp_path):
    from PIL import Image

    from neuface_ns.capture.frames import read_upright

    image = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    image.save(tmp_path / "portrait.jpg", exif=exif)
    assert read_upright(tmp_path / "portrait.jpg").shape == (40, 20, 3)


def test_video_frames_are_even_and_the_blurry_ones_lose(tmp_path):
    import cv2

    from neuface_ns.capture.frames import from_video

    rng = np.random.default_rng(3)
    sharp = (rng.uniform(0, 255, (120, 160, 3))).astype(np.uint8)
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    blurry = set(range(0, 60, 2))  # every other frame is motion-blurred
    for k in range(60):
        frame = np.roll(sharp, k, axis=1)
        writer.write(cv2.GaussianBlur(frame, (0, 0), 4) if k in blurry else frame)
    writer.release()
    result = from_video(tmp_path / "clip.avi", tmp_path / "work", num_frames=10)
    numbers = [int(f.source.split("#")[1]) for f in result.frames]
    assert len(numbers) == 10 and not set(numbers) & blurry
    assert all(6 * k <= n < 6 * (k + 1) for k, n in enumerate(numbers))  # one per sixth of the video


# ---------------------------------------------------------------------------------------------- bad input


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def _process(input_path: Path, out: Path, **kwargs):
    pytest.importorskip("mediapipe")
    pytest.importorskip("pycolmap")
    from neuface_ns.capture.cli import ProcessData, process

    return process(ProcessData(input=input_path, output_dir=out, **kwargs))


def _one_line_failure(photos, output) -> str:
    """Process `photos`, expect a CaptureError of one line, and check the user's photos are unchanged."""
    before = _digest(photos)
    with pytest.raises(CaptureError) as error:
        _process(photos, output)
    message = str(error.value)
    assert "\n" not in message
    assert _digest(photos) == before
    return message


def test_too_few_images_is_one_line(tmp_path):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(3):
        Image.fromarray(np.full((60, 80, 3), 40 * k, np.uint8)).save(photos / f"p{k}.jpg")
    message = _one_line_failure(photos, tmp_path / "scene")
    assert "only 3 usable images" in message and "p0.jpg" in message


def test_no_face_is_one_line_naming_the_images(tmp_path):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(4)
    for k in range(8):
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(photos / f"wall{k}.png")
    message = _one_line_failure(photos, tmp_path / "scene")
    assert "no face found in 8 of 8 images" in message and "wall0.png" in message


def test_existing_output_and_missing_input_are_one_line(tmp_path):
    with pytest.raises(CaptureError, match="input not found"):
        _process(tmp_path / "nothing", tmp_path / "scene")
    (tmp_path / "photos").mkdir()
    (tmp_path / "scene").mkdir()
    (tmp_path / "scene" / "keep.txt").write_text("mine")
    with pytest.raises(CaptureError, match="not empty"):
        _process(tmp_path / "photos", tmp_path / "scene")
    assert (tmp_path / "scene" / "keep.txt").read_text() == "mine"


def test_a_face_too_small_is_one_line(tmp_path):
    from PIL import Image

    if not DATA.is_dir():
        pytest.skip("tests/capture/capture_james missing")
    photos = tmp_path / "photos"
    photos.mkdir()
    for k, path in enumerate(sorted((DATA / "images").glob("*.jpg"))[:8]):
        small = Image.open(path).resize((80, 60))  # the face spans a few pixels of a 4x larger frame
        canvas = Image.new("RGB", (1280, 960), (90, 90, 90))
        canvas.paste(small.resize((160, 120)), (560, 420))
        canvas.save(photos / f"far{k}.jpg")
    with pytest.raises(CaptureError) as error:
        _process(photos, tmp_path / "scene")
    message = str(error.value)
    assert "\n" not in message and ("too small" in message or "no face found" in message) and "far0.jpg" in message


def _render_textured_ball(centre_mm, radius_mm, camera_mm, texture, f=900.0, size=160):
    """Ray-cast grey image [size, size] of a ball (the nose's tip) with a 3D texture, a textured wall behind it
    (z = -60 mm); camera looking at the ball's front. Returns the image and (K, R, t) with world = mm / 100."""
    R, t = _look_at(camera_mm / 100.0, (centre_mm + [0.0, 0.0, radius_mm]) / 100.0)
    K = np.array([[f, 0, size / 2 - 0.5], [0, f, size / 2 - 0.5], [0, 0, 1.0]])
    j, i = np.meshgrid(np.arange(size), np.arange(size))
    d = np.stack([j, i, np.ones_like(j)], -1).reshape(-1, 3).astype(float) @ np.linalg.inv(K).T @ R
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    oc = camera_mm - centre_mm
    b = d @ oc
    disc = b * b - (oc @ oc - radius_mm**2)
    t_ball = -b - np.sqrt(np.clip(disc, 0, None))
    t_wall = (-60.0 - camera_mm[2]) / d[:, 2]
    depth = np.where(disc > 0, t_ball, t_wall)
    return texture(camera_mm[None] + depth[:, None] * d).reshape(size, size).astype(np.float32), (K, R, t)


def test_nose_depth_moves_a_wrong_tip_onto_a_textured_surface():
    """A textured ball of radius 12 mm (a nose tip at z = 40 mm) seen by 9 cameras within 35 degrees: started 3 mm
    in front of the surface or 2 mm behind it, the photo-consistency search lands on the surface (the ball's
    apex, a closed form) within 0.3 mm; on a surface without texture it declines and says why."""
    from neuface_ns.capture.nose_depth import refine_nose_depth

    rng = np.random.default_rng(0)
    waves = rng.normal(size=(12, 3)) * 2 * math.pi / rng.uniform(2.0, 6.0, size=(12, 1))  # 2-6 mm wavelengths
    phases = rng.uniform(0, 2 * math.pi, 12)
    texture = lambda p: 128 + 60 * np.sin(p @ waves.T + phases).mean(1) * 3  # noqa: E731
    centre, radius = np.array([0.0, 0.0, 28.0]), 12.0
    apex = centre + [0.0, 0.0, radius]
    images, cameras = {}, {}
    for k, (yaw, pitch) in enumerate([(0, 0), (-35, 0), (35, 0), (0, 25), (0, -25), (-20, 15), (20, 15), (-20, -15),
                                      (20, -15)]):
        yaw, pitch = math.radians(yaw), math.radians(pitch)
        camera = apex + 400.0 * np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)])
        grey, cameras[str(k)] = _render_textured_ball(centre, radius, camera, texture)
        images[str(k)] = np.repeat(grey[..., None], 3, axis=-1)
    for start_mm in (3.0, -2.0):
        nose = (apex + [0.0, 0.0, start_mm]) / 100.0
        result = refine_nose_depth(images, cameras, nose, np.eye(3), mm_per_world=100.0)
        assert result.applied and len(result.views) == 9
        assert result.offset_mm == pytest.approx(-start_mm, abs=0.3)
        assert result.score > result.score_at_landmarks
    flat = {n: np.full_like(image, 128.0) + rng.normal(0, 2, image.shape).astype(np.float32) for n, image in images.items()}
    declined = refine_nose_depth(flat, cameras, (apex + [0.0, 0.0, 3.0]) / 100.0, np.eye(3), mm_per_world=100.0)
    assert not declined.applied and declined.offset_mm == 0.0 and "agree too little" in declined.why


# ---------------------------------------------------------------------------------------------- the rendered capture


@pytest.fixture(scope="module")
def processed_capture(tmp_path_factory):
    """The 24 rendered photos, without their cameras, through the whole pipeline (SfM included; ~1 min)."""
    if not DATA.is_dir():
        pytest.skip("tests/capture/capture_james missing")
    out = tmp_path_factory.mktemp("capture") / "scene"
    before = _digest(DATA / "images")
    # metric scale from a known baseline: the true distance between the cameras of two photos
    centres = np.load(DATA / "truth.npz")["centres_mm"]
    baseline = ("000.jpg", "007.jpg", float(np.linalg.norm(centres[0] - centres[7])))
    report = _process(DATA / "images", out, baseline=baseline)
    assert _digest(DATA / "images") == before  # the input is only read
    return out, report


def test_capture_cameras_nose_and_masks_match_the_truth(processed_capture):
    from neuface_ns.capture.evaluate import evaluate

    out, report = processed_capture
    result = evaluate(out, DATA / "truth.npz")
    assert result["views_registered"] == result["views_total"] == 24
    assert result["rotation_error_deg"]["max"] <= 1.0
    assert result["centre_error_fraction"]["max"] <= 0.01
    # the issue asks 3 mm; the landmarks alone gave 1.9 mm (in front of the skin), photo-consistency 1.1 mm
    assert result["nose_tip_error_mm"] <= 1.5 and report["landmarks"]["nose_tip_depth"]["applied"]
    # the 0.9 in every view (0.898-0.900 at the worst view before the 0.8 foreground threshold and the
    # uncertain pixels out of the masks, 0.913-0.916 after, three SfM runs)
    assert result["mask_iou"]["min"] >= 0.9
    assert result["scale_estimated_over_true"] == pytest.approx(1.0, abs=0.005)  # the baseline's scale
    assert report["scale"]["source"].startswith("camera baseline")
    assert report["cameras"]["sfm_reprojection_error_px"] < 1.5
    assert report["landmarks"]["triangulation_error_px"]["median"] < report["landmarks"]["threshold_px"]


def test_capture_scene_is_what_the_dataparsers_read(processed_capture):
    from neuface_ns.data.dtu import NeuFaceDTUDataParserConfig
    from neuface_ns.data.facescape import NeuFaceFaceScapeDataParserConfig

    out, report = processed_capture
    assert (out / "contact_sheet.png").is_file() and json.loads((out / "capture_report.json").read_text())["num_kept"] == 24
    assert "ns-train neuface-facescape --data" in report["train_command"]
    parser = NeuFaceFaceScapeDataParserConfig(data=out, downscale_factor=1).setup()
    train, test = parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("test")
    # the loss masks skip every pixel of the masks' edge band (1 px each side at this capture's factor 1) and,
    # where the hull leaves the sphere cut open, a little more
    from PIL import Image

    from neuface_ns.capture.masks import uncertain_band

    assert report["uncertain_band_px"] == {"training": 1, "full_resolution": 1} and report["uncertain_depth_mm"] == 10
    beyond_band = []
    for mask_path, loss_path in zip(train.metadata["fg_mask_filenames"], train.metadata["loss_mask_filenames"]):
        mask = np.asarray(Image.open(mask_path)) > 127
        skipped = np.asarray(Image.open(loss_path)) <= 127
        band = uncertain_band(mask, 1)
        assert not (band & ~skipped).any()
        assert not (skipped & ~band & mask).any()  # an open sphere cut is left out of the mask
        beyond_band.append((skipped & ~band).sum() / mask.sum())
    assert 0 < np.mean(beyond_band) < 0.1
    assert len(train.image_filenames) + len(test.image_filenames) == 24 and len(test.image_filenames) == 3
    # every camera is outside the unit face sphere and looks at it
    centres = train.cameras.camera_to_worlds[:, :, 3].numpy()
    forward = -train.cameras.camera_to_worlds[:, :, 2].numpy()  # nerfstudio cameras look down -z
    assert (np.linalg.norm(centres, axis=1) > 2.0).all()
    assert ((np.einsum("ij,ij->i", -centres, forward) / np.linalg.norm(centres, axis=1)) > 0.9).all()
    dtu = NeuFaceDTUDataParserConfig(data=out / "idr").setup().get_dataparser_outputs("train")
    assert len(dtu.image_filenames) == 21  # idr/scene.json holds the same 3 views out
    assert np.allclose(dtu.cameras.camera_to_worlds[:, :, 3].numpy(), centres, atol=1e-4)  # the same face frame


def test_nerfstudio_dataset_cameras_are_taken_as_they_are(tmp_path):
    """transforms.json (nerfstudio's OpenGL cameras, COLMAP's pixel convention) built from the true cameras: the
    scene keeps them exactly (after the similarity to the face frame) and its masks match the truth."""
    import shutil

    from neuface_ns.capture.evaluate import evaluate

    if not DATA.is_dir():
        pytest.skip("tests/capture/capture_james missing")
    truth = np.load(DATA / "truth.npz")
    K = truth["K"]
    dataset = tmp_path / "ns"
    (dataset / "images").mkdir(parents=True)
    frames = []
    for k, path in enumerate(sorted((DATA / "images").glob("*.jpg"))):
        shutil.copy(path, dataset / "images" / path.name)
        c2w = np.eye(4)
        c2w[:3, :3] = truth["R_c2w"][k] @ np.diag([1.0, -1.0, -1.0])
        c2w[:3, 3] = truth["centres_mm"][k] / 1000.0  # any world unit: metres here
        frames.append({"file_path": f"images/{path.name}", "transform_matrix": c2w.tolist()})
    height, width = truth["masks"].shape[1:]
    (dataset / "transforms.json").write_text(json.dumps({
        "camera_model": "OPENCV", "fl_x": K[0, 0], "fl_y": K[1, 1], "cx": K[0, 2] + 0.5, "cy": K[1, 2] + 0.5,
        "w": int(width), "h": int(height), "frames": frames}))
    _process(dataset, tmp_path / "scene")
    result = evaluate(tmp_path / "scene", DATA / "truth.npz")
    assert result["rotation_error_deg"]["max"] < 1e-3 and result["centre_error_fraction"]["max"] < 1e-6
    assert result["nose_tip_error_mm"] <= 3.0 and result["mask_iou"]["mean"] >= 0.9


def test_sfm_that_registers_too_few_views_is_one_line(tmp_path):
    """Eight copies of one photo: a face in every image, but no baseline for structure from motion."""
    import shutil

    if not DATA.is_dir():
        pytest.skip("tests/capture/capture_james missing")
    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(8):
        shutil.copy(DATA / "images" / "003.jpg", photos / f"same{k}.jpg")
    with pytest.raises(CaptureError) as error:
        _process(photos, tmp_path / "scene")
    message = str(error.value)
    assert "\n" not in message and "structure from motion registered" in message


def test_sfm_passes_over_a_model_its_check_rejects(tmp_path):
    """A model that registers every view can still be wrong (on a rendered 50-frame video 2 of 10 runs disagreed
    with the face landmarks); run_sfm then tries the next seed. Here the check rejects the first model it sees:
    the second seed's model comes back, its cameras match the truth, and the rejection is counted."""
    from neuface_ns.capture import frames as frames_module
    from neuface_ns.capture.evaluate import rotation_angle_deg, umeyama
    from neuface_ns.capture.sfm import run_sfm

    if not DATA.is_dir():
        pytest.skip("tests/capture/capture_james missing")
    frames = frames_module.load_frames(DATA / "images", tmp_path / "work", 50, 0.4)
    seen = []

    def accept(cameras):
        seen.append(len(cameras.K))
        return len(seen) > 1

    cameras = run_sfm(frames, tmp_path / "work", accept=accept)
    assert seen[0] == 24 and len(seen) == 2 and cameras.rejected_models == 1
    truth = np.load(DATA / "truth.npz")
    names = cameras.names
    views = [int(n) for n in names]
    s, R, t = umeyama(np.stack([cameras.centre(n) for n in names]), truth["centres_mm"][views])
    for n, v in zip(names, views):
        assert rotation_angle_deg(truth["R_c2w"][v].T @ R @ cameras.R[n].T) < 1.0
