"""Input checks and the parallel/serial choice shared by the kernels."""

from __future__ import annotations

import os
import sys
import time

import numba
import numpy as np

from shapekit.errors import ShapekitError

# "auto" runs serially below these sizes: waking a thread pool costs tens of
# microseconds on an idle machine and milliseconds on a busy one, more than a
# parallel split of a small job saves. Work is counted in array elements touched.
PARALLEL_MIN_ITEMS = 8
PARALLEL_MIN_WORK = 1 << 21

_state = {"parallel_used": False, "fork_unsafe": False}


def _layer_is_fork_safe():
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run: nothing to inherit
        return True
    # GNU OpenMP aborts a forked child that enters a parallel region ("Terminating:
    # fork() called from a process already using GNU OpenMP"); tbb and workqueue do not.
    return layer in ("tbb", "workqueue")


def _after_fork_in_child():
    if _state["parallel_used"] and not _layer_is_fork_safe():
        _state["fork_unsafe"] = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _in_torch_worker():
    data = sys.modules.get("torch.utils.data")
    if data is None:
        return False
    try:
        return data.get_worker_info() is not None
    except Exception:  # pragma: no cover - torch internals changed
        return False


_load = {"t": -1e9, "busy": False}


def _machine_busy():
    """Whether the 1-minute load average already fills every CPU (re-read at most once a second).

    On a saturated machine a parallel region waits at its barrier for threads the OS
    has not scheduled yet, and runs slower than the serial kernel (figures:
    benchmarks/RESULTS.md, "Kernels benchmark (issue 3)", "Caveats, honestly").
    """
    now = time.monotonic()
    if now - _load["t"] > 1.0:
        _load["t"] = now
        try:
            _load["busy"] = os.getloadavg()[0] >= (os.cpu_count() or 1)
        except (OSError, AttributeError):  # no load average on this platform
            _load["busy"] = False
    return _load["busy"]


def use_parallel(parallel, n_items, work=None):
    """Return whether to run the parallel variant of a kernel.

    ``parallel``: True, False or "auto". "auto" runs in parallel when numba has more
    than one thread, there are at least ``PARALLEL_MIN_ITEMS`` items (maps, shapes)
    and ``PARALLEL_MIN_WORK`` elements of ``work`` (default: the items), and the
    caller is not a torch DataLoader worker (the workers are the parallelism there),
    and the machine is not already saturated (1-minute load average below the CPU
    count). Whatever was
    asked, a process forked after its parent ran numba's GNU OpenMP pool runs serially,
    because entering that pool again would abort the process.
    """
    if parallel not in (True, False, "auto"):
        raise ShapekitError(f"parallel: expected True, False or 'auto', got {parallel!r}")
    if _state["fork_unsafe"]:
        return False
    if parallel == "auto":
        work = n_items if work is None else work
        return (
            numba.get_num_threads() > 1
            and n_items >= PARALLEL_MIN_ITEMS
            and work >= PARALLEL_MIN_WORK
            and not _in_torch_worker()
            and not _machine_busy()
        )
    return parallel


def n_chunks(n_items):
    """Number of contiguous chunks a parallel kernel splits ``n_items`` into: a few per numba thread.

    Computed here rather than inside the kernel: a kernel calling
    ``numba.get_num_threads`` cannot be cached.
    """
    return max(1, min(n_items, 8 * numba.get_num_threads()))


def mark_parallel_used():
    _state["parallel_used"] = True


def hw(size):
    """Return (height, width) from an int or a (height, width) pair."""
    if getattr(size, "ndim", None) == 0:  # a 0-d array or tensor
        size = int(size)
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        try:
            h, w = (int(s) for s in size)
        except (TypeError, ValueError) as exc:
            raise ShapekitError(f"size: expected an int or a (height, width) pair, got {size!r}") from exc
    if h < 1 or w < 1:
        raise ShapekitError(f"size: height and width must be >= 1, got {(h, w)}")
    return h, w


def as_points(points, name="points"):
    """Return ``(flat (M, 2) float64 C-contiguous, leading shape)`` from an array (..., 2)."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] != 2:
        raise ShapekitError(f"{name}: expected an array (..., 2) of x, y, got shape {arr.shape}")
    lead = arr.shape[:-1]
    return np.ascontiguousarray(arr.reshape(-1, 2)), lead


def as_shapes(shapes, name="shapes"):
    """Return ``(shapes (N, L, 2) float64 C-contiguous, single)`` from (N, L, 2) or (L, 2)."""
    arr = np.asarray(shapes, dtype=np.float64)
    single = arr.ndim == 2
    if single:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise ShapekitError(f"{name}: expected shapes (N, L, 2) or points (L, 2), got shape {np.shape(shapes)}")
    return np.ascontiguousarray(arr), single


def as_heatmaps(heatmaps, name="heatmaps"):
    """Return ``(maps (M, H, W) C-contiguous float32/float64, leading shape)`` from (..., H, W)."""
    arr = np.asarray(heatmaps)
    if arr.ndim < 2:
        raise ShapekitError(f"{name}: expected an array (..., H, W), got shape {arr.shape}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    lead = arr.shape[:-2]
    h, w = arr.shape[-2:]
    if h < 1 or w < 1:
        raise ShapekitError(f"{name}: empty maps of shape {arr.shape}")
    return np.ascontiguousarray(arr.reshape(-1, h, w)), lead


def check_sigma(sigma):
    try:
        s = float(sigma)
    except (TypeError, ValueError) as exc:
        raise ShapekitError(f"sigma: expected a positive number of pixels, got {sigma!r}") from exc
    if not s > 0 or not np.isfinite(s):
        raise ShapekitError(f"sigma: expected a positive finite number of pixels, got {sigma!r}")
    return s
