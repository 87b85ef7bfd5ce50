"""Face detector: window grouping, NMS, the learned box correction, real faces, CLI."""

import json
import pickle

import numpy as np
import pytest

from shapekit.data import crops
from shapekit.data.detect import (BoxCorrection, FaceDetector, box_iou, evaluate_detections, fit_correction,
                                  group_windows, match_detection, non_max_suppression)
from shapekit.errors import FormatError, ShapekitError

#: search angles of the acceptance run (upright plus +-25 degrees for rolled faces)
DETECT_ANGLES = (0.0, -25.0, 25.0)


def test_box_iou_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(box_iou(a, b)[0], [1.0, 50 / 150, 0.0])


def test_grouping_scores_by_window_count_and_nms_drops_nested():
    face = [[10, 10, 50, 50], [12, 11, 52, 51], [9, 12, 49, 52]]
    lone = [[100, 100, 124, 124]]
    g = group_windows(face + lone, merge_iou=0.4, min_neighbours=1)
    assert g.shape == (2, 5) and g[0, 4] == 3 and g[1, 4] == 1
    np.testing.assert_allclose(g[0, :4], np.mean(face, axis=0))
    assert len(group_windows(face + lone, min_neighbours=2)) == 1
    kept = non_max_suppression(np.array([[0, 0, 100, 100, 5], [20, 20, 50, 50, 2], [200, 0, 260, 60, 1]]))
    np.testing.assert_allclose(kept[:, 4], [5, 1])  # the nested box went, the separate one stayed


def test_correction_recovers_a_known_offset_and_scale_robustly(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    c = rng.uniform(100, 300, (n, 2))
    side = rng.uniform(60, 200, n)
    det = np.column_stack([c - side[:, None] / 2, c + side[:, None] / 2])
    true_c = c + np.array([0.02, 0.15]) * side[:, None] + rng.normal(0, 1, (n, 2))
    true_s = side * 0.88 * np.exp(rng.normal(0, 0.02, n))
    sq = np.column_stack([true_c, true_s])
    sq[:15] = [[0, 0, 500]] * 15  # wrong matches do not move a median fit
    corr = BoxCorrection.fit(det, sq)
    np.testing.assert_allclose(corr.offset_, [0.02, 0.15], atol=0.01)
    np.testing.assert_allclose(np.exp(corr.log_scale_), 0.88, rtol=0.01)
    out = corr.apply(np.column_stack([det, np.ones(n)]))
    assert np.median(np.abs(out[15:, :2] - true_c[15:])) < 2.0
    corr.save(tmp_path / "c.json")
    back = BoxCorrection.load(tmp_path / "c.json")
    assert back == corr
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(FormatError, match="box correction"):
        BoxCorrection.load(tmp_path / "bad.json")
    with pytest.raises(ShapekitError, match="at least 3"):
        BoxCorrection.fit(det[:2], sq[:2])


def test_match_and_evaluate_against_landmark_squares():
    shapes = np.array([[[100.0, 100], [200, 100], [150, 220]]])  # box 100 x 120 -> square side 120
    sq = crops.square_from_box(crops.landmark_box(shapes))[0]
    good = np.array([[95, 105, 215, 225, 4.0], [0, 0, 30, 30, 9.0]])
    assert match_detection(good, sq) == 0  # the high-score box is elsewhere: not this face
    ev = evaluate_detections([good], shapes)  # the best-scored box must be first (detect sorts them)
    assert ev["found"] == 1 and ev["found_rate"] == 1.0
    ev = evaluate_detections([good[::-1]], shapes)
    assert ev["found"] == 0 and ev["any_found_rate"] == 1.0
    assert evaluate_detections([np.zeros((0, 5))], shapes)["no_detection"] == 1


def test_detector_finds_the_astronaut_and_pickles():
    from skimage import data

    det = pickle.loads(pickle.dumps(FaceDetector(max_side=256, angles=(0.0,))))
    boxes = det.detect(data.astronaut())
    assert boxes.shape[1] == 5 and len(boxes) >= 1
    # Eileen Collins' face: roughly x 170-280, y 60-170 in the 512 x 512 image
    assert box_iou(boxes[:1, :4], [[170, 60, 280, 170]])[0, 0] > 0.5


def test_learned_correction_finds_real_faces(shared_data):
    from shapekit.io import read

    ann = read(shared_data("lfpw68/train"))
    rng = np.random.default_rng(0)
    idx = rng.choice(len(ann), 20, replace=False)
    fit_i, test_i = idx[:12], idx[12:]
    det = FaceDetector(max_side=192, scale_factor=1.2, angles=(0.0,))  # upright only: quick
    images = [ann.meta[i]["image"] for i in idx]
    dets = [det.detect(im) for im in images]
    corr = fit_correction(det, None, ann.shapes[fit_i], detections=dets[:12])
    before = evaluate_detections(dets[12:], ann.shapes[test_i], None)
    after = evaluate_detections(dets[12:], ann.shapes[test_i], corr)
    assert after["found_rate"] >= 0.75
    assert after["mean_iou"] > before["mean_iou"]
    # face_square gives the corrected landmark square of the best face
    det.correction = corr
    sq = det.face_square(images[12])
    truth = crops.square_from_box(crops.landmark_box(ann.shapes[test_i[0]]))
    assert box_iou(crops.box_from_square(sq)[None], crops.box_from_square(truth)[None])[0, 0] > 0.5


def test_cli_detect_json_and_fit(tmp_path, capsys):
    from PIL import Image
    from skimage import data

    from shapekit_cli.main import main

    Image.fromarray(data.astronaut()).save(tmp_path / "a.png")
    assert main(["detect", str(tmp_path / "a.png"), "--json", "--max-side", "256", "--angles", "0"]) == 0
    boxes = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert isinstance(boxes, list) and len(boxes) == 1 and len(boxes[0][0]) == 5
    assert main(["detect"]) == 2
    assert "image files" in capsys.readouterr().err


@pytest.mark.slow
def test_detector_acceptance_on_every_68_point_crop(shared_data):
    """Issue 4 acceptance: with the learned correction the face is found in >= 90 % of the 68-point crops.

    The correction is learned on a grouped half (photos never shared) and the rate is
    measured on the other half; found = IoU >= 0.5 between the corrected box of the
    best-scored detection and the square landmark box.
    """
    from shapekit.data.datasets import group_key, split_indices
    from shapekit.data.detect import detect_all
    from shapekit.io import read

    images, shapes, keys = [], [], []
    for name in ("lfpw68/train", "helen68/train", "afw68/train"):
        ann = read(shared_data(name))
        images += [m["image"] for m in ann.meta]
        shapes.append(ann.shapes)
        keys += [f"{name}:{group_key(m['name'])}" for m in ann.meta]
    shapes = np.concatenate(shapes)
    det = FaceDetector(max_side=192, angles=DETECT_ANGLES)
    dets = detect_all(det, images)
    train, val = split_indices(keys, 0.5, seed=0, group=keys)
    corr = fit_correction(det, None, shapes[train], detections=[dets[i] for i in train])
    held = evaluate_detections([dets[i] for i in val], shapes[val], corr)
    assert held["found_rate"] >= 0.90, held


@pytest.mark.parametrize("angle", [30.0, -30.0])
def test_extra_search_angles_find_a_rolled_face(angle):
    from PIL import Image
    from skimage import data

    rolled = np.asarray(Image.fromarray(data.astronaut()).rotate(angle, resample=Image.Resampling.BILINEAR))
    # where the face centre (about (225, 115) upright) goes: Pillow turns counter-clockwise on screen
    t = np.deg2rad(angle)
    c = np.array([225.0, 115.0]) - 256
    centre = np.array([np.cos(t) * c[0] + np.sin(t) * c[1], -np.sin(t) * c[0] + np.cos(t) * c[1]]) + 256
    upright = FaceDetector(max_side=256, angles=(0.0,)).detect(rolled)
    turned = FaceDetector(max_side=256, angles=(0.0, -25.0, 25.0)).detect(rolled)
    best = 0.5 * (turned[0, :2] + turned[0, 2:4])
    assert np.hypot(*(best - centre)) < 15
    assert turned[0, 4] > (upright[0, 4] if len(upright) else 0) * 2
