"""benchmarks/bench_gpu.py --smoke: the GPU run's whole path (install skipped), in seconds on the CPU."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_smoke_run_writes_figures_and_one_json_line(tmp_path, capsys):
    bench = _bench()
    extra = tmp_path / "extra"
    bench.smoke_cache(extra)  # a second small set to score with --eval
    out = tmp_path / "out"
    assert bench.main(["--smoke", "--no-install", "--json", "--out", str(out), "--eval", str(extra / "cache")]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("device", "minutes", "images_per_s", "val_nme", "epochs", "batched_vs_pillow"):
        assert key in last, key
    assert set(last["val_nme"]) == {"tough", "tolerant", "plain", "student"}
    assert all(v == v and v > 0 for v in last["val_nme"].values())
    assert set(last["eval"][str(extra / "cache")]) == set(last["val_nme"])
    assert json.loads((out / "bench_gpu.json").read_text())["val_nme"] == last["val_nme"]
    for name in ("val_nme.png", "curves_student.png", "student/best.pt"):
        assert (out / name).is_file(), name


def test_missing_cache_is_a_clear_error(tmp_path, capsys):
    assert _bench().main(["--no-install", "--cache", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "no prepared cache" in capsys.readouterr().err
