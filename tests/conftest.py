"""Shared fixtures: the real data in ../shared/data, the --slow switch, and a per-test time limit."""

from __future__ import annotations

import faulthandler
import os
import sys
from pathlib import Path

import pytest

try:  # CI runs the same examples every time; local runs keep exploring new ones
    from hypothesis import settings as _hsettings

    _hsettings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI"):
        _hsettings.load_profile("ci")
except ImportError:  # hypothesis is a test extra
    pass

REPO = Path(__file__).resolve().parents[1]


def shared_data_root():
    """Return the shared data folder: $SHAPEKIT_DATA, else ../shared/data beside the repo."""
    env = os.environ.get("SHAPEKIT_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False, help="also run the long end-to-end tests")


#: Seconds one test may run before the run stops with every thread's traceback: a hang
#: fails at once and says where, instead of holding CI until its own limit. No limit with
#: --slow; SHAPEKIT_TEST_TIMEOUT sets it (0: none).
TEST_TIMEOUT_S = 900
_watchdog = {}


def pytest_configure(config):
    env = os.environ.get("SHAPEKIT_TEST_TIMEOUT")
    limit = float(env) if env else (0 if config.getoption("--slow") else TEST_TIMEOUT_S)
    if limit > 0:
        # a copy of stderr taken before any test runs: output capture does not swallow the traceback
        _watchdog["file"] = open(os.dup(sys.stderr.fileno()), "w")
        _watchdog["limit"] = limit


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if not _watchdog:
        yield
        return
    faulthandler.dump_traceback_later(_watchdog["limit"], exit=True, file=_watchdog["file"])
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def pytest_collection_modifyitems(config, items):
    import torch

    skip_slow = pytest.mark.skip(reason="long end-to-end run: pass --slow (a short version runs by default)")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    has_cuda = torch.cuda.is_available()
    for item in items:
        if "slow" in item.keywords and not config.getoption("--slow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def shared_data():
    """Return a function ``name -> Path`` of a folder in the shared data; skip when absent."""

    root = shared_data_root()

    def get(name):
        path = root / name
        if not path.exists():
            pytest.skip(f"real data not found: {path} (set SHAPEKIT_DATA to the shared data folder)")
        return path

    return get
