"""Tests for scripts/make_sample_scene.py (the entry of the scripts/sample_scene package) and the bundled sample
in neuface_ns/data/sample/dtu."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "make_sample_scene.py"
PACKAGE = ROOT / "scripts" / "sample_scene"
SAMPLE = ROOT / "neuface_ns" / "data" / "sample" / "dtu"
LANDMARK_NAMES = {"nose_tip", "left_eye", "right_eye", "chin", "mouth_centre"}


@pytest.fixture(scope="module")
def gen(load_script):
    return load_script("make_sample_scene")


@pytest.fixture(scope="module")
def scene():
    with open(SAMPLE / "scene.json") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def cams_npz():
    return dict(np.load(SAMPLE / "cameras.npz"))


def _normalise(x, scene):
    return (np.asarray(x, dtype=np.float64) - np.asarray(scene["centre"])) / scene["scale"]


def test_generator_is_independent_of_package():
    sources = [SCRIPT, *sorted(PACKAGE.rglob("*.py"))]
    assert len(sources) > 5
    for path in sources:
        src = path.read_text()
        imports = "\n".join(line for line in src.splitlines() if line.lstrip().startswith(("import", "from")))
        assert "neuface_ns" not in imports, path
    # loading the entry by file path (as the tests do) imports nothing of neuface_ns and leaves sys.path alone
    code = (
        "import importlib.util, sys; path = list(sys.path); "
        "spec = importlib.util.spec_from_file_location('make_sample_scene', sys.argv[1]); "
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod); "
        "print(sorted(k for k in sys.modules if k.split('.')[0] == 'neuface_ns'), sys.path == path)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(SCRIPT)], capture_output=True, text=True, timeout=120,
                          cwd=PACKAGE.parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[] True"


def test_entry_reexports_the_package(gen):
    pkg = sys.modules["sample_scene"]
    assert Path(pkg.__file__).resolve().parent == PACKAGE
    for name in pkg.__all__:
        assert getattr(gen, name) is getattr(pkg, name), name
    assert gen.face_sdf is pkg.face.face_sdf and gen.render_view is pkg.renderer.render_view
    assert gen.write_idr_layout is pkg.layouts.idr.write_idr_layout
    assert gen.write_facescape_layout is pkg.layouts.facescape.write_facescape_layout
    assert gen.write_facescape_release is pkg.layouts.release.write_facescape_release
    assert gen.main is pkg.cli.main


# ---------------------------------------------------------------------------- SDF


def test_sdf_sign_and_lipschitz(gen):
    assert gen.face_sdf(np.zeros((1, 3)))[0] < -0.3
    rng = np.random.default_rng(1)
    d = rng.normal(size=(5000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    outside = d * rng.uniform(0.8, 1.5, size=(5000, 1))
    assert np.all(gen.face_sdf(outside) > 0.0)
    # 1-Lipschitz (needed for safe sphere tracing)
    a = rng.uniform(-0.9, 0.9, size=(20000, 3))
    b = a + rng.normal(scale=0.05, size=a.shape)
    ratio = np.abs(gen.face_sdf(a) - gen.face_sdf(b)) / np.linalg.norm(a - b, axis=1)
    assert ratio.max() <= 1.0 + 1e-9


def test_sdf_zero_on_gt_mesh(gen, scene):
    import trimesh

    mesh = trimesh.load(SAMPLE / "gt_mesh.ply", process=False)
    assert len(mesh.vertices) > 5000
    assert (SAMPLE / "gt_mesh.ply").stat().st_size < 1.5e6
    v = _normalise(mesh.vertices, scene)
    assert np.linalg.norm(v, axis=1).max() < 0.8
    sdf = gen.face_sdf(v)
    grid = 2.0 / 127
    # marching-cubes interpolation error: tiny on smooth parts, larger at creases
    assert np.abs(sdf).max() < 0.3 * grid
    assert np.percentile(np.abs(sdf), 99) < 0.06 * grid
    assert np.abs(sdf).mean() < 0.01 * grid
    assert mesh.is_watertight and mesh.volume > 0
    # outward normals: stepping along the vertex normal leaves the surface
    n = mesh.vertex_normals
    assert np.mean(gen.face_sdf(v + 0.01 * n) > 0) > 0.99


def test_sh_irradiance_matches_quadrature(gen):
    """Independent check of the Ramamoorthi-Hanrahan constants by numerical integration."""
    nt, npn = 600, 1200
    theta = (np.arange(nt) + 0.5) * np.pi / nt
    phi = (np.arange(npn) + 0.5) * 2 * np.pi / npn
    th, ph = np.meshgrid(theta, phi, indexing="ij")
    w = (np.sin(th) * (np.pi / nt) * (2 * np.pi / npn)).ravel()
    x, y, z = (np.sin(th) * np.cos(ph)).ravel(), (np.sin(th) * np.sin(ph)).ravel(), np.cos(th).ravel()
    Y = np.stack(
        [
            0.282095 * np.ones_like(x),
            0.488603 * y,
            0.488603 * z,
            0.488603 * x,
            1.092548 * x * y,
            1.092548 * y * z,
            0.315392 * (3 * z * z - 1),
            1.092548 * x * z,
            0.546274 * (x * x - y * y),
        ],
        axis=1,
    )
    radiance = Y @ gen.SH_COEFFS  # (M, 3)
    dirs = np.stack([x, y, z], axis=1)
    normals = np.array([[0, 0, 1.0], [0, 1.0, 0], [0.6, -0.48, 0.64], [-1.0, 0, 0], [0, 0, -1.0]])
    ref = np.stack([(np.maximum(dirs @ nn, 0) * w) @ radiance for nn in normals])
    np.testing.assert_allclose(gen.sh_irradiance(normals), ref, rtol=2e-3, atol=2e-3)
    # brighter from the front and from the top, positive everywhere
    E = gen.sh_irradiance(normals).mean(axis=1)
    assert E[0] > E[4] and E[1] > E[3]
    assert gen.sh_irradiance(dirs[::97]).min() > 0


# ---------------------------------------------------------------------------- cameras


def test_cameras_consistent(scene, cams_npz):
    s, c = scene["scale"], np.asarray(scene["centre"])
    assert len(scene["views"]) == scene["num_views"] == 20
    assert len(cams_npz) == 2 * scene["num_views"]
    S_expected = np.diag([s, s, s, 1.0])
    S_expected[:3, 3] = c
    for i, v in enumerate(scene["views"]):
        K, R, t = np.asarray(v["K"]), np.asarray(v["R"]), np.asarray(v["t"])
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) > 0
        P = cams_npz[f"world_mat_{i}"]
        assert P.shape == (4, 4) and P.dtype == np.float64
        np.testing.assert_allclose(P[3], [0, 0, 0, 1])
        np.testing.assert_allclose(P[:3], K @ np.concatenate([R, t[:, None]], axis=1), rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(cams_npz[f"scale_mat_{i}"], S_expected)
        C = -R.T @ t
        np.testing.assert_allclose(v["camera_centre_world"], C, atol=1e-9)
        np.testing.assert_allclose(v["camera_centre_world"], s * np.asarray(v["camera_centre_normalised"]) + c, atol=1e-9)
        dist = np.linalg.norm(v["camera_centre_normalised"])
        assert 2.8 < dist < 3.2
        # looks at the origin: the normalised origin projects near the principal point
        uvw = K @ (R @ c + t)
        assert np.hypot(uvw[0] / uvw[2] - K[0, 2], uvw[1] / uvw[2] - K[1, 2]) < 1.0
        E = np.asarray(v["exposure"])
        np.testing.assert_allclose(E, scene["exposure_matrices"][i])
        assert np.allclose(E, np.diag(np.diag(E)))
        if i == 0:
            np.testing.assert_allclose(E, np.eye(3))
        else:
            assert np.all((np.diag(E) >= 0.85) & (np.diag(E) <= 1.15))
    # principal point deliberately off the image centre, which is (W/2 - 0.5, H/2 - 0.5) in OpenCV's convention
    assert abs(scene["views"][0]["K"][0][2] - (scene["width"] / 2 - 0.5)) > 0.5
    assert abs(scene["views"][0]["K"][1][2] - (scene["height"] / 2 - 0.5)) > 0.5


def test_landmarks_project_and_visible_in_mask(gen, scene, cams_npz):
    s, c = scene["scale"], np.asarray(scene["centre"])
    assert set(scene["landmarks"]) == LANDMARK_NAMES
    for name, lm in scene["landmarks"].items():
        xw, xn = np.asarray(lm["world"]), np.asarray(lm["normalised"])
        np.testing.assert_allclose(xw, s * xn + c, atol=1e-9)
        assert abs(gen.face_sdf(xn[None])[0]) < 1e-5, name
    # anatomical left eye at +x, face towards +z
    assert scene["landmarks"]["left_eye"]["normalised"][0] > 0 > scene["landmarks"]["right_eye"]["normalised"][0]
    nose = scene["landmarks"]["nose_tip"]["normalised"]
    assert all(nose[2] > lm["normalised"][2] for k, lm in scene["landmarks"].items() if k != "nose_tip")
    n_visible = 0
    for i, v in enumerate(scene["views"]):
        P = cams_npz[f"world_mat_{i}"]
        PS = P @ cams_npz[f"scale_mat_{i}"]
        mask = np.asarray(Image.open(SAMPLE / v["mask"]))
        for name, lm in scene["landmarks"].items():
            info = v["landmarks"][name]
            p = P @ np.append(lm["world"], 1.0)
            np.testing.assert_allclose(p[:2] / p[2], info["pixel"], atol=1e-6)
            q = PS @ np.append(lm["normalised"], 1.0)
            np.testing.assert_allclose(q[:2] / q[2], info["pixel"], atol=1e-6)
            if info["visible"]:
                n_visible += 1
                u, vv = info["pixel"]  # OpenCV: pixel centres at integers
                assert mask[int(np.floor(vv + 0.5)), int(np.floor(u + 0.5))] > 127.5, (i, name)
    assert all(info["visible"] for info in scene["views"][0]["landmarks"].values())
    assert n_visible >= 50


def test_images_and_masks(scene):
    H, W = scene["height"], scene["width"]
    for v in scene["views"]:
        img = np.asarray(Image.open(SAMPLE / v["image"]))
        mask = np.asarray(Image.open(SAMPLE / v["mask"]))
        assert img.shape == (H, W, 3) and img.dtype == np.uint8
        assert mask.shape == (H, W) and set(np.unique(mask)) <= {0, 255}
        m = mask > 127.5
        assert 0.1 < m.mean() < 0.5
        # background is black away from the silhouette (coverage 0 there)
        near = np.zeros_like(m)
        ys, xs = np.nonzero(m)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                near[np.clip(ys + dy, 0, H - 1), np.clip(xs + dx, 0, W - 1)] = True
        assert img[~near].max() == 0
        assert img[m].mean() > 40


def test_pixel_convention_by_ray_casting(gen, scene):
    """OpenCV convention: the ray K^-1 [u, v, 1] of a landmark's reported pixel (u, v) hits the landmark, and the
    ray K^-1 [c, r, 1] of the pixel (row r, col c) = (round(v), round(u)) that holds it passes within half a pixel
    (per axis) of it."""
    v = scene["views"][0]
    K, R = np.asarray(v["K"]), np.asarray(v["R"])
    Cn = np.asarray(v["camera_centre_normalised"])
    for name, lm in scene["landmarks"].items():
        u, vv = v["landmarks"][name]["pixel"]
        d = R.T @ np.linalg.solve(K, [u, vv, 1.0])
        d /= np.linalg.norm(d)
        hit, t = gen.sphere_trace(Cn, d[None], eps=1e-9, max_steps=2000)
        assert hit[0]
        np.testing.assert_allclose(Cn + t[0] * d, lm["normalised"], atol=1e-5)
        # the landmark projects to (u, v) through K; the centre ray of the pixel that holds it, K^-1 [c, r, 1],
        # meets the landmark's depth plane within half a pixel (per axis) of it
        x_cam = R @ (np.asarray(lm["normalised"]) - Cn)
        p = K @ (x_cam / x_cam[2])
        np.testing.assert_allclose(p[:2], [u, vv], atol=1e-6)
        r, c = int(np.floor(vv + 0.5)), int(np.floor(u + 0.5))
        centre_ray = np.linalg.solve(K, [c, r, 1.0])  # at depth 1
        offset = K[:2, :2] @ (centre_ray[:2] - x_cam[:2] / x_cam[2])  # in pixels
        assert np.all(np.abs(offset) <= 0.5 + 1e-9), (name, offset)


def _pixel_centre_hits(gen, v, H, W, offset):
    """Hit mask of the rays R^T K^-1 [j + offset, i + offset, 1], built independently of the generator's ray code."""
    K, R = np.asarray(v["K"]), np.asarray(v["R"])
    jj, ii = np.meshgrid(np.arange(W) + offset, np.arange(H) + offset)
    pix = np.stack([jj.ravel(), ii.ravel(), np.ones(H * W)], axis=1)
    d = np.linalg.solve(K, pix.T).T @ R  # rows are R^T K^-1 [u, v, 1]
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    hit, _ = gen.sphere_trace(np.asarray(v["camera_centre_normalised"]), d)
    return hit.reshape(H, W)


@pytest.mark.parametrize("view", [0, 5, 19])
def test_mask_follows_half_pixel_convention(gen, scene, view):
    """OpenCV pixel-centre rays K^-1 [j, i, 1] reproduce the supersampled mask: the silhouettes agree to a
    fraction of a pixel. The corner-based rays K^-1 [j + 0.5, i + 0.5, 1] (the convention of the old sample, and
    nerfstudio's if K's cx, cy were used unchanged) are visibly off: their centroid moves by about half a pixel."""
    v = scene["views"][view]
    mask = np.asarray(Image.open(SAMPLE / v["mask"])) > 127.5
    H, W = mask.shape
    hit = _pixel_centre_hits(gen, v, H, W, 0.0)
    assert np.sum(hit != mask) < 0.012 * mask.sum()
    ym, xm = np.nonzero(mask)
    yh, xh = np.nonzero(hit)
    assert abs(xm.mean() - xh.mean()) < 0.15 and abs(ym.mean() - yh.mean()) < 0.15
    shifted = _pixel_centre_hits(gen, v, H, W, 0.5)
    ys, xs = np.nonzero(shifted)
    assert np.hypot(xm.mean() - xs.mean(), ym.mean() - ys.mean()) > 0.4


def test_bundled_sample_matches_generator(gen, scene):
    cams = gen.make_cameras(scene["num_views"], scene["width"], scene["height"], scene["seed"])
    for cam, v in zip(cams, scene["views"]):
        np.testing.assert_allclose(cam.K, v["K"])
        np.testing.assert_allclose(cam.R, v["R"], atol=1e-12)
        np.testing.assert_allclose(cam.t, v["t"], atol=1e-9)
    r = gen.render_view(cams[0])
    img = np.asarray(Image.open(SAMPLE / "image" / "000.png")).astype(int)
    mask = np.asarray(Image.open(SAMPLE / "mask" / "000.png")) > 127.5
    assert np.abs(np.round(r.rgb * 255) - img).max() <= 2
    assert np.sum(r.mask != mask) <= 2


# ---------------------------------------------------------------------------- CLI


def test_cli_tiny_scene_and_overwrite(gen, tmp_path, capsys):
    out = tmp_path / "scene"
    args = ["--output-dir", str(out), "--num-views", "3", "--width", "40", "--height", "30", "--mesh-resolution", "48"]
    assert gen.main(args) == 0
    for i in range(3):
        assert Image.open(out / "image" / f"{i:03d}.png").size == (40, 30)
        assert Image.open(out / "mask" / f"{i:03d}.png").mode == "L"
    assert not (out / "image" / "003.png").exists()
    npz = np.load(out / "cameras.npz")
    assert sorted(npz.files) == sorted([f"world_mat_{i}" for i in range(3)] + [f"scale_mat_{i}" for i in range(3)])
    meta = json.loads((out / "scene.json").read_text())
    assert meta["width"] == 40 and meta["height"] == 30 and len(meta["views"]) == 3
    assert (out / "gt_mesh.ply").stat().st_size > 1000
    first = (out / "image" / "000.png").read_bytes()
    capsys.readouterr()

    # refuses a non-empty directory without --overwrite (in-process and via the CLI)
    assert gen.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    proc = subprocess.run([sys.executable, str(SCRIPT)] + args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr

    # --overwrite regenerates deterministically
    assert gen.main(args + ["--overwrite"]) == 0
    assert (out / "image" / "000.png").read_bytes() == first
