"""Losses: hand-computed values of each piece, masks, gradients."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shapekit.errors import ShapekitError
from shapekit.nn import losses as L


def _coords(values):
    """(1, N, 2) tensor with the values on x and 0 on y (y equals the target)."""
    x = torch.tensor(values, dtype=torch.float64)
    return torch.stack([x, torch.zeros_like(x)], -1)[None]


def test_kd_assistive_regions_code_constants():
    # g = 0, teacher at 0.1: T' = +-0.1, B = +-0.015 (beta 0.15)
    p = _coords([0.2, 0.05, 0.01, -0.2, -0.05])
    g = torch.zeros_like(p)
    t = _coords([0.1] * 5)
    out = L.assistive_loss(p, g, t, beta=0.15, omega_pos=1.9, omega_neg=-0.45, low="zero", reduction="none")
    expected = [1.9 * 0.1,  # beyond T': positive assistant
                -0.45 * 0.05,  # between B and T': negative assistant
                0.0,  # low-influence region: zero in the authors' code
                1.9 * 0.1,  # mirrored to the student's side
                -0.45 * 0.05]
    assert torch.allclose(out[0, :, 0], torch.tensor(expected, dtype=torch.float64))
    assert torch.all(out[0, :, 1] == 0)


def test_kd_assistive_low_region_ramp_paper():
    # beta 0.4: B = 0.04; p = 0.01 -> w = -0.5 * 0.01/0.04 = -0.125, |T' - p| = 0.09
    p = _coords([0.01, 0.06, 0.3])
    out = L.assistive_loss(p, torch.zeros_like(p), _coords([0.1] * 3), beta=0.4, omega_pos=1.0, omega_neg=-0.5,
                           low="ramp", reduction="none")
    assert torch.allclose(out[0, :, 0], torch.tensor([-0.125 * 0.09, -0.5 * 0.04, 1.0 * 0.2], dtype=torch.float64))


def test_kd_main_loss_both_forms():
    p = _coords([0.05, 0.3])
    g = torch.zeros_like(p)
    tol = _coords([0.1, 0.1])
    code = L.kd_main_loss(p, g, tol, form="code", reduction="none")[0, :, 0]
    paper = L.kd_main_loss(p, g, tol, form="paper", reduction="none")[0, :, 0]
    assert torch.allclose(code, torch.tensor([3 * 0.05, 0.09 + 0.3 - 0.01], dtype=torch.float64))
    assert torch.allclose(paper, torch.tensor([0.05, 0.09 + 0.1 - 0.01], dtype=torch.float64))
    # continuous where the two pieces join (d = t)
    for form in ("code", "paper"):
        a = L.kd_main_loss(_coords([0.1 - 1e-9]), torch.zeros_like(p[:, :1]), _coords([0.1]), form=form)
        b = L.kd_main_loss(_coords([0.1 + 1e-9]), torch.zeros_like(p[:, :1]), _coords([0.1]), form=form)
        assert abs(float(a - b)) < 1e-7


def test_kd_loss_total_and_constant_sets():
    torch.manual_seed(0)
    g = torch.rand(3, 5, 2, dtype=torch.float64)
    p, tough, tol = (g + 0.1 * torch.randn_like(g) for _ in range(3))
    for name, c in L.KD_CONSTANTS.items():
        total = L.kd_loss(p, g, tough, tol, constants=name)
        k = c["scale"]
        main = L.kd_main_loss(k * p, k * g, k * tol, form=c["main"])
        a1 = L.assistive_loss(k * p, k * g, k * tough, None, c["beta"], c["omega_pos_tough"], c["omega_neg_tough"],
                              c["low"])
        a2 = L.assistive_loss(k * p, k * g, k * tol, None, c["beta"], c["omega_pos_tolerant"],
                              c["omega_neg_tolerant"], c["low"])
        assert torch.allclose(total, c["lambda_main"] * main + c["lambda_tough"] * a1 + c["lambda_tolerant"] * a2)
    assert L.KD_CONSTANTS["code"]["beta"] == 0.15 and L.KD_CONSTANTS["paper"]["beta"] == 0.4
    assert not torch.allclose(L.kd_loss(p, g, tough, tol, constants="paper"), L.kd_loss(p, g, tough, tol))
    assert torch.allclose(L.KDLoss()(p, g, tough=tough, tolerant=tol), L.kd_loss(p, g, tough, tol, constants="code"))
    with pytest.raises(ShapekitError):
        L.kd_loss(p, g, tough, tol, constants="nope")


def _kd_reference(p, g, tough, tol, c):
    """The KD-Loss as the authors' code defines it, element by element in NumPy.

    Inputs are already in the constants' units. Regions are drawn with products of signs:
    positive where sign(p - T')·sign(T' - g) > 0, negative where
    sign(T' - p)·sign(p - B) >= 0, else 0; each reduced by a mean over all coordinates.
    """
    def aloss(t, w_pos, w_neg):
        s = np.sign(p - g)
        tr = g + s * np.abs(t - g)
        b = g + s * np.abs(t - g) * c["beta"]
        w = np.where(np.sign(p - tr) * np.sign(tr - g) > 0, w_pos, 0.0)
        w = w + np.where(np.sign(tr - p) * np.sign(p - b) >= 0, w_neg, 0.0)
        return np.mean(w * np.abs(tr - p))

    d, t = np.abs(g - p), np.abs(g - tol)
    main = np.mean(np.where(d <= t, 3 * d, 0.0)) + np.mean(np.where(d > t, d * d + 3 * t - t * t, 0.0))
    return (c["lambda_main"] * main + c["lambda_tough"] * aloss(tough, c["omega_pos_tough"], c["omega_neg_tough"])
            + c["lambda_tolerant"] * aloss(tol, c["omega_pos_tolerant"], c["omega_neg_tolerant"]))


def test_kd_loss_one_case_per_region_per_coordinate():
    """Each coordinate of each point in one region of each teacher, values worked by hand.

    Units given to kd_loss are normalised (scale 0.5 to the authors' units), so every
    number below is written in the authors' units and doubled on input.
    """
    c = L.KD_CONSTANTS["code"]
    # g = 0 everywhere. Tough teacher error 0.1, tolerant 0.04 (authors' units), on both axes.
    # Point 0: x beyond both T' (0.2); y beyond tolerant, between B and T' of tough (0.05).
    # Point 1: x below both B (0.001); y on the negative side, between B and T' of tolerant (-0.03).
    # Point 2: x exactly at the teachers' reflection (0.1 for tough; beyond tolerant); y = g.
    # Point 3: teacher equals g on x (no weight); y beyond both on the negative side (-0.3).
    p = np.array([[0.2, 0.05], [0.001, -0.03], [0.1, 0.0], [0.07, -0.3]])
    g = np.zeros_like(p)
    tough = np.array([[0.1, -0.1], [0.1, 0.1], [-0.1, 0.1], [0.0, 0.1]])  # sign of T - g does not matter
    tol = np.array([[0.04, 0.04], [-0.04, 0.04], [0.04, -0.04], [0.0, 0.04]])
    # by hand, per coordinate: (weight, |T' - p|) for tough and tolerant, main loss term
    tough_terms = [(1.9, 0.1), (-0.45, 0.05), (0.0, 0.099), (-0.45, 0.07), (-0.45, 0.0), (0.0, 0.1),
                   (0.0, 0.07), (1.9, 0.2)]
    tol_terms = [(1.8, 0.16), (1.8, 0.01), (0.0, 0.039), (-0.40, 0.01), (1.8, 0.06), (0.0, 0.04),
                 (0.0, 0.07), (1.8, 0.26)]
    d = [0.2, 0.05, 0.001, 0.03, 0.1, 0.0, 0.07, 0.3]
    t = [0.04, 0.04, 0.04, 0.04, 0.04, 0.04, 0.0, 0.04]
    main = [3 * di if di <= ti else di * di + 3 * ti - ti * ti for di, ti in zip(d, t)]
    expected = (2.0 * np.mean(main) + np.mean([w * e for w, e in tough_terms])
                + np.mean([w * e for w, e in tol_terms]))
    assert np.isclose(expected, _kd_reference(p, g, tough, tol, c))
    as_t = lambda a: torch.tensor(2 * a, dtype=torch.float64)[None]  # noqa: E731  (normalised units)
    got = L.kd_loss(as_t(p), as_t(g), as_t(tough), as_t(tol))
    assert np.isclose(float(got), expected, rtol=1e-12)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1), st.floats(0.01, 0.5))
def test_kd_loss_equals_the_reference(seed, spread):
    rng = np.random.default_rng(seed)
    g = rng.uniform(-0.4, 0.4, (3, 7, 2))
    p, tough, tol = (g + rng.normal(0, spread, g.shape) for _ in range(3))
    tol[0, 0] = g[0, 0]  # a teacher exactly on the ground truth
    p[1, 1, 0] = g[1, 1, 0]  # a prediction exactly on the ground truth
    c = L.KD_CONSTANTS["code"]
    ref = _kd_reference(p, g, tough, tol, c)
    as_t = lambda a: torch.tensor(a / c["scale"], dtype=torch.float64)  # noqa: E731
    assert np.isclose(float(L.kd_loss(as_t(p), as_t(g), as_t(tough), as_t(tol))), ref, rtol=1e-10, atol=1e-14)


def test_kd_gradients_push_the_right_way():
    g = torch.zeros(1, 1, 2, dtype=torch.float64)
    t = torch.full_like(g, 0.1)
    # beyond the teacher: pulled toward T' (gradient positive = decrease p)
    p = torch.full_like(g, 0.2).requires_grad_()
    L.assistive_loss(p, g, t).backward()
    assert p.grad[0, 0, 0] > 0
    # between B and T': negative weight pushes away from T', i.e. toward g (gradient positive)
    p = torch.full_like(g, 0.05).requires_grad_()
    L.assistive_loss(p, g, t).backward()
    assert p.grad[0, 0, 0] > 0


def test_wing_values_and_continuity():
    p = _coords([1.0, 12.0])
    out = L.wing_loss(p, torch.zeros_like(p), reduction="none")[0, :, 0]
    c = 10 - 10 * math.log(1 + 10 / 2)
    assert torch.allclose(out, torch.tensor([10 * math.log(1.5), 12 - c], dtype=torch.float64))
    a = L.wing_loss(_coords([10 - 1e-9]), torch.zeros(1, 1, 2, dtype=torch.float64), reduction="sum")
    b = L.wing_loss(_coords([10 + 1e-9]), torch.zeros(1, 1, 2, dtype=torch.float64), reduction="sum")
    assert abs(float(a - b)) < 1e-6


@pytest.mark.parametrize("epsilon", [1.0, 2.0])
def test_adaptive_wing_divides_by_epsilon(epsilon):
    # With the paper's A (divided by epsilon) the loss and its slope are continuous at theta.
    theta = 0.5
    vals, grads = [], []
    for d in (theta - 1e-7, theta + 1e-7):
        p = _coords([d]).requires_grad_()
        v = L.adaptive_wing_loss(p, torch.zeros_like(p), epsilon=epsilon, theta=theta, intensity=0.0,
                                 reduction="sum")
        v.backward()
        vals.append(float(v.detach()))
        grads.append(float(p.grad[0, 0, 0]))
    assert abs(vals[0] - vals[1]) < 1e-5
    assert abs(grads[0] - grads[1]) < 1e-4
    # inner branch by hand: 14 ln(1 + (0.25/eps)^2.1)
    p = _coords([0.25])
    v = L.adaptive_wing_loss(p, torch.zeros_like(p), epsilon=epsilon, intensity=0.0, reduction="none")[0, 0, 0]
    assert math.isclose(float(v), 14 * math.log1p((0.25 / epsilon) ** 2.1), rel_tol=1e-12)


def test_adaptive_wing_on_heatmaps_uses_target_intensity():
    torch.manual_seed(0)
    target = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    pred = target + 0.1
    out = L.adaptive_wing_loss(pred, target, reduction="none")
    e = 2.1 - target
    assert torch.allclose(out, 14 * torch.log1p((0.1 / 1.0) ** e))
    m = torch.tensor([[True, False, True], [True, True, True]])
    assert torch.allclose(L.adaptive_wing_loss(pred, target, mask=m, reduction="none")[0, 1], torch.zeros(8, 8,
                          dtype=torch.float64))


@pytest.mark.parametrize("name", ["l2", "l1", "smooth_l1", "wing", "awing", "cgd", "kd"])
def test_mask_and_nan_targets_do_not_count(name):
    torch.manual_seed(1)
    g = torch.rand(2, 6, 2, dtype=torch.float64)
    p = (g + 0.05 * torch.randn_like(g)).requires_grad_()
    extra = {}
    loss = L.get_loss(name)
    if name == "kd":
        extra = {"tough": g + 0.02, "tolerant": g - 0.03}
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, 2] = False
    ref = loss(p, g, mask, **extra)
    g_bad = g.clone()
    g_bad[0, 2] = torch.tensor([1e3, float("nan")])
    p2 = p.detach().clone()
    p2[0, 2] = 5.0
    p2.requires_grad_()
    out = loss(p2, g_bad, mask, **extra)
    assert torch.allclose(out, ref)
    out.backward()
    assert torch.all(torch.isfinite(p2.grad))
    assert torch.all(p2.grad[0, 2] == 0)
    # NaN target alone (no mask) also leaves the point out
    g_nan = g.clone()
    g_nan[0, 2] = float("nan")
    assert torch.allclose(loss(p2, g_nan, None, **extra), ref)


def test_simple_loss_values():
    p = _coords([0.5, 3.0])
    g = torch.zeros_like(p)
    assert math.isclose(float(L.l2_loss(p, g)), (0.25 + 9) / 4)
    assert math.isclose(float(L.l1_loss(p, g)), 3.5 / 4)
    assert math.isclose(float(L.smooth_l1_loss(p, g, beta=1.0)), (0.125 + 2.5) / 4)


def test_cgd_is_mse_plus_alpha_graph_term():
    torch.manual_seed(2)
    g = torch.rand(2, 5, 2, dtype=torch.float64)
    p = g * 1.3  # scaled shape: pairwise distances differ
    base = L.l2_loss(p, g)
    total = L.cgd_loss(p, g, alpha=0.5)
    d = lambda s: torch.cdist(s, s)  # noqa: E731
    iu = torch.triu_indices(5, 5, 1)
    graph = ((d(p) - d(g))[:, iu[0], iu[1]] ** 2).mean()
    assert torch.allclose(total, base + 0.5 * graph)
    # a translated prediction has zero graph term
    assert torch.allclose(L.cgd_loss(g + 0.1, g, alpha=10.0), L.l2_loss(g + 0.1, g))


def test_dsnt_loss_prefers_matching_heatmaps():
    from shapekit.nn.functional import render_gaussian_heatmaps
    target = torch.tensor([[[0.1, -0.2], [0.3, 0.4]]], dtype=torch.float64)
    good = render_gaussian_heatmaps(target, 16, 1.0, normalize="sum", window=None)
    flat = torch.full_like(good, 1 / 256)
    assert L.dsnt_loss(target, good, target, sigma=1.0) < 1e-6
    assert L.dsnt_loss(target, flat, target, sigma=1.0) > 0.1
    with pytest.raises(ShapekitError):
        L.DSNTLoss()(target, target)


def test_get_loss_errors():
    with pytest.raises(ShapekitError, match="unknown loss"):
        L.get_loss("nope")
    with pytest.raises(ShapekitError):
        L.l2_loss(torch.zeros(1, 2, 2), torch.zeros(1, 3, 2))
    with pytest.raises(ShapekitError, match="mask"):
        L.l2_loss(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), mask=torch.ones(2, dtype=torch.bool))


def test_mimic_loss_is_l2_to_truth_plus_l2_to_the_teachers():
    torch.manual_seed(1)
    g = torch.rand(2, 4, 2, dtype=torch.float64)
    p, tough, tol = (g + 0.1 * torch.randn_like(g) for _ in range(3))
    l2 = lambda a, b: float(((a - b) ** 2).mean())  # noqa: E731
    both = L.mimic_loss(p, g, tough, tol, weight=0.5)
    assert np.isclose(float(both), l2(p, g) + 0.25 * (l2(p, tough) + l2(p, tol)))
    one = L.mimic_loss(p, g, tough, tol, weight=2.0, teachers=("tough",))
    assert np.isclose(float(one), l2(p, g) + 2.0 * l2(p, tough))
    assert torch.isclose(L.get_loss("mimic", weight=0.5)(p, g, tough=tough, tolerant=tol), both)
    g2 = g.clone()
    g2[0, 1] = float("nan")  # a missing point counts for neither the truth nor the teachers
    q = p.clone().requires_grad_()
    L.mimic_loss(q, g2, tough, tol).backward()
    assert torch.all(q.grad[0, 1] == 0) and torch.isfinite(q.grad).all()
    with pytest.raises(ShapekitError, match="teachers"):
        L.mimic_loss(p, g, tough, tol, teachers=("nobody",))


def test_kd_single_teacher_and_weights():
    torch.manual_seed(2)
    g = torch.rand(2, 4, 2, dtype=torch.float64)
    p, tough, tol = (g + 0.1 * torch.randn_like(g) for _ in range(3))
    c = L.KD_CONSTANTS["code"]
    k = c["scale"]
    only_tough = L.kd_loss(p, g, tough, tol, lambda_tolerant=0.0)
    main = L.kd_main_loss(k * p, k * g, k * tol)
    a1 = L.assistive_loss(k * p, k * g, k * tough, None, c["beta"], c["omega_pos_tough"], c["omega_neg_tough"])
    assert torch.isclose(only_tough, 2.0 * main + a1)
    assert torch.isclose(L.KDLoss(lambda_tolerant=0.0)(p, g, tough=tough, tolerant=tol), only_tough)


def test_kd_loss_with_the_dsnt_regulariser():
    # reg_weight adds exactly reg_weight x the mean JS divergence of the valid points' heatmaps
    from shapekit.nn.functional import js_reg_losses

    g = torch.Generator().manual_seed(0)
    pred = torch.rand(3, 5, 2, generator=g) * 2 - 1
    target = torch.rand(3, 5, 2, generator=g) * 2 - 1
    tough, tolerant = pred + 0.05, pred - 0.05
    hm = torch.softmax(torch.rand(3, 5, 256, generator=g) * 4, -1).view(3, 5, 16, 16)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[0, 1] = False
    js = js_reg_losses(hm, torch.where(mask[..., None], target, float("nan")), 2.0)
    plain = L.KDLoss()(pred, target, mask, tough=tough, tolerant=tolerant)
    reg = L.KDLoss(reg_weight=0.5, sigma=2.0)(pred, target, mask, tough=tough, tolerant=tolerant, heatmaps=hm)
    assert torch.allclose(reg - plain, 0.5 * js[mask].mean(), atol=1e-6)
    per = L.KDLoss(reg_weight=0.5, sigma=2.0, reduction="none")(pred, target, mask, tough=tough, tolerant=tolerant,
                                                                heatmaps=hm)
    total = L.KDLoss(reg_weight=0.5, sigma=2.0, reduction="sum")(pred, target, mask, tough=tough, tolerant=tolerant,
                                                                 heatmaps=hm)
    assert per.shape == (3, 5, 2) and torch.allclose(per.sum(), total, atol=1e-5)
    assert "heatmaps" in L.KDLoss(reg_weight=1.0).needs and "heatmaps" not in L.KDLoss().needs
    with pytest.raises(ShapekitError, match="heatmaps"):
        L.KDLoss(reg_weight=1.0)(pred, target, mask, tough=tough, tolerant=tolerant)
    with pytest.raises(ShapekitError, match="reg_weight"):
        L.KDLoss(reg_weight=-1.0)
