"""shapekit.viz: every plot, one module per topic.

Plots are PNG files drawn with matplotlib's Agg backend (chosen when the first plot is
made, not when shapekit is imported) and written atomically.
"""

from pathlib import Path

from shapekit._files import atomic_path


def pyplot():
    """Return ``matplotlib.pyplot`` with the non-interactive Agg backend selected."""
    import matplotlib  # local: heavy, matplotlib loads only when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi=100):
    """Write ``fig`` to ``path`` as a PNG (temporary file, then rename), close it, return the Path."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    pyplot().close(fig)
    return Path(path)
