import subprocess
import sys

import numpy as np
import pytest

import shapekit
from shapekit import metrics, schemas
from shapekit._files import atomic_open, atomic_path
from shapekit.errors import FormatError, ShapekitError


def test_version_and_cli_help():
    out = subprocess.run([sys.executable, "-m", "shapekit_cli.main", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and shapekit.__version__ in out.stdout


def test_every_subcommand_has_help():
    from shapekit_cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert sub.choices, "no subcommands registered"
    for name, p in sub.choices.items():
        assert p.format_help().strip(), name


def test_format_error_names_file_and_line():
    err = FormatError("a/b.pts", "expected two numbers", line=7)
    assert "a/b.pts:7" in str(err) and isinstance(err, ShapekitError)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write("new")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_ibug68_flip_is_consistent():
    s = schemas.get("ibug68")
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 100, (3, 68, 2))
    twice = s.flip_shapes(s.flip_shapes(pts, 100), 100)
    np.testing.assert_allclose(twice, pts)
    # outer eye corners swap
    assert s.flip[36] == 45 and s.flip[0] == 16 and s.flip[30] == 30


def test_nme_and_curves():
    gt = np.zeros((2, 68, 2))
    gt[:, 45, 0] = 100.0  # inter-ocular distance 100
    pred = gt.copy()
    pred[0, :, 0] += 5.0  # every point off by 5 px -> NME 0.05
    pred[1, :, 1] += 12.0  # 0.12
    e = metrics.nme(pred, gt)
    np.testing.assert_allclose(e, [0.05, 0.12])
    assert metrics.failure_rate(e, 0.08) == 0.5
    # one image at 0.05: the CED is 0.5 from 0.05 on -> AUC_0.08 = 0.5 * (0.03 / 0.08)
    assert abs(metrics.auc(e, 0.08) - 0.5 * 0.03 / 0.08) < 1e-3
    with pytest.raises(ShapekitError):
        metrics.nme(pred[:, :5], gt)


def test_atomic_write_has_normal_permissions(tmp_path):
    import os

    target = tmp_path / "perm.txt"
    with atomic_open(target) as fh:
        fh.write("x")
    mask = os.umask(0)
    os.umask(mask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~mask)
