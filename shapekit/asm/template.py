"""Start refinement by template matching: before the profile search, move and scale the
start shape so that the face's mean grey-level appearance (eyes, brows, nose, mouth),
learned in the model frame, matches the image best by normalised cross-correlation.

A face box says where the face is only to about 15% of the eye distance (head turns
shift the inner features inside the box), which is beyond the capture range of the
coarse profile search; the inner face's appearance is a much sharper cue. Classical
searches get the same help from eye and mouth detectors (Stasm) or a global
appearance search (Cootes' AAM initialisation).

The template is sampled on a regular grid of points in the model frame covering the
inner face; each grid point is mapped into a pyramid level by a pose ``(a, b, tx,
ty)`` (see :mod:`shapekit.asm.search`) and the image is sampled there bilinearly.
"""

from __future__ import annotations

import numpy as np

from shapekit._numba import njit

from shapekit.asm.profiles import _bilinear, _bilinear_reference
from shapekit.errors import ShapekitError


def template_grid(mean, n=20, groups=None, pad=0.1):
    """Return the grid points ``(n * n, 2)`` (model frame) covering the inner face of ``mean``.

    ``groups``: indices of the points whose box the grid covers (default: all points
    but a 68-point jaw, i.e. brows to mouth for ``ibug68``), padded by ``pad`` of its size.
    """
    mean = np.asarray(mean, dtype=np.float64)
    if groups is None:
        groups = np.arange(17, len(mean)) if len(mean) == 68 else np.arange(len(mean))
    pts = mean[np.asarray(groups)]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = hi - lo
    lo, hi = lo - pad * span, hi + pad * span
    xs = np.linspace(lo[0], hi[0], n)
    ys = np.linspace(lo[1], hi[1], n)
    gx, gy = np.meshgrid(xs, ys)
    return np.column_stack([gx.ravel(), gy.ravel()])


def _normalise(v):
    v = v - v.mean(axis=-1, keepdims=True)
    return v / (np.linalg.norm(v, axis=-1, keepdims=True) + 1e-9)


def sample_template_reference(image, grid, pose):
    """Return the zero-mean, unit-norm grey levels ``(G,)`` of ``image`` at ``grid`` mapped by ``pose``."""
    a, b, tx, ty = pose
    x = a * grid[:, 0] - b * grid[:, 1] + tx
    y = b * grid[:, 0] + a * grid[:, 1] + ty
    return _normalise(_bilinear_reference(np.asarray(image, dtype=np.float32), x, y))


@njit(cache=True, nogil=True)
def _ncc_scores_nb(img, grid, template, poses):
    n_pose = poses.shape[0]
    g = grid.shape[0]
    out = np.empty(n_pose)
    v = np.empty(g)
    for p in range(n_pose):
        a = poses[p, 0]
        b = poses[p, 1]
        tx = poses[p, 2]
        ty = poses[p, 3]
        s = 0.0
        for i in range(g):
            val = _bilinear(img, a * grid[i, 0] - b * grid[i, 1] + tx, b * grid[i, 0] + a * grid[i, 1] + ty)
            v[i] = val
            s += val
        mu = s / g
        ss = 0.0
        dot = 0.0
        for i in range(g):
            d = v[i] - mu
            ss += d * d
            dot += d * template[i]
        out[p] = dot / (np.sqrt(ss) + 1e-9)
    return out


def ncc_scores(image, grid, template, poses):
    """Return the normalised cross-correlation ``(P,)`` of ``template`` (G,) with the image
    sampled at ``grid`` (G, 2) under each pose ``(P, 4)``; ``template`` must be zero-mean
    and unit-norm (as :func:`sample_template_reference` returns)."""
    image = np.ascontiguousarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ShapekitError(f"image: expected a 2-D grey image, got shape {image.shape}")
    grid = np.ascontiguousarray(grid, dtype=np.float64)
    template = np.ascontiguousarray(template, dtype=np.float64)
    poses = np.ascontiguousarray(np.atleast_2d(poses), dtype=np.float64)
    if template.shape != (len(grid),) or poses.shape[1] != 4:
        raise ShapekitError(f"ncc_scores: template {template.shape} must match grid {grid.shape}, poses (P, 4)")
    return _ncc_scores_nb(image, grid, template, poses)


def ncc_scores_reference(image, grid, template, poses):
    """NumPy reference of :func:`ncc_scores`."""
    return np.array([float(sample_template_reference(image, grid, p) @ template) for p in np.atleast_2d(poses)])


def candidate_poses(pose, radius, step=1.0, scales=(0.9, 1.0, 1.1), angles=(0.0,)):
    """Return poses ``(P, 4)``: ``pose`` scaled, turned (radians) about the model origin and
    shifted on a grid of ``±radius`` pixels in ``step`` pixel steps."""
    a, b, tx, ty = pose
    shifts = np.arange(-radius, radius + 1e-9, step)
    dx, dy = np.meshgrid(shifts, shifts)
    out = []
    for sc in scales:
        for ang in angles:
            c, s = np.cos(ang), np.sin(ang)
            aa, bb = sc * (a * c - b * s), sc * (a * s + b * c)
            out.append(np.column_stack([np.full(dx.size, aa), np.full(dx.size, bb), tx + dx.ravel(), ty + dy.ravel()]))
    return np.vstack(out)
