"""Landmarks for new images: detect faces, crop as in training, predict, map back, optional shape prior."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from shapekit._files import atomic_path
from shapekit.data import crops as _crops
from shapekit.data.detect import FivePointFraming, make_detector
from shapekit.data.images import load_image, to_tensor
from shapekit.errors import ShapekitError
from shapekit.nn.functional import normalized_to_pixel
from shapekit.shape import PointDistributionModel
from shapekit.train.checkpoint import load_model
from shapekit.train.loop import predict_normalized
from shapekit.viz import pyplot, save_figure
from shapekit.viz.landmarks import draw_landmarks, show_image


@dataclass
class FacePrediction:
    """One face: ``points`` ``(L, 2)`` in original-image pixels, the crop square and how it was found."""

    points: np.ndarray
    square: tuple  # (cx, cy, side) of the landmark-box square used, original pixels
    score: float
    source: str  # "detector", "box" or "image" (no face found: the whole image)
    raw_points: np.ndarray | None = None  # network output before the shape prior

    def to_dict(self):
        d = {"points": np.round(self.points, 3).tolist(), "square": [float(v) for v in self.square],
             "score": float(self.score), "source": self.source}
        if self.raw_points is not None:
            d["raw_points"] = np.round(self.raw_points, 3).tolist()
        return d


class Predictor:
    """Predict landmarks on whole images with a trained model (checkpoint path or model).

    ``detector``: a face detector or its name (``"mtcnn"``, ``"lbp"``, ``"auto"``: see
    :func:`shapekit.data.detect.make_detector`; default "auto", MTCNN when its weights
    are in the cache). MTCNN frames each face from its five points
    (:class:`shapekit.data.detect.FivePointFraming`, the synthetic faces' framing of the
    model's layout), which needs no learned correction; the LBP cascade's boxes need
    one (``shapekit detect --fit``) to frame faces as in training.
    ``shape_prior``: a fitted ``PointDistributionModel``
    (or its path) onto which the network's shapes are projected (``prior_modes``,
    ``prior_k``). ``crop_scale``: crop side / landmark-box side (default: the
    checkpoint's training value).
    """

    def __init__(self, model, detector=None, shape_prior=None, prior_modes=None, prior_k=3.0, crop_scale=None,
                 device="cpu"):
        self.device = torch.device(device)
        ckpt = {}
        if not hasattr(model, "forward"):
            model, ckpt = load_model(model, self.device)
        self.model = model.to(self.device).eval()
        self.size = int(ckpt.get("crop_size") or model.config["input_size"])
        self.grey = model.config.get("in_channels", 3) == 1
        if crop_scale is None:
            crop_scale = ckpt.get("crop_scale")
        if crop_scale is None:
            crop_scale = _crops.default_scale(model.config["n_points"])
        self.crop_scale = float(crop_scale)
        self._detector = detector
        if isinstance(shape_prior, (str, bytes)) or hasattr(shape_prior, "__fspath__"):
            shape_prior = PointDistributionModel.load(shape_prior)
        if shape_prior is not None and shape_prior.n_points_ != model.config["n_points"]:
            raise ShapekitError(f"shape_prior: the model has {shape_prior.n_points_} points, the network predicts "
                                f"{model.config['n_points']}")
        self.shape_prior = shape_prior
        self.prior_modes = prior_modes
        self.prior_k = prior_k

    @property
    def detector(self):
        if self._detector is None or isinstance(self._detector, str):
            self._detector = make_detector(self._detector, device=self.device)
        return self._detector

    @property
    def framing(self):
        """The five-point framing for this model's layout (68-point framing for dense layouts, 5 for 5 points)."""
        if getattr(self, "_framing", None) is None:
            n = self.model.config["n_points"]
            self._framing = FivePointFraming.synthetic(5 if n == 5 else 68)
        return self._framing

    def _squares(self, image, boxes=None, all_faces=False):
        if boxes is not None:
            b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
            return [(tuple(s), 1.0, "box") for s in _crops.square_from_box(b)]
        det = self.detector
        sq = det.face_squares(image, framing=self.framing if getattr(det, "name", None) == "mtcnn" else None)
        if len(sq) == 0:
            h, w = image.shape[:2]
            side = max(h, w) / self.crop_scale
            return [(((w - 1) / 2.0, (h - 1) / 2.0, side), 0.0, "image")]
        sq = sq if all_faces else sq[:1]
        return [(tuple(s[:3]), float(s[3]), "detector") for s in sq]

    @torch.no_grad()
    def predict(self, image, boxes=None, all_faces=False):
        """Return a list of :class:`FacePrediction` for ``image`` (path or array), best face first.

        ``boxes``: face boxes ``(K, 4)`` ``x0, y0, x1, y1`` (pixels) framing the
        landmarks, instead of the detector. Without a face, the whole image is used.
        """
        img = load_image(image, grey=self.grey)
        faces = self._squares(img, boxes, all_faces)
        crops, mats = [], []
        for (cx, cy, side), _, _ in faces:
            t = _crops.crop_transform(np.array([cx, cy]), side * self.crop_scale, self.size)
            crops.append(to_tensor(_crops.warp(img, t, self.size)))
            mats.append(t)
        x = torch.stack(crops).to(self.device).float()
        u = predict_normalized(self.model, x).cpu().double()
        pts = normalized_to_pixel(u, self.size).numpy()
        pts = np.stack([_crops.to_original(p, t) for p, t in zip(pts, mats)])
        raw = None
        if self.shape_prior is not None:
            raw = pts
            pts = self.shape_prior.project(pts, n_components=self.prior_modes, k=self.prior_k)
        return [FacePrediction(points=pts[i], square=faces[i][0], score=faces[i][1], source=faces[i][2],
                               raw_points=None if raw is None else raw[i]) for i in range(len(faces))]


def export_torchscript(model, path, example=None):
    """Write the model as TorchScript (traced) to ``path`` and return the path; checks it reloads equal."""
    model = model.eval().cpu()
    size = model.config["input_size"]
    x = example if example is not None else torch.rand(2, model.config.get("in_channels", 3), size, size)
    with torch.no_grad(), warnings.catch_warnings():
        # torch >= 2.10 marks TorchScript deprecated; it is still what C++/mobile runtimes load.
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(model, x, check_trace=False)
        with atomic_path(path) as tmp:
            traced.save(str(tmp))
        again = torch.jit.load(str(path))
        if not torch.allclose(again(x), model(x), atol=1e-5):
            raise ShapekitError("export: the TorchScript model does not reproduce the model's output")
    return path


def export_onnx(model, path, opset=17, dynamic_batch=True):
    """Write the model as ONNX to ``path`` (needs the ``onnx`` extra) and return the path."""
    try:
        import onnx  # local: an optional dependency (the onnx extra)
    except ImportError:
        raise ShapekitError("export: ONNX export needs the onnx package (pip install shapekit[onnx])") from None
    model = model.eval().cpu()
    size = model.config["input_size"]
    x = torch.rand(1, model.config.get("in_channels", 3), size, size)
    with atomic_path(path) as tmp, torch.no_grad():
        torch.onnx.export(model, (x,), str(tmp), opset_version=opset, input_names=["images"],
                          output_names=["coords"],
                          dynamic_axes={"images": {0: "batch"}, "coords": {0: "batch"}} if dynamic_batch else None,
                          dynamo=False)
    onnx.checker.check_model(onnx.load(str(path)))
    return path


def plot_predictions(image, faces, path, grey=False, dpi=100):
    """Write a PNG of ``image`` with each face's landmarks (schema edges) and crop square; return ``path``.

    Drawn with :func:`shapekit.viz.landmarks.draw_landmarks`; points before the shape
    prior, when there is one, are shown as small red dots.
    """
    img = load_image(image, grey=grey)
    h, w = img.shape[:2]
    plt = pyplot()
    fig = plt.figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    ax = fig.add_axes([0, 0, 1, 1])
    show_image(ax, img)
    for f in faces:
        cx, cy, side = f.square
        ax.add_patch(plt.Rectangle((cx - side / 2, cy - side / 2), side, side, fill=False, color="cyan", lw=1))
        if f.raw_points is not None:
            ax.scatter(f.raw_points[:, 0], f.raw_points[:, 1], s=3, c="red", zorder=2)
        draw_landmarks(ax, f.points, size=max(4.0, w / 150))
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    return save_figure(fig, path, dpi=dpi)
