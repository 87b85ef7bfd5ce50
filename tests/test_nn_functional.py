"""Torch twins of shapekit.nn.functional: equal to the numba kernels, differentiable, CUDA-ready."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shapekit import kernels as K
from shapekit.errors import ShapekitError
from shapekit.nn import functional as F

PROPS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def t64(a, device="cpu"):
    return torch.as_tensor(np.asarray(a, dtype=np.float64), device=device)


# ---------------------------------------------------------------------------
# equality with the numba kernels on CPU


@PROPS
@given(
    hnp.arrays(np.float64, (3, 4, 2), elements=st.floats(-1.3, 1.3)),
    st.tuples(st.integers(2, 24), st.integers(2, 24)),
    st.floats(0.4, 4.0),
    st.sampled_from(["peak", "sum"]),
    st.sampled_from([3.0, 1.5, None]),
)
def test_render_equals_numba(coords, size, sigma, normalize, window):
    coords[0, 1] = np.nan
    got = F.render_gaussian_heatmaps(t64(coords), size, sigma, normalize=normalize, window=window).numpy()
    ref = K.render_heatmaps(K.normalized_to_pixel(coords, size), size, sigma, normalize=normalize, window=window, dtype=np.float64)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


@PROPS
@given(
    # subnormal masses lose their digits in any division; not a heatmap's range
    hnp.arrays(np.float64, (2, 3, 5, 7), elements=st.floats(0, 10, allow_subnormal=False)),
    st.sampled_from(["sum", "softmax", None]),
)
def test_dsnt_equals_numba(maps, normalize):
    maps[0, 0] = 0.0  # an empty map: NaN in both
    got = F.dsnt(t64(maps), normalize=normalize).numpy()
    np.testing.assert_allclose(got, K.dsnt(maps, normalize=normalize), rtol=1e-10, atol=1e-12)


@PROPS
@given(
    hnp.arrays(np.float64, (3, 6, 2), elements=st.floats(-20, 20)),
    hnp.arrays(np.float64, (3, 6, 2), elements=st.floats(-20, 20)),
    hnp.arrays(np.bool_, (3, 6)),
    st.sampled_from(["squared", "abs"]),
)
def test_graph_distance_loss_equals_numba(a, b, mask, kind):
    b[1, 2, 0] = np.nan
    got = F.graph_distance_loss(t64(a), t64(b), mask=torch.as_tensor(mask), kind=kind).numpy()
    ref = K.graph_distance(a, b, mask=mask, kind=kind).per_shape
    # numba says NaN where a shape has no valid pair; the loss says 0 there
    np.testing.assert_allclose(got, np.nan_to_num(ref, nan=0.0), rtol=1e-9, atol=1e-9)
    d = F.pairwise_distances(t64(a)).numpy()
    np.testing.assert_allclose(d, K.pairwise_distances(a), rtol=1e-12, atol=1e-12)


def test_converters_equal_numpy_versions_and_round_trip():
    pts = np.array([[0.0, 0.0], [63.0, 31.0], [np.nan, 2.0]])
    for size in (64, (32, 64), (48, 80)):
        u = F.pixel_to_normalized(t64(pts), size)
        np.testing.assert_allclose(u.numpy(), K.pixel_to_normalized(pts, size))
        np.testing.assert_allclose(F.normalized_to_pixel(u, size).numpy(), pts, atol=1e-12)
    np.testing.assert_allclose(F.pixel_to_normalized(t64([[-0.5, 31.5]]), 32).numpy(), [[-1.0, 1.0]])
    # integer pixel coordinates come back as floats, not floor-divided
    np.testing.assert_allclose(F.pixel_to_normalized(torch.tensor([[0, 3]]), 4).numpy(), [[-0.75, 0.75]])


# ---------------------------------------------------------------------------
# values


def test_flat_softmax_makes_probability_maps():
    x = torch.randn(2, 3, 5, 6)
    p = F.flat_softmax(x)
    assert p.shape == x.shape
    torch.testing.assert_close(p.sum(dim=(-2, -1)), torch.ones(2, 3))
    assert p[0, 0].argmax() == x[0, 0].argmax()


def test_dsnt_of_rendered_gaussian_recovers_centre():
    g = torch.Generator().manual_seed(0)
    sigma, size = 1.0, 64
    pix = torch.rand(8, 16, 2, generator=g, dtype=torch.float64) * (size - 6 * sigma) + 3 * sigma - 0.5
    hm = F.render_gaussian_heatmaps(F.pixel_to_normalized(pix, size), size, sigma)
    err = (F.normalized_to_pixel(F.dsnt(hm), size) - pix).abs().max()
    assert err < 0.01


def test_js_and_kl_known_values():
    c = torch.tensor([[[0.1, -0.2], [float("nan"), 0.0]]], dtype=torch.float64)
    target = F.render_gaussian_heatmaps(c, 16, 1.0, normalize="sum", window=None)
    js = F.js_reg_losses(target, c, 1.0)
    kl = F.kl_reg_losses(target, c, 1.0)
    assert js.shape == (1, 2)
    assert js[0, 0].abs() < 1e-12 and kl[0, 0].abs() < 1e-12  # identical maps
    assert js[0, 1] == 0 and kl[0, 1] == 0  # missing target
    # disjoint maps: JS reaches its bound ln 2
    far = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    far[0, 0, 0, 0] = 1.0
    js_far = F.js_reg_losses(far, torch.tensor([[[0.9, 0.9]]], dtype=torch.float64), 0.5, window=3.0)
    assert js_far.item() == pytest.approx(math.log(2), abs=1e-9)
    # symmetric, bounded and positive for random maps
    p = F.flat_softmax(torch.randn(4, 5, 16, 16, dtype=torch.float64))
    cc = torch.rand(4, 5, 2, dtype=torch.float64) * 1.6 - 0.8
    js = F.js_reg_losses(p, cc, 1.0)
    assert ((js > 0) & (js < math.log(2))).all()
    assert (F.kl_reg_losses(p, cc, 1.0) > js).all()  # KL >= 2·JS-ish: here simply larger


def test_euclidean_losses_masks_missing_points():
    pred = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]], requires_grad=True)
    target = torch.tensor([[[3.0, 4.0], [float("nan"), 0.0], [2.0, 2.0]]])
    mask = torch.tensor([[True, True, False]])
    loss = F.euclidean_losses(pred, target, mask)
    assert loss.tolist() == [[5.0, 0.0, 0.0]]
    F.reduce_losses(loss, mask=mask & ~torch.isnan(target).any(-1)).backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad[0, 1].abs().sum() == 0 and pred.grad[0, 2].abs().sum() == 0
    torch.testing.assert_close(pred.grad[0, 0], torch.tensor([-0.6, -0.8]))


def test_reduce_losses():
    losses = torch.tensor([[1.0, 2.0], [3.0, 10.0]])
    mask = torch.tensor([[True, True], [True, False]])
    assert F.reduce_losses(losses).item() == 4.0
    assert F.reduce_losses(losses, mask).item() == 2.0
    assert F.reduce_losses(losses, mask, "sum").item() == 6.0
    assert F.reduce_losses(losses, mask, "none").tolist() == [[1.0, 2.0], [3.0, 0.0]]
    assert F.reduce_losses(losses, torch.zeros(2, 2, dtype=torch.bool)).item() == 0.0
    with pytest.raises(ShapekitError, match="reduction"):
        F.reduce_losses(losses, reduction="max")


def test_bad_inputs_name_the_argument():
    with pytest.raises(ShapekitError, match="heatmaps"):
        F.dsnt(np.zeros((2, 3, 4, 4)))
    with pytest.raises(ShapekitError, match="normalize"):
        F.dsnt(torch.zeros(1, 1, 4, 4), normalize="max")
    with pytest.raises(ShapekitError, match="sigma"):
        F.render_gaussian_heatmaps(torch.zeros(1, 1, 2), 8, 0.0)
    with pytest.raises(ShapekitError, match="mask"):
        F.euclidean_losses(torch.zeros(1, 3, 2), torch.zeros(1, 3, 2), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ShapekitError, match="pred and target"):
        F.graph_distance_loss(torch.zeros(1, 3, 2), torch.zeros(1, 4, 2))
    with pytest.raises(ShapekitError, match="size"):
        F.pixel_to_normalized(torch.zeros(1, 2), "big")


# ---------------------------------------------------------------------------
# gradients (float64 gradcheck)


def test_gradcheck_softmax_dsnt_and_regularisers():
    g = torch.Generator().manual_seed(1)
    # small maps: gradcheck evaluates the function twice per input element
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64, generator=g, requires_grad=True)
    c = torch.rand(1, 2, 2, dtype=torch.float64, generator=g) * 1.6 - 0.8
    assert torch.autograd.gradcheck(lambda x: F.dsnt(F.flat_softmax(x)), (x,))
    assert torch.autograd.gradcheck(lambda x: F.dsnt(x, normalize="softmax"), (x,))
    assert torch.autograd.gradcheck(lambda x: F.js_reg_losses(F.flat_softmax(x), c, 1.0), (x,))
    assert torch.autograd.gradcheck(lambda x: F.kl_reg_losses(F.flat_softmax(x), c, 1.0), (x,))
    pos = torch.rand(1, 2, 6, 5, dtype=torch.float64, generator=g).add(0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda h: F.dsnt(h, normalize="sum"), (pos,))


def test_gradcheck_losses_and_rendering():
    g = torch.Generator().manual_seed(2)
    p = torch.randn(2, 5, 2, dtype=torch.float64, generator=g, requires_grad=True)
    t = torch.randn(2, 5, 2, dtype=torch.float64, generator=g)
    t[0, 1] = float("nan")
    mask = torch.tensor([[True] * 5, [True, True, False, True, True]])
    assert torch.autograd.gradcheck(lambda p: F.euclidean_losses(p, t, mask), (p,))
    assert torch.autograd.gradcheck(lambda p: F.graph_distance_loss(p, t, mask), (p,))
    assert torch.autograd.gradcheck(lambda p: F.graph_distance_loss(p, t, kind="abs"), (p,))
    assert torch.autograd.gradcheck(lambda p: F.pairwise_distances(p), (p,))
    # rendering is differentiable in the centre (the window weight is piecewise linear
    # in it; keep the centres away from its kinks by not landing on pixel half-integers)
    c = (torch.rand(1, 3, 2, dtype=torch.float64, generator=g) * 0.8 - 0.4).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c: F.render_gaussian_heatmaps(c, 12, 1.3), (c,))
    assert torch.autograd.gradcheck(lambda c: F.render_gaussian_heatmaps(c, 12, 1.3, normalize="sum"), (c,))


def test_dsnt_training_step_moves_prediction_toward_target():
    torch.manual_seed(0)
    logits = torch.zeros(1, 1, 16, 16, requires_grad=True)
    target = torch.tensor([[[0.5, -0.25]]])
    opt = torch.optim.SGD([logits], lr=50.0)
    first = None
    for _ in range(30):
        probs = F.flat_softmax(logits)
        loss = F.euclidean_losses(F.dsnt(probs), target).mean() + F.js_reg_losses(probs, target, 1.0).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    err = (F.dsnt(F.flat_softmax(logits)) - target).norm().item()
    assert loss.item() < first and err < 0.05


# ---------------------------------------------------------------------------
# devices


@pytest.mark.parametrize("device", DEVICES)
def test_twins_run_on_device_and_match_cpu(device):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 68, 32, 32, generator=g)
    coords = torch.rand(4, 68, 2, generator=g) * 1.6 - 0.8
    target = coords + 0.05
    results = {}
    for dev in ("cpu", device):
        x = logits.to(dev).requires_grad_(True)
        probs = F.flat_softmax(x)
        pred = F.dsnt(probs)
        hm = F.render_gaussian_heatmaps(coords.to(dev), 32, 1.0)
        loss = (
            F.euclidean_losses(pred, target.to(dev)).mean()
            + F.js_reg_losses(probs, target.to(dev), 1.0).mean()
            + F.graph_distance_loss(pred, target.to(dev)).mean()
        )
        loss.backward()
        results[dev] = [t.detach().cpu() for t in (pred, hm, loss, x.grad)]
    for a, b in zip(results["cpu"], results[device]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
