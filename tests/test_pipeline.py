"""The main job, end to end: a tiny run always, the README's default run with --slow."""

import json

import pytest

from shapekit.pipeline import DemoConfig, run_demo
from shapekit_cli.main import main


def _check_outputs(out, summary, trained=True):
    report = (out / "report.md").read_text()
    assert "SYNTHETIC" in report
    for name in summary["files"]:
        assert (out / name).exists(), name
    assert (out / "shape_model.npz").exists()
    assert json.loads((out / "summary.json").read_text())["synthetic"] is True
    sm = summary["shape_model"]
    assert 1 <= sm["modes_for_variance"] <= sm["n_modes"]
    assert 0 < summary["soft"]["mean_displacement_nme"] < 0.2
    if trained:
        assert set(summary["models"]) == {"tough", "tolerant", "plain", "student"}
        for row in summary["models"].values():
            assert 0 < row["nme"] < 5


def test_demo_tiny(tmp_path):
    cfg = DemoConfig.quick(n_train=16, n_val=4, image_size=64, input_size=32, asm=False)
    summary = run_demo(tmp_path / "demo", cfg, verbose=False)
    _check_outputs(tmp_path / "demo", summary)


def test_demo_cli_shapes_only(tmp_path, capsys):
    code = main(["demo", "--quick", "--no-train", "--out", str(tmp_path / "d"), "--n-train", "24",
                 "--n-val", "8", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    _check_outputs(tmp_path / "d", summary, trained=False)
    assert summary["asm"]["nme"] < 0.5


@pytest.mark.slow
def test_demo_default(tmp_path):
    summary = run_demo(tmp_path / "demo", DemoConfig(), verbose=False)
    _check_outputs(tmp_path / "demo", summary)
    assert summary["models"]["student"]["nme"] < 0.15
