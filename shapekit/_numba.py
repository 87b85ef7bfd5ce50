"""numba configuration shared by every shapekit kernel: caching that never crashes.

Import ``njit`` from here instead of from numba::

    from shapekit._numba import njit

    @njit(parallel=True)
    def kernel(...): ...

``cache=True`` is the default. numba looks for a cache directory in this order:
``$NUMBA_CACHE_DIR`` when set (and writable), a ``__pycache__`` folder beside the
source file, then a per-user cache folder (``$XDG_CACHE_HOME/numba`` or
``~/.cache/numba``). On a read-only install the second step fails and numba moves
on to the third by itself. When no location at all is writable numba raises at
decoration time; here the kernel is compiled without a cache instead (one
``NumbaCacheWarning``), and a cache directory that turns unwritable later (say, a
disk that fills up) only costs the saved compilation, never the call.

Parallel and serial kernels must be separate Python functions: numba's cache key is
the function and its argument types, not the jit flags, so one function compiled
once with ``parallel=True`` and once without would overwrite each other's entry.
The thread count of parallel kernels is numba's: ``numba.set_num_threads`` or
``$NUMBA_NUM_THREADS``.
"""

from __future__ import annotations

import functools
import warnings

import numba

__all__ = ["njit", "NumbaCacheWarning", "cache_dir", "uncached_functions"]


class NumbaCacheWarning(RuntimeWarning):
    """A kernel runs without its compilation cache: it compiles on every new process."""


_UNCACHED = []


def uncached_functions():
    """Return the qualified names of the kernels compiled without a cache in this process."""
    return list(_UNCACHED)


def _guard_saves(dispatcher):
    # The locator was writable when the kernel was decorated; if it stops being
    # writable before the first compilation ends, saving raises OSError from inside
    # the call. Losing the cache entry is harmless, failing the call is not.
    cache = getattr(dispatcher, "_cache", None)
    save = getattr(cache, "save_overload", None)
    if save is None:
        return dispatcher

    @functools.wraps(save)
    def guarded(sig, data):
        try:
            save(sig, data)
        except OSError as exc:
            warnings.warn(
                f"numba could not save the compiled {dispatcher.py_func.__qualname__} to its cache "
                f"({exc}); it will compile again in the next process",
                NumbaCacheWarning,
                stacklevel=2,
            )

    cache.save_overload = guarded
    return dispatcher


def njit(*args, **kwargs):
    """Return a numba ``njit`` decorator (or decorated function) with ``cache=True`` by default.

    Same arguments as ``numba.njit``. Falls back to no cache, with a
    ``NumbaCacheWarning``, when numba finds no writable cache location.
    """
    kwargs.setdefault("cache", True)

    def decorate(func):
        if not kwargs["cache"]:
            return numba.njit(**kwargs)(func)
        try:
            dispatcher = numba.njit(**kwargs)(func)
        except (RuntimeError, OSError) as exc:
            # numba: "cannot cache function ...: no locator available for file ..."
            _UNCACHED.append(func.__qualname__)
            warnings.warn(
                f"no writable numba cache directory for {func.__module__}.{func.__qualname__} "
                f"({exc}); compiling without a cache. Set NUMBA_CACHE_DIR to a writable folder "
                f"to keep compiled kernels between runs",
                NumbaCacheWarning,
                stacklevel=3,
            )
            return numba.njit(**{**kwargs, "cache": False})(func)
        return _guard_saves(dispatcher)

    if len(args) == 1 and callable(args[0]):
        return decorate(args[0])
    if args:
        # an explicit signature list, as numba.njit accepts it
        kwargs = dict(kwargs)
        sigs = args[0]

        def decorate_sigs(func):
            try:
                return _guard_saves(numba.njit(sigs, **kwargs)(func))
            except (RuntimeError, OSError) as exc:
                _UNCACHED.append(func.__qualname__)
                warnings.warn(
                    f"no writable numba cache directory for {func.__qualname__} ({exc}); compiling without a cache",
                    NumbaCacheWarning,
                    stacklevel=2,
                )
                return numba.njit(sigs, **{**kwargs, "cache": False})(func)

        return decorate_sigs
    return decorate


def cache_dir(func):
    """Return the cache directory numba uses for a shapekit kernel, or None when it runs uncached."""
    cache = getattr(func, "_cache", None)
    impl = getattr(cache, "_impl", None)
    locator = getattr(impl, "locator", None)
    if locator is None:
        return None
    return locator.get_cache_path()
