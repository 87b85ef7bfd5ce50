"""MTCNN face detector (Zhang et al. 2016) in torch, from its published weights.

Three small networks run in cascade:

1. **P-Net**, fully convolutional, slides a 12 px window (stride 2) over an image
   pyramid (scale ``12 / min_face``, then times ``factor`` until the shorter side is
   below 12 px) and proposes boxes with a face probability and a box regression;
2. **R-Net** rescores and regresses 24 x 24 crops of the proposals;
3. **O-Net** rescores 48 x 48 crops, regresses the box once more and places **five
   points**: the eye on the image's left, the other eye, the nose tip, the mouth corner
   on the image's left, the other mouth corner.

Between the stages boxes are merged by greedy non-maximum suppression, regressed and
made square. The weights are the original authors' Caffe models as converted by
facenet-pytorch 2.6.0 (MIT), read through ``shapekit.weights.get_weights("mtcnn")``;
the layer layout and the stage logic (thresholds 0.6 / 0.7 / 0.7, pyramid factor
0.709, NMS 0.5 per scale, 0.7 per image, 0.7 "min" after O-Net) follow that package's
``detect_face``. Two choices differ, both the original MATLAB code's: crops reaching
outside the image are **padded with zeros** (facenet-pytorch stretches the part inside
the image), and box areas count pixels inclusively (``x1 - x0 + 1``).

Batching: every pyramid level of every image is packed into one canvas and P-Net runs
on it once (a proposal counts only when its 12 px window lies inside one level, so
packing changes no score); R-Net and O-Net crops are cut and resampled for all boxes
of all images at once from integral images. :func:`detect_faces_reference` runs the
same cascade one level, one box and one image at a time; a test holds the two equal.

Coordinates: boxes are returned as pixel edges in 0-based pixel-centre coordinates
(``x0, y0, x1, y1``, like :class:`shapekit.data.detect.FaceDetector`); inside the
cascade, as in the original, a box ``(x1, y1, x2, y2)`` names 1-based pixel indices
inclusively. Points are 0-based pixel centres, ``x1 - 1 + w p`` as facenet-pytorch
computes them (the MATLAB original's formula, read there in its 1-based frame).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shapekit._device import resolve_device
from shapekit.data.detect import Detector, FivePointFraming
from shapekit.data.images import load_image
from shapekit.errors import ShapekitError
from shapekit.weights import WeightsUnavailable, get_weights

#: The five points' names, in MTCNN's order (image-left first).
POINT_NAMES = ("eye_left", "eye_right", "nose", "mouth_left", "mouth_right")

_NETS = ("pnet", "rnet", "onet")


class PNet(nn.Module):
    """MTCNN's proposal network: ``(N, 3, H, W)`` -> box regression ``(N, 4, h, w)``, face probability ``(N, h, w)``."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)[:, 1]


class RNet(nn.Module):
    """MTCNN's refinement network: ``(N, 3, 24, 24)`` -> box regression ``(N, 4)``, face probability ``(N,)``."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # the converted Caffe weights flatten in (W, H, C) order
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).reshape(len(x), -1)))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)[:, 1]


class ONet(nn.Module):
    """MTCNN's output network: ``(N, 3, 48, 48)`` -> box regression ``(N, 4)``, points ``(N, 10)``, probability.

    The points are ``x1..x5, y1..y5`` as fractions of the input box.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).reshape(len(x), -1)))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)[:, 1]


def mtcnn_weights(weights=None, fetch=False):
    """Return the folder holding ``pnet.pt``, ``rnet.pt`` and ``onet.pt``.

    ``weights`` is that folder; None looks in the weights cache
    (``shapekit.weights.get_weights("mtcnn", fetch=fetch)``, which raises
    :class:`shapekit.weights.WeightsUnavailable` when the files are absent and
    ``fetch`` is False or fetching fails).
    """
    if weights is None:
        return Path(get_weights("mtcnn", fetch=fetch))
    folder = Path(weights)
    missing = [f"{n}.pt" for n in _NETS if not (folder / f"{n}.pt").is_file()]
    if missing:
        raise ShapekitError(f"weights: {folder} lacks {', '.join(missing)} (the MTCNN state dicts)")
    return folder


def mtcnn_available():
    """Return True when MTCNN's weights are in the cache (nothing is fetched)."""
    try:
        mtcnn_weights(None, fetch=False)
    except WeightsUnavailable:
        return False
    return True


def load_nets(weights=None, fetch=False, device="cpu"):
    """Return ``(pnet, rnet, onet)`` in eval mode on ``device`` with the published weights (:func:`mtcnn_weights`)."""
    folder = mtcnn_weights(weights, fetch=fetch)
    nets = []
    for name, cls in zip(_NETS, (PNet, RNet, ONet)):
        path = folder / f"{name}.pt"
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for a bad file
            raise ShapekitError(f"{path}: not a readable state dict ({exc.__class__.__name__}: {exc})") from None
        net = cls()
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ShapekitError(f"{path}: does not match MTCNN's {name} ({str(exc).splitlines()[0]})") from None
        nets.append(net.to(device).eval())
    return tuple(nets)


# --------------------------------------------------------------------------------------
# box helpers (NumPy, boxes in MTCNN's inclusive 1-based pixel indices)


def nms(boxes, scores, threshold, mode="union", groups=None):
    """Return the indices kept by greedy non-maximum suppression, best score first.

    ``boxes`` ``(K, 4)`` are inclusive pixel boxes (area ``(x2-x1+1)(y2-y1+1)``);
    ``mode`` "union" compares intersection over union, "min" over the smaller area.
    Boxes of different ``groups`` (e.g. images) never suppress each other.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(b) == 0:
        return np.zeros(0, dtype=np.int64)
    if groups is not None:
        # shift each group far from the others so one pass serves all groups
        g = np.asarray(groups, dtype=np.float64).reshape(-1)
        b = b + (g * (b.max() - b.min() + 2.0))[:, None]
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    order = np.argsort(-s, kind="stable")
    keep = []
    while len(order):
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]) + 1)
        h = np.maximum(0.0, np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]) + 1)
        inter = w * h
        if mode == "min":
            ov = inter / np.minimum(area[i], area[rest])
        else:
            ov = inter / (area[i] + area[rest] - inter)
        order = rest[ov <= threshold]
    return np.array(keep, dtype=np.int64)


def _regress(boxes, reg):
    """Boxes ``(K, 4)`` moved by MTCNN's regression ``(K, 4)`` (fractions of the inclusive side)."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return boxes[:, :4] + reg * np.stack([w, h, w, h], axis=1)


def _square(boxes):
    """Boxes ``(K, 4)`` made square about their centre (side = the longer side), as MTCNN's ``rerec``."""
    b = boxes.copy()
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    side = np.maximum(w, h)
    b[:, 0] += 0.5 * (w - side)
    b[:, 1] += 0.5 * (h - side)
    b[:, 2] = b[:, 0] + side
    b[:, 3] = b[:, 1] + side
    return b


def _crop_windows(boxes):
    """Integer crop windows ``(K, 4)`` ``x0, y0, width, height`` (0-based first pixel) of inclusive boxes."""
    t = np.trunc(boxes[:, :4]).astype(np.int64)
    x0, y0 = t[:, 0] - 1, t[:, 1] - 1
    return np.stack([x0, y0, np.maximum(t[:, 2] - t[:, 0] + 1, 1), np.maximum(t[:, 3] - t[:, 1] + 1, 1)], axis=1)


def _pyramid_scales(h, w, min_face, factor):
    scale = 12.0 / min_face
    minl = min(h, w) * scale
    scales = []
    while minl >= 12:
        scales.append(scale)
        scale *= factor
        minl *= factor
    return scales


def _proposals(prob, reg, scale, threshold):
    """P-Net proposals ``(M, 9)``: inclusive box, score, regression, from one level's maps."""
    ys, xs = np.nonzero(prob >= threshold)
    if len(ys) == 0:
        return np.zeros((0, 9))
    q1x = np.floor((2 * xs + 1) / scale)
    q1y = np.floor((2 * ys + 1) / scale)
    q2x = np.floor((2 * xs + 12) / scale)
    q2y = np.floor((2 * ys + 12) / scale)
    return np.column_stack([q1x, q1y, q2x, q2y, prob[ys, xs], reg[:, ys, xs].T])


def _normalise(x):
    return (x - 127.5) * 0.0078125


# --------------------------------------------------------------------------------------
# batched crops


def _integral(img):
    """Integral image ``(3, H+1, W+1)`` float64 of a ``(3, H, W)`` tensor."""
    ii = torch.zeros((img.shape[0], img.shape[1] + 1, img.shape[2] + 1), dtype=torch.float64, device=img.device)
    ii[:, 1:, 1:] = img.to(torch.float64).cumsum(1).cumsum(2)
    return ii


def _area_bounds(start, length, n, limit, device):
    """Per box and output cell: clamped [lo, hi) pixel bounds and the unclamped cell size."""
    j = torch.arange(n, device=device, dtype=torch.int64)
    ln = length[:, None]
    lo = start[:, None] + torch.div(j * ln, n, rounding_mode="floor")
    hi = start[:, None] - torch.div(-(j + 1) * ln, n, rounding_mode="floor")  # ceil
    return lo.clamp(0, limit), hi.clamp(0, limit), (hi - lo)


def crop_resample(ii, windows, n):
    """Return ``(K, 3, n, n)`` float32 crops of the integral image ``ii`` at ``windows`` (x0, y0, w, h).

    Each crop is the window of the image, zero outside it, reduced or enlarged to
    ``n x n`` by area averaging exactly as ``F.interpolate(mode="area")`` (each output
    cell averages the input pixels from ``floor(j w / n)`` to ``ceil((j + 1) w / n)``).
    """
    dev = ii.device
    win = torch.as_tensor(windows, dtype=torch.int64, device=dev).reshape(-1, 4)
    H, W = ii.shape[1] - 1, ii.shape[2] - 1
    x_lo, x_hi, x_n = _area_bounds(win[:, 0], win[:, 2], n, W, dev)
    y_lo, y_hi, y_n = _area_bounds(win[:, 1], win[:, 3], n, H, dev)
    # corners (K, n, n) for every channel
    Wp = W + 1
    flat = ii.reshape(ii.shape[0], -1)

    def at(ys, xs):
        idx = (ys[:, :, None] * Wp + xs[:, None, :]).reshape(-1)
        return flat.index_select(1, idx).reshape(ii.shape[0], len(win), n, n)

    s = at(y_hi, x_hi) - at(y_lo, x_hi) - at(y_hi, x_lo) + at(y_lo, x_lo)
    count = (y_n[:, :, None] * x_n[:, None, :]).to(torch.float64)
    return (s / count[None]).permute(1, 0, 2, 3).to(torch.float32)


def _pack(sizes, align=2):
    """Shelf-pack rectangles ``(h, w)``: return their top-left ``(y, x)`` offsets and the canvas ``(H, W)``.

    Offsets are multiples of ``align`` (P-Net's stride), so a packed level's windows
    line up with those of the level run alone.
    """
    sizes = [(h + (-h) % align, w + (-w) % align) for h, w in sizes]
    area = sum(h * w for h, w in sizes)
    width = max(max(w for _, w in sizes), int(np.ceil(np.sqrt(area * 1.3) / align)) * align)
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i][0])
    offsets = [None] * len(sizes)
    y = x = shelf = 0
    for i in order:
        h, w = sizes[i]
        if x + w > width:
            y, x, shelf = y + shelf, 0, 0
        offsets[i] = (y, x)
        x += w
        shelf = max(shelf, h)
    return offsets, (y + shelf, width)


# --------------------------------------------------------------------------------------


def _as_uint8_rgb(image, name="image"):
    """Return a uint8 ``(H, W, 3)`` array; 16-bit images are scaled to 8 bits, others refused by name."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    arr = np.asarray(image)
    if arr.dtype == np.uint16 or (np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.uint8
                                  and arr.size and arr.max() > 255):
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ShapekitError(f"{name}: integer values outside 0..65535 (got {arr.min()}..{arr.max()})")
        arr = (arr.astype(np.float64) / 257.0).round().astype(np.uint8)
    return load_image(arr)


class MTCNN(Detector):
    """MTCNN face detector with five points; the published weights, on CPU or CUDA.

    Parameters
    ----------
    weights : folder holding ``pnet.pt``, ``rnet.pt``, ``onet.pt``; None: the weights
        cache (``shapekit weights get mtcnn``), fetched on first use when ``fetch``.
    min_face : smallest face searched for (pixels of the working image; the pyramid
        starts at ``12 / min_face``).
    thresholds : face-probability thresholds of P-Net, R-Net, O-Net.
    factor : scale between pyramid levels.
    max_side : images whose longer side exceeds this are reduced (area averaging)
        before detection; results are returned in the original pixels. None: no reduction.
    device : "auto", "cpu", "cuda" or a torch device.
    correction : a :class:`shapekit.data.detect.BoxCorrection` (or a path to one)
        learned for MTCNN; it places the landmark squares of :meth:`face_squares` from
        the boxes. Without one they come from the five points through ``framing``.
    framing : a :class:`shapekit.data.detect.FivePointFraming`; default: the synthetic
        faces' 68-point framing (built on first use).
    batch_pixels : the most pixels of pyramid packed into one P-Net call.

    :meth:`detect` returns boxes ``(K, 5)`` ``x0, y0, x1, y1, score`` (the O-Net face
    probability), best first; :meth:`detect_faces` also returns the five points
    ``(K, 5, 2)``; :meth:`detect_batch` does many images in one pass.
    """

    name = "mtcnn"
    n_points = 5

    def __init__(self, weights=None, min_face=20, thresholds=(0.6, 0.7, 0.7), factor=0.709, max_side=None,
                 device="cpu", correction=None, fetch=False, batch_pixels=4_000_000, framing=None):
        super().__init__(correction=correction)
        self._framing = framing
        if min_face < 12:
            raise ShapekitError(f"min_face: at least 12 pixels (P-Net's window), got {min_face}")
        if not 0 < factor < 1:
            raise ShapekitError(f"factor: must be in (0, 1), got {factor}")
        if len(thresholds) != 3 or not all(0 <= t <= 1 for t in thresholds):
            raise ShapekitError(f"thresholds: three probabilities (P-Net, R-Net, O-Net), got {thresholds}")
        if max_side is not None and max_side < 12:
            raise ShapekitError(f"max_side: at least 12 pixels, got {max_side}")
        self.weights = weights
        self.min_face = float(min_face)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.max_side = None if max_side is None else int(max_side)
        self.device = device
        self.fetch = bool(fetch)
        self.batch_pixels = int(batch_pixels)
        self._nets = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_nets"] = None  # each worker loads its own copy
        return state

    @property
    def nets(self):
        """The three networks ``(pnet, rnet, onet)``, loaded on first use."""
        if self._nets is None:
            self._nets = load_nets(self.weights, fetch=self.fetch, device=resolve_device(self.device))
        return self._nets

    @property
    def framing(self):
        """The :class:`shapekit.data.detect.FivePointFraming` that turns five points into landmark squares."""
        if self._framing is None:
            self._framing = FivePointFraming.synthetic()
        return self._framing

    @property
    def torch_device(self):
        return next(self.nets[0].parameters()).device

    def detect(self, image):
        """Return face boxes ``(K, 5)``: ``x0, y0, x1, y1, score`` pixel edges, best first (empty when none)."""
        return self.detect_faces(image)[0]

    def detect_faces(self, image):
        """Return ``(boxes (K, 5), points (K, 5, 2))`` for one image (see :meth:`detect_batch`)."""
        return self.detect_batch([image])[0]

    @torch.no_grad()
    def detect_batch(self, images):
        """Return one ``(boxes (K, 5), points (K, 5, 2))`` per image, all images run through each stage together.

        ``images``: paths or arrays (grey, RGB or RGBA; uint8, 16-bit or float in
        [0, 1]). Boxes are pixel edges, points pixel centres, both in 0-based
        coordinates of the original image; ``K = 0`` when no face is found (also for
        an image smaller than ``min_face``).
        """
        imgs, factors = [], []
        for k, im in enumerate(images):
            arr = _as_uint8_rgb(im, name=str(im) if isinstance(im, (str, os.PathLike)) else f"images[{k}]")
            t = torch.from_numpy(np.array(arr, dtype=np.float32)).permute(2, 0, 1).to(self.torch_device)
            f = 1.0
            if self.max_side is not None and max(t.shape[1:]) > self.max_side:
                f = max(t.shape[1:]) / self.max_side
                size = (max(1, int(round(t.shape[1] / f))), max(1, int(round(t.shape[2] / f))))
                t = F.interpolate(t[None], size=size, mode="area")[0]
                f = (arr.shape[0] / size[0], arr.shape[1] / size[1])
            imgs.append(t)
            factors.append(f)
        boxes, points = _cascade_batched(self.nets, imgs, self.min_face, self.thresholds, self.factor,
                                         self.batch_pixels)
        out = []
        for b, p, f in zip(boxes, points, factors):
            out.append(_to_output(b, p, f))
        return out


def _to_output(boxes, points, factor):
    """Boxes ``(K, 5)`` in inclusive 1-based indices -> pixel edges; points unchanged; undo a reduction."""
    if len(boxes) == 0:
        return np.zeros((0, 5)), np.zeros((0, 5, 2))
    edges = boxes[:, :4] + np.array([-1.5, -1.5, -0.5, -0.5])
    pts = points.copy()
    if factor != 1.0:
        fy, fx = factor
        edges = (edges + 0.5) * np.array([fx, fy, fx, fy]) - 0.5
        pts = (pts + 0.5) * np.array([fx, fy]) - 0.5
    return np.column_stack([edges, boxes[:, 4]]), pts


def _stage_two_three(nets, imgs, boxes, img_of, thresholds, crops):
    """R-Net and O-Net on the P-Net boxes; ``crops(size, boxes, img_of)`` cuts the normalised inputs."""
    _, rnet, onet = nets
    dev = next(rnet.parameters()).device
    n_img = len(imgs)
    empty = [np.zeros((0, 5))] * n_img, [np.zeros((0, 5, 2))] * n_img
    if len(boxes) == 0:
        return empty
    # R-Net
    # channels-last: the 3x3 ceil-mode max-pooling of R-Net and O-Net is several times faster on the CPU
    reg, prob = rnet(crops(24, boxes, img_of).to(dev).contiguous(memory_format=torch.channels_last))
    reg, prob = reg.cpu().double().numpy(), prob.cpu().double().numpy()
    ok = prob > thresholds[1]
    boxes, img_of, reg, prob = boxes[ok], img_of[ok], reg[ok], prob[ok]
    pick = nms(boxes, prob, 0.7, groups=img_of)
    boxes, img_of, reg, prob = boxes[pick], img_of[pick], reg[pick], prob[pick]
    boxes = _square(_regress(boxes, reg))
    if len(boxes) == 0:
        return empty
    # O-Net
    reg, pts, prob = onet(crops(48, boxes, img_of).to(dev).contiguous(memory_format=torch.channels_last))
    reg, pts, prob = reg.cpu().double().numpy(), pts.cpu().double().numpy(), prob.cpu().double().numpy()
    ok = prob > thresholds[2]
    boxes, img_of, reg, pts, prob = boxes[ok], img_of[ok], reg[ok], pts[ok], prob[ok]
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    # facenet-pytorch's reading of the points (x1 - 1 + w p) as 0-based: closer to the 68-point
    # annotations than the 1-based reading of the original MATLAB code (see benchmarks/RESULTS.md)
    points = np.stack([w[:, None] * pts[:, :5] + boxes[:, :1] - 1, h[:, None] * pts[:, 5:] + boxes[:, 1:2] - 1], -1)
    boxes = _regress(boxes, reg)
    pick = nms(boxes, prob, 0.7, mode="min", groups=img_of)
    boxes, img_of, points, prob = boxes[pick], img_of[pick], points[pick], prob[pick]
    out_b, out_p = [], []
    for i in range(n_img):
        m = img_of == i
        out_b.append(np.column_stack([boxes[m], prob[m]]))
        out_p.append(points[m])
    return out_b, out_p


def _stage_one_merge(per_level, n_img):
    """Per image: NMS 0.5 within each level, then 0.7 across levels, regression and squaring."""
    props = [p for p, _, _ in per_level]
    if not props or sum(len(p) for p in props) == 0:
        return np.zeros((0, 4)), np.zeros(0, dtype=np.int64)
    img_of = np.concatenate([np.full(len(p), i) for p, i, _ in per_level])
    level_of = np.concatenate([np.full(len(p), k) for k, (p, _, _) in enumerate(per_level)])
    allp = np.concatenate(props)
    keep = nms(allp[:, :4], allp[:, 4], 0.5, groups=level_of)
    keep = np.sort(keep)  # level order, as when the levels are done one after the other
    allp, img_of = allp[keep], img_of[keep]
    keep = nms(allp[:, :4], allp[:, 4], 0.7, groups=img_of)
    allp, img_of = allp[keep], img_of[keep]
    regw = allp[:, 2] - allp[:, 0]
    regh = allp[:, 3] - allp[:, 1]
    b = allp[:, :4] + allp[:, 5:9] * np.stack([regw, regh, regw, regh], axis=1)
    return _square(b), img_of


def _cascade_batched(nets, imgs, min_face, thresholds, factor, batch_pixels):
    """The batched cascade on ``(3, H, W)`` float tensors: per image, inclusive boxes ``(K, 5)`` and points."""
    pnet = nets[0]
    dev = next(pnet.parameters()).device
    levels = []  # (image index, scale, h, w)
    for i, t in enumerate(imgs):
        h, w = t.shape[1:]
        for s in _pyramid_scales(h, w, min_face, factor):
            levels.append((i, s, int(h * s + 1), int(w * s + 1)))
    per_level = []
    # pack the levels into canvases of at most batch_pixels each (a level alone may exceed it)
    start = 0
    while start < len(levels):
        stop, area = start, 0
        while stop < len(levels) and (stop == start or area + levels[stop][2] * levels[stop][3] <= batch_pixels):
            area += levels[stop][2] * levels[stop][3]
            stop += 1
        chunk = levels[start:stop]
        offsets, (ch, cw) = _pack([(h, w) for _, _, h, w in chunk])
        canvas = torch.zeros((1, 3, ch, cw), device=dev)
        for (i, s, h, w), (oy, ox) in zip(chunk, offsets):
            canvas[0, :, oy:oy + h, ox:ox + w] = F.interpolate(imgs[i][None], size=(h, w), mode="area")[0]
        # channels-last runs P-Net's small convolutions faster on CPU
        reg, prob = pnet(_normalise(canvas).contiguous(memory_format=torch.channels_last))
        reg, prob = reg[0].cpu().numpy(), prob[0].cpu().numpy()
        for (i, s, h, w), (oy, ox) in zip(chunk, offsets):
            # cells whose 12 px window lies inside the level
            ny, nx = h // 2 - 5, w // 2 - 5
            cy, cx = oy // 2, ox // 2
            per_level.append((_proposals(prob[cy:cy + ny, cx:cx + nx], reg[:, cy:cy + ny, cx:cx + nx], s,
                                         thresholds[0]), i, s))
        start = stop
    boxes, img_of = _stage_one_merge(per_level, len(imgs))
    integrals = [_integral(t) for t in imgs]

    def crops(n, boxes, img_of):
        win = _crop_windows(boxes)
        out = torch.empty((len(boxes), 3, n, n), device=dev)
        for i in np.unique(img_of):
            m = np.nonzero(img_of == i)[0]
            out[torch.as_tensor(m, device=dev)] = crop_resample(integrals[i], win[m], n)
        return _normalise(out)

    return _stage_two_three(nets, imgs, boxes, img_of, thresholds, crops)


@torch.no_grad()
def detect_faces_reference(nets, image, min_face=20, thresholds=(0.6, 0.7, 0.7), factor=0.709):
    """Return ``(boxes (K, 5), points (K, 5, 2))`` for one image, one level and one box at a time.

    The plain form of :meth:`MTCNN.detect_batch` (same conventions): P-Net runs on each
    pyramid level separately, each R-Net / O-Net input is cut out with explicit zero
    padding and resized with ``F.interpolate(mode="area")``.
    """
    dev = next(nets[0].parameters()).device
    arr = _as_uint8_rgb(image)
    img = torch.from_numpy(np.array(arr, dtype=np.float32)).permute(2, 0, 1).to(dev)
    h, w = img.shape[1:]
    per_level = []
    for s in _pyramid_scales(h, w, min_face, factor):
        hs, ws = int(h * s + 1), int(w * s + 1)
        level = F.interpolate(img[None], size=(hs, ws), mode="area")
        reg, prob = nets[0](_normalise(level))
        ny, nx = hs // 2 - 5, ws // 2 - 5
        per_level.append((_proposals(prob[0, :ny, :nx].cpu().numpy(), reg[0, :, :ny, :nx].cpu().numpy(), s,
                                     thresholds[0]), 0, s))
    boxes, img_of = _stage_one_merge(per_level, 1)

    def crops(n, boxes, img_of):
        out = []
        for x0, y0, cw, chh in _crop_windows(boxes):
            patch = torch.zeros((3, chh, cw), device=dev)
            xa, ya = max(x0, 0), max(y0, 0)
            xb, yb = min(x0 + cw, w), min(y0 + chh, h)
            if xb > xa and yb > ya:
                patch[:, ya - y0:yb - y0, xa - x0:xb - x0] = img[:, ya:yb, xa:xb]
            out.append(F.interpolate(patch[None], size=(n, n), mode="area")[0])
        return _normalise(torch.stack(out))

    b, p = _stage_two_three(nets, [img], boxes, img_of, thresholds, crops)
    return _to_output(b[0], p[0], 1.0)
