"""Face filters: glasses, a moustache and a hat drawn as polygons and placed on a face by
the similarity that maps a canonical face (eye centres and mouth centre) onto the face's
landmarks.

The canonical frame has the eye centres at ``(-1, 0)`` (image left) and ``(1, 0)`` and
the mouth centre at ``(0, MOUTH_Y)``: one unit is half the distance between the eyes,
y points down as in images. Accessories are lists of :class:`Layer` in that frame.
The similarity (rotation, scale, translation, never a reflection) is the least-squares
fit of those three anchors, so the accessories follow head roll, size and position.

>>> from shapekit.filters import apply_filter
>>> out = apply_filter(image, points, items=("glasses", "hat"))   # (H, W, 3) uint8
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.draw import polygon as fill

from shapekit import schemas as _schemas
from shapekit.asm.model import ActiveShapeModel
from shapekit.asm.search import apply_similarity, fit_similarity
from shapekit.data.images import load_image
from shapekit.errors import ShapekitError
from shapekit.io import read_pts
from shapekit.viz.overlay import as_rgb, save_png

#: Mouth centre below the eye line in the canonical frame (half eye distances). A
#: design constant: a typical adult frontal face has the mouth about one eye-centre
#: distance (here 2 units) below the eyes; the filter only needs it to be plausible.
MOUTH_Y = 2.2

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff")


@dataclass(frozen=True)
class Layer:
    """One filled polygon of an accessory in the canonical frame.

    ``polygon`` (P, 2) is the outline, ``holes`` a tuple of polygons cut out of it,
    ``color`` RGB 0-255 and ``alpha`` its opacity in [0, 1].
    """

    polygon: np.ndarray
    color: tuple
    alpha: float = 1.0
    holes: tuple = ()


def _ellipse(cx, cy, rx, ry, n=48, start=0.0, stop=2 * np.pi):
    t = np.linspace(start, stop, n, endpoint=(stop - start) < 2 * np.pi - 1e-9)
    return np.column_stack([cx + rx * np.cos(t), cy + ry * np.sin(t)])


def _rounded_rect(cx, cy, w, h, r, n=8):
    pts = []
    for (qx, qy, a0) in ((cx + w / 2 - r, cy - h / 2 + r, -np.pi / 2), (cx + w / 2 - r, cy + h / 2 - r, 0.0),
                         (cx - w / 2 + r, cy + h / 2 - r, np.pi / 2), (cx - w / 2 + r, cy - h / 2 + r, np.pi)):
        t = np.linspace(a0, a0 + np.pi / 2, n)
        pts.append(np.column_stack([qx + r * np.cos(t), qy + r * np.sin(t)]))
    return np.vstack(pts)


def _thick_polyline(points, width):
    # a polygon around a polyline: offset both sides by width/2 along the normals
    p = np.asarray(points, dtype=np.float64)
    t = np.gradient(p, axis=0)
    t /= np.maximum(np.hypot(t[:, 0], t[:, 1]), 1e-12)[:, None]
    n = np.column_stack([-t[:, 1], t[:, 0]]) * (width / 2)
    return np.vstack([p + n, (p - n)[::-1]])


def glasses(color=(20, 20, 25), lens=(90, 130, 170), lens_alpha=0.35):
    """Return the layers of a pair of round-cornered glasses centred on the eyes."""
    layers = []
    for cx in (-1.0, 1.0):
        outer = _rounded_rect(cx, 0.05, 1.55, 1.05, 0.35)
        inner = _rounded_rect(cx, 0.05, 1.35, 0.85, 0.27)
        layers.append(Layer(inner, lens, lens_alpha))
        layers.append(Layer(outer, color, 1.0, holes=(inner,)))
    bridge = _thick_polyline(np.array([[-0.24, -0.05], [0.0, -0.17], [0.24, -0.05]]), 0.11)
    layers.append(Layer(bridge, color))
    for side in (-1.0, 1.0):
        arm = _thick_polyline(np.array([[side * 1.76, -0.1], [side * 2.05, -0.16]]), 0.12)
        layers.append(Layer(arm, color))
    return layers


def moustache(color=(45, 28, 18)):
    """Return the layers of a curled moustache between the nose and the upper lip."""
    x = np.linspace(0.0, 1.0, 24)
    # upper edge rises to the middle, lower edge curls up at the tips
    upper = np.column_stack([x * 1.2, 1.22 + 0.12 * x - 0.30 * x**6])
    lower = np.column_stack([x[::-1] * 1.2, (1.62 - 0.02 * x - 0.62 * x**4)[::-1]])
    right = np.vstack([upper, lower])
    left = right[::-1] * np.array([-1.0, 1.0])
    outline = np.vstack([left, right])
    return [Layer(outline, color, 0.95)]


def hat(color=(25, 25, 30), band=(150, 20, 30)):
    """Return the layers of a top hat resting above the brows."""
    brim = _rounded_rect(0.0, -2.05, 4.6, 0.32, 0.14)
    crown = np.array([[-1.45, -2.1], [1.45, -2.1], [1.3, -4.6], [-1.3, -4.6]])
    ribbon = np.array([[-1.43, -2.2], [1.43, -2.2], [1.4, -2.62], [-1.4, -2.62]])
    return [Layer(crown, color), Layer(ribbon, band), Layer(brim, color)]


ACCESSORIES = {"glasses": glasses, "moustache": moustache, "hat": hat}


def canonical_anchors():
    """Return the canonical anchors ``(3, 2)``: eye centres (image left, right) and mouth centre."""
    return np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, MOUTH_Y]])


def face_anchors(points, schema=None):
    """Return the anchors ``(3, 2)`` of a face, pixels: the eye centre on the image left, the
    one on the image right, and the mouth centre, from its ``points`` (L, 2).

    Uses the schema's eye and mouth groups (``ibug68``, ``wflw98``, ...; ``mtfl5``: the
    eye points and the mean of the mouth corners). Missing points are ignored.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ShapekitError(f"points: expected (L, 2), got {pts.shape}")
    schema = _schemas.for_n_points(len(pts)) if schema is None else _schemas.get(schema)
    if schema is None:
        raise ShapekitError(f"points: no schema known for {len(pts)} points; pass schema=")
    groups = schema.groups
    eyes = [g for name, g in groups.items() if name.endswith("eye") and name != "eyes"]
    if len(eyes) < 2 and "eyes" in groups and len(groups["eyes"]) == 2:
        eyes = [(groups["eyes"][0],), (groups["eyes"][1],)]
    mouth = groups.get("mouth") or groups.get("outer_lip")
    if len(eyes) < 2 or mouth is None:
        raise ShapekitError(f"schema {schema.name!r} has no eye and mouth groups to place a filter")
    def centre(idx):
        p = pts[list(idx)]
        p = p[np.isfinite(p).all(axis=1)]
        return p.mean(axis=0) if len(p) else np.full(2, np.nan)

    centres = sorted((centre(g) for g in eyes[:2]), key=lambda c: c[0])
    anchors = np.array([centres[0], centres[1], centre(mouth)])
    if not np.all(np.isfinite(anchors)):
        raise ShapekitError("points: the eyes or the mouth are missing; cannot place a filter")
    return anchors


def accessory_pose(points, schema=None):
    """Return ``(a, b, tx, ty)``: the similarity from the canonical frame to image pixels."""
    return fit_similarity(canonical_anchors(), face_anchors(points, schema))


def _coverage(polygon, shape, holes=(), supersample=3):
    # anti-aliased coverage: rasterise at ``supersample`` x resolution inside the bounding box
    h, w = shape
    lo = np.floor(np.min(polygon, axis=0)).astype(int) - 1
    hi = np.ceil(np.max(polygon, axis=0)).astype(int) + 2
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], w), min(hi[1], h)
    if x1 <= x0 or y1 <= y0:
        return None, None
    s = supersample
    bh, bw = (y1 - y0) * s, (x1 - x0) * s
    mask = np.zeros((bh, bw), dtype=bool)

    def to_sub(p):
        # sub-pixel j of pixel x covers x - 0.5 + (j + 0.5)/s: its index is (x - x0 + 0.5) * s - 0.5
        return (p[:, 1] - y0 + 0.5) * s - 0.5, (p[:, 0] - x0 + 0.5) * s - 0.5

    rr, cc = fill(*to_sub(polygon), shape=(bh, bw))
    mask[rr, cc] = True
    for hole in holes:
        rr, cc = fill(*to_sub(hole), shape=(bh, bw))
        mask[rr, cc] = False
    cov = mask.reshape(y1 - y0, s, x1 - x0, s).mean(axis=(1, 3))
    return (slice(y0, y1), slice(x0, x1)), cov


def draw_layers(image, layers, pose):
    """Return an RGB uint8 copy of ``image`` with the ``layers`` drawn, mapped by ``pose``."""
    out = as_rgb(image).astype(np.float64)
    for layer in layers:
        poly = apply_similarity(pose, layer.polygon)
        holes = tuple(apply_similarity(pose, h) for h in layer.holes)
        where, cov = _coverage(poly, out.shape[:2], holes)
        if where is None:
            continue
        a = (layer.alpha * cov)[:, :, None]
        out[where] = out[where] * (1 - a) + np.asarray(layer.color, dtype=np.float64) * a
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def apply_filter(image, points, items=("glasses", "moustache", "hat"), schema=None):
    """Return an RGB uint8 copy of ``image`` wearing the accessories ``items`` placed on the
    face whose landmarks are ``points`` (L, 2) pixels (several faces: call once per face).

    Items are drawn in the order hat, glasses, moustache whatever order they are given in.
    """
    unknown = [i for i in items if i not in ACCESSORIES]
    if unknown:
        raise ShapekitError(f"items: unknown accessories {unknown}; known: {', '.join(ACCESSORIES)}")
    pose = accessory_pose(points, schema)
    layers = []
    for name in ("hat", "glasses", "moustache"):
        if name in items:
            layers += ACCESSORIES[name]()
    return draw_layers(image, layers, pose)


# --------------------------------------------------------------------------- files
def image_files(sources):
    """Return the image paths named by ``sources`` (files, or folders of frames, sorted)."""
    paths = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            paths += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            paths.append(p)
        else:
            raise ShapekitError(f"{src}: no such image file or folder")
    if not paths:
        raise ShapekitError("no images found in " + ", ".join(map(str, sources)))
    return paths


def landmarks_from_pts(image_path):
    """Return the points of the ``.pts`` file beside ``image_path`` (same stem), or None."""
    pts = Path(image_path).with_suffix(".pts")
    if not pts.exists():
        return None
    return np.asarray(read_pts(pts), dtype=np.float64)


def filter_images(sources, out_dir, items=("glasses", "moustache", "hat"), asm=None, landmarks=None):
    """Return the list of PNGs written to ``out_dir``: every image of ``sources`` (files or
    folders of frames) wearing the accessories.

    Landmarks come, in this order, from ``landmarks`` (a callable ``image -> (L, 2)``,
    e.g. a deep model's prediction), the ``.pts`` file beside the image, or the active
    shape model ``asm`` (an :class:`~shapekit.asm.ActiveShapeModel` or its path) fitted
    from the face detector. An image with no landmark source raises
    :class:`ShapekitError` naming it.
    """
    if asm is not None and not isinstance(asm, ActiveShapeModel):
        asm = ActiveShapeModel.load(asm)
    out_dir = Path(out_dir)
    written = []
    for path in image_files(sources):
        image = load_image(path)
        points = landmarks(image) if landmarks is not None else None
        if points is None:
            points = landmarks_from_pts(path)
        if points is None and asm is not None:
            try:
                points = asm.search(image)
            except ShapekitError as exc:
                raise ShapekitError(f"{path}: {exc}") from None
        if points is None:
            raise ShapekitError(f"{path}: no landmarks: no .pts beside it and no model given (--asm)")
        written.append(save_png(out_dir / f"{path.stem}_filter.png", apply_filter(image, points, items)))
    return written
