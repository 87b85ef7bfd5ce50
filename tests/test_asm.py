"""Active shape model: profile kernels against their NumPy references, pose/shape updates,
the search on synthetic faces, the model file, the shape prior and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shapekit.asm import (
    ActiveShapeModel,
    apply_shape_prior,
    contour_neighbours,
    extract_profiles,
    extract_profiles_reference,
    fit_shape,
    fit_similarity,
    heatmap_confidence,
    profile_costs,
    profile_costs_reference,
    shape_normals,
)
from shapekit.asm.pyramid import SearchFrame, build_pyramid, downsample2, from_level, resample_grey, to_level
from shapekit.asm.search import apply_similarity, invert_similarity, subpixel_offsets
from shapekit.shape.pdm import constrain_weights
from shapekit.asm.template import candidate_poses, ncc_scores, ncc_scores_reference, sample_template_reference
from shapekit.errors import FormatError, ShapekitError
from shapekit.metrics import nme


# --------------------------------------------------------------------------- kernels == references
def _random_case(seed, n_points, k, m, h, w):
    rng = np.random.default_rng(seed)
    image = (rng.random((h, w)) * 255).astype(np.float32)
    # points inside, near and outside the border: the clamping must agree too
    points = rng.uniform(-4, [w + 4, h + 4], size=(n_points, 2))
    normals = rng.normal(size=(n_points, 2))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    n = 2 * k + 1
    mean = rng.normal(size=(n_points, n)) * 0.1
    a = rng.normal(size=(n_points, n, n))
    icov = a @ a.transpose(0, 2, 1) + np.eye(n)
    return image, points, normals, mean, icov


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_points=st.integers(1, 70), k=st.integers(1, 7), m=st.integers(0, 5),
       h=st.integers(2, 40), w=st.integers(2, 40))
def test_profile_kernels_equal_numpy_reference(seed, n_points, k, m, h, w):
    image, points, normals, mean, icov = _random_case(seed, n_points, k, m, h, w)
    np.testing.assert_allclose(extract_profiles(image, points, normals, k),
                               extract_profiles_reference(image, points, normals, k), rtol=1e-9, atol=1e-12)
    got = profile_costs(image, points, normals, mean, icov, k, m)
    ref = profile_costs_reference(image, points, normals, mean, icov, k, m)
    assert got.shape == (n_points, 2 * m + 1)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)


def test_profile_is_normalised_derivative_along_normal():
    # a horizontal ramp 3 grey levels per pixel: along the +x normal every central
    # difference is 3, so the normalised profile is constant 1 / (2k + 1)
    image = np.tile(np.arange(50, dtype=np.float32) * 3, (40, 1))
    points = np.array([[25.0, 20.0], [10.3, 7.7]])
    prof = extract_profiles(image, points, np.array([[1.0, 0.0], [1.0, 0.0]]), 3)
    np.testing.assert_allclose(prof, 1.0 / 7.0, rtol=1e-5)
    # along y the ramp is flat: all zeros (the epsilon keeps it finite)
    np.testing.assert_allclose(extract_profiles(image, points, np.array([[0.0, 1.0], [0.0, 1.0]]), 3), 0, atol=1e-6)
    # brightness and contrast do not change a profile
    np.testing.assert_allclose(extract_profiles(image * 0.5 + 40, points, np.array([[1.0, 0.0]] * 2), 3), prof,
                               rtol=1e-5)


def test_profile_costs_find_the_edge():
    # a vertical step edge at x = 20.5: a model trained there finds it from 2 pixels away
    image = np.zeros((30, 40), np.float32)
    image[:, 21:] = 100
    normals = np.array([[1.0, 0.0]])
    k, m = 3, 3
    mean = extract_profiles(image, np.array([[20.5, 15.0]]), normals, k)
    icov = np.eye(2 * k + 1)[None]
    costs = profile_costs(image, np.array([[18.5, 15.0]]), normals, mean, icov, k, m)
    assert np.argmin(costs[0]) - m == 2
    assert costs[0].min() < 1e-9


def test_missing_point_gives_nan_profile_and_bad_input_is_named():
    image = np.ones((10, 10), np.float32)
    prof = extract_profiles(image, np.array([[np.nan, 1.0], [5.0, 5.0]]), np.array([[1.0, 0], [1.0, 0]]), 2)
    assert np.all(np.isnan(prof[0])) and np.all(np.isfinite(prof[1]))
    with pytest.raises(ShapekitError, match="image"):
        extract_profiles(np.ones((10, 10, 3)), np.zeros((2, 2)), np.ones((2, 2)), 2)
    with pytest.raises(ShapekitError, match="normals"):
        extract_profiles(image, np.zeros((2, 2)), np.ones((3, 2)), 2)
    with pytest.raises(ShapekitError, match="profile model"):
        profile_costs(image, np.zeros((2, 2)), np.ones((2, 2)), np.zeros((2, 4)), np.zeros((2, 5, 5)), 2, 1)
    with pytest.raises(ShapekitError, match="finite"):
        profile_costs(image, np.full((1, 2), np.nan), np.ones((1, 2)), np.zeros((1, 5)), np.zeros((1, 5, 5)), 2, 1)


def test_subpixel_offset_is_parabola_vertex():
    # costs (x - 0.3)^2 sampled at -2..2: the vertex is at +0.3 from the best candidate 0
    x = np.arange(-2, 3, dtype=float)
    costs = ((x - 0.3) ** 2)[None]
    best = np.argmin(costs, axis=1)
    np.testing.assert_allclose(best - 2 + subpixel_offsets(costs, best), [0.3])
    # at the end of the range there is no neighbour: no correction
    assert subpixel_offsets(((x - 5.0) ** 2)[None], np.array([4]))[0] == 0


def test_normals_of_a_circle_are_radial():
    t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    pts = np.column_stack([np.cos(t), np.sin(t)]) * 10 + 50
    prev = np.roll(np.arange(12), 1)
    nxt = np.roll(np.arange(12), -1)
    nrm = shape_normals(pts, prev, nxt)
    radial = (pts - 50) / 10
    np.testing.assert_allclose(np.abs(np.sum(nrm * radial, axis=1)), 1.0, atol=1e-12)
    # ibug68 outlines: eyes and lips are closed curves, the jaw an open one
    prev, nxt = contour_neighbours("ibug68")
    assert prev[36] == 41 and nxt[41] == 36 and prev[0] == 0 and nxt[16] == 16 and nxt[59] == 48


def test_ncc_kernel_equals_reference_and_finds_the_template():
    rng = np.random.default_rng(3)
    image = rng.random((60, 60)).astype(np.float32) * 255
    grid = np.column_stack([g.ravel() for g in np.meshgrid(np.linspace(-1, 1, 7), np.linspace(-1, 1, 7))])
    true_pose = np.array([8.0, 1.0, 30.0, 28.0])
    template = sample_template_reference(image, grid, true_pose)
    cands = candidate_poses(np.array([8.0, 1.0, 27.0, 31.0]), 4, 1.0, scales=(1.0,))
    got = ncc_scores(image, grid, template, cands)
    np.testing.assert_allclose(got, ncc_scores_reference(image, grid, template, cands), atol=1e-9)
    np.testing.assert_allclose(cands[np.argmax(got)], true_pose)
    assert got.max() == pytest.approx(1.0)


# --------------------------------------------------------------------------- geometry
def test_similarity_fit_recovers_a_rotation_and_never_reflects():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(20, 2))
    pose = np.array([1.7 * np.cos(0.4), 1.7 * np.sin(0.4), 5.0, -3.0])
    dst = apply_similarity(pose, src)
    np.testing.assert_allclose(fit_similarity(src, dst), pose, atol=1e-12)
    np.testing.assert_allclose(apply_similarity(invert_similarity(pose), dst), src, atol=1e-12)
    # a mirrored target gets a rotation, not a reflection: the fit is worse than exact
    mirrored = dst * np.array([-1.0, 1.0])
    fit = apply_similarity(fit_similarity(src, mirrored), src)
    assert np.linalg.norm(fit - mirrored) > 1.0
    # weights: a zero-weight outlier does not move the fit
    dst2 = dst.copy()
    dst2[0] += 100
    w = np.ones(20)
    w[0] = 0
    np.testing.assert_allclose(fit_similarity(src, dst2, w), pose, atol=1e-12)


def _toy_model(n_points=12, n_modes=3, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, n_points, endpoint=False)
    mean = np.column_stack([np.cos(t), 1.3 * np.sin(t)])
    mean -= mean.mean(axis=0)
    mean /= np.linalg.norm(mean)
    q, _ = np.linalg.qr(rng.normal(size=(2 * n_points, n_modes)))
    comps = q.T.reshape(n_modes, n_points, 2)
    # keep modes orthogonal to the mean (so b does not trade against scale)
    for i in range(n_modes):
        comps[i] -= np.sum(comps[i] * mean) * mean
    flat = np.linalg.qr(comps.reshape(n_modes, -1).T)[0].T
    return mean, flat.reshape(n_modes, n_points, 2), np.array([4e-3, 2e-3, 1e-3])


def test_fit_shape_reproduces_plausible_shapes_and_clips_implausible_ones():
    mean, comps, var = _toy_model()
    b = np.array([1.0, -1.5, 0.5]) * np.sqrt(var)
    pose = np.array([80 * np.cos(0.2), 80 * np.sin(0.2), 100.0, 90.0])
    target = apply_similarity(pose, mean + np.tensordot(b, comps, axes=1))
    pts, b_fit, pose_fit = fit_shape(target, mean, comps, var, k=3.0, n_iter=10)
    np.testing.assert_allclose(pts, target, atol=1e-3)
    b_far = np.array([10.0, 0.0, 0.0]) * np.sqrt(var)
    target = apply_similarity(pose, mean + np.tensordot(b_far, comps, axes=1))
    _, b_fit, _ = fit_shape(target, mean, comps, var, k=3.0, n_iter=10)
    assert np.all(np.abs(b_fit) <= 3.0 * np.sqrt(var) + 1e-12)
    assert b_fit[0] == pytest.approx(3.0 * np.sqrt(var[0]))
    e = constrain_weights(np.array([3.0, 4.0, 0.0]) * np.sqrt(var), var, k=2.0, mode="ellipsoid")
    assert np.sum(e**2 / var) == pytest.approx(4.0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), weighted=st.booleans(), mode=st.sampled_from(["box", "ellipsoid"]),
       missing=st.integers(0, 3), k=st.floats(0.5, 3.0))
def test_fit_shape_kernel_equals_numpy_reference(seed, weighted, mode, missing, k):
    from shapekit.asm.search import fit_shape_reference

    mean, comps, var = _toy_model()
    rng = np.random.default_rng(seed)
    pose = np.array([50.0, 10.0, 100.0, 80.0]) * rng.uniform(0.5, 1.5, 4)
    target = apply_similarity(pose, mean + np.tensordot(rng.normal(size=3) * 2 * np.sqrt(var), comps, axes=1))
    target += rng.normal(size=target.shape)
    w = rng.uniform(0.1, 1.0, len(target)) if weighted else None
    if missing:
        w = np.ones(len(target)) if w is None else w
        w[:missing] = 0.0
    b0 = rng.normal(size=3) * np.sqrt(var)
    got = fit_shape(target, mean, comps, var, k, weights=w, n_iter=4, mode=mode, b=b0)
    ref = fit_shape_reference(target, mean, comps, var, k, weights=w, n_iter=4, mode=mode, b=b0)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-7, atol=1e-8)


def test_pyramid_coordinates_and_resampling():
    pts = np.array([[0.0, 0.0], [10.0, 7.5], [-0.5, 3.0]])
    np.testing.assert_allclose(from_level(to_level(pts, 3), 3), pts)
    img = np.arange(64, dtype=np.float32).reshape(8, 8)
    half = downsample2(img)
    assert half.shape == (4, 4) and half[0, 0] == np.mean(img[:2, :2])
    # identity resampling reproduces the grey image; a half step samples between pixels
    rgb = np.random.default_rng(1).integers(0, 255, (9, 11, 3)).astype(np.uint8)
    grey = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(resample_grey(rgb, (0, 0), 1.0, (9, 11)), grey, rtol=1e-5)
    frame = SearchFrame.around(np.array([[10.0, 20.0], [50.0, 40.0]]), face_size=80, margin=0.5)
    assert frame.step == pytest.approx(0.5)
    np.testing.assert_allclose(frame.to_image(frame.to_frame(pts)), pts)
    with pytest.raises(ShapekitError, match="too small"):
        build_pyramid(np.zeros((20, 20), np.float32), 4)


# --------------------------------------------------------------------------- search on synthetic faces
_POSE = dict(max_yaw=15, max_pitch=10, max_roll=10)


@pytest.fixture(scope="module")
def synthetic():
    """An ASM trained on 40 synthetic faces (PDM from many fast synthetic shapes) and 8
    other faces of the same run.

    The model has the library's defaults (4 levels, face 160 px in the search frame,
    profiles k = 6, search +-1/2/3/3 px, 10 iterations) except two, chosen on a tuning
    set of other synthetic faces (see test_search_converges_on_synthetic_faces): the
    98%-variance PDM of the synthetic shapes and fewer shape modes at the coarse levels.
    """
    from shapekit.data.synth import generate, sample_shapes
    from shapekit.shape import PointDistributionModel

    images, shapes = generate(48, seed=3, size=160, occlusion=0.0, progress=False, **_POSE)
    pdm = PointDistributionModel(n_components=0.98).fit(sample_shapes(3000, seed=5, size=160, **_POSE))
    n = pdm.n_components_
    asm = ActiveShapeModel(level_modes=(n, 8, 4, 2))
    asm.fit(images[:40], shapes[:40], pdm=pdm, progress_bar=False)
    return asm, images[40:], shapes[40:]


@pytest.fixture(scope="module")
def held_out():
    """24 synthetic faces of another run (seed 4) than the training faces (seed 3) and
    the tuning faces the settings were chosen on (seed 5)."""
    from shapekit.data.synth import generate

    return generate(24, seed=4, size=160, occlusion=0.0, progress=False, **_POSE)


def _perturbed(shapes, seed, shift=0.06, scale=0.06, angle=0.08):
    # similarity perturbation about the centroid: shift in face sizes, angle in radians
    rng = np.random.default_rng(seed)
    out = []
    for g in shapes:
        c = g.mean(axis=0)
        size = np.ptp(g, axis=0).max()
        a = rng.uniform(-angle, angle)
        r = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
        out.append((g - c) @ r * (1 + rng.uniform(-scale, scale)) + c + rng.uniform(-shift, shift, 2) * size)
    return np.array(out)


def test_search_converges_on_synthetic_faces(synthetic, held_out):
    # issue 6: "on synthetic faces, the search converges from a perturbed start to within
    # 3% NME" (inter-ocular, whole face), here on 24 held-out faces. The fixture's settings
    # were chosen on 48 tuning faces (seed 5, two starts each), never on these: fewer shape
    # modes at the coarse levels took the whole face from 2.79% to 2.50% there, and with the
    # default face size (160 px) and 4 levels instead of 96 px and 3, to 2.27%; 80 or 150
    # training faces or 20 iterations changed it by 0.1 point or less, a 90% or 95% PDM
    # made it 0.15-0.3 points worse.
    # Measured on these 24 faces: 9.1% at the start, 2.16% after (inner points 1.79%, jaw
    # 3.28%, worst face 3.8%); the earlier small settings give 2.67% here. The jaw is the
    # worst part: its points sit on low-contrast face/hair outlines, and a search along the
    # normal cannot fix where a point lies *along* the outline.
    asm, _, _ = synthetic
    images, shapes = held_out
    starts = _perturbed(shapes, seed=0)
    found = np.array([asm.search(im, start=s) for im, s in zip(images, starts)])
    before = nme(starts, shapes)
    after = nme(found, shapes)
    assert before.mean() > 0.08  # the start is well off
    far = before > 0.06
    assert far.sum() >= 12 and np.all(after[far] < 0.6 * before[far])
    d = np.linalg.norm(shapes[:, 36] - shapes[:, 45], axis=1)
    err = np.linalg.norm(found - shapes, axis=2)
    inner = err[:, 17:].mean(axis=1) / d
    assert inner.mean() <= 0.025, inner
    assert after.mean() <= 0.03, after


def test_search_from_a_box_and_the_model_file(synthetic, tmp_path):
    asm, images, shapes = synthetic
    g = shapes[0]
    box = (*g.min(axis=0), *g.max(axis=0))
    points, info = asm.search(images[0], box=box, return_info=True)
    assert points.shape == (68, 2) and len(info.iterations) == asm.n_levels == 4
    assert nme(points, g)[0] < nme(asm.start_from_box(box), g)[0]
    path = asm.save(tmp_path / "m.npz")
    again = ActiveShapeModel.load(path)
    np.testing.assert_array_equal(again.search(images[0], box=box), points)
    assert again.get_params() == asm.get_params()
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(FormatError):
        ActiveShapeModel.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", meta=np.array(json.dumps({"kind": "something else"})))
    with pytest.raises(FormatError, match="not a shapekit active shape model"):
        ActiveShapeModel.load(tmp_path / "other.npz")
    with pytest.raises(ShapekitError, match="box"):
        asm.search(images[0], box=(10, 10, 5, 20))


@pytest.mark.parametrize("weighted,mode,level_modes", [(True, "box", None), (False, "ellipsoid", (30, 6, 3, 2))])
def test_fused_level_kernel_equals_the_python_reference(synthetic, weighted, mode, level_modes):
    # kernels="numba" runs each level as one fused kernel; kernels="numpy" runs the same
    # steps as a Python loop over the NumPy reference of the profile matching
    asm, images, shapes = synthetic
    start = _perturbed(shapes, seed=5)
    saved = asm.get_params()
    try:
        asm.set_params(weighted=weighted, mode=mode, level_modes=level_modes)
        for i in (0, 1):
            a, ia = asm.search(images[i], start=start[i], return_info=True)
            b, ib = asm.search(images[i], start=start[i], return_info=True, kernels="numpy")
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
            assert ia.iterations == ib.iterations and ia.converged == ib.converged
            assert ia.cost == pytest.approx(ib.cost, rel=1e-9)
    finally:
        asm.set_params(**saved)


def test_multi_start_keeps_the_fit_on_the_face(synthetic):
    # two candidate boxes, one shifted by 0.6 face sizes (half on the background): the
    # search runs from both and keeps the one whose profiles fit, in either order
    asm, images, shapes = synthetic
    g = shapes[1]
    box = np.array([*g.min(axis=0), *g.max(axis=0)])
    far = box + np.array([1, 0, 1, 0]) * 0.6 * (box[2] - box[0])
    alone = asm.search(images[1], box=far)
    assert nme(alone, g)[0] > 0.15  # from the wrong box alone the search fails
    for order, right in (((far, box), 1), ((box, far), 0)):
        points, info = asm.search(images[1], boxes=np.array(order), return_info=True)
        assert info.box_index == right and info.n_starts == 2 * len(asm.box_starts(box))
        assert nme(points, g)[0] < 0.06
    frame = SearchFrame.around(g, asm.face_size, asm.margin)
    pyr = build_pyramid(frame.sample(images[1]), asm.n_levels)
    assert asm.fit_quality(pyr, frame.to_frame(g)) < asm.fit_quality(pyr, frame.to_frame(alone))


def test_box_cascade_accepts_the_first_good_box(synthetic, tmp_path):
    # with a learned acceptance level the boxes are tried in order: a wrong first box is
    # passed over, a good first box is kept without searching the others
    asm, images, shapes = synthetic
    model = ActiveShapeModel.load(asm.save(tmp_path / "m.npz"))
    boxes = np.array([[*g.min(axis=0), *g.max(axis=0)] for g in shapes[:4]])
    model.fit_accept_quality(images[:4], boxes, kind="landmarks", quantile=1.0)
    assert np.isfinite(model.accept_quality_)
    g = shapes[1]
    box = np.array([*g.min(axis=0), *g.max(axis=0)])
    far = box + np.array([1, 0, 1, 0]) * 0.6 * (box[2] - box[0])
    n = len(model.box_starts(box))
    points, info = model.search(images[1], boxes=np.array([far, box]), box_kind="landmarks", return_info=True)
    assert info.box_index == 1 and info.n_starts == 2 * n and nme(points, g)[0] < 0.06
    points, info = model.search(images[1], boxes=np.array([box, far]), box_kind="landmarks", return_info=True)
    assert info.box_index == 0 and info.n_starts == n  # accepted: the far box is not searched
    # nothing passes: the first box is kept, not the best-scoring one
    model.accept_quality_ = -np.inf
    _, info = model.search(images[1], boxes=np.array([far, box]), box_kind="landmarks", return_info=True)
    assert info.box_index == 0
    again = ActiveShapeModel.load(model.save(tmp_path / "m2.npz"))
    assert again.accept_quality_ == -np.inf and again.box_accept == 0.75
    with pytest.raises(ShapekitError, match="quantile"):
        model.fit_accept_quality(images[:4], boxes, quantile=0.0)


def test_rescue_stage_recovers_faces_from_a_badly_scaled_box(synthetic, tmp_path):
    # boxes at 0.7 of the face's size: the ordinary starts (0.9-1.1 of the box start)
    # fit some faces badly; their poor quality sends them to the rescue starts (other
    # scales, rotations, shifts), whose best fit is kept
    asm, images, shapes = synthetic
    model = ActiveShapeModel.load(asm.save(tmp_path / "m.npz"))
    train_boxes = np.array([[*g.min(axis=0), *g.max(axis=0)] for g in shapes[:6]])
    model.fit_rescue_quality(images[:6], train_boxes, kind="landmarks")
    assert np.isfinite(model.rescue_quality_)
    groups = model.rescue_starts(train_boxes[0], kind="landmarks")
    n_shapes = len(model.start_shapes_)
    assert len(groups) == 2 + 2 + 4 and all(gr.shape == (n_shapes, 68, 2) for gr in groups)
    # the first group is the scale-1 starts grown by 1.25 about the mean start's centre
    base = np.array([model.start_from_box(train_boxes[0], "landmarks", shape=sh) for sh in model.start_shapes_])
    c = base[0].mean(axis=0)
    np.testing.assert_allclose(groups[0], (base - c) * 1.25 + c, atol=1e-9)
    before, after = [], []
    for im, g in zip(images, shapes):
        lo, hi = g.min(axis=0), g.max(axis=0)
        centre, half = 0.5 * (lo + hi), 0.35 * (hi - lo)
        box = (*(centre - half), *(centre + half))
        model.rescue_quantile = None
        p0, i0 = model.search(im, box=box, return_info=True)
        model.rescue_quantile = 0.7
        p1, i1 = model.search(im, box=box, return_info=True)
        assert i0.rescued is False and i1.rescued == (i0.quality > model.rescue_quality_)
        assert i1.quality <= i0.quality
        if i1.rescued:
            assert i1.n_starts == len(model.box_starts(box)) + len(groups) * n_shapes
        else:
            np.testing.assert_array_equal(p1, p0)
        before.append(nme(p0, g)[0])
        after.append(nme(p1, g)[0])
    before, after = np.array(before), np.array(after)
    bad = before > 0.07
    assert bad.sum() >= 2 and np.all(after[bad] < 0.05), (before, after)
    assert after.mean() < 0.035 and after.mean() < 0.6 * before.mean()
    again = ActiveShapeModel.load(model.save(tmp_path / "m2.npz"))
    assert again.rescue_quality_ == model.rescue_quality_ and again.rescue_scales == (1.25, 1.4)
    with pytest.raises(ShapekitError, match="rescue_quantile"):
        ActiveShapeModel(rescue_quantile=1.5).fit(images[:2], shapes[:2])
    with pytest.raises(ShapekitError, match="qualities"):
        model.fit_rescue_quality(qualities=[0.1, np.nan, 0.2])


def _corner_boxes(rng, size, face, n, score_range):
    # small boxes in the image corners (background, clothes), off the face square: what a
    # face detector's false positives look like next to the face
    out = []
    while len(out) < n:
        s = rng.uniform(0.12, 0.2) * size
        x0, y0 = rng.choice([rng.uniform(0, 0.1), rng.uniform(0.78, 0.88)], 2) * size
        box = np.array([x0, y0, x0 + s, y0 + s])
        from shapekit.data.detect import box_iou

        if box_iou(box, face)[0, 0] < 0.1:
            out.append([*box, rng.uniform(*score_range)])
    return np.array(out)


def _face_box(g, shrink=0.85):
    # a detector-like square about the landmarks (tighter than the landmark box)
    lo, hi = g.min(axis=0), g.max(axis=0)
    c, h = 0.5 * (lo + hi), 0.5 * shrink * (hi - lo).max()
    return np.array([c[0] - h, c[1] - h, c[0] + h, c[1] + h])


def test_hog_features():
    from shapekit.asm.verify import hog_features

    rng = np.random.default_rng(0)
    w = rng.random((3, 48, 48)).astype(np.float32) * 100
    f = hog_features(w, cell=6, bins=9)
    assert f.shape == (3, 7 * 7 * 4 * 9) and np.all(f >= 0) and np.all(f <= 0.2 + 1e-6 + 0.8)
    # block normalisation: a brighter, higher-contrast copy has about the same descriptor
    np.testing.assert_allclose(hog_features(w * 3 + 20, 6, 9), f, atol=0.02)
    # a vertical step edge: horizontal gradients only, orientation 0 lies between bins 0 and 8
    step = np.zeros((1, 24, 24), np.float32)
    step[:, :, 12:] = 200
    h = hog_features(step, cell=6, bins=9).reshape(3, 3, 4, 9)
    assert h[..., 0].sum() > 0 and h[..., 0].sum() == pytest.approx(h[..., 8].sum(), rel=1e-5)
    assert h[..., 1:8].sum() == 0
    with pytest.raises(ShapekitError, match="cell"):
        hog_features(w, cell=5)


def test_face_verifier_ranks_the_face_above_background_boxes(synthetic, tmp_path):
    from shapekit.asm.verify import FaceVerifier
    from shapekit.data.synth import generate

    asm, test_images, test_shapes = synthetic
    # training: the fixture's 40 training faces are not kept, so draw other synthetic ones
    pose = dict(max_yaw=15, max_pitch=10, max_roll=10)
    images, shapes = generate(30, seed=11, size=160, occlusion=0.0, progress=False, **pose)
    rng = np.random.default_rng(0)
    detections = [np.vstack([[*_face_box(g), 8.0], _corner_boxes(rng, 160, _face_box(g), 4, (1, 20))])
                  for g in shapes]
    # appearance and detector score only: the background boxes outscore the face below,
    # so ranking the face first must come from its HOG appearance
    v = FaceVerifier(use_framing=False, hog_weight=1.0, C=0.01).fit(images, shapes, detections)
    assert v.n_pos_ == 30 * (1 + v.n_jitter) and v.n_neg_ >= 30 * 4
    first, margin = 0, []
    for image, g in zip(test_images, test_shapes):
        face = _face_box(g, shrink=rng.uniform(0.8, 0.95))
        boxes = np.vstack([_corner_boxes(rng, 160, face, 5, (10, 30)), [*face, 5.0]])
        order, s = v.rank(image, boxes)
        first += order[0] == 5
        margin.append(s[5] - np.max(s[:5]))
    assert first == len(test_images), margin
    # stored in the model file (plain arrays) and used to order the detector's boxes
    model = ActiveShapeModel.load(asm.save(tmp_path / "m.npz"))
    assert model._n_boxes() == 3
    boxes = np.vstack([_corner_boxes(rng, 160, _face_box(test_shapes[0]), 4, (10, 30)),
                       [*_face_box(test_shapes[0]), 5.0]])
    np.testing.assert_array_equal(model.rank_boxes(test_images[0], boxes), boxes[np.argsort(-boxes[:, 4])])
    model.verifier_ = v
    again = ActiveShapeModel.load(model.save(tmp_path / "v.npz"))
    assert again.verifier_.get_params() == v.get_params() and again._n_boxes() == 1
    np.testing.assert_allclose(again.verifier_.score(test_images[0], boxes), v.score(test_images[0], boxes),
                               rtol=1e-12)
    ranked = again.rank_boxes(test_images[0], boxes)
    np.testing.assert_array_equal(ranked[0], boxes[4])
    again.set_params(verify_boxes=2)  # only the detector's best 2 boxes are re-ranked: the face is not among them
    assert len(again.rank_boxes(test_images[0], boxes)) == 2 and not np.any(
        np.all(again.rank_boxes(test_images[0], boxes) == boxes[4], axis=1))
    with np.load(tmp_path / "v.npz", allow_pickle=False) as z:
        assert "verifier_coef" in z.files and all(z[k].dtype != object for k in z.files)


def test_face_verifier_framing_and_bad_input(synthetic):
    from shapekit.asm.verify import FaceVerifier

    _, images, shapes = synthetic
    rng = np.random.default_rng(1)
    dets = [np.vstack([[*_face_box(g), 8.0], _corner_boxes(rng, 160, _face_box(g), 3, (1, 20))])
            for g in shapes]
    v = FaceVerifier(use_framing=True, n_random=2).fit(images, shapes, dets)
    assert v.n_features == 7 * 7 * 4 * 9 + 2 + 4 and v.coef_.shape == (v.n_features,)
    # the framing features: box side relative to the image and distance from its centre
    f = v.features(images[0], np.array([[40, 40, 120, 120, 3.0], [0, 0, 20, 20, 1.0]]))
    np.testing.assert_allclose(f[:, -4], np.log([80 / 160, 20 / 160]))
    np.testing.assert_allclose(f[:, -2], [np.hypot(0.5, 0.5) / 160, np.hypot(69.5, 69.5) / 160])
    np.testing.assert_allclose(f[:, -6:-4], [[np.log(4), 0.0], [np.log(2), np.log(2) - np.log(4)]])
    with pytest.raises(ShapekitError, match="score"):
        v.score(images[0], np.array([[40, 40, 120, 120]]))
    with pytest.raises(ShapekitError, match="not fitted"):
        FaceVerifier().score(images[0], np.array([[40, 40, 120, 120, 1.0]]))
    with pytest.raises(ShapekitError, match="loss"):
        FaceVerifier(loss="hinge").fit(images, shapes, dets)
    with pytest.raises(ShapekitError, match="equal lengths"):
        FaceVerifier().fit(images, shapes, dets[:2])


def test_detector_extra_reduced_pass(synthetic):
    # the ASM's detector also searches a reduced copy of the image: its result is the
    # suppression over both passes' boxes, so every box of either pass is kept or
    # overlapped by a kept one
    from shapekit.data.detect import FaceDetector, box_iou

    _, images, _ = synthetic
    both = FaceDetector(angles=(0.0,), extra_sides=(96,))
    full = FaceDetector(angles=(0.0,))._detect_at(images[0][..., 0], None)
    small = FaceDetector(angles=(0.0,))._detect_at(images[0][..., 0], 96)
    found = both.detect(images[0][..., 0])
    passes = np.concatenate([full, small])
    assert len(found) and len(found) <= len(passes)
    assert all(np.any(np.all(np.isclose(passes, f), axis=1)) for f in found)
    assert np.all(box_iou(passes, found).max(axis=1) > 0.0)
    np.testing.assert_array_equal(FaceDetector(angles=(0.0,), extra_sides=(400,)).detect(images[0][..., 0]),
                                  FaceDetector(angles=(0.0,)).detect(images[0][..., 0]))  # not reduced: skipped
    with pytest.raises(ShapekitError, match="extra_sides"):
        FaceDetector(extra_sides=(10,))


def test_start_shapes_and_scales(synthetic, tmp_path):
    from shapekit.asm.model import kmeans

    # k-means finds three separated blobs, whatever the order of the rows
    rng = np.random.default_rng(0)
    blobs = np.concatenate([rng.normal(c, 0.1, (30, 2)) for c in ((0, 0), (5, 0), (0, 5))])
    centres = kmeans(blobs[rng.permutation(90)], 3)
    assert sorted(np.round(centres).astype(int).tolist()) == [[0, 0], [0, 5], [5, 0]]
    asm, images, shapes = synthetic
    model = ActiveShapeModel.load(asm.save(tmp_path / "m.npz"))
    from shapekit.data.synth import sample_shapes

    model.fit_start_shapes(sample_shapes(300, seed=2, size=160, max_yaw=15, max_pitch=10, max_roll=10), 3)
    assert model.start_shapes_.shape == (3, 68, 2)
    np.testing.assert_array_equal(model.start_shapes_[0], model.mean_)
    # the cluster shapes differ from the mean and are plausible (within the constraint)
    b = np.array([fit_shape(s, model.mean_, model.components_, model.variances_, 100.0)[1]
                  for s in model.start_shapes_[1:]])
    z = b / np.sqrt(model.variances_)
    assert np.all(np.abs(z) <= model.clip + 1e-9) and np.abs(z).max() > 0.3
    model.set_params(start_scales=(0.9, 1.0, 1.1))
    g = shapes[2]
    box = (*g.min(axis=0), *g.max(axis=0))
    starts = model.box_starts(box)
    assert starts.shape == (9, 68, 2)
    size = np.ptp(starts, axis=1).max(axis=1)
    np.testing.assert_allclose(size[:3] / size[1], [0.9, 1.0, 1.1], rtol=1e-9)
    np.testing.assert_allclose(starts[1], model.start_from_box(box))
    points, info = model.search(images[2], box=box, return_info=True)
    assert info.n_starts == 9 and nme(points, g)[0] < 0.06
    # the start shapes and scales survive the model file
    again = ActiveShapeModel.load(model.save(tmp_path / "m3.npz"))
    np.testing.assert_array_equal(again.start_shapes_, model.start_shapes_)
    assert again.start_scales == (0.9, 1.0, 1.1)
    with pytest.raises(ShapekitError, match="boxes"):
        model.search(images[2], boxes=np.zeros((0, 4)))


def test_fewer_modes_at_coarse_levels(synthetic):
    asm, images, shapes = synthetic
    n = len(asm.variances_)
    g = shapes[0]
    start = _perturbed(shapes, seed=0)[0]
    saved = asm.level_modes
    assert saved == (n, 8, 4, 2)  # the fixture's setting
    fewer = asm.search(images[0], start=start)
    try:
        full = asm.set_params(level_modes=None).search(images[0], start=start)
        # all modes at every level: the same search as without level_modes
        np.testing.assert_allclose(asm.set_params(level_modes=(n,) * 4).search(images[0], start=start), full)
        # more modes than the model has: all of them
        np.testing.assert_allclose(asm.set_params(level_modes=(n + 50,) * 4).search(images[0], start=start), full)
        assert nme(fewer, g)[0] < 0.06 and not np.allclose(fewer, full)
    finally:
        asm.set_params(level_modes=saved)
    with pytest.raises(ShapekitError, match="level_modes"):
        ActiveShapeModel(n_levels=3, face_size=96, level_modes=(2, 2)).fit(images[:2], shapes[:2])


def test_unfitted_and_bad_parameters_raise():
    with pytest.raises(ShapekitError, match="not fitted"):
        ActiveShapeModel().search(np.zeros((50, 50)), box=(1, 1, 30, 30))
    with pytest.raises(ShapekitError, match="n_levels"):
        ActiveShapeModel(n_levels=6, face_size=64).fit([np.zeros((9, 9))] * 2, np.zeros((2, 68, 2)))
    with pytest.raises(ShapekitError, match="search_half"):
        ActiveShapeModel(search_half=(1, 2)).fit([np.zeros((9, 9))] * 2, np.zeros((2, 68, 2)))
    with pytest.raises(ShapekitError, match="unknown ActiveShapeModel parameter"):
        ActiveShapeModel().set_params(levels=3)


# --------------------------------------------------------------------------- real data (quick)
def test_asm_on_real_faces_improves_a_close_start(shared_data):
    # 120 training faces, 12 held out; start: the mean shape at the pose that best fits
    # the truth (what a good detector could give). The full measurement from face boxes
    # is benchmarks/bench_asm.py.
    from shapekit.io import read

    ann = read(shared_data("lfpw68/train"))
    train, test = np.arange(0, 120), np.arange(700, 712)
    images = [ann.meta[i]["image"] for i in train]
    asm = ActiveShapeModel(n_components=0.9, search_half=(2, 2, 3, 3), max_iter=4, weighted=True)
    asm.fit(images, ann.shapes[train], progress_bar=False)
    starts, found = [], []
    for i in test:
        g = ann.shapes[i]
        starts.append(apply_similarity(fit_similarity(asm.mean_, g), asm.mean_))
        found.append(asm.search(ann.meta[i]["image"], start=starts[-1]))
    before = nme(np.array(starts), ann.shapes[test])
    after = nme(np.array(found), ann.shapes[test])
    print("real faces, NME before/after:", before.mean(), after.mean())
    assert after.mean() < before.mean()


# --------------------------------------------------------------------------- shape prior
@pytest.fixture(scope="module")
def pdm():
    from shapekit.data.synth import sample_shapes
    from shapekit.shape import PointDistributionModel

    return PointDistributionModel(n_components=0.98).fit(sample_shapes(2000, seed=1, size=256))


def test_shape_prior_pulls_an_outlier_back(pdm):
    from shapekit.data.synth import sample_shapes

    truth = sample_shapes(5, seed=99, size=256)
    pred = truth.copy()
    pred[:, 36] += 40.0  # one eye corner dragged onto an occluder
    plain = apply_shape_prior(pred, pdm)
    conf = np.ones((5, 68))
    conf[:, 36] = 0.0
    weighted = apply_shape_prior(pred, pdm, confidence=conf)
    err = lambda s: np.linalg.norm(s[:, 36] - truth[:, 36], axis=1).mean()  # noqa: E731
    assert err(plain) < err(pred)
    assert err(weighted) < 0.25 * err(pred)
    # a plausible shape is left (almost) unchanged
    assert nme(apply_shape_prior(truth, pdm), truth).max() < 0.03
    # one shape in, one shape out; the ASM's own PDM works the same way
    assert apply_shape_prior(truth[0], pdm).shape == (68, 2)
    with pytest.raises(ShapekitError, match="confidence"):
        apply_shape_prior(pred, pdm, confidence=np.ones((5, 3)))
    with pytest.raises(ShapekitError, match="confidence"):
        apply_shape_prior(pred, pdm, confidence=-conf)


def test_shape_prior_with_an_asm_model(synthetic):
    asm, _, shapes = synthetic
    pred = shapes.copy()
    pred[:, 48] += 25.0
    conf = np.ones((len(pred), 68))
    conf[:, 48] = 0
    out = apply_shape_prior(pred, asm, confidence=conf)
    assert np.linalg.norm(out[:, 48] - shapes[:, 48], axis=1).mean() < 0.3 * 25.0


def test_heatmap_confidence_prefers_sharp_peaks():
    yy, xx = np.mgrid[:32, :32]
    sharp = -((xx - 10) ** 2 + (yy - 12) ** 2) / (2 * 1.0**2)
    flat = np.zeros((32, 32))
    c = heatmap_confidence(np.stack([sharp, flat])[None] * 1.0)
    assert c.shape == (1, 2) and 0.3 < c[0, 0] <= 1 and c[0, 1] < 0.1
    with pytest.raises(ShapekitError):
        heatmap_confidence(np.zeros((2, 32, 32)))


# --------------------------------------------------------------------------- CLI
def test_cli_train_and_fit(tmp_path):
    from shapekit.data.synth import write_dataset
    from shapekit_cli.main import main

    write_dataset(tmp_path / "faces", 12, seed=7, size=128, progress=False, occlusion=0.0)
    model = tmp_path / "asm.npz"
    assert main(["asm", "train", str(tmp_path / "faces"), "-o", str(model), "--levels", "2",
                 "--search-half", "2", "3", "--detector-samples", "0", "--start-shapes", "2",
                 "--start-scales", "0.95", "1.05", "--level-modes", "6", "3", "--rescue-quantile", "0.8",
                 "--rescue-scales", "1.3", "--rescue-angles", "--rescue-shift", "0.1", "--no-point-start"]) == 0
    loaded = ActiveShapeModel.load(model)
    assert loaded.n_levels == 2 and loaded.start_shapes_.shape == (2, 68, 2)
    assert loaded.start_scales == (0.95, 1.05) and loaded.level_modes == (6, 3)
    assert loaded.rescue_quantile == 0.8 and loaded.rescue_scales == (1.3,) and loaded.rescue_angles == ()
    assert loaded.rescue_shift == 0.1 and len(loaded.rescue_starts((30, 30, 98, 98))) == 1 + 4
    assert loaded.point_start is False
    images = sorted(str(p) for p in (tmp_path / "faces").glob("*.png"))[:2]
    out = tmp_path / "overlays"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["asm", "fit", str(model), *images, "--box", "30", "30", "98", "98", "--json",
                     "--out", str(out)]) == 0
    result = json.loads(buf.getvalue().strip().splitlines()[-1])
    assert sorted(result) == images
    assert all(np.asarray(v).shape == (68, 2) for v in result.values())
    assert len(list(out.glob("*_asm.png"))) == 2
    assert main(["asm", "fit", str(tmp_path / "missing.npz"), images[0], "--box", "1", "1", "9", "9"]) == 2


def _write_version_1(model, v2_path, path):
    """Write ``model`` (saved at ``v2_path``) in the version 1 layout: the file of
    ``ActiveShapeModel.save`` before the model held a point distribution model. Its
    shape model is three arrays named after the attributes without their trailing
    underscore (``mean`` (L, 2), ``components`` (K, L, 2), ``variances`` (K,)) instead
    of the nested ``pdm`` file; the other arrays and the meta data are the same."""
    import json

    with np.load(v2_path, allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files if name not in ("meta", "pdm")}
        meta = json.loads(str(z["meta"]))
    meta["version"] = 1
    # the files of that time also held the framing prior box (since removed)
    meta["params"]["prior_box"] = True
    meta["prior_box_"] = [0.5, 0.5, 0.6, 0.6]
    np.savez(path, meta=np.array(json.dumps(meta)), mean=model.mean_, components=model.components_,
             variances=model.variances_, **arrays)
    return path


def test_a_model_file_of_version_1_loads_and_finds_the_same_landmarks(tmp_path):
    # a tiny ASM with everything a file holds (start shapes, mode starts, template
    # refinement, a face verifier, acceptance and rescue levels, and the framing prior box
    # of that time), written in the layout of shapekit before the split; loaded, it
    # searches as the model does, and says that the prior box is gone
    from shapekit.data.synth import generate

    images, shapes = generate(14, seed=11, size=96, occlusion=0.0, progress=False, **_POSE)
    asm = ActiveShapeModel(n_levels=2, face_size=48, profile_half=3, n_components=0.9, start_shapes=3,
                           start_scales=(0.95, 1.05), template_size=8, verify_boxes=4,
                           max_boxes=2, search_half=(1, 2), starts=((0, 1.0),), refine_start=True,
                           quality_template_weight=0.1, quality_shape_weight=0.05)
    asm.fit(images[:10], shapes[:10], progress_bar=False)
    rng = np.random.default_rng(0)
    boxes, dets = [], []
    for g in shapes[:10]:
        lo, hi = g.min(axis=0), g.max(axis=0)
        b = np.array([*(lo - 2), *(hi + 2), 5.0])
        x0, y0 = rng.uniform(0, 40, 2)
        dets.append(np.array([b, [x0, y0, x0 + 30, y0 + 30, 1.0], [60 - x0, 50 - y0, 90 - x0, 80 - y0, 2.0]]))
        boxes.append(b)
    asm.fit_detector_start(images[:10], shapes[:10], np.array(boxes), dets,
                           verifier_params=dict(size=16, cell=8, n_jitter=1, n_random=1))
    assert asm.verifier_ is not None and asm.rescue_quality_ is not None

    v1 = _write_version_1(asm, asm.save(tmp_path / "v2.npz"), tmp_path / "v1.npz")
    with np.load(v1) as z:
        assert "pdm" not in z.files and z["components"].ndim == 3
    with pytest.warns(UserWarning, match="framing prior box"):
        model = ActiveShapeModel.load(v1)
    assert model.get_params() == asm.get_params() and not hasattr(model, "prior_box_")
    np.testing.assert_allclose(model.pdm_.components_, asm.pdm_.components_, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(model.pdm_.explained_variance_, asm.pdm_.explained_variance_)
    np.testing.assert_array_equal(model.profile_icov_, asm.profile_icov_)
    assert (model.accept_quality_, model.rescue_quality_) == (asm.accept_quality_, asm.rescue_quality_)

    g = shapes[12]
    lo, hi = g.min(axis=0), g.max(axis=0)
    cands = np.array([[60, 40, 90, 70, 3.0], [*(lo - 2), *(hi + 2), 2.0], [0, 0, 30, 30, 1.0]])
    want, want_info = asm.search(images[12], boxes=cands, box_kind="detector", return_info=True)
    points, info = model.search(images[12], boxes=cands, box_kind="detector", return_info=True)
    np.testing.assert_allclose(points, want, rtol=0, atol=1e-9)
    assert info.quality == pytest.approx(want_info.quality, rel=1e-9, abs=1e-12)
    assert (info.n_starts, info.rescued, info.box_index) == (want_info.n_starts, want_info.rescued,
                                                             want_info.box_index)
    small = (*(0.5 * (lo + hi) - 0.3 * (hi - lo)), *(0.5 * (lo + hi) + 0.3 * (hi - lo)))
    np.testing.assert_allclose(model.search(images[12], box=small), asm.search(images[12], box=small),
                               rtol=0, atol=1e-9)


def test_the_model_parts_and_its_settings_objects(synthetic, tmp_path):
    # the learned model is a point distribution model and a profile model; the flat
    # parameters are read as settings objects, and a model built from them is the same
    import shapekit.asm as asm_pkg
    from shapekit.asm import DetectorStart, ProfileModel, SearchConfig, StartConfig
    from shapekit.data import detect
    from shapekit.shape import PointDistributionModel

    asm, images, shapes = synthetic
    assert isinstance(asm.pdm_, PointDistributionModel) and isinstance(asm.profiles_, ProfileModel)
    k = asm.pdm_.n_components_
    assert asm.pdm_.components_.shape == (k, 2 * 68) and asm.components_.shape == (k, 68, 2)
    assert asm.profiles_.k == asm.profile_half and asm.profile_icov_ is asm.profiles_.icov
    config = asm.search_config
    assert isinstance(config, SearchConfig) and config.search_half == (1, 2, 3, 3) and config.clip == asm.clip
    assert config.level_modes == asm.level_modes and config.kernels == "numba"
    assert asm.start_config == StartConfig(start_shapes=5, start_scales=(0.9, 1.0, 1.1))
    assert asm.detector_start == DetectorStart()
    built = ActiveShapeModel.from_configs(search=SearchConfig(search_half=2, clip=2.5, max_iter=6),
                                          start=StartConfig(start_shapes=3, start_scales=(1.0,)),
                                          detector_start=DetectorStart(rescue_quantile=None), n_levels=3)
    params = built.get_params()
    assert (params["search_half"], params["clip"], params["max_iter"], params["n_levels"]) == (2, 2.5, 6, 3)
    assert params["start_shapes"] == 3 and params["rescue_quantile"] is None and params["weighted"] is False
    with pytest.raises(ShapekitError, match="kernels"):
        SearchConfig(kernels="cuda")
    # the model file (version 2) keeps the whole point distribution model
    again = ActiveShapeModel.load(asm.save(tmp_path / "m.npz"))
    np.testing.assert_array_equal(again.pdm_.components_, asm.pdm_.components_)
    np.testing.assert_array_equal(again.pdm_.reference_, asm.pdm_.reference_)
    assert again.pdm_.n_shapes_ == asm.pdm_.n_shapes_
    # the detector helpers live in shapekit.data.detect, still reachable from shapekit.asm
    assert asm_pkg.default_detector is detect.default_detector and asm_pkg.detect_boxes is detect.detect_boxes


class _PointDetector:
    """A face detector that places five face points (as MTCNN does) on the face it is told
    of: the landmark box and the shape's five points, moved by ``noise`` pixels."""

    name, n_points = "points-test", 5

    def __init__(self, noise=0.0, seed=0):
        self.shape, self.noise, self.rng = None, noise, np.random.default_rng(seed)

    def detect_faces(self, image):
        from shapekit.data.detect import five_points

        g = self.shape
        box = np.array([[*g.min(axis=0), *g.max(axis=0), 0.99]])
        return box, five_points(g)[None] + self.rng.normal(0, self.noise, (1, 5, 2))

    def detect(self, image):
        return self.detect_faces(image)[0]

    def detect_rows(self, image):
        from shapekit.data.detect import Detector

        return Detector.detect_rows(self, image)


def _similar(shape, angle_deg, scale, shift):
    a = np.radians(angle_deg)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    c = shape.mean(axis=0)
    return (shape - c) @ rot.T + c + np.asarray(shift, float)


def test_start_from_the_detectors_face_points(synthetic, tmp_path):
    # the start placed from five face points follows the face's in-plane rotation, which a
    # box cannot give; with exact points on exact similarity copies of the mean shape the
    # learned points are the mean's own and the start is the face itself
    from shapekit.asm.shape_fit import apply_similarity
    from shapekit.data.detect import five_points

    asm, images, shapes = synthetic
    model = ActiveShapeModel.load(asm.save(tmp_path / "m.npz"))
    mean = model.pdm_.mean_
    copies = np.array([apply_similarity((80 * np.cos(t), 80 * np.sin(t), 70 + 9 * t, 90 - 4 * t), mean)
                       for t in np.linspace(-0.4, 0.4, 6)])
    model.fit_point_start(five_points(copies), copies)
    np.testing.assert_allclose(np.reshape(model.box_starts_["points"], (5, 2)), five_points(mean), atol=1e-12)
    face = apply_similarity((70 * np.cos(0.5), 70 * np.sin(0.5), 81.0, 77.0), mean)
    row = np.array([*face.min(axis=0), *face.max(axis=0), 0.9, *five_points(face).ravel()])
    np.testing.assert_allclose(model.start_from_box(row, "points"), face, atol=1e-9)
    bigger = model.start_from_box(row, "points", scale=1.1)
    np.testing.assert_allclose(bigger - bigger.mean(axis=0), 1.1 * (face - face.mean(axis=0)), atol=1e-9)
    # real faces turned by 25 degrees: the points' start is far closer than the box's
    model.fit_point_start(five_points(shapes), shapes)
    g = _similar(shapes[0], 25.0, 1.0, (0, 0))
    row = np.array([*g.min(axis=0), *g.max(axis=0), 0.9, *five_points(g).ravel()])
    from_points = nme(model.start_from_box(row, "points"), g)[0]
    from_box = nme(model.start_from_box(row[:4], "landmarks"), g)[0]
    assert from_points < 0.06 and from_points < 0.5 * from_box
    again = ActiveShapeModel.load(model.save(tmp_path / "m2.npz"))
    assert again.box_starts_["points"] == model.box_starts_["points"]
    with pytest.raises(ShapekitError, match="5 points"):
        model.start_from_box(row[:7], "points")
    with pytest.raises(ShapekitError, match="at least 3 faces"):
        model.fit_point_start(np.full((4, 5, 2), np.nan), shapes[:4])
    with pytest.raises(ShapekitError, match=r"points \(N, P, 2\)"):
        model.fit_point_start(np.zeros((3, 5, 2)), shapes[:4])


def test_detector_start_learned_from_face_points(synthetic, tmp_path):
    # detection rows with five points teach the point start; the search without a box
    # then places its starts from the detector's points (rotated faces are found), and
    # point_start=False goes back to the box start
    from shapekit.data.detect import detector_boxes, match_detection

    asm, images, shapes = synthetic
    det = _PointDetector(noise=0.5)

    class Told(list):
        # the detector is told of each image's face as detector_boxes reads it
        def __getitem__(self, i):
            det.shape = shapes[i]
            return list.__getitem__(self, i)

    told = Told(images[:6])
    boxes, rows = detector_boxes(told, shapes[:6], detector=det, return_detections=True, points=True)
    assert boxes.shape == (6, 15) and all(r.shape == (1, 15) for r in rows)
    plain, _ = detector_boxes(told, shapes[:6], detector=det, return_detections=True)
    assert plain.shape == (6, 5)
    g = shapes[0]
    square = (*(0.5 * (g.min(axis=0) + g.max(axis=0))), float(np.ptp(g, axis=0).max()))
    assert match_detection(rows[0], square) == 0 and match_detection(rows[0][0], square) == 0
    model = ActiveShapeModel.load(asm.save(tmp_path / "m.npz"))
    boxes[5], rows[5] = np.nan, np.zeros((0, 15))  # a face the detector missed
    model.fit_detector_start(images[:6], shapes[:6], boxes, rows,
                             verifier_params=dict(size=16, cell=8, n_jitter=1, n_random=1))
    assert {"detector", "points"} <= set(model.box_starts_) and np.isfinite(model.rescue_quality_)
    model._face_detector = det
    det.shape = shapes[7]
    found, kind = model._detector_boxes(images[7], 1)
    assert kind == "points" and found.shape == (1, 15)
    points, info = model.search(images[7], return_info=True)
    assert nme(points, shapes[7])[0] < 0.08 and info.box.shape == (4,)
    model.set_params(point_start=False)
    assert model._detector_boxes(images[7], 1)[1] == "detector"
    # a model that never saw points keeps the box start even with a points detector
    boxed = ActiveShapeModel.load(asm.save(tmp_path / "b.npz")).set_params(point_start=False)
    boxed.fit_detector_start(images[:6], shapes[:6], boxes, rows, verifier=False)
    assert "points" not in boxed.box_starts_
