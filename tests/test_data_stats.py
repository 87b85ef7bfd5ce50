"""Dataset statistics and their plots, and the stats command."""

import json

import numpy as np
import pytest

from shapekit.data.stats import dataset_stats, format_stats, head_roll, plot_stats


def test_head_roll_sign_and_value():
    s = np.zeros((2, 5, 2))
    s[0, 0], s[0, 1] = [10, 10], [20, 10]
    s[1, 0], s[1, 1] = [10, 10], [20, 20]  # the image-right eye is lower: clockwise on screen
    np.testing.assert_allclose(head_roll(s, "mtfl5"), [0.0, 45.0])


def test_stats_on_arrays_with_missing_points_and_plots(tmp_path):
    from shapekit.io import Annotations

    rng = np.random.default_rng(0)
    from shapekit.data.synth import sample_shapes

    shapes = sample_shapes(12, seed=1, size=200)
    shapes[3, 17] = np.nan
    shapes[5, 17] = np.nan
    shapes[5, 40] = np.nan
    images = (rng.random((12, 200, 200)) * 255).astype(np.uint8)
    ann = Annotations(shapes, [{"name": f"s{i}", "image": None} for i in range(12)], format="npy", schema="ibug68",
                      images=images)
    st = dataset_stats(ann, values=True)
    assert st["n_samples"] == 12 and st["n_points"] == 68 and st["schema"] == "ibug68"
    assert st["missing_per_point"][17] == 2 and st["missing_per_point"][40] == 1 and st["samples_with_missing"] == 2
    iod = np.linalg.norm(shapes[:, 36] - shapes[:, 45], axis=1)
    assert st["normalizing_distance"]["p50"] == pytest.approx(np.median(iod))
    assert st["image_size"]["most_common"][0] == {"height": 200, "width": 200, "count": 12}
    text = format_stats(st)
    assert "#17 (2)" in text and "inter-ocular" in text
    grid, dist = plot_stats(st, tmp_path / "plots", n_samples=4)
    assert grid.stat().st_size > 5000 and dist.stat().st_size > 5000


def test_stats_real_afw_and_cli(shared_data, tmp_path, capsys):
    from shapekit_cli.main import main

    src = shared_data("afw68/train")
    assert main(["stats", str(src), "--json", "--plot", str(tmp_path / "p"), "--samples", "4"]) == 0
    st = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert st["n_samples"] == 337 and st["n_images"] == 337
    assert st["image_size"]["most_common"][0]["width"] == 384
    # the crops were made with the landmark box about 192 px on its longer side
    assert abs(st["face_size"]["p50"] - 192) < 1.5
    assert (tmp_path / "p" / "samples.png").exists() and (tmp_path / "p" / "distributions.png").exists()
    assert main(["stats", str(src)]) == 0
    assert "roll" in capsys.readouterr().out


def test_stats_marks_generated_faces_as_synthetic(tmp_path):
    from shapekit.data.stats import dataset_stats
    from shapekit.data.synth import write_dataset

    write_dataset(tmp_path / "faces", 3, seed=0, size=64)
    assert dataset_stats(tmp_path / "faces")["synthetic"] is True
    # the same annotations copied elsewhere, without the manifest, are not claimed as synthetic
    plain = tmp_path / "copy"
    plain.mkdir()
    for f in (tmp_path / "faces").glob("*.pts"):
        (plain / f.name).write_text(f.read_text())
    assert dataset_stats(plain, read_sizes=False)["synthetic"] is False
