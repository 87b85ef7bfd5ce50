"""Curves of training and evaluation: loss/NME per epoch, cumulative error distributions (CED)."""

from __future__ import annotations

import numpy as np

from shapekit import metrics
from shapekit.viz import pyplot, save_figure


def plot_training_curves(history, path, title=None):
    """Write a PNG of training loss and validation NME per epoch; return its path.

    ``history``: list of dicts with ``epoch``, ``train_loss`` and optionally
    ``val_loss``, ``val_nme`` (the rows of ``metrics.jsonl``).
    """
    plt = pyplot()
    ep = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].plot(ep, [r["train_loss"] for r in history], "o-", label="train loss")
    if any("val_loss" in r for r in history):
        axes[0].plot(ep, [r.get("val_loss", np.nan) for r in history], "s-", label="val L2 (normalised)")
    _log_axis(axes[0])
    axes[0].set_xlabel("epoch")
    axes[0].legend()
    if any("val_nme" in r for r in history):
        nme = [100 * r.get("val_nme", np.nan) for r in history]
        axes[1].plot(ep, nme, "o-", color="C2")
        best = int(np.nanargmin(nme))
        axes[1].annotate(f"best {nme[best]:.2f}%", (ep[best], nme[best]), textcoords="offset points",
                         xytext=(0, 8), ha="right" if best == len(nme) - 1 and len(nme) > 1 else "center")
        # log axis: the first epochs (often tens or hundreds of per cent) do not squash the rest
        log = _log_axis(axes[1], nme)
        axes[1].grid(alpha=0.3, which="both")
        axes[1].set_ylabel("validation NME (%, log scale)" if log else "validation NME (%)")
    axes[1].set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator  # local: heavy (see shapekit.viz.pyplot)

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)


def _log_axis(ax, values=None):
    """Put ``ax``'s y axis on a log scale labelled 1, 2, 5, 10, 20, ... in plain numbers; return True.

    With ``values`` spanning less than a factor of 3 the axis stays linear (nothing to
    squash) and False is returned.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # local: heavy (see shapekit.viz.pyplot)

    if values is not None:
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v) & (v > 0)]
        if v.size == 0 or v.max() / v.min() < 3:
            return False
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    return True


def plot_ced(errors, path, threshold=0.08, labels=None, title=None):
    """Write a PNG of cumulative error distributions (NME on x, fraction of images on y); return its path.

    ``errors``: one array of per-image NMEs (normalised units), or a dict/list of them
    for several methods; the legend shows each method's ``AUC@threshold`` and
    ``FR@threshold`` (failure rate: share of images with NME above it), named as in the
    tables of ``shapekit evaluate`` and the demo report. The default 0.08 is the tables'
    threshold; the threshold is drawn as a dashed line.
    """
    plt = pyplot()
    if isinstance(errors, dict):
        items = list(errors.items())
    elif len(errors) and np.ndim(errors[0]) == 1:
        items = list(zip(labels or [f"method {i + 1}" for i in range(len(errors))], errors))
    else:
        items = [(labels[0] if labels else "model", errors)]
    # the legend goes under the axes: inside it would cover the curves of weak models
    fig, ax = plt.subplots(figsize=(5.5, 4.2 + 0.2 * len(items)), layout="constrained")
    # Draw up to the threshold, or further when most images lie beyond it (weak models).
    allerr = np.concatenate([np.asarray(e, dtype=float).ravel() for _, e in items])
    xmax = 1.25 * threshold
    if allerr.size and np.nanpercentile(allerr, 50) > threshold:
        xmax = float(min(1.0, 1.1 * np.nanpercentile(allerr, 95)))
    ax.axvline(100 * threshold, color="grey", ls="--", lw=0.8)
    for name, e in items:
        e = np.asarray(e, dtype=float)
        x, y = metrics.ced(e, xmax)
        ax.plot(100 * x, y, label=f"{name}: AUC@{threshold:.2f} {metrics.auc(e, threshold):.3f}, "
                                  f"FR@{threshold:.2f} {100 * metrics.failure_rate(e, threshold):.1f}%")
    ax.set_xlim(0, 100 * xmax)
    ax.set_ylim(0, 1)
    ax.set_xlabel("NME (%)")
    ax.set_ylabel("fraction of images")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
    return save_figure(fig, path, dpi=90)
