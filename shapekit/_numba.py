"""numba configuration shared by every shapekit kernel: caching that never crashes.

Import ``njit`` from here instead of from numba::

    from shapekit._numba import njit

    @njit(parallel=True)
    def kernel(...): ...

``cache=True`` is the default. The compiled kernels are cached **outside the
installed package**, in this order:

1. ``$NUMBA_CACHE_DIR`` when set (and writable), as numba itself does;
2. the per-user cache folder ``$XDG_CACHE_HOME/shapekit/numba`` (``~/.cache/shapekit/numba``
   when ``XDG_CACHE_HOME`` is unset; see :func:`shapekit._paths.user_cache_dir`).

numba's default would put ``.nbi`` / ``.nbc`` files into ``__pycache__`` folders beside
the sources, i.e. inside ``site-packages/shapekit``. pip does not know those files, so an
uninstall (or the switch to an editable install) leaves the folders behind, and Python
then imports the left-over ``site-packages/shapekit`` as an empty namespace package that
shadows the real one. shapekit therefore never lets numba write into the package.

Entries are keyed by the source file's folder (hashed), its content and the argument
types, so two installs or versions of shapekit never read each other's entries.

When neither location is writable the kernel is compiled without a cache (one
``NumbaCacheWarning``), and a cache directory that turns unwritable later (say, a disk
that fills up) only costs the saved compilation, never the call.

Parallel and serial kernels must be separate Python functions: numba's cache key is
the function and its argument types, not the jit flags, so one function compiled
once with ``parallel=True`` and once without would overwrite each other's entry.
The thread count of parallel kernels is numba's: ``numba.set_num_threads`` or
``$NUMBA_NUM_THREADS``.
"""

from __future__ import annotations

import functools
import os
import warnings

import numba
from numba.core import caching as _caching

from shapekit._paths import user_cache_dir

__all__ = ["njit", "NumbaCacheWarning", "cache_dir", "kernel_cache_root", "uncached_functions"]


class NumbaCacheWarning(RuntimeWarning):
    """A kernel runs without its compilation cache: it compiles on every new process."""


_UNCACHED = []


def uncached_functions():
    """Return the qualified names of the kernels compiled without a cache in this process."""
    return list(_UNCACHED)


def kernel_cache_root():
    """Return the per-user folder for compiled kernels (used when ``$NUMBA_CACHE_DIR`` is unset)."""
    return str(user_cache_dir() / "numba")


def _numba_attr(*names):
    # numba renamed its private caching classes (``_CacheImpl`` -> ``CacheImpl``, ...)
    for name in names:
        obj = getattr(_caching, name, None)
        if obj is not None:
            return obj
    raise ImportError(f"numba.core.caching has none of {names}")


_UserProvided = _numba_attr("UserProvidedCacheLocator", "_UserProvidedCacheLocator")
_SourceBacked = _numba_attr("_SourceFileBackedLocatorMixin")
_Locator = _numba_attr("_CacheLocator")
_CompileResultImpl = _numba_attr("CompileResultCacheImpl")
_FunctionCache = _numba_attr("FunctionCache")


class _UserCacheLocator(_SourceBacked, _Locator):
    """numba cache locator for shapekit's kernels: a per-user folder, never the package."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = os.path.join(kernel_cache_root(), self.get_suitable_cache_subpath(py_file))

    def get_cache_path(self):
        return self._cache_path


class _CacheImpl(_CompileResultImpl):
    _locator_classes = [_UserProvided, _UserCacheLocator]


class _FunctionCache(_FunctionCache):
    _impl_class = _CacheImpl


def _no_cache_warning(func, exc, stacklevel):
    _UNCACHED.append(func.__qualname__)
    warnings.warn(
        f"no writable numba cache directory for {func.__module__}.{func.__qualname__} "
        f"({exc}); compiling without a cache. Set NUMBA_CACHE_DIR to a writable folder "
        f"to keep compiled kernels between runs",
        NumbaCacheWarning,
        stacklevel=stacklevel,
    )


def _with_cache(dispatcher, func, stacklevel):
    """Give a dispatcher compiled with ``cache=False`` shapekit's on-disk cache."""
    try:
        dispatcher._cache = _FunctionCache(func)
    except (RuntimeError, OSError) as exc:
        # numba: "cannot cache function ...: no locator available for file ..."
        _no_cache_warning(func, exc, stacklevel + 1)
        return dispatcher
    return _guard_saves(dispatcher)


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

    Same arguments as ``numba.njit``. With caching on, compiled code goes to
    ``$NUMBA_CACHE_DIR`` or the per-user cache folder (never beside the sources), and
    falls back to no cache, with a ``NumbaCacheWarning``, when neither is writable.
    """
    cache = kwargs.pop("cache", True)
    sigs = None
    if len(args) == 1 and callable(args[0]):
        func = args[0]
        return njit(cache=cache, **kwargs)(func)
    if args:
        sigs = args[0]  # an explicit signature list, as numba.njit accepts it

    def decorate(func):
        # with explicit signatures numba would compile at once: attach the cache first
        dispatcher = numba.njit(cache=False, **kwargs)(func)
        if cache:
            dispatcher = _with_cache(dispatcher, func, stacklevel=4)
        if sigs is not None:
            for sig in sigs if isinstance(sigs, (list, tuple)) else [sigs]:
                dispatcher.compile(sig)
            dispatcher.disable_compile()
        return dispatcher

    return decorate


def cache_dir(func):
    """Return the cache directory numba uses for a shapekit kernel, or None when it runs uncached."""
    cache = getattr(func, "_cache", None)
    impl = getattr(cache, "_impl", None)
    locator = getattr(impl, "locator", None)
    if locator is None:
        return None
    return locator.get_cache_path()
