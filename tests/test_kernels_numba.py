"""numba done properly: on-disk cache and its fallbacks, parallel/serial variants, fork safety."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numba
import numpy as np
import pytest
import torch

import shapekit
from shapekit import _numba
from shapekit.kernels import _common
from shapekit.kernels import decode_heatmaps, dsnt, graph_distance, pairwise_distances, render_heatmaps
from shapekit.kernels import graph as graph_mod
from shapekit.kernels import heatmaps as heatmaps_mod

PACKAGE = Path(shapekit.__file__).resolve().parent

# Runs the kernels (rendering only, or all of them with SHAPEKIT_TEST_ALL=1), both
# variants, and checks them against the NumPy references. Rendering alone keeps the
# cold compilations of the default run short; the cache machinery is the same for all.
SCRIPT = r"""
import json, os, sys, warnings
import numpy as np
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import shapekit, shapekit._numba as N
    import shapekit.kernels as K
    rng = np.random.default_rng(0)
    pts = rng.uniform(4, 28, (3, 5, 2))
    ok = True
    for par in (False, True):
        hm = K.render_heatmaps(pts, 32, 1.5, parallel=par)
        ok &= bool(np.allclose(hm, K.render_heatmaps_reference(pts, 32, 1.5), atol=1e-6))
        if not os.environ.get("SHAPEKIT_TEST_ALL"):
            continue
        ok &= bool(np.allclose(K.decode_heatmaps(hm, parallel=par)[0], pts, atol=1e-3))
        ok &= bool(np.allclose(K.dsnt(hm, parallel=par), K.dsnt_reference(hm)))
        ok &= bool(np.allclose(K.pairwise_distances(pts, parallel=par), K.pairwise_distances_reference(pts)))
        ok &= bool(np.isclose(K.graph_distance(pts, pts * 2, parallel=par).mean, K.graph_distance_reference(pts, pts * 2).mean))
from shapekit.kernels import heatmaps as H
print(json.dumps({
    "ok": ok,
    "file": shapekit.__file__,
    "uncached": N.uncached_functions(),
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught if "cache" in str(w.message).lower()],
    "cache_dir": N.cache_dir(H._render_serial),
    "cache_hits": sum(H._render_serial.stats.cache_hits.values()),
}))
"""


def _copy_package(tmp_path, block_in_tree):
    """A copy of the shapekit package, as a read-only install would look to numba."""
    site = tmp_path / "site"
    shutil.copytree(PACKAGE, site / "shapekit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if block_in_tree:
        # A *file* where numba wants the __pycache__ folder: makedirs fails even for
        # root, who ignores permission bits (chmod would not simulate it here).
        for folder in [site / "shapekit", *[p for p in (site / "shapekit").rglob("*") if p.is_dir()]]:
            (folder / "__pycache__").write_text("not a folder")
    return site


def _run(site, env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    env.update(env_extra)
    env["PYTHONPATH"] = str(site)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600, cwd=site)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).resolve().is_relative_to(site.resolve())  # the copy ran, not the checkout
    return out


@pytest.mark.parametrize("all_kernels", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_no_writable_cache_anywhere_runs_uncached_with_a_warning(tmp_path, all_kernels):
    site = _copy_package(tmp_path, block_in_tree=True)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, so nothing can be created below it")
    out = _run(
        site,
        {
            "NUMBA_CACHE_DIR": str(blocker / "numba"),
            "XDG_CACHE_HOME": str(blocker / "xdg"),
            "HOME": str(blocker / "home"),
            "SHAPEKIT_TEST_ALL": "1" if all_kernels else "",
        },
    )
    assert out["ok"]
    assert out["cache_dir"] is None
    assert "_render_serial" in out["uncached"] and "_render_parallel" in out["uncached"]
    assert any(w.startswith("NumbaCacheWarning") for w in out["warnings"])


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permission bits")
def test_read_only_permissions_fall_back_without_crashing(tmp_path):
    site = _copy_package(tmp_path, block_in_tree=False)
    ro = tmp_path / "ro-cache"
    ro.mkdir()
    for p in [ro, *site.rglob("*"), site]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        out = _run(site, {"NUMBA_CACHE_DIR": str(ro), "XDG_CACHE_HOME": str(ro), "HOME": str(ro)})
    finally:
        for p in [ro, site, *site.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert out["ok"]


@pytest.mark.parametrize("how", ["NUMBA_CACHE_DIR", "XDG_CACHE_HOME"])
def test_read_only_install_uses_user_cache_dir_and_reuses_it(tmp_path, how):
    """With the package folder unwritable the cache goes to $NUMBA_CACHE_DIR, else to the user cache."""
    site = _copy_package(tmp_path, block_in_tree=True)
    cache = tmp_path / "user-cache"
    env = {how: str(cache)}
    if how == "XDG_CACHE_HOME":
        env["HOME"] = str(tmp_path / "home")
    first = _run(site, env)
    assert first["ok"] and first["uncached"] == [] and first["warnings"] == []
    assert first["cache_dir"] is not None and Path(first["cache_dir"]).resolve().is_relative_to(cache.resolve())
    assert list(cache.rglob("*.nbi")) and first["cache_hits"] == 0
    second = _run(site, env)
    assert second["ok"] and second["cache_hits"] >= 1  # loaded from disk, not compiled again


def test_a_writable_install_gets_no_numba_files(tmp_path):
    """numba's cache never goes inside the package, even where the package is writable.

    Files there are unknown to pip: an uninstall or a switch to an editable install
    leaves them behind, and the left-over folder then shadows the real package as an
    empty namespace package.
    """
    site = _copy_package(tmp_path, block_in_tree=False)
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}
    out = _run(site, env)
    assert out["ok"] and out["uncached"] == [] and out["warnings"] == []
    assert Path(out["cache_dir"]).resolve().is_relative_to((tmp_path / "xdg" / "shapekit" / "numba").resolve())
    assert not [p for p in site.rglob("*") if p.suffix in (".nbi", ".nbc")]
    assert not list(site.rglob("__pycache__"))


def test_cache_that_turns_unwritable_only_costs_the_cache():
    class FakeCache:
        def save_overload(self, sig, data):
            raise PermissionError(13, "read-only file system")

    class FakeDispatcher:
        _cache = FakeCache()

        def py_func(self):
            pass

    disp = FakeDispatcher()
    _numba._guard_saves(disp)
    with pytest.warns(_numba.NumbaCacheWarning, match="could not save"):
        disp._cache.save_overload(("float64",), object())


def test_njit_wrapper_forms():
    @_numba.njit
    def plain(x):
        return x + 1

    @_numba.njit(parallel=False, cache=False)
    def configured(x):
        return x * 2

    @_numba.njit("float64(float64)")
    def typed(x):
        return x - 1

    assert plain(1) == 2 and configured(2) == 4 and typed(3.0) == 2.0


def test_parallel_and_serial_variants_are_separate_cached_functions():
    pairs = [
        (heatmaps_mod._render_parallel, heatmaps_mod._render_serial),
        (heatmaps_mod._decode_parallel, heatmaps_mod._decode_serial),
        (graph_mod._pdist_parallel, graph_mod._pdist_serial),
        (graph_mod._cgd_parallel, graph_mod._cgd_serial),
    ]
    for par, ser in pairs:
        assert par.targetoptions.get("parallel") and not ser.targetoptions.get("parallel")
        assert par.py_func is not ser.py_func
        for kernel in (par, ser):  # cached, in the user cache, never beside the sources
            where = _numba.cache_dir(kernel)
            assert where is not None and not Path(where).resolve().is_relative_to(PACKAGE)


def test_thread_count_follows_numba_settings(monkeypatch):
    pts = np.random.default_rng(0).uniform(3, 28, (16, 8, 2))
    expected = render_heatmaps(pts, 32, 1.0, parallel=False)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert _common.n_chunks(1000) == 8
        assert not _common.use_parallel("auto", 10**6, 10**9)  # one thread: no pool
        np.testing.assert_array_equal(render_heatmaps(pts, 32, 1.0, parallel=True), expected)
    finally:
        numba.set_num_threads(before)
    assert _common.n_chunks(1000) == min(1000, 8 * before)
    assert not _common.use_parallel("auto", 4, 10**9)  # too few items
    assert not _common.use_parallel("auto", 1000, 1000)  # too little work
    assert _common.use_parallel(True, 1, 1) and not _common.use_parallel(False, 10**6, 10**9)
    if before > 1:
        monkeypatch.setattr(_common, "_machine_busy", lambda: False)
        assert _common.use_parallel("auto", 1000, 10**8)
        monkeypatch.setattr(_common, "_machine_busy", lambda: True)
        assert not _common.use_parallel("auto", 1000, 10**8)  # saturated machine: serial
        assert _common.use_parallel(True, 1000, 10**8)  # unless asked explicitly


def test_machine_busy_reads_the_load_average(monkeypatch):
    monkeypatch.setattr(_common, "_load", {"t": -1e9, "busy": False})
    monkeypatch.setattr(os, "getloadavg", lambda: (1e6, 0.0, 0.0))
    assert _common._machine_busy()
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert _common._machine_busy()  # cached for a second
    _common._load["t"] = -1e9
    assert not _common._machine_busy()


class _KernelDataset(torch.utils.data.Dataset):
    def __init__(self, shapes):
        self.shapes = shapes

    def __len__(self):
        return len(self.shapes)

    def __getitem__(self, i):
        pts = self.shapes[i]
        # explicitly parallel too: in a child of a process that started numba's
        # OpenMP pool this would abort without shapekit's fork guard
        hm = render_heatmaps(pts, 32, 1.5, parallel=True)
        hm_auto = render_heatmaps(pts, 32, 1.5)
        coords, conf = decode_heatmaps(hm, parallel=True)
        return {
            "heatmaps": torch.from_numpy(hm),
            "same": bool(np.array_equal(hm, hm_auto)),
            "decoded": torch.from_numpy(coords),
            "dsnt": torch.from_numpy(dsnt(hm, parallel=True)),
            "pdist": torch.from_numpy(pairwise_distances(pts, parallel=True)),
            "cgd": graph_distance(pts, pts * 1.1, parallel=True).mean,
        }


def test_kernels_are_safe_in_dataloader_workers():
    rng = np.random.default_rng(5)
    shapes = rng.uniform(5, 26, (8, 68, 2))
    # start the parallel pool in the parent first: the dangerous order for a fork
    render_heatmaps(rng.uniform(5, 26, (64, 68, 2)), 32, 1.5, parallel=True)
    ctx = torch.multiprocessing.get_context("fork")
    loader = torch.utils.data.DataLoader(
        _KernelDataset(shapes), batch_size=2, num_workers=2, multiprocessing_context=ctx, timeout=300
    )
    batches = list(loader)
    assert len(batches) == 4
    hm = torch.cat([b["heatmaps"] for b in batches]).numpy()
    np.testing.assert_array_equal(hm, render_heatmaps(shapes, 32, 1.5, parallel=False))
    assert all(b["same"].all() for b in batches)
    decoded = torch.cat([b["decoded"] for b in batches]).numpy()
    np.testing.assert_allclose(decoded, shapes, atol=1e-3)
    np.testing.assert_allclose(torch.cat([b["dsnt"] for b in batches]).numpy(), dsnt(hm))
    np.testing.assert_allclose(torch.cat([b["pdist"] for b in batches]).numpy(), pairwise_distances(shapes))


def test_fork_guard_after_parallel_use():
    render_heatmaps(np.zeros((64, 68, 2)) + 5, 16, 1.0, parallel=True)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must survive a parallel kernel call and report the guard state
        try:
            os.close(r)
            hm = render_heatmaps(np.full((40, 3, 2), 5.0), 16, 1.0, parallel=True)
            msg = json.dumps({"ok": bool(hm.max() == 1.0), "guard": _common._state["fork_unsafe"]})
            os.write(w, msg.encode())
        finally:
            os._exit(0)
    os.close(w)
    data = os.read(r, 1000)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    got = json.loads(data)
    assert got["ok"]
    assert got["guard"] == (not _common._layer_is_fork_safe())
