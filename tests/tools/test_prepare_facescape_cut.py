"""neuface-prepare-facescape renders the masks from the mesh cut to the face sphere (NeuFace's cut_mesh.py +
render_mask.py), drops views that see none of it, blacks the images outside the masks and writes the cut mesh
(TU mm) as the scene's ground truth. References here are independent: analytic ray / quadric intersections of the
ellipsoid head and neck tube that scripts/bench_prepare_facescape.py writes, and brute-force point-in-triangle
tests. Pixel convention: OpenCV (the centre of pixel (row i, col j) is (u, v) = (j, i))."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prep():
    from neuface_ns.tools import prepare_facescape

    return prepare_facescape


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench_prepare_facescape")


# ---------------------------------------------------------------------------------------------------------------
# analytic reference: which pixels see the head / neck, optionally only where the surface is inside the unit sphere
# ---------------------------------------------------------------------------------------------------------------


def _quadratic_roots(a, b, c):
    disc = b * b - 4 * a * c
    ok = disc >= 0
    sq = np.sqrt(np.where(ok, disc, 0.0))
    return (-b - sq) / (2 * a), (-b + sq) / (2 * a), ok


def analytic_mask(bench, cam, width, height, cut=True):
    K, R, c = cam["K"], cam["R_norm"], cam["centre_norm"]
    jj, ii = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    d = np.stack([jj.ravel(), ii.ravel(), np.ones(jj.size)], -1) @ np.linalg.inv(K).T @ R  # OpenCV pixel centres
    hit = np.zeros(len(d), dtype=bool)

    def accept(t, ok, extra=None):
        p = c + t[:, None] * d
        good = ok & (t > 0)
        if cut:
            good &= (p**2).sum(-1) <= 1.0
        if extra is not None:
            good &= extra(p)
        return good

    radii, centre = np.asarray(bench.HEAD_RADII), np.asarray(bench.HEAD_CENTRE)
    o, dd = (c - centre) / radii, d / radii
    t1, t2, ok = _quadratic_roots((dd**2).sum(-1), 2 * dd @ o, o @ o - 1.0)
    hit |= accept(t1, ok) | accept(t2, ok)
    ax, az = bench.NECK_AXIS_XZ
    ox, oz = c[0] - ax, c[2] - az
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    t1, t2, ok = _quadratic_roots(a, 2 * (ox * d[:, 0] + oz * d[:, 2]), ox**2 + oz**2 - bench.NECK_RADIUS**2)
    in_y = lambda p: (p[:, 1] >= bench.NECK_Y[0]) & (p[:, 1] <= bench.NECK_Y[1])  # noqa: E731
    hit |= accept(t1, ok, in_y) | accept(t2, ok, in_y)
    return hit.reshape(height, width)


def _boundary(mask):
    """Pixels with a 8-neighbour of the other value."""
    pad = np.pad(mask, 1, mode="edge")
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out |= pad[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] != mask
    return out


# ---------------------------------------------------------------------------------------------------------------
# pieces
# ---------------------------------------------------------------------------------------------------------------


def test_cut_clips_crossing_faces_at_the_sphere(prep):
    # a flat grid on the plane z = 0.5: the cut is a disc of radius sqrt(0.75) (faces clipped, not just dropped)
    n = 41
    xs = np.linspace(-1.5, 1.5, n)
    xx, yy = np.meshgrid(xs, xs)
    v = np.stack([xx.ravel(), yy.ravel(), np.full(xx.size, 0.5)], -1)
    r, c = np.meshgrid(np.arange(n - 1), np.arange(n - 1), indexing="ij")
    a = (r * n + c).ravel()
    f = np.concatenate([np.stack([a, a + 1, a + n], -1), np.stack([a + 1, a + n + 1, a + n], -1)])
    cv, cf = prep.cut_to_sphere(v, f)
    radii = np.linalg.norm(cv, axis=1)
    assert radii.max() <= 1.0 + 1e-12
    disc = np.sqrt(0.75)
    rim = np.hypot(cv[:, 0], cv[:, 1])
    assert np.sum(np.abs(rim - disc) < 1e-12) >= 100  # new vertices on the sphere
    area = trimesh.Trimesh(cv, cf, process=False).area
    assert area == pytest.approx(np.pi * 0.75, rel=2e-3)  # only all-inside faces would lose ~ a rim of 0.075
    # orientation kept: every normal still +z; crossing edges shared (the disc is one connected, hole-free piece)
    normals = np.cross(cv[cf[:, 1]] - cv[cf[:, 0]], cv[cf[:, 2]] - cv[cf[:, 0]])
    assert (normals[:, 2] > 0).all()
    mesh = trimesh.Trimesh(cv, cf, process=False)
    assert len(mesh.split(only_watertight=False)) == 1 and mesh.euler_number == 1
    # a face whose three vertices lie outside is dropped; one fully inside is kept unchanged
    v2 = np.array([[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [2, 0, 0], [2, 1, 0], [3, 0, 0.0]])
    cv2_, cf2 = prep.cut_to_sphere(v2, np.array([[0, 1, 2], [3, 4, 5]]))
    np.testing.assert_array_equal(cv2_[cf2], v2[[[0, 1, 2]]])


def test_rasteriser_is_exact_pixel_centre_coverage(prep):
    rng = np.random.default_rng(3)
    W, H = 37, 23
    uv = rng.uniform([-6, -6], [W + 5, H + 5], (60, 2))
    f = rng.integers(0, 60, (25, 3))
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    got = prep.rasterise_triangles(uv, f, W, H, max_pairs=17)
    jj, ii = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    p = np.stack([jj, ii], -1)
    want = np.zeros((H, W), bool)
    for tri in f:
        a, b, c = uv[tri]

        def cross(o, e, q):
            return (e[0] - o[0]) * (q[..., 1] - o[1]) - (e[1] - o[1]) * (q[..., 0] - o[0])

        s = np.stack([cross(a, b, p), cross(b, c, p), cross(c, a, p)])
        want |= (s >= 0).all(0) | (s <= 0).all(0)
    np.testing.assert_array_equal(got, want)
    # pixel (row i, col j) is covered iff (j, i) is inside: a triangle around the centre of pixel (2, 5) only
    one = prep.rasterise_triangles(np.array([[4.8, 1.8], [5.3, 1.8], [5.0, 2.3]]), np.array([[0, 1, 2]]), 8, 4)
    assert one.sum() == 1 and one[2, 5]


def test_render_mask_matches_ray_casting_of_the_same_mesh(prep, bench):
    v, f = bench.head_and_neck(subdivisions=3, tube_segments=32, tube_rows=6)
    v, f = prep.cut_to_sphere(v, f)
    c = np.array([1.5, 0.8, 6.0])
    R = bench.look_at(c)
    K = np.array([[90.0, 0, 31.5], [0, 90.0, 23.5], [0, 0, 1]])
    t = -R @ c
    raster = prep.render_mask(v, f, K, R, t, 64, 48)
    rays = prep.raycast_mask(v, f, K, R, t, 64, 48)
    assert raster.sum() > 200
    assert (raster != rays).sum() <= 2  # only rays grazing an edge may differ


# ---------------------------------------------------------------------------------------------------------------
# end to end on a release whose mesh reaches outside the face sphere
# ---------------------------------------------------------------------------------------------------------------

W, H, AWAY = 200, 150, 3


@pytest.fixture(scope="module")
def head_release(bench, tmp_path_factory):
    root = tmp_path_factory.mktemp("head_release")
    return bench.write_head_release(root, num_views=6, width=W, height=H, subdivisions=5, away_views=(AWAY,),
                                    image_value=(200, 180, 160))


@pytest.fixture(scope="module")
def head_prepared(prep, head_release, tmp_path_factory):
    import contextlib
    import io

    out = tmp_path_factory.mktemp("head_prepared") / "neuface"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert prep.main(["--release-root", str(head_release["root"]), "--output-dir", str(out)]) == 0
    return out, buf.getvalue()


def _read(path):
    return np.asarray(Image.open(path))


def test_masks_are_the_projection_of_the_cut_part_only(bench, head_release, head_prepared):
    out, _ = head_prepared
    mask_dir = out / "imface_mask" / "1" / "1_neutral"
    checked = 0
    for cam in head_release["cameras"]:
        if cam["view"] == str(AWAY):
            continue
        path = next(mask_dir.glob(f"*/{cam['view']}.jpg"))
        got = _read(path) > 127
        want = analytic_mask(bench, cam, W, H, cut=True)
        uncut = analytic_mask(bench, cam, W, H, cut=False)
        wrong = got != want
        assert wrong.sum() <= 0.01 * want.sum(), (cam["view"], wrong.sum(), want.sum())
        assert not (wrong & ~_boundary(want)).any(), cam["view"]  # differences only on the analytic silhouette
        # the fixture matters: the whole head + neck covers clearly more (the old masks)
        assert uncut.sum() > 1.15 * want.sum() and (got & ~uncut).sum() == 0
        checked += 1
    assert checked == 5


def test_view_with_empty_cut_mask_is_dropped(head_prepared):
    out, stdout = head_prepared
    lines = [line for line in stdout.splitlines() if "dropping view" in line]
    assert len(lines) == 1 and f"view(s) {AWAY}:" in lines[0]
    image_dir = out / "imface_image" / "1" / "1_neutral"
    params = json.loads((image_dir / "params.json").read_text())
    assert not any(k.startswith(f"{AWAY}_") for k in params)
    assert sorted(p.stem for p in (image_dir / "test").glob("*.jpg")) == ["0"]  # split over the kept views
    assert sorted(p.stem for p in (image_dir / "train").glob("*.jpg")) == ["1", "2", "4", "5"]
    assert not list((out / "imface_mask").rglob(f"{AWAY}.jpg"))


def test_images_black_outside_the_mask_at_full_resolution(head_release, head_prepared):
    out, _ = head_prepared
    grey = np.array([200, 180, 160], dtype=np.float64)
    for split in ("train", "test"):
        for path in (out / "imface_image" / "1" / "1_neutral" / split).glob("*.jpg"):
            image = _read(path).astype(np.float64)
            mask = _read(out / "imface_mask" / "1" / "1_neutral" / split / path.name) > 127
            assert image.shape[:2] == (H, W)
            far = ~mask & ~_boundary(mask)  # JPEG ringing may touch the silhouette
            assert image[far].max() <= 12, path
            near = mask & ~_boundary(mask)
            assert np.abs(image[near] - grey).mean() < 4, path


def test_cut_mesh_is_the_ground_truth_in_tu_mm(bench, head_release, head_prepared):
    out, stdout = head_prepared
    gt_path = out / "imface_gt" / "1" / "1_neutral.ply"
    assert (out / "gt_mesh.ply").read_bytes() == gt_path.read_bytes() and "gt_mesh.ply" in stdout
    gt = trimesh.load(gt_path, process=False)
    centre_mm = np.asarray(bench.NOSE_TU_MM) - np.array([0.0, 0.0, 40.0])
    dist = np.linalg.norm(np.asarray(gt.vertices) - centre_mm, axis=1)
    assert dist.max() <= 100.0 + 1e-3 and dist.max() > 99.9
    # the same surface: back in the normalised frame, every vertex is on the ellipsoid or on the neck tube
    x = (np.asarray(gt.vertices, dtype=np.float64) - centre_mm) / 100.0
    ell = np.abs(np.linalg.norm((x - bench.HEAD_CENTRE) / bench.HEAD_RADII, axis=1) - 1.0) < 1e-3
    tube = np.abs(np.hypot(x[:, 0] - bench.NECK_AXIS_XZ[0], x[:, 2] - bench.NECK_AXIS_XZ[1]) - bench.NECK_RADIUS) < 1e-3
    assert (ell | tube).all() and tube.sum() > 10 and ell.sum() > 1000
    # its area is the analytic area of the head + neck inside the sphere (Monte Carlo on the analytic surfaces)
    full = trimesh.Trimesh(*bench.head_and_neck(subdivisions=5), process=False)
    pts, face_idx = trimesh.sample.sample_surface(full, 200_000, seed=0)
    inside_fraction = (np.linalg.norm(pts, axis=1) <= 1.0).mean()
    assert gt.area / 1e4 == pytest.approx(full.area * inside_fraction, rel=0.02)
