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


def plot_soft_landmarks(hard, soft, path, schema=None, n=6, images=None, title=None, labels=("hard", "soft"),
                        zoom=True):
    """Write a PNG comparing hard landmarks (green) with soft ones (red) for the first ``n`` shapes.

    The top row shows whole faces (``images``, an optional list of arrays, drawn
    underneath; coordinates in pixels) with an arrow from each hard point to its soft
    one. With ``zoom`` and a 68-point layout, the rows below enlarge the eyes and the
    mouth, where the few-pixel differences between the two lie. ``labels`` name the
    green and red shapes in the legend. Returns the path.
    """
    plt = pyplot()
    hard = np.asarray(hard, dtype=float)
    soft = np.asarray(soft, dtype=float)
    n = int(min(n, len(hard)))
    if n < 1:
        raise ShapekitError("plot_soft_landmarks: no shapes to draw")
    edges = _edges(schema, hard.shape[1])
    regions = [("eyes", list(range(17, 27)) + list(range(36, 48))), ("mouth", list(range(48, 68)))]
    regions = regions if zoom and hard.shape[1] == 68 else []
    rows = 1 + len(regions)
    fig, axes = plt.subplots(rows, n, figsize=(2.6 * n, 2.8 + 1.6 * len(regions)), squeeze=False,
                             height_ratios=[2.6] + [1.4] * len(regions), layout="constrained")
    for i in range(n):
        for r in range(rows):
            ax = axes[r, i]
            if images is not None and images[i] is not None:
                ax.imshow(images[i], cmap="gray")
            _draw(ax, hard[i], edges, "tab:green", lw=0.8, label=labels[0], size=5 if r == 0 else 12)
            _draw(ax, soft[i], edges, "tab:red", lw=0.8, label=labels[1], size=5 if r == 0 else 12)
            ok = np.isfinite(hard[i]).all(-1) & np.isfinite(soft[i]).all(-1)
            d = soft[i] - hard[i]
            ax.quiver(hard[i, ok, 0], hard[i, ok, 1], d[ok, 0], d[ok, 1], angles="xy", scale_units="xy", scale=1,
                      color="white" if images is not None else "black", width=0.004 if r == 0 else 0.008,
                      zorder=4)
            if r > 0:
                name, idx = regions[r - 1]
                pts = np.concatenate([hard[i, idx], soft[i, idx]])
                pts = pts[np.isfinite(pts).all(-1)]
                if len(pts):
                    lo, hi = pts.min(0), pts.max(0)
                    pad = 0.15 * (hi - lo).max() + 1
                    ax.set_xlim(lo[0] - pad, hi[0] + pad)
                    ax.set_ylim(hi[1] + pad, lo[1] - pad)
                if i == 0:
                    ax.set_ylabel(f"{name}, enlarged", fontsize=8)
            elif images is None or images[i] is None:
                ax.invert_yaxis()
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
        valid = np.isfinite(hard[i]).all(-1) & np.isfinite(soft[i]).all(-1)
        shift = np.linalg.norm(soft[i, valid] - hard[i, valid], axis=-1)
        if len(shift):
            axes[0, i].set_title(f"mean shift {shift.mean():.1f} px, largest {shift.max():.1f} px", fontsize=7)
    handles, names = axes[0, 0].get_legend_handles_labels()
    from matplotlib.lines import Line2D  # local: heavy (see shapekit.viz.pyplot)

    handles.append(Line2D([], [], color="0.2", marker=r"$\rightarrow$", markersize=10, lw=0))
    names.append(f"{labels[0]} → {labels[1]}")
    fig.legend(handles, names, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi=110)
