"""Evaluation figures, mapping to original coordinates, and the evaluate/predict/export commands."""

import json

import numpy as np
import pytest
import torch

from shapekit.errors import ShapekitError
from shapekit.train import TrainConfig, fit_role, load_model
from shapekit.train.evaluate import compute_metrics, evaluate
from test_train_fixtures import BlobDataset


def _face_shapes(n=20, seed=0):
    from shapekit.data.synth import sample_shapes

    return sample_shapes(n, seed=seed, size=256)


def test_compute_metrics_by_hand():
    gt = _face_shapes()
    iod = np.linalg.norm(gt[:, 36] - gt[:, 45], axis=-1)
    pred = gt + np.array([3.0, 4.0])  # 5 px on every point
    m, e = compute_metrics(pred, gt)
    assert np.allclose(e, 5.0 / iod)
    assert m["nme"] == pytest.approx(np.mean(5.0 / iod))
    assert m["norm"] == "inter-ocular" and m["n_images"] == 20 and m["n_points"] == 68
    assert m["mae_px"] == pytest.approx(3.5) and m["mse_px"] == pytest.approx(12.5)
    ipd = np.linalg.norm(gt[:, 36:42].mean(1) - gt[:, 42:48].mean(1), axis=-1)
    assert m["nme_inter_pupil"] == pytest.approx(np.mean(5.0 / ipd))
    assert m["fr_0.10"] == pytest.approx(np.mean(5.0 / iod > 0.10))
    assert len(m["per_landmark"]) == 68 and np.allclose(m["per_landmark"], np.mean(5.0 / iod))
    for key in ("nme", "fr_0.08", "fr_0.10", "auc_0.08", "auc_0.10", "nme_box", "n_images"):
        assert key in m
    # a perfect prediction
    m0, _ = compute_metrics(gt, gt)
    assert m0["nme"] == 0 and m0["auc_0.08"] > 0.99 and m0["fr_0.08"] == 0


def test_compute_metrics_missing_points_and_mask():
    gt = _face_shapes(4)
    pred = gt.copy()
    pred[:, 60] += 100.0
    mask = np.ones(gt.shape[:2], bool)
    mask[:, 60] = False
    m, _ = compute_metrics(pred, gt, mask=mask)
    assert m["nme"] == 0 and m["mae_px"] == 0
    gt_nan = gt.copy()
    gt_nan[:, 60] = np.nan
    assert compute_metrics(pred, gt_nan)[0]["nme"] == 0


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train, val = BlobDataset(16, seed=0), BlobDataset(8, seed=1)
    cfg = TrainConfig(model="simple_cnn", model_kwargs={"channels": (4, 8)}, epochs=1, batch_size=8, norm="box",
                      progress=False)
    fit_role("plain", train, val, cfg, out=out)
    return out, val


def test_evaluate_maps_back_to_original_coordinates(tiny_run):
    out, val = tiny_run
    model, _ = load_model(out / "best.pt")
    ev = evaluate(out / "best.pt", val, device="cpu", schema=None, norm="box")
    assert np.allclose(ev.gt, val.original_shapes(), atol=1e-4, equal_nan=True)
    with torch.no_grad():
        u = model(torch.stack([val[i]["image"] for i in range(len(val))])).double().numpy()
    crop = ((u + 1) * 16 - 1) / 2  # normalised -> crop pixels (16 px crops)
    assert np.allclose(ev.pred, crop * 2 + np.array([10.0, -5.0]), atol=1e-4)
    # NME is the same whichever frame (similarity), so it matches the crop-frame figure
    from shapekit import metrics

    g = val.pts.astype(float)
    assert ev.metrics["nme"] == pytest.approx(metrics.nme(crop, g, norm="box").mean(), rel=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_evaluate_predict_export_commands(tmp_path, capsys):
    from shapekit.data.synth import write_dataset
    from shapekit_cli.main import main

    faces = tmp_path / "faces"
    write_dataset(faces, 2, seed=0, size=64)
    # a 68-point model trained for one step on the synthetic faces, through the CLI
    assert main(["train", "--data", str(faces), "--out", str(tmp_path / "run"), "--model", "simple_cnn",
                 "--input-size", "32", "--epochs", "1", "--batch-size", "2", "--val-fraction", "0.5",
                 "--no-augment", "--json"]) == 0
    capsys.readouterr()
    ckpt = tmp_path / "run" / "best.pt"
    assert main(["evaluate", str(ckpt), str(faces), "--json", "--plot", str(tmp_path / "ced.png")]) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"nme", "fr_0.08", "fr_0.10", "auc_0.08", "n_images"} <= set(m) and m["n_images"] == 2
    assert (tmp_path / "ced.png").stat().st_size > 1000
    img = sorted(faces.glob("*.png"))[0]
    assert main(["predict", str(ckpt), str(img), "--box", "10,10,50,50", "--json", "--out",
                 str(tmp_path / "pred")]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    face = res[str(img)][0]
    assert len(face["points"]) == 68 and face["source"] == "box"
    assert (tmp_path / "pred" / f"{img.stem}.png").is_file()
    assert (tmp_path / "pred" / "predictions.json").is_file()
    assert main(["export", str(ckpt), str(tmp_path / "m.ts")]) == 0
    ts = torch.jit.load(str(tmp_path / "m.ts"))
    model, _ = load_model(ckpt)
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(ts(x), model(x), atol=1e-5)
    assert main(["evaluate", str(tmp_path / "missing.pt"), str(faces)]) == 2


def test_predictor_box_crop_matches_dataset_crop(tiny_run):
    """A box equal to the landmark box crops the face exactly as the training dataset does."""
    from shapekit.data.crops import landmark_box
    from shapekit.data.synth import render_face
    from shapekit.train.predict import Predictor

    image, points = render_face(3, size=96)
    out, _ = tiny_run
    pred = Predictor(out / "best.pt", crop_scale=1.3)
    box = landmark_box(points[None])[0]
    faces = pred.predict(image, boxes=[box])
    assert faces[0].points.shape == (5, 2) or faces[0].points.shape[0] == 5
    cx, cy, side = faces[0].square
    assert cx == pytest.approx((box[0] + box[2]) / 2) and side == pytest.approx(max(box[2] - box[0], box[3] - box[1]))


def test_onnx_export_optional(tiny_run, tmp_path):
    from shapekit.train.predict import export_onnx

    model, _ = load_model(tiny_run[0] / "best.pt")
    try:
        import onnx  # noqa: F401
    except ImportError:
        with pytest.raises(ShapekitError, match="onnx"):
            export_onnx(model, tmp_path / "m.onnx")
        pytest.skip("onnx is not installed: the export error message was checked instead")
    export_onnx(model, tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").stat().st_size > 1000


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_train_tolerant_fits_its_shape_model_on_the_training_split(tmp_path, capsys):
    from shapekit.data.synth import write_dataset
    from shapekit.shape import PointDistributionModel
    from shapekit.train.data import load_training_data, training_shapes
    from shapekit_cli.main import main

    faces = tmp_path / "faces"
    write_dataset(faces, 8, seed=1, size=64)
    train_ds, val_ds = load_training_data(faces, size=32, val_fraction=0.25, seed=0, augment=False)
    shapes = training_shapes(train_ds)
    # the shapes come from the datasets' arrays (image frame), in the same order as the
    # items (crop frame): equal up to the crop's scale and shift
    assert shapes.shape == (len(train_ds), 68, 2)

    def normalised(s):
        s = np.asarray(s, dtype=float)
        s = s - s.mean(axis=0)
        return s / np.linalg.norm(s)

    for i in range(len(train_ds)):
        assert np.allclose(normalised(shapes[i]), normalised(train_ds[i]["shape"]), atol=1e-4)
    assert main(["train", "--role", "tolerant", "--data", str(faces), "--out", str(tmp_path / "tol"),
                 "--model", "simple_cnn", "--input-size", "32", "--epochs", "1", "--batch-size", "2",
                 "--val-fraction", "0.25", "--no-augment", "--json"]) == 0
    assert "training shapes" in capsys.readouterr().err
    pdm = PointDistributionModel.load(tmp_path / "tol" / "soft_model.npz")
    assert pdm.n_shapes_ == len(train_ds) < len(train_ds) + len(val_ds)
    assert (tmp_path / "tol" / "best.pt").is_file()
