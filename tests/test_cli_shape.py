"""shapekit fit / soften / info, run through the CLI entry point on real data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shapekit.shape import PointDistributionModel, soft_landmarks
from shapekit_cli.main import main


@pytest.fixture(scope="module")
def fitted(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit")
    model, plot = out / "lfpw.npz", out / "modes.png"
    code = main(["fit", str(shared_data("lfpw68/train")), "-o", str(model), "--variance", "0.97",
                 "--plot", str(plot)])
    assert code == 0
    return model, plot


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_fit_writes_model_and_plot(fitted, shared_data):
    from shapekit.io import read

    model, plot = fitted
    pdm = PointDistributionModel.load(model)
    assert pdm.schema_ == "ibug68" and pdm.n_shapes_ == 805
    assert pdm.explained_variance_ratio_.sum() >= 0.97
    direct = PointDistributionModel(n_components=0.97).fit(read(shared_data("lfpw68/train")).shapes)
    np.testing.assert_allclose(pdm.explained_variance_, direct.explained_variance_, rtol=1e-9)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_fit_modes_json_and_glob(shared_data, tmp_path, capsys):
    src = str(shared_data("afw68/train")) + "/*.pts"
    assert main(["fit", src, "-o", str(tmp_path / "m.npz"), "--modes", "6", "--json"]) == 0
    s = last_json(capsys)
    assert s["n_components"] == 6 and s["n_shapes"] == 337 and s["format"] == "pts"
    assert len(s["explained_variance_ratio"]) == 6


def test_fit_glob_of_folders(shared_data, tmp_path, capsys):
    root = shared_data("afw68").parent
    assert main(["fit", str(root / "a*68" / "train"), "-o", str(tmp_path / "m.npz"), "--modes", "4", "--json"]) == 0
    assert last_json(capsys)["n_shapes"] == 337


def test_fit_variance_and_modes_are_exclusive(shared_data, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", str(shared_data("afw68/train")), "-o", str(tmp_path / "m.npz"), "--variance", "0.9",
              "--modes", "3"])


def test_fit_muct_with_missing_points(shared_data, tmp_path, capsys):
    code = main(["fit", str(shared_data("muct/muct76-opencv.csv")), "-o", str(tmp_path / "muct.npz"),
                 "--format", "muct", "--modes", "12", "--json"])
    assert code == 0
    s = last_json(capsys)
    assert s["missing_points"] == 5088 and s["em_iterations"] > 0 and s["n_points"] == 68


def test_info_json(fitted, capsys):
    model, _ = fitted
    assert main(["info", str(model), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    pdm = PointDistributionModel.load(model)
    assert s["n_points"] == 68 and s["n_components"] == pdm.n_components_
    assert s["explained_variance_ratio"] == pytest.approx(list(pdm.explained_variance_ratio_))
    assert s["schema"] == "ibug68" and s["version"] == 1 and s["n_shapes"] == 805
    assert main(["info", str(model)]) == 0
    assert "mode  1" in capsys.readouterr().out


def test_soften_writes_same_format_and_names(fitted, shared_data, tmp_path, capsys):
    from shapekit.io import read

    model, _ = fitted
    src = shared_data("afw68/train")
    out = tmp_path / "soft"
    assert main(["soften", str(src), "-m", str(model), "-o", str(out), "--variance", "0.9", "--k", "3",
                 "--json"]) == 0
    text = capsys.readouterr().out
    s = json.loads(text.strip().splitlines()[-1])
    assert "NME (inter-ocular)" in text
    names = sorted(p.name for p in src.glob("*.pts"))
    assert sorted(p.name for p in out.glob("*.pts")) == names
    hard = read(src)
    soft = read(out)
    assert [m["name"] for m in soft.meta] == [m["name"] for m in hard.meta]
    expected = soft_landmarks(hard.shapes, PointDistributionModel.load(model), variance=0.9, k=3.0)
    np.testing.assert_allclose(soft.shapes, expected, atol=2e-3)  # written with 3+ decimals
    disp = np.nanmean(np.linalg.norm(expected - hard.shapes, axis=-1) /
                      np.linalg.norm(hard.shapes[:, 36] - hard.shapes[:, 45], axis=-1)[:, None], axis=1).mean()
    assert s["mean_displacement_nme"] == pytest.approx(disp, rel=1e-6)
    assert s["n_files"] == 337


def test_soften_unaligned_needs_unaligned_model(fitted, shared_data, tmp_path, capsys):
    model, _ = fitted
    src = str(shared_data("afw68/train"))
    assert main(["soften", src, "-m", str(model), "-o", str(tmp_path / "x"), "--unaligned"]) == 2
    assert "align=False" in capsys.readouterr().err
    um = tmp_path / "u.npz"
    assert main(["fit", str(shared_data("lfpw68/train")), "-o", str(um), "--unaligned", "--variance", "0.97"]) == 0
    assert main(["soften", src, "-m", str(um), "-o", str(tmp_path / "u"), "--unaligned", "--json"]) == 0
    s = last_json(capsys)
    assert s["aligned"] is False and s["n_files"] == 337


def test_clean_errors(tmp_path, capsys, shared_data):
    assert main(["info", str(tmp_path / "absent.npz")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_text("nope")
    assert main(["info", str(tmp_path / "bad.npz")]) == 2
    assert "bad.npz" in capsys.readouterr().err
    for cmd in ("fit", "soften", "info"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0


def test_unaligned_in_frame_units(shared_data, tmp_path, capsys):
    src = str(shared_data("afw68/train"))
    model = tmp_path / "uf.npz"
    assert main(["fit", src, "-o", str(model), "--unaligned", "--frame-units", "--variance", "0.97"]) == 0
    assert PointDistributionModel.load(model).frame_units_
    capsys.readouterr()
    assert main(["soften", src, "-m", str(model), "-o", str(tmp_path / "s"), "--unaligned", "--json"]) == 0
    s = last_json(capsys)
    assert s["n_files"] == 337 and 0 < s["mean_displacement_nme"] < 0.2
    assert main(["fit", src, "-o", str(model), "--frame-units"]) == 2
    assert "--unaligned" in capsys.readouterr().err
