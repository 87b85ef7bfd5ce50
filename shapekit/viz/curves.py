"""Curves of training and evaluation: loss/NME per epoch, cumulative error distributions (CED)."""

from __future__ import annotations

import numpy as np

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
    axes[0].set_yscale("log")
    axes[0].set_xlabel("epoch")
    axes[0].legend()
    if any("val_nme" in r for r in history):
        nme = [100 * r.get("val_nme", np.nan) for r in history]
        axes[1].plot(ep, nme, "o-", color="C2")
        best = int(np.nanargmin(nme))
        axes[1].annotate(f"best {nme[best]:.2f}%", (ep[best], nme[best]), textcoords="offset points",
                         xytext=(0, 8), ha="center")
        axes[1].set_ylabel("validation NME (%)")
    axes[1].set_xlabel("epoch")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)


def plot_ced(errors, path, threshold=0.10, labels=None, title=None):
    """Write a PNG of cumulative error distributions (NME on x, fraction of images on y); return its path.

    ``errors``: one array of per-image NMEs (normalised units), or a dict/list of them
    for several methods; the legend shows each method's AUC at ``threshold`` and its
    failure rate.
    """
    from shapekit import metrics

    plt = pyplot()
    if isinstance(errors, dict):
        items = list(errors.items())
    elif len(errors) and np.ndim(errors[0]) == 1:
        items = list(zip(labels or [f"method {i + 1}" for i in range(len(errors))], errors))
    else:
        items = [(labels[0] if labels else "model", errors)]
    fig, ax = plt.subplots(figsize=(5, 4))
    # Draw up to the threshold, or further when most images lie beyond it (weak models).
    allerr = np.concatenate([np.asarray(e, dtype=float).ravel() for _, e in items])
    xmax = threshold
    if allerr.size and np.nanpercentile(allerr, 50) > threshold:
        xmax = float(min(1.0, 1.1 * np.nanpercentile(allerr, 95)))
        ax.axvline(100 * threshold, color="grey", ls="--", lw=0.8)
    for name, e in items:
        e = np.asarray(e, dtype=float)
        x, y = metrics.ced(e, xmax)
        ax.plot(100 * x, y, label=f"{name}: AUC@{threshold:g} {metrics.auc(e, threshold):.3f}, "
                                  f"FR {100 * metrics.failure_rate(e, threshold):.1f}%")
    ax.set_xlim(0, 100 * xmax)
    ax.set_ylim(0, 1)
    ax.set_xlabel("NME (%)")
    ax.set_ylabel("fraction of images")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)
