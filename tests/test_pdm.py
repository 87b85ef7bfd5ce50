"""Point distribution model on real shapes: modes, reconstruction, constraints, completion, EM, files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shapekit.errors import FormatError, ShapekitError
from shapekit.shape import PointDistributionModel, Similarity, estimate_similarity, resolve_n_components


@pytest.fixture(scope="module")
def sets(shared_data):
    from shapekit.io import read

    return {name: read(shared_data(f"{name}/train")).shapes for name in ("lfpw68", "helen68", "afw68")}


@pytest.fixture(scope="module")
def train(sets):
    return np.concatenate([sets["lfpw68"], sets["helen68"]])


@pytest.fixture(scope="module")
def model(train):
    return PointDistributionModel(n_components=0.98).fit(train)


def iod(shapes):
    return np.linalg.norm(shapes[:, 36] - shapes[:, 45], axis=-1)


def hide_points(shapes, n_hidden, seed):
    rng = np.random.default_rng(seed)
    hidden = np.zeros(shapes.shape[:2], bool)
    for i in range(len(shapes)):
        hidden[i, rng.choice(shapes.shape[1], n_hidden, replace=False)] = True
    out = shapes.copy()
    out[hidden] = np.nan
    return out, hidden


def mean_shape_baseline(pdm, visible):
    """Mean shape placed by the least-squares similarity onto the visible points."""
    mean = np.broadcast_to(pdm.mean_, visible.shape)
    return estimate_similarity(mean, visible).apply(mean)


def completion_nme(pred, truth, hidden):
    err = np.linalg.norm(pred - truth, axis=-1)
    return float(np.mean(np.nansum(np.where(hidden, err, np.nan), 1) / hidden.sum(1) / iod(truth)))


# -- fitting ------------------------------------------------------------------------------

def test_fit_learns_orthonormal_modes_in_decreasing_order(model, train):
    v = model.components_
    k = model.n_components_
    assert v.shape == (k, 136) and model.mean_.shape == (68, 2)
    np.testing.assert_allclose(v @ v.T, np.eye(k), atol=1e-10)
    lam = model.explained_variance_
    assert np.all(np.diff(lam) <= 0) and lam[-1] > 0
    ratio = model.explained_variance_ratio_
    assert ratio.sum() >= 0.98 and ratio[:-1].sum() < 0.98  # smallest count reaching 98 %
    assert model.n_shapes_ == len(train) and model.n_points_ == 68
    # Mode weights of the training shapes: zero mean, variance lambda, uncorrelated.
    b, _ = model.transform(train)
    np.testing.assert_allclose(b.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(b.var(0, ddof=1), lam, rtol=1e-5)
    c = np.corrcoef(b[:, :5].T)
    assert np.max(np.abs(c - np.eye(5))) < 1e-5


def test_n_components_count_and_fraction(train):
    lam = np.array([5.0, 3.0, 1.0, 0.5, 0.5, 0.0])
    assert resolve_n_components(0.5, lam) == 1
    assert resolve_n_components(0.8, lam) == 2
    assert resolve_n_components(0.81, lam) == 3
    assert resolve_n_components(1.0, lam) == 5
    assert resolve_n_components(3, lam) == 3
    assert resolve_n_components(None, lam) == 5
    for bad in (0, -1, 1.5, 0.0, True):
        with pytest.raises(ShapekitError, match="n_components"):
            resolve_n_components(bad, lam)
    assert PointDistributionModel(n_components=7).fit(train[:300]).n_components_ == 7


def test_exact_reconstruction_with_all_modes(train, sets):
    pdm = PointDistributionModel(n_components=None).fit(train)
    assert pdm.n_components_ == 136 - 4  # translation (2), rotation and scale (tangent space) are removed
    for shapes in (train[:50], sets["afw68"]):  # training and unseen shapes
        b, pose = pdm.transform(shapes)
        np.testing.assert_allclose(pdm.inverse_transform(b, pose), shapes, atol=1e-6)
        np.testing.assert_allclose(pdm.project(shapes, k=None), shapes, atol=1e-6)
        assert np.max(pdm.reconstruction_error(shapes)) < 1e-6


def test_pose_is_model_to_image_similarity(model, sets):
    shapes = sets["afw68"][:20]
    b, pose = model.transform(shapes)
    assert isinstance(pose, Similarity) and len(pose) == 20
    # The pose maps the model frame into pixels: faces ~192 px wide in these crops.
    assert np.all(pose.scale > 100)
    rec = model.inverse_transform(b, pose)
    err = np.linalg.norm(rec - shapes, axis=-1).mean(1) / iod(shapes)
    assert np.all(err < 0.05)
    # Transform is equivariant: moving the image moves the pose, not b.
    t = Similarity(1.7, 0.4, (30.0, -12.0))
    b2, pose2 = model.transform(t.apply(shapes))
    np.testing.assert_allclose(b2, b, atol=1e-9)
    assert pose2.allclose(t.compose(pose), rtol=1e-9, atol=1e-6)


def test_fewer_modes_reconstruct_worse(model, sets):
    shapes = sets["afw68"]
    errs = [model.reconstruction_error(shapes, n_components=k).mean() for k in (2, 8, model.n_components_)]
    assert errs[0] > errs[1] > errs[2] > 0


# -- constraints ------------------------------------------------------------------------

def test_box_constraint(model):
    rng = np.random.default_rng(0)
    sd = np.sqrt(model.explained_variance_)
    b = rng.normal(size=(500, model.n_components_)) * sd * 4
    c = model.constrain(b, k=3.0)
    assert np.all(np.abs(c) <= 3 * sd + 1e-12)
    inside = np.abs(b) <= 3 * sd
    np.testing.assert_array_equal(c[inside], b[inside])
    np.testing.assert_allclose(np.abs(c[~inside]), np.broadcast_to(3 * sd, b.shape)[~inside])


def test_ellipsoid_constraint(model):
    rng = np.random.default_rng(1)
    b = rng.normal(size=(300, model.n_components_)) * np.sqrt(model.explained_variance_) * 2
    c = model.constrain(b, k=5.0, mode="ellipsoid")
    d = model.mahalanobis(b)
    dc = model.mahalanobis(c)
    assert np.all(dc <= 5.0 + 1e-9)
    np.testing.assert_allclose(c[d <= 5], b[d <= 5])
    np.testing.assert_allclose(dc[d > 5], 5.0)
    # Scaled, not clipped: the direction is kept.
    cos = np.sum(b * c, 1) / np.linalg.norm(b, axis=1) / np.linalg.norm(c, axis=1)
    np.testing.assert_allclose(cos, 1.0)
    assert model.ellipsoid_radius(0.98) > np.sqrt(model.n_components_) * 0.9
    with pytest.raises(ShapekitError, match="mode"):
        model.constrain(b, mode="sphere")


def test_project_gives_plausible_shapes(model, sets):
    shapes = sets["afw68"][:40].copy()
    shapes[:, 48:68] += np.random.default_rng(2).normal(0, 15, (40, 20, 2))  # a mangled mouth
    out = model.project(shapes, k=3.0)
    b, _ = model.transform(out)
    assert np.all(np.abs(b) <= 3 * np.sqrt(model.explained_variance_) + 1e-6)
    # Projecting again changes nothing (the result is already a plausible model shape).
    np.testing.assert_allclose(model.project(out, k=3.0), out, atol=1e-6)


def test_sample_is_plausible_and_seeded(model):
    s = model.sample(200, k=3.0, random_state=7)
    assert s.shape == (200, 68, 2)
    np.testing.assert_array_equal(s, model.sample(200, k=3.0, random_state=7))
    b = (s.reshape(200, -1) - model.mean_.reshape(-1)) @ model.components_.T
    assert np.all(np.abs(b) <= 3 * np.sqrt(model.explained_variance_) + 1e-9)


# -- missing points: completion and EM ----------------------------------------------------

def test_completion_of_held_out_points(model, sets, capsys):
    """Hide 10 random points of each unseen AFW shape; infer them from the other 58."""
    truth = sets["afw68"]
    visible, hidden = hide_points(truth, 10, seed=3)
    completed = model.project(visible, k=3.0)
    assert np.isfinite(completed).all()
    nme_model = completion_nme(completed, truth, hidden)
    nme_mean = completion_nme(mean_shape_baseline(model, visible), truth, hidden)
    # A whole region: the mouth (20 points) from the rest of the face.
    mouth = truth.copy()
    mouth[:, 48:68] = np.nan
    hid_m = np.zeros(truth.shape[:2], bool)
    hid_m[:, 48:68] = True
    nme_mouth = completion_nme(model.project(mouth, k=3.0), truth, hid_m)
    nme_mouth_mean = completion_nme(mean_shape_baseline(model, mouth), truth, hid_m)
    with capsys.disabled():
        print(f"\n[completion, AFW held out, model on LFPW+HELEN ({model.n_components_} modes)] "
              f"10 random points hidden: NME {nme_model:.4f} vs mean shape {nme_mean:.4f}; "
              f"mouth hidden: NME {nme_mouth:.4f} vs mean shape {nme_mouth_mean:.4f}")
    assert nme_model < 0.5 * nme_mean
    assert nme_mouth < 0.8 * nme_mouth_mean
    assert nme_model < 0.04
    # Visible points stay close to where they were.
    vis_err = np.nanmean(np.linalg.norm(completed - visible, axis=-1), 1) / iod(truth)
    assert np.mean(vis_err) < 0.03


def test_weights_zero_equals_missing(model, sets):
    shapes = sets["afw68"][:30]
    corrupted = shapes.copy()
    corrupted[:, :5] += 80.0  # wild outliers
    w = np.ones(shapes.shape[:2])
    w[:, :5] = 0.0
    a = model.project(corrupted, weights=w)
    nan = shapes.copy()
    nan[:, :5] = np.nan
    np.testing.assert_allclose(a, model.project(nan), atol=1e-8)
    # Low confidence reduces an outlier's pull.
    w[:, :5] = 0.05
    err_low = np.linalg.norm(model.project(corrupted, weights=w) - shapes, axis=-1).mean()
    err_full = np.linalg.norm(model.project(corrupted) - shapes, axis=-1).mean()
    assert err_low < err_full


def test_em_fit_with_missing_points_matches_complete_fit(sets, capsys):
    train = sets["lfpw68"]
    test = sets["afw68"]
    full = PointDistributionModel(n_components=20).fit(train)
    gappy, _ = hide_points(train, 7, seed=4)  # ~10 % of the points missing in every shape
    em = PointDistributionModel(n_components=20).fit(gappy)
    assert em.em_converged_ and em.em_n_iter_ > 1
    assert em.missing_fraction_ > 0.09
    # Same subspace: principal angles between the first 10 modes are small.
    s = np.linalg.svd(full.components_[:10] @ em.components_[:10].T, compute_uv=False)
    assert s.min() > 0.9
    # EM beats fitting only the complete... there are none here, so compare with mean-filling.
    filled = np.where(np.isnan(gappy), np.nanmean(gappy, 0), gappy)
    naive = PointDistributionModel(n_components=20).fit(filled)
    visible, hidden = hide_points(test, 10, seed=5)
    e_full = completion_nme(full.project(visible), test, hidden)
    e_em = completion_nme(em.project(visible), test, hidden)
    e_naive = completion_nme(naive.project(visible), test, hidden)
    with capsys.disabled():
        print(f"\n[EM fit, LFPW with 10% points hidden, AFW completion] complete-data model {e_full:.4f}, "
              f"EM model {e_em:.4f}, mean-filled model {e_naive:.4f} ({em.em_n_iter_} EM iterations)")
    assert e_em < 1.1 * e_full
    assert e_em < e_naive


def test_muct_missing_points(shared_data, capsys):
    """MUCT: real occlusions (0,0 in the file). Fit with EM on some subjects, complete others."""
    from shapekit.io import read

    ann = read(shared_data("muct/muct76-opencv.csv"))
    shapes = ann.shapes
    subject = np.array([m["attributes"].get("subject", i) for i, m in enumerate(ann.meta)])
    missing = np.isnan(shapes).any(-1)
    rng = np.random.default_rng(6)
    subjects = np.unique(subject)
    test_subj = rng.choice(subjects, len(subjects) // 4, replace=False)
    is_test = np.isin(subject, test_subj)
    # A subsample keeps the test quick; originals and mirrors of a face stay together.
    tr_idx = np.flatnonzero(~is_test)[::3]
    pdm = PointDistributionModel(n_components=0.95, schema="muct68").fit(shapes[tr_idx])
    assert pdm.em_converged_ and pdm.missing_fraction_ > 0
    assert np.all(np.isfinite(pdm.mean_)) and np.all(np.isfinite(pdm.components_))
    # Held-out complete faces, hidden with real occlusion patterns from the file.
    complete = np.flatnonzero(is_test & ~missing.any(1))[:400]
    patterns = missing[missing.any(1)]
    hidden = patterns[rng.integers(0, len(patterns), len(complete))]
    truth = shapes[complete]
    visible = truth.copy()
    visible[hidden] = np.nan
    done = pdm.project(visible, k=3.0)
    d = np.linalg.norm(truth[:, 31] - truth[:, 36], axis=-1)  # MUCT eye-centre distance
    err = np.linalg.norm(done - truth, axis=-1)
    nme = np.mean(np.nansum(np.where(hidden, err, np.nan), 1) / hidden.sum(1) / d)
    base = mean_shape_baseline(pdm, visible)
    nme_base = np.mean(np.nansum(np.where(hidden, np.linalg.norm(base - truth, axis=-1), np.nan), 1)
                       / hidden.sum(1) / d)
    with capsys.disabled():
        print(f"\n[MUCT, real occlusion patterns on held-out subjects] completion NME {nme:.4f} "
              f"vs mean shape {nme_base:.4f} (eye-centre normalised; {pdm.em_n_iter_} EM iterations)")
    assert nme < 0.6 * nme_base


def test_transform_with_too_few_points_is_an_error(model):
    s = np.full((2, 68, 2), np.nan)
    s[:, 0] = 10.0
    with pytest.raises(ShapekitError, match="fewer than 2"):
        model.project(s)
    with pytest.raises(ShapekitError, match="68 points"):
        model.transform(np.zeros((3, 5, 2)))
    same = np.full((2, 68, 2), 5.0)
    with pytest.raises(ShapekitError, match=r"coincide in shapes \[0, 1\]"):
        model.project(same)
    same[:, 3] = np.nan
    with pytest.raises(ShapekitError, match=r"coincide in shapes \[0, 1\]"):
        model.project(same)
    with pytest.raises(ShapekitError, match=r"shapes \[1\] contain inf"):
        model.project(np.where(np.arange(2)[:, None, None] == 1, np.inf, np.ones((2, 68, 2))))
    with pytest.raises(ShapekitError, match="not fitted"):
        PointDistributionModel().transform(np.zeros((3, 68, 2)))
    with pytest.raises(ShapekitError, match="modes"):
        model.project(np.zeros((1, 68, 2)) + np.arange(68)[:, None], n_components=0.9999999)


# -- unaligned form and persistence ---------------------------------------------------------

def test_unaligned_model_uses_image_frame(train):
    pdm = PointDistributionModel(n_components=0.95, align=False).fit(train)
    np.testing.assert_allclose(pdm.mean_, train.mean(0), atol=1e-9)
    b, pose = pdm.transform(train[:10])
    np.testing.assert_allclose(pose.z, 1.0)
    np.testing.assert_allclose(pose.t, 0.0)
    np.testing.assert_allclose(b, (train[:10].reshape(10, -1) - train.mean(0).reshape(-1)) @ pdm.components_.T,
                               atol=1e-9)


def test_save_load_roundtrip(model, sets, tmp_path):
    path = model.save(tmp_path / "model.npz")
    loaded = PointDistributionModel.load(path)
    for name in ("mean_", "components_", "explained_variance_", "explained_variance_ratio_", "variance_spectrum_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    assert loaded.n_components_ == model.n_components_ and loaded.n_shapes_ == model.n_shapes_
    shapes = sets["afw68"][:10]
    np.testing.assert_allclose(loaded.project(shapes), model.project(shapes), atol=1e-12)
    assert loaded.summary() == model.summary()
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write leaves no temporary file


def test_load_rejects_other_files(model, tmp_path):
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(FormatError, match="other.npz"):
        PointDistributionModel.load(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(FormatError, match="junk.npz"):
        PointDistributionModel.load(tmp_path / "junk.npz")
    with pytest.raises(ShapekitError, match="not found"):
        PointDistributionModel.load(tmp_path / "absent.npz")
    # A newer file version is refused with a clear message.
    path = model.save(tmp_path / "m.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    info = json.loads(str(arrays["info"]))
    info["version"] = 99
    arrays["info"] = np.array(json.dumps(info))
    np.savez(tmp_path / "new.npz", **arrays)
    with pytest.raises(FormatError, match="version 99"):
        PointDistributionModel.load(tmp_path / "new.npz")


def test_schema_is_stored(train, tmp_path):
    pdm = PointDistributionModel(n_components=5, schema="ibug68").fit(train[:100])
    assert PointDistributionModel.load(pdm.save(tmp_path / "m.npz")).schema_ == "ibug68"
    with pytest.raises(ShapekitError, match="points"):
        PointDistributionModel(n_components=5, schema="mtfl5").fit(train[:100])


def test_fit_in_chunks_matches_fit(train, tmp_path):
    np.save(tmp_path / "train.npy", train)
    mm = np.load(tmp_path / "train.npy", mmap_mode="r")
    for align in (True, False):
        a = PointDistributionModel(n_components=0.95, align=align).fit(train)
        b = PointDistributionModel(n_components=0.95, align=align).fit_in_chunks(mm, chunk_size=300)
        assert a.n_components_ == b.n_components_
        np.testing.assert_allclose(b.components_, a.components_, atol=1e-9)
        np.testing.assert_allclose(b.explained_variance_, a.explained_variance_, rtol=1e-9)
        np.testing.assert_allclose(b.mean_, a.mean_, atol=1e-12)
    with pytest.raises(ShapekitError, match="at least 2"):
        PointDistributionModel().fit(train[:1])


def test_instance_in_standard_deviations_and_fit_transform(train):
    pdm = PointDistributionModel(n_components=5)
    b, pose = pdm.fit_transform(train[:300])
    assert b.shape == (300, 5) and len(pose) == 300
    np.testing.assert_allclose(pdm.instance(np.zeros(5)), pdm.mean_)
    inst = pdm.instance([0.0, 2.0])
    expected = pdm.mean_.reshape(-1) + 2 * np.sqrt(pdm.explained_variance_[1]) * pdm.components_[1]
    np.testing.assert_allclose(inst, expected.reshape(68, 2), atol=1e-12)
    with pytest.raises(ShapekitError, match="modes"):
        pdm.instance(np.zeros(6))


def test_completion_with_every_mode_stays_regularised(train, sets):
    """With all modes kept there is no discarded variance; completion must still be sane."""
    pdm = PointDistributionModel(n_components=None).fit(train)
    truth = sets["afw68"]
    visible, hidden = hide_points(truth, 10, seed=3)
    assert completion_nme(pdm.project(visible, k=3.0), truth, hidden) < 0.025


def test_em_keeps_the_variance_of_often_missing_points(sets):
    """70 % of the faces keep only 11 inner points (a Kaggle-like layout): the EM model's
    eigenvalues and modes must still match the complete-data model (no shrinkage)."""
    shapes = sets["lfpw68"]
    rng = np.random.default_rng(0)
    gappy = shapes.copy()
    rows = rng.random(len(gappy)) < 0.7
    keep = np.zeros(68, bool)
    keep[[8, 30, 33, 36, 39, 42, 45, 48, 51, 54, 57]] = True
    gappy[np.ix_(rows, ~keep)] = np.nan
    em = PointDistributionModel(n_components=10).fit(gappy)
    full = PointDistributionModel(n_components=10).fit(shapes)
    ratio = em.explained_variance_[:4] / full.explained_variance_[:4]
    assert np.all((ratio > 0.8) & (ratio < 1.2)), ratio
    s = np.linalg.svd(full.components_[:4] @ em.components_[:4].T, compute_uv=False)
    assert s.min() > 0.95


def test_missing_scatter_kernel_matches_reference():
    from shapekit.shape._kernels import cholesky_factor, missing_scatter, missing_scatter_ref

    rng = np.random.default_rng(8)
    k, d = 5, 16
    v = np.linalg.qr(rng.normal(size=(d, k)))[0].T
    a = rng.normal(size=(9, k, k + 3))
    g = a @ a.transpose(0, 2, 1) + 0.5 * np.eye(k)
    missing = rng.random((9, d)) < 0.3
    count = rng.integers(1, 6, 9)
    fast = missing_scatter(cholesky_factor(g), v, missing, count, 0.07)
    np.testing.assert_allclose(fast, missing_scatter_ref(g, v, missing, count, 0.07), atol=1e-12)


def test_pose_kernel_matches_reference():
    from shapekit.shape._kernels import pose_rows, pose_rows_ref

    rng = np.random.default_rng(9)
    inst = rng.normal(size=(30, 12)) + 1j * rng.normal(size=(30, 12))
    xc = rng.normal(size=(30, 12)) * 40 + 1j * rng.normal(size=(30, 12)) * 40
    w = rng.random((30, 12)) * (rng.random((30, 12)) > 0.2)
    w[:, :2] = 1.0
    for scale in (True, False):
        for a, b in zip(pose_rows(inst, xc, w, scale), pose_rows_ref(inst, xc, w, scale)):
            np.testing.assert_allclose(a, b, rtol=1e-10)
