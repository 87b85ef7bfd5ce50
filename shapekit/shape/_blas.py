"""One BLAS thread for the shape models' linear algebra.

Shape-model work is small matrices (eigh of 2L x 2L, K x K systems) and memory-bound
matrix-vector products, which OpenBLAS's threads slow down on a shared or
oversubscribed machine (figures: benchmarks/RESULTS.md, "GPA + model fit on 100,000
real shapes"); the public entry points therefore run with one BLAS thread (restored on
return).
"""

from __future__ import annotations

import contextlib
import functools
import os

_CONTROLLER = None


def _controller():
    global _CONTROLLER
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController  # local: optional, run as is without it

            _CONTROLLER = ThreadpoolController()
        except Exception:  # noqa: BLE001 - threadpoolctl missing or broken: run as is
            _CONTROLLER = False
    return _CONTROLLER


@contextlib.contextmanager
def single_blas_thread():
    """Run the body with one BLAS thread (no-op when SHAPEKIT_BLAS_THREADS=keep or threadpoolctl is absent)."""
    ctrl = _controller() if os.environ.get("SHAPEKIT_BLAS_THREADS") != "keep" else False
    if not ctrl:
        yield
        return
    with ctrl.limit(limits=1, user_api="blas"):
        yield


def one_blas_thread(func):
    """Decorate ``func`` to run under :func:`single_blas_thread`."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with single_blas_thread():
            return func(*args, **kwargs)

    return wrapper
