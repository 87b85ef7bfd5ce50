"""Synthetic faces: shapes (layout, determinism, plausibility) and rendered images."""

from __future__ import annotations

import numpy as np
import pytest

from shapekit.data import _synth_geometry as geo
from shapekit.data.synth import FaceParams, sample_shapes
from shapekit.errors import ShapekitError


def _gpa(shapes, iters=8):
    """Aligned, unit-norm shapes (a small reference GPA, independent of shapekit.shape)."""
    x = shapes - shapes.mean(1, keepdims=True)
    x = x / np.linalg.norm(x, axis=(1, 2), keepdims=True)
    mean = x[0]
    for _ in range(iters):
        m = np.einsum("nli,lj->nij", x, mean)
        u, _, vt = np.linalg.svd(m)
        d = np.sign(np.linalg.det(u @ vt))
        u[:, :, -1] *= d[:, None]
        x = x @ (u @ vt)
        mean = x.mean(0)
        mean /= np.linalg.norm(mean)
    return x


# --------------------------------------------------------------------------- shapes

def test_sample_shapes_shape_and_frame():
    s = sample_shapes(200, seed=3, size=128)
    assert s.shape == (200, 68, 2)
    assert np.isfinite(s).all()
    assert s.min() > 0 and s.max() < 127
    box = (s.max(1) - s.min(1)).max(1)
    assert 0.35 * 128 < box.min() and box.max() < 0.7 * 128
    centre = 0.5 * (s.max(1) + s.min(1))
    assert np.abs(centre - 63.5).max() < 0.08 * 128 + 1


def test_sample_shapes_deterministic_per_face():
    a = sample_shapes(12, seed=5)
    b = sample_shapes(5, seed=5, start=7)
    np.testing.assert_array_equal(a[7:12], b)
    np.testing.assert_array_equal(a, sample_shapes(12, seed=5))
    assert np.abs(a - sample_shapes(12, seed=6)).max() > 1.0
    # size only rescales the frame
    c = sample_shapes(12, seed=5, size=512)
    np.testing.assert_allclose((c + 0.5) / 2 - 0.5, a, atol=1e-9)


def test_sample_shapes_matches_face_params():
    s = sample_shapes(4, seed=11, size=200)
    for i in range(4):
        p = FaceParams.sample(11, i)
        from shapekit.data.synth import _Layout

        np.testing.assert_allclose(_Layout(p.shape_values(), 200).shapes[0], s[i], atol=1e-9)


def _frontal(n=50, **kw):
    return sample_shapes(n, seed=1, max_yaw=0.0, max_pitch=0.0, max_roll=0.0, **kw)


@pytest.mark.parametrize("pose", [dict(max_yaw=0.0, max_pitch=0.0, max_roll=0.0),
                                  dict(max_yaw=40.0, max_pitch=20.0, max_roll=0.0)])
def test_ibug68_layout(pose):
    s = sample_shapes(300, seed=2, **pose)
    x, y = s[..., 0], s[..., 1]
    # jaw runs from image-left to image-right, chin at the bottom
    assert (x[:, 0] < x[:, 16]).all()
    # a strongly turned and tilted face may bring the chin level with the far jaw end
    assert ((x[:, 0] < x[:, 8]) & (x[:, 8] < x[:, 16])).mean() > 0.98
    assert (y[:, 8] > y[:, 33]).all()
    # eye 36-41 on the image-left, 36 its outer corner; 45 the outer corner of the other
    assert (x[:, 36] < x[:, 39]).all() and (x[:, 39] < x[:, 42]).all() and (x[:, 42] < x[:, 45]).all()
    # brows above the eyes, brows 17-21 on the image-left
    assert (y[:, 17:22].mean(1) < y[:, 36:42].mean(1)).all()
    assert (x[:, 17:22].mean(1) < x[:, 22:27].mean(1)).all()
    # upper eyelid above lower eyelid
    assert (y[:, [37, 38]].mean(1) <= y[:, [41, 40]].mean(1) + 1e-9).all()
    # nose bridge top to tip going down, mouth below the nose
    assert (np.diff(y[:, 27:31], axis=1) > 0).all()
    assert (y[:, 51] > y[:, 33]).all() and (y[:, 57] > y[:, 51]).all()
    # mouth corners 48 (image-left) and 54
    assert (x[:, 48] < x[:, 54]).all()


def test_frontal_faces_are_nearly_symmetric():
    s = _frontal()
    from shapekit import schemas

    flipped = schemas.get("ibug68").flip_shapes(s, 256)
    # flip about the face's own vertical axis: re-centre both
    d = (flipped - flipped.mean(1, keepdims=True)) - (s - s.mean(1, keepdims=True))
    iod = np.linalg.norm(s[:, 45] - s[:, 36], axis=1)
    err = np.linalg.norm(d, axis=2).mean(1) / iod
    assert np.median(err) < 0.08


def test_yaw_moves_nose_and_far_jaw():
    base = FaceParams.mean()
    from shapekit.data.synth import _Layout

    def shape(**kw):
        return _Layout(base.replace(**kw).shape_values(), 256).shapes[0]

    front, right = shape(), shape(yaw=35.0)
    # nose tip moves toward image-right relative to the eye corners
    rel = lambda s: (s[30, 0] - 0.5 * (s[36, 0] + s[45, 0])) / np.linalg.norm(s[45] - s[36])  # noqa: E731
    assert abs(rel(front)) < 1e-6 and rel(right) > 0.15
    # far (image-right) jaw stays outside the far eye but closer than when frontal
    gap_front = front[16, 0] - front[45, 0]
    gap_right = right[16, 0] - right[45, 0]
    assert 0 < gap_right < gap_front
    # marching: a far-side jaw point moved away from its frontal 3-D place, a near one did not
    rot, rot_nr = geo.rotation_matrices([35.0], [0.0], [0.0])
    p = geo.march_jaw(geo.MEAN[None], rot_nr)[0]
    assert np.linalg.norm(p[14] - geo.MEAN[14]) > 0.05
    np.testing.assert_allclose(p[2], geo.MEAN[2], atol=1e-12)
    rot, rot_nr = geo.rotation_matrices([0.0], [0.0], [0.0])
    np.testing.assert_allclose(geo.march_jaw(geo.MEAN[None], rot_nr)[0], geo.MEAN, atol=1e-12)


def test_roll_sign_is_clockwise():
    from shapekit.data.synth import _Layout

    s = _Layout(FaceParams.mean(roll=20.0).shape_values(), 256).shapes[0]
    assert s[45, 1] > s[36, 1] + 5  # image-right eye goes down


def test_shape_model_spectrum_is_plausible():
    s = sample_shapes(600, seed=0)
    x = _gpa(s).reshape(len(s), -1)
    c = x - x.mean(0)
    # eigenvalues of the covariance (a small symmetric matrix: cheaper than an SVD of the data)
    ev = np.sort(np.clip(np.linalg.eigvalsh(c.T @ c), 0.0, None))[::-1]
    ev = ev / ev.sum()
    cum = np.cumsum(ev)
    # pose dominates but does not swamp everything; many modes carry real variation
    assert 0.3 < ev[0] < 0.8
    assert cum[2] < 0.95
    n90 = int(np.searchsorted(cum, 0.90)) + 1
    assert 4 <= n90 <= 30
    # a noise floor below the modelled modes, but no exactly degenerate shapes
    assert ev[40] > 0 and ev[40] < 0.01


def test_mean_face_proportions():
    m = geo.MEAN
    iod = np.linalg.norm(m[45, :2] - m[36, :2])
    assert abs(iod - 1.0) < 1e-9
    # face height (brow to chin) and width (jaw 0-16) in human proportions
    assert 1.4 < m[8, 1] - m[19, 1] < 1.9
    assert 1.5 < m[16, 0] - m[0, 0] < 1.8
    # nose tip is the most forward point, eye outer corners sit behind inner corners
    assert m[30, 2] == m[:, 2].max()
    assert m[36, 2] < m[39, 2]


def test_bad_arguments():
    with pytest.raises(ShapekitError, match="n"):
        sample_shapes(-1)
    with pytest.raises(ShapekitError, match="seed"):
        sample_shapes(3, seed=1.5)
    with pytest.raises(ShapekitError, match="size"):
        sample_shapes(3, size=8)
    with pytest.raises(ShapekitError, match="max_yaw"):
        sample_shapes(3, max_yaw=120)
    assert sample_shapes(0).shape == (0, 68, 2)


# --------------------------------------------------------------------------- images

from shapekit.data.synth import SYNTHETIC_NOTE, generate, render_face, write_dataset  # noqa: E402


def test_render_face_types_and_determinism():
    img, pts = render_face(3, size=96)
    assert img.shape == (96, 96, 3) and img.dtype == np.uint8
    assert pts.shape == (68, 2) and pts.dtype == float
    img2, pts2 = render_face(3, size=96)
    np.testing.assert_array_equal(img, img2)
    np.testing.assert_array_equal(pts, pts2)
    # an integer seed is face 0 of that run; the landmarks are those of sample_shapes
    np.testing.assert_allclose(pts, sample_shapes(1, seed=3, size=96)[0], atol=1e-9)
    assert not np.array_equal(img, render_face(4, size=96)[0])
    # the image has real content: not flat, not saturated
    assert img.std() > 10 and 20 < img.mean() < 235


def test_generate_is_independent_of_n_start_and_workers():
    images, shapes = generate(3, seed=9, size=64, progress=False)
    assert images.shape == (3, 64, 64, 3) and shapes.shape == (3, 68, 2)
    img1, sh1 = generate(2, seed=9, size=64, start=1, progress=False)
    np.testing.assert_array_equal(images[1:], img1)
    np.testing.assert_array_equal(shapes[1:], sh1)
    img2, sh2 = generate(3, seed=9, size=64, workers=2, progress=False)
    np.testing.assert_array_equal(images, img2)
    np.testing.assert_array_equal(shapes, sh2)
    np.testing.assert_allclose(shapes, sample_shapes(3, seed=9, size=64), atol=1e-9)
    single, pts = render_face(FaceParams.sample(9, 2), size=64)
    np.testing.assert_array_equal(images[2], single)


def _local_contrast(img, pts, r):
    grey = img.astype(float).mean(2)
    out = []
    for x, y in np.round(pts).astype(int):
        patch = grey[max(y - r, 0):y + r + 1, max(x - r, 0):x + r + 1]
        out.append(patch.std() if patch.size else 0.0)
    return np.array(out)


def test_features_are_drawn_at_the_landmarks():
    # eyes and mouth corners have more local contrast than the middle of the cheeks
    ratios = []
    for i in range(10):
        p = FaceParams.sample(21, i, occlusion=0.0).replace(appearance={"blur": 0.0, "noise": 0.0})
        img, pts = render_face(p, size=160)
        iod = np.linalg.norm(pts[45] - pts[36])
        r = max(2, int(0.06 * iod))
        eyes = _local_contrast(img, pts[[37, 38, 40, 41, 43, 44, 46, 47]], r).mean()
        cheeks = np.stack([0.5 * pts[3] + 0.5 * pts[31], 0.5 * pts[13] + 0.5 * pts[35]])
        ratios.append(eyes / max(_local_contrast(img, cheeks, r).mean(), 1.0))
    assert np.median(ratios) > 2.0


def test_image_follows_the_landmarks():
    # an open mouth is dark between the inner lips; a closed one shows lips there
    base = FaceParams.mean()
    a, pa = render_face(base, size=128)
    b, pb = render_face(base.replace(expression=np.array([0.8, 0, 0, 0, 0, 0.0])), size=128)

    def grey_at(img, p, r=2):
        x, y = np.round(p).astype(int)
        return img[y - r:y + r + 1, x - r:x + r + 1].astype(float).mean()

    inside = 0.5 * (pb[62] + pb[66]) + np.array([0.0, 0.25]) * (pb[66] - pb[62])
    cheek = 0.5 * (pb[3] + pb[31])
    assert grey_at(b, inside) < 0.5 * grey_at(b, cheek)
    assert grey_at(a, 0.5 * (pa[57] + pa[66])) > 0.6 * grey_at(a, 0.5 * (pa[3] + pa[31]))
    assert np.linalg.norm(pb[66] - pb[62]) > 6 and np.linalg.norm(pa[66] - pa[62]) < 3
    # turning the head moves the rendered eyes with the landmarks: the darkest pixels of
    # each eye region lie inside the eye outline
    c, pc = render_face(base.replace(yaw=30.0, roll=10.0), size=128)
    grey = c.astype(float).mean(2)
    for eye in (slice(36, 42), slice(42, 48)):
        e = pc[eye]
        lo = np.floor(e.min(0) - 3).astype(int)
        hi = np.ceil(e.max(0) + 3).astype(int)
        win = grey[lo[1]:hi[1] + 1, lo[0]:hi[0] + 1]
        y, x = np.unravel_index(np.argmin(win), win.shape)
        x, y = x + lo[0], y + lo[1]
        assert e[:, 0].min() - 1 <= x <= e[:, 0].max() + 1
        assert e[:, 1].min() - 2 <= y <= e[:, 1].max() + 2


def test_occluders_and_options():
    p = FaceParams.sample(5, 0, occlusion=1.0)
    assert p.appearance["occluder"] is not None
    q = FaceParams.sample(5, 0, occlusion=0.0)
    assert q.appearance["occluder"] is None
    # the option changes only the occluder, never the face
    np.testing.assert_array_equal(p.identity, q.identity)
    assert p.yaw == q.yaw and p.texture_seed == q.texture_seed
    for kind in ("patch", "hand", "bar", "glasses"):
        occ = dict(kind=kind, u=0.5, v=0.5, size=0.5, colour=0.5, angle=0.3)
        img, _ = render_face(q.replace(appearance={"occluder": occ}), size=64)
        assert not np.array_equal(img, render_face(q, size=64)[0])
    with pytest.raises(ShapekitError, match="occlusion"):
        FaceParams.sample(1, 0, occlusion=2.0)
    with pytest.raises(ShapekitError, match="seed_or_params"):
        render_face("face")
    with pytest.raises(ShapekitError, match="no field"):
        FaceParams.mean(colour=1)


def test_poses_within_range_and_landmarks_mostly_inside():
    params = [FaceParams.sample(0, i) for i in range(300)]
    yaw = np.array([p.yaw for p in params])
    assert np.abs(yaw).max() <= 40 and np.abs(yaw).max() > 30 and np.abs(yaw).mean() > 8
    assert max(abs(p.pitch) for p in params) <= 20 and max(abs(p.roll) for p in params) <= 30
    s = sample_shapes(300, seed=0, size=256)
    assert ((s >= 0) & (s <= 255)).all()


def test_write_dataset(tmp_path):
    import json

    from shapekit.io import read_pts

    paths = write_dataset(tmp_path / "out", 3, seed=4, size=64, progress=False)
    assert [p.name for p in paths] == ["00000.png", "00001.png", "00002.png"]
    images, shapes = generate(3, seed=4, size=64, progress=False)
    from skimage.io import imread

    for i, p in enumerate(paths):
        np.testing.assert_array_equal(imread(p), images[i])
        np.testing.assert_allclose(read_pts(p.with_suffix(".pts")), shapes[i], atol=1e-5)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["synthetic"] is True and manifest["count"] == 3 and manifest["schema"] == "ibug68"
    assert len(manifest["faces"]) == 3 and manifest["faces"][0]["image"] == "00000.png"
    assert SYNTHETIC_NOTE in (tmp_path / "out" / "README.txt").read_text()
    assert not [f for f in (tmp_path / "out").iterdir() if f.name.startswith(".")]  # no temporaries left
    from shapekit.data.synth import is_synthetic

    assert is_synthetic(tmp_path / "out") and is_synthetic(paths[0])
    assert not is_synthetic(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    assert not is_synthetic(tmp_path)
    # a smaller run into the same synthetic folder removes the faces it does not rewrite
    write_dataset(tmp_path / "out", 2, seed=4, size=64, progress=False)
    assert sorted(f.name for f in (tmp_path / "out").glob("*.p*")) == [
        "00000.png", "00000.pts", "00001.png", "00001.pts"]
    # ... but never touches files of a folder it did not write, unless told to
    other = tmp_path / "other"
    other.mkdir()
    (other / "00007.pts").write_text("x")
    with pytest.raises(ShapekitError, match="00007.pts"):
        write_dataset(other, 1, size=48, progress=False)
    assert (other / "00007.pts").exists()
    write_dataset(other, 1, size=48, progress=False, overwrite=True)
    assert not (other / "00007.pts").exists() and (other / "00000.pts").exists()


def test_cli_synth(tmp_path, capsys):
    from shapekit_cli.main import main

    assert main(["synth", "-n", "2", "-o", str(tmp_path / "c"), "--size", "48", "--seed", "3", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    import json

    assert json.loads(out)["synthetic"] is True
    assert sorted(f.name for f in (tmp_path / "c").iterdir()) == [
        "00000.png", "00000.pts", "00001.png", "00001.pts", "README.txt", "manifest.json"]
    assert main(["synth", "-n", "2", "-o", str(tmp_path / "d"), "--size", "8"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["synth", "--help"])
    assert exc.value.code == 0
    assert "SYNTHETIC" in capsys.readouterr().out


def test_jaw_points_lie_on_the_visible_face_outline():
    # 300-W puts the jaw on the visible boundary: the image has an edge at the jaw points
    # (upper ones included, where ears and hair meet the face), and little inside the cheek
    upper = [0, 1, 2, 3, 13, 14, 15, 16]
    ratios = []
    for i in range(8):
        p = FaceParams.sample(8, i, occlusion=0.0, max_yaw=15, max_pitch=10, max_roll=10)
        img, pts = render_face(p.replace(appearance={"blur": 0.0, "noise": 0.0}), size=160)
        r = max(2, int(0.05 * np.linalg.norm(pts[45] - pts[36])))
        jaw = pts[upper]
        inside = jaw + 0.2 * (pts[30] - jaw)
        ratios.append(np.median(_local_contrast(img, jaw, r) / np.maximum(_local_contrast(img, inside, r), 1.0)))
    assert np.median(ratios) > 2.0


def test_visibility_marks_occluded_landmarks():
    base = FaceParams.mean().replace(appearance={"hair_style": "bald"})
    img, pts, vis = render_face(base, size=128, with_visibility=True)
    assert vis.all()
    # a bar across the mouth hides mouth points and leaves the eyes
    lo, hi = pts.min(0), pts.max(0)
    v = (pts[57, 1] - lo[1]) / (hi[1] - lo[1]) - 0.05
    occ = dict(kind="bar", u=0.5, v=float(v), size=0.5, colour=0.2, angle=0.5)
    img2, pts2, vis2 = render_face(base.replace(appearance={"occluder": occ}), size=128, with_visibility=True)
    np.testing.assert_array_equal(pts, pts2)
    hidden = np.flatnonzero(~vis2)
    assert len(hidden) >= 3 and set(hidden) <= set(range(0, 17)) | set(range(48, 68))
    centre_y = lo[1] + v * (hi[1] - lo[1])
    iod = np.linalg.norm(pts[45] - pts[36])
    assert np.abs(pts[hidden, 1] - centre_y).max() < 0.15 * iod
    assert vis2[17:48].all()
    # a fringe ends above the brows: the hair hides nothing of the inner face
    fringe = base.replace(appearance={"hair_style": "fringe", "hairline": -0.3})
    _, _, vis3 = render_face(fringe, size=128, with_visibility=True)
    assert vis3[17:68].all()
    images, shapes, visible = generate(2, seed=1, size=48, progress=False, with_visibility=True)
    assert visible.shape == (2, 68) and visible.dtype == bool


def test_hair_never_hides_landmarks():
    # without occluders every landmark is visible: hair frames the face outline and stops
    # above the brows (the jaw points keep the hair/skin boundary of 300-W annotation)
    _, _, visible = generate(40, seed=12, size=96, occlusion=0.0, progress=False, with_visibility=True)
    assert visible.all()


def test_polygon_coverage_matches_area():
    # the rasteriser's coverage sums to the polygon's area (shoelace) for star-shaped
    # polygons inside the image, and is 0..1 everywhere
    from shapekit.data._synth_raster import polygon_alpha

    rng = np.random.default_rng(0)
    for _ in range(50):
        k = int(rng.integers(3, 30))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = rng.uniform(2, 30) * rng.uniform(0.4, 1.0, k)
        poly = np.c_[50 + rad * np.cos(ang), 50 + rad * np.sin(ang)]
        area = 0.5 * abs(np.dot(poly[:, 0], np.roll(poly[:, 1], -1)) - np.dot(poly[:, 1], np.roll(poly[:, 0], -1)))
        y0, x0, a = polygon_alpha(poly, (100, 100))
        assert a.min() >= 0 and a.max() <= 1
        perimeter = np.linalg.norm(np.diff(np.vstack([poly, poly[:1]]), axis=0), axis=1).sum()
        # vertical sampling (4 rows a pixel) errs by at most ~1/8 px along the outline
        assert abs(a.sum() - area) <= 0.15 * perimeter + 1.0
    assert polygon_alpha([[200.0, 200.0], [210.0, 200.0], [205.0, 210.0]], (100, 100)) is None


def test_options_checked_before_any_work(tmp_path):
    with pytest.raises(ShapekitError, match="occlusion"):
        generate(0, occlusion=-0.1)
    with pytest.raises(ShapekitError, match="occlusion"):
        write_dataset(tmp_path / "x", 0, occlusion="often")
    with pytest.raises(ShapekitError, match="workers"):
        generate(1, workers=0)
    assert not (tmp_path / "x").exists()
