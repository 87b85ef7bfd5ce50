"""Plots of shape models: the mean shape, its modes of variation and the explained variance."""

from __future__ import annotations

import numpy as np

from shapekit import schemas as _schemas
from shapekit.errors import ShapekitError
from shapekit.viz import pyplot, save_figure


def _edges(schema, n_points):
    if schema is None:
        s = _schemas.for_n_points(n_points)
    else:
        try:
            s = _schemas.get(schema)
        except ShapekitError:
            s = None
    return list(s.edges) if s is not None and s.n_points == n_points else []


def _draw(ax, pts, edges, color, lw=1.0, alpha=1.0, label=None, size=4):
    ok = np.isfinite(pts).all(-1)
    for i, j in edges:
        if ok[i] and ok[j]:
            ax.plot(pts[[i, j], 0], pts[[i, j], 1], "-", color=color, lw=lw, alpha=alpha)
    ax.scatter(pts[ok, 0], pts[ok, 1], s=size, color=color, alpha=alpha, label=label, zorder=3)


def plot_modes(pdm, path, n_modes=3, k=3.0, schema=None, title=None):
    """Write a PNG of the mean shape and mean ± k√λ along the first modes, plus the cumulative variance.

    One panel per mode (mean in grey, −k√λ in blue, +k√λ in red, in the model frame with
    y pointing down as in images), and a last panel with the cumulative explained
    variance of the kept modes. Edges come from ``schema`` (default: the model's schema,
    else the built-in schema with the same number of points). Returns the path.
    """
    pdm._check_fitted()
    plt = pyplot()
    n_modes = int(max(0, min(n_modes, pdm.n_components_)))
    schema = schema or getattr(pdm, "schema_", None)
    edges = _edges(schema, pdm.n_points_)
    mean = pdm.mean_
    fig, axes = plt.subplots(1, n_modes + 1, figsize=(3.2 * (n_modes + 1), 3.4))
    axes = np.atleast_1d(axes)
    for i in range(n_modes):
        ax = axes[i]
        sd = np.sqrt(pdm.explained_variance_[i])
        b = np.zeros((2, i + 1))
        b[0, i], b[1, i] = -k * sd, k * sd
        lo, hi = pdm.inverse_transform(b)
        _draw(ax, mean, edges, "0.55", lw=0.8, label="mean")
        _draw(ax, lo, edges, "tab:blue", label=f"−{k:g}√λ")
        _draw(ax, hi, edges, "tab:red", label=f"+{k:g}√λ")
        ax.set_aspect("equal")
        ax.invert_yaxis()
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"mode {i + 1}: {100 * pdm.explained_variance_ratio_[i]:.1f}%", fontsize=9)
        if i == 0:
            ax.legend(fontsize=7, loc="lower left", frameon=False)
    ax = axes[-1]
    ratio = np.asarray(pdm.explained_variance_ratio_)
    x = np.arange(1, len(ratio) + 1)
    ax.bar(x, 100 * ratio, color="0.7", label="per mode")
    ax.plot(x, 100 * np.cumsum(ratio), "o-", ms=2.5, color="tab:green", label="cumulative")
    for f in (80, 90, 95):
        ax.axhline(f, color="0.85", lw=0.6, zorder=0)
    ax.set_xlabel("mode")
    ax.set_ylabel("explained variance (%)")
    ax.set_ylim(0, 101)
    ax.legend(fontsize=7, loc="center right", frameon=False)
    ax.set_title(f"{pdm.n_components_} modes, {100 * ratio.sum():.1f}%", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_soft_landmarks(hard, soft, path, schema=None, n=6, images=None, title=None):
    """Write a PNG comparing hard landmarks (green) with soft ones (red) for the first ``n`` shapes.

    ``images`` (optional list of arrays) are drawn underneath. Coordinates in pixels. Returns the path.
    """
    plt = pyplot()
    hard = np.asarray(hard, dtype=float)
    soft = np.asarray(soft, dtype=float)
    n = int(min(n, len(hard)))
    if n < 1:
        raise ShapekitError("plot_soft_landmarks: no shapes to draw")
    edges = _edges(schema, hard.shape[1])
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.8))
    axes = np.atleast_1d(axes)
    for i in range(n):
        ax = axes[i]
        if images is not None and images[i] is not None:
            ax.imshow(images[i], cmap="gray")
        _draw(ax, hard[i], edges, "tab:green", lw=0.8, label="hard", size=5)
        _draw(ax, soft[i], edges, "tab:red", lw=0.8, label="soft", size=5)
        if images is None or images[i] is None:
            ax.set_aspect("equal")
            ax.invert_yaxis()
        ax.set_xticks([])
        ax.set_yticks([])
        if i == 0:
            ax.legend(fontsize=7, loc="lower left", frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
