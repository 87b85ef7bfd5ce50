"""Landmarks drawn on images with the schema's edges; sample grids; dataset distributions."""

from __future__ import annotations

import numpy as np

from shapekit import schemas as _schemas
from shapekit.viz import pyplot, save_figure


def draw_landmarks(ax, points, schema=None, mask=None, color="lime", edge_color="yellow", size=6.0,
                   numbers=False, linewidth=0.8):
    """Draw ``points`` ``(L, 2)`` (pixels) on a matplotlib axis, joined by the schema's edges.

    Missing points (NaN or ``mask`` False) and their edges are left out. Returns the axis.
    """
    pts = np.asarray(points, dtype=float)
    ok = np.isfinite(pts).all(-1)
    if mask is not None:
        ok &= np.asarray(mask, dtype=bool)
    if schema is None:
        schema = _schemas.for_n_points(len(pts))
    if schema is not None:
        s = _schemas.get(schema)
        if s.n_points == len(pts):
            for i, j in s.edges:
                if ok[i] and ok[j]:
                    ax.plot(pts[[i, j], 0], pts[[i, j], 1], "-", color=edge_color, lw=linewidth, alpha=0.8)
    ax.scatter(pts[ok, 0], pts[ok, 1], s=size, c=color, edgecolors="black", linewidths=0.3, zorder=3)
    if numbers:
        for k in np.flatnonzero(ok):
            ax.annotate(str(k), pts[k], fontsize=5, color="white", xytext=(2, 2), textcoords="offset points")
    return ax


def show_image(ax, image):
    """Show a uint8/float image ``(H, W[, C])`` or a ``(C, H, W)`` tensor on ``ax`` in pixel coordinates."""
    img = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[2] not in (1, 3):
        img = img.transpose(1, 2, 0)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1 if img.dtype != np.uint8 else 255,
              interpolation="nearest")
    ax.set_axis_off()
    return ax


def plot_sample_grid(images, shapes, path, schema=None, titles=None, masks=None, ncols=4, dpi=110,
                     suptitle=None, extra=None, labels=None):
    """Write a PNG grid of images with their landmarks drawn (schema edges) and return ``path``.

    ``images``: a sequence of arrays or ``(C, H, W)`` tensors; ``shapes``: ``(N, L, 2)``
    in the pixels of each image, drawn in green. ``extra``: optional second shapes
    ``(N, L, 2)`` drawn in red over them (predictions, soft landmarks). ``labels``: the
    names of the green and red shapes, e.g. ``("ground truth", "prediction")``, shown in
    a legend under the grid. Titles get room of their own (constrained layout), so
    they never cover the image above.
    """
    from matplotlib.lines import Line2D  # local: heavy (see shapekit.viz.pyplot)

    plt = pyplot()
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    height = 2.4 * nrows + (0.25 * nrows if titles is not None else 0) + (0.3 if suptitle else 0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.4 * ncols, height + (0.3 if labels else 0)), squeeze=False,
                             layout="constrained")
    for k, ax in enumerate(axes.ravel()):
        if k >= n:
            ax.set_axis_off()
            continue
        show_image(ax, images[k])
        draw_landmarks(ax, shapes[k], schema, None if masks is None else masks[k])
        if extra is not None:
            draw_landmarks(ax, extra[k], schema, None, color="red", edge_color="red", size=4, linewidth=0.6)
        if titles is not None:
            ax.set_title(str(titles[k]), fontsize=7, pad=2)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    if labels:
        handles = [Line2D([], [], color="yellow", marker="o", markerfacecolor="lime", markeredgecolor="black",
                          markersize=4, lw=0.8, label=labels[0])]
        if extra is not None and len(labels) > 1:
            handles.append(Line2D([], [], color="red", marker="o", markerfacecolor="red", markeredgecolor="black",
                                  markersize=4, lw=0.8, label=labels[1]))
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)
    return save_figure(fig, path, dpi=dpi)


def plot_dataset_stats(stats, path, dpi=110):
    """Write a PNG of a dataset's distributions (from :func:`shapekit.data.stats.dataset_stats` with ``values``)."""

    plt = pyplot()
    v = stats["values"]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
    panels = [
        ("normalising distance (px)", v["normalizing_distance"], axes[0]),
        ("head roll (degrees)", v["roll"], axes[1]),
        ("face size: landmark box side (px)", v["face_size"], axes[2]),
    ]
    for title, data, ax in panels:
        data = np.asarray(data, dtype=float)
        data = data[np.isfinite(data)]
        ax.hist(data, bins=40, color="steelblue")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("samples")
    miss = np.asarray(stats["missing_per_point"])
    axes[3].bar(np.arange(len(miss)), miss, color="indianred")
    axes[3].set_title("missing points per landmark" + ("" if miss.any() else ": none"), fontsize=9)
    axes[3].set_ylim(0, max(1, int(miss.max()) if len(miss) else 1) * 1.05)
    axes[3].set_xlabel("landmark index")
    fig.suptitle(f"{stats.get('source', '')}: {stats['n_samples']} samples, {stats['n_points']} points "
                 f"({stats.get('schema')})", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=dpi)
