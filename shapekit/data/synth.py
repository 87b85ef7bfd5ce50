"""SYNTHETIC faces with exact 68-point landmarks (ibug68 / 300-W layout).

Everything this module makes is procedurally generated and is **not** a photograph of a
person: a hand-made 3-D mean face with identity and expression modes, turned by a 3-D
head pose (yaw, pitch, roll), projected in perspective and drawn with numpy and
scikit-image (shaded skin, hair, eyes, brows, nose, lips, backgrounds cut from
scikit-image's sample images, lighting, blur, noise and optional occluders). It is the
data shapekit falls back on when no real data set is at hand; results on it say nothing
about real faces until checked on real data.

Determinism: face ``i`` of a run with seed ``s`` is drawn from
``np.random.default_rng([s, i])`` alone, so it is the same whatever ``n``, ``start``
or the number of workers; ``sample_shapes(n, s)[i]`` is exactly the landmark set of
``generate(n, s)[1][i]`` and of ``render_face(FaceParams.sample(s, i))``.

Coordinates are 0-based pixel centres (x, y) in a ``size`` x ``size`` image.

>>> from shapekit.data.synth import sample_shapes, render_face, generate, write_dataset
>>> shapes = sample_shapes(1000, seed=0, size=256)     # (1000, 68, 2) pixels, no rendering
>>> image, points = render_face(7, size=256)           # (256, 256, 3) uint8, (68, 2)
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from skimage.io import imsave

from shapekit._files import atomic_folder, atomic_open, atomic_path
from shapekit._progress import progress as progress_bar
from shapekit.data import _synth_geometry as geo
from shapekit.data import _synth_render as _render
from shapekit.errors import ShapekitError
from shapekit.io import write_pts

__all__ = ["FaceParams", "sample_shapes", "render_face", "generate", "write_dataset", "is_synthetic",
           "SYNTHETIC_NOTE", "DEFAULT_POSE_RANGE"]

#: Said wherever synthetic data is written, so nobody mistakes it for real faces.
SYNTHETIC_NOTE = ("SYNTHETIC faces made by shapekit.data.synth: procedurally generated images, not photographs "
                  "of people; landmarks are exact by construction (ibug68 / 300-W layout).")

#: Largest |yaw|, |pitch|, |roll| in degrees of the default pose distribution.
DEFAULT_POSE_RANGE = (40.0, 20.0, 30.0)

_N_ID = len(geo.IDENTITY_NAMES)
_N_SHAPE_U = 6
_N_SHAPE_G = 12
_JITTER_STD = 0.006  # IOD units: the residual variation no mode captures (about 0.7 px at IOD 110 px)


def _check_int(name, value, minimum=0):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ShapekitError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ShapekitError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _pose_range(max_yaw, max_pitch, max_roll):
    out = []
    for name, v in (("max_yaw", max_yaw), ("max_pitch", max_pitch), ("max_roll", max_roll)):
        v = float(v)
        if not (0.0 <= v <= 80.0):
            raise ShapekitError(f"{name} must be between 0 and 80 degrees, got {v}")
        out.append(v)
    return out


def _check_occlusion(occlusion):
    try:
        value = float(occlusion)
    except (TypeError, ValueError):
        raise ShapekitError(f"occlusion must be a probability in [0, 1], got {occlusion!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ShapekitError(f"occlusion must be a probability in [0, 1], got {occlusion}")
    return value


def _rng(seed, index):
    return np.random.default_rng([seed, index])


def _draw_shape(rng):
    """Draw the shape block of one face: always the first numbers of its stream."""
    ident = rng.standard_normal(_N_ID)
    u = rng.random(_N_SHAPE_U)
    g = rng.standard_normal(_N_SHAPE_G)
    jitter = rng.standard_normal((geo.N_POINTS, 3))
    return ident, u, g, jitter


def _shape_values(ident, u, g, jitter, pose_range):
    """Turn raw draws (arrays with a leading face axis) into named shape parameters."""
    max_yaw, max_pitch, max_roll = pose_range
    identity = np.clip(ident, -2.5, 2.5)
    n = len(identity)
    expr = np.zeros((n, len(geo.EXPRESSION_NAMES)))
    expr[:, 0] = np.where(u[:, 0] < 0.35, u[:, 1] ** 1.5, 0.0)                 # mouth open
    expr[:, 1] = np.clip(0.15 + 0.45 * g[:, 0], -0.5, 1.0)                      # smile
    expr[:, 2] = np.clip(0.45 * g[:, 1], -0.6, 1.2)                             # brow raise
    expr[:, 3] = np.clip(0.4 * g[:, 2], 0.0, 1.0)                               # frown
    rest = np.clip(0.1 * np.abs(g[:, 3]), 0.0, 0.3)
    blink = u[:, 2] < 0.10
    wink = (u[:, 2] >= 0.10) & (u[:, 2] < 0.15)
    amount = 0.3 + 0.7 * u[:, 3]
    left = np.where(blink | (wink & (u[:, 4] < 0.5)), amount, rest)
    right = np.where(blink | (wink & (u[:, 4] >= 0.5)), amount, rest)
    expr[:, 4], expr[:, 5] = left, right
    yaw = max_yaw * np.clip(0.45 * g[:, 4], -1.0, 1.0)
    pitch = max_pitch * np.clip(0.5 * g[:, 5], -1.0, 1.0)
    roll = max_roll * np.clip(0.4 * g[:, 6], -1.0, 1.0)
    distance = 5.0 + 15.0 * u[:, 5]
    box = 0.5 * np.exp(np.clip(0.08 * g[:, 7], -0.25, 0.25))
    centre = 0.5 + np.clip(0.03 * g[:, 8:10], -0.07, 0.07)
    return dict(identity=identity, expression=expr, jitter=_JITTER_STD * jitter, yaw=yaw, pitch=pitch,
                roll=roll, distance=distance, box=box, centre=centre)


@dataclass
class FaceParams:
    """Every number that defines one synthetic face; ``FaceParams.sample(seed, index)``
    draws them, :func:`render_face` draws the face.

    Geometry: ``identity`` (19 weights in standard deviations, names in
    ``IDENTITY_NAMES``), ``expression`` (6 weights, ``EXPRESSION_NAMES``: mouth_open 0..1,
    smile, brow_raise, frown, close_left_eye 0..1, close_right_eye 0..1; "left" is the
    image-left eye), ``jitter`` (68, 3) small per-point offsets in inter-ocular units,
    ``yaw``/``pitch``/``roll`` in degrees (positive yaw turns the nose to image-right,
    positive pitch tilts the face up, positive roll is clockwise on screen),
    ``distance`` camera distance in inter-ocular units, ``box`` the landmark box's longer
    side as a fraction of the image side and ``centre`` its centre as fractions.

    Appearance: ``appearance`` is a dict of named values and ``texture_seed`` seeds the
    fine random detail (background crop, hair strands, sensor noise). Keys: ``skin``,
    ``hair``, ``eye``, ``lips``, ``clothes``, ``background_colour`` (RGB in 0..1);
    ``light`` (unit vector toward the light, camera coordinates: x right, y down, z to
    the viewer), ``ambient`` (0..1), ``light_colour`` (RGB gains); ``hair_style`` (one of
    bald, short, long, fringe, bun), ``hairline`` (IOD units, y of the forehead
    hairline), ``hair_volume`` (scale of the hair over the skull); ``gaze`` (radians
    right, up); ``brow_thickness``, ``brow_darkness``, ``ear_size``, ``stubble``,
    ``sheen`` (strength of the specular highlight on the skin);
    ``background`` (a name of :data:`shapekit.data._synth_render.BACKGROUNDS` or
    "plain"); ``blur`` (Gaussian sigma in pixels at 256 px), ``noise`` (std in 0..1
    units), ``grey``, ``contrast``, ``gamma``, ``brightness``; ``occluder`` (None or a
    dict: ``kind`` in patch, hand, bar, glasses, and ``u``, ``v`` its centre as
    fractions of the landmark box, ``size``, ``colour``, ``angle`` in 0..1).
    ``replace(appearance={...})`` changes some keys and keeps the others.
    """

    identity: np.ndarray
    expression: np.ndarray
    jitter: np.ndarray
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    distance: float = 12.0
    box: float = 0.5
    centre: tuple = (0.5, 0.5)
    appearance: dict = field(default_factory=dict)
    texture_seed: int = 0

    IDENTITY_NAMES = geo.IDENTITY_NAMES
    EXPRESSION_NAMES = geo.EXPRESSION_NAMES

    @classmethod
    def mean(cls, **overrides):
        """Return the parameters of the mean frontal face (neutral, no jitter), with overrides."""
        p = cls(identity=np.zeros(_N_ID), expression=np.zeros(len(geo.EXPRESSION_NAMES)),
                jitter=np.zeros((geo.N_POINTS, 3)), appearance=_render.default_appearance())
        return p.replace(**overrides)

    @classmethod
    def sample(cls, seed=0, index=0, occlusion=0.15, max_yaw=DEFAULT_POSE_RANGE[0],
               max_pitch=DEFAULT_POSE_RANGE[1], max_roll=DEFAULT_POSE_RANGE[2]):
        """Return the parameters of face ``index`` of the run with ``seed``.

        ``occlusion`` is the probability of an occluding object over part of the face.
        """
        seed = _check_int("seed", seed)
        index = _check_int("index", index)
        pose_range = _pose_range(max_yaw, max_pitch, max_roll)
        occlusion = _check_occlusion(occlusion)
        rng = _rng(seed, index)
        ident, u, g, jitter = _draw_shape(rng)
        v = _shape_values(ident[None], u[None], g[None], jitter[None], pose_range)
        appearance, texture_seed = _render.draw_appearance(rng, occlusion)
        return cls(identity=v["identity"][0], expression=v["expression"][0], jitter=v["jitter"][0],
                   yaw=float(v["yaw"][0]), pitch=float(v["pitch"][0]), roll=float(v["roll"][0]),
                   distance=float(v["distance"][0]), box=float(v["box"][0]),
                   centre=tuple(float(c) for c in v["centre"][0]), appearance=appearance,
                   texture_seed=texture_seed)

    def replace(self, **changes):
        """Return a copy with some fields changed (``appearance`` entries are merged)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ShapekitError(f"FaceParams has no field(s) {sorted(unknown)}")
        if "appearance" in changes:
            changes["appearance"] = {**self.appearance, **changes["appearance"]}
        return dataclasses.replace(self, **changes)

    def shape_values(self):
        """Return the geometry as the dict of (1, ...) arrays the vectorised code uses."""
        return dict(identity=np.asarray(self.identity, float)[None],
                    expression=np.asarray(self.expression, float)[None],
                    jitter=np.asarray(self.jitter, float)[None], yaw=np.array([self.yaw], float),
                    pitch=np.array([self.pitch], float), roll=np.array([self.roll], float),
                    distance=np.array([self.distance], float), box=np.array([self.box], float),
                    centre=np.asarray(self.centre, float)[None])


class _Layout:
    """Posed faces of a batch: 3-D points, rotations and the 2-D framing (pixels)."""

    def __init__(self, values, size):
        self.size = size
        p3 = geo.face_shapes_3d(values["identity"], values["expression"], values["jitter"])
        self.rot, rot_no_roll = geo.rotation_matrices(values["yaw"], values["pitch"], values["roll"])
        self.rot_no_roll = rot_no_roll
        self.points3d = geo.march_jaw(p3, rot_no_roll)
        self.distance = values["distance"]
        xy, self.camera3d = geo.project(self.points3d, self.rot, self.distance)
        lo, hi = xy.min(1), xy.max(1)
        side = (hi - lo).max(1)
        # pixels per IOD unit and offset, so that the landmark box has the drawn size and centre
        self.scale = values["box"] * size / side
        centre_px = values["centre"] * size - 0.5
        self.offset = centre_px - self.scale[:, None] * 0.5 * (lo + hi)
        self.shapes = self.to_pixels(xy)

    def to_pixels(self, xy):
        return self.scale[:, None, None] * xy + self.offset[:, None, :]

    def project(self, points3d):
        """Return (N, P, 2) pixel positions of head points (N, P, 3) posed like the faces."""
        xy, cam = geo.project(points3d, self.rot, self.distance)
        return self.to_pixels(xy), cam


def _check_size(size):
    size = _check_int("size", size, minimum=32)
    if size > 4096:
        raise ShapekitError(f"size must be <= 4096 pixels, got {size}")
    return size


def sample_shapes(n, seed=0, size=256, *, start=0, max_yaw=DEFAULT_POSE_RANGE[0],
                  max_pitch=DEFAULT_POSE_RANGE[1], max_roll=DEFAULT_POSE_RANGE[2]):
    """Return (n, 68, 2) landmark shapes of synthetic faces, in pixels of a ``size`` x
    ``size`` frame (0-based pixel centres, ibug68 order), without rendering any image.

    Faces ``start .. start + n - 1`` of the run with ``seed``: identity and expression
    variation, head pose up to ``max_yaw``/``max_pitch``/``max_roll`` degrees, and the
    landmark box scaled to about half the frame and jittered around its centre (as in
    the 300-W crops of ``../shared/data``). These are exactly the landmarks of the faces
    :func:`generate` renders with the same arguments. The geometry is vectorised over
    faces; the per-face random streams are not (time per face: benchmarks/RESULTS.md,
    "Render speed").
    """
    n = _check_int("n", n)
    seed = _check_int("seed", seed)
    start = _check_int("start", start)
    size = _check_size(size)
    pose_range = _pose_range(max_yaw, max_pitch, max_roll)
    if n == 0:
        return np.zeros((0, geo.N_POINTS, 2))
    ident = np.empty((n, _N_ID))
    u = np.empty((n, _N_SHAPE_U))
    g = np.empty((n, _N_SHAPE_G))
    jitter = np.empty((n, geo.N_POINTS, 3))
    for k in range(n):
        ident[k], u[k], g[k], jitter[k] = _draw_shape(_rng(seed, start + k))
    values = _shape_values(ident, u, g, jitter, pose_range)
    return _Layout(values, size).shapes


def render_face(seed_or_params, size=256, with_visibility=False):
    """Return ``(image, points)``: a synthetic face as a (size, size, 3) uint8 RGB image and
    its (68, 2) landmarks in pixels (0-based pixel centres, ibug68 order).

    ``seed_or_params`` is a :class:`FaceParams` or an integer seed (the face
    ``FaceParams.sample(seed, 0)``, which is also face 0 of ``generate(n, seed)``).
    ``with_visibility=True`` returns ``(image, points, visible)`` with ``visible`` (68,)
    False where hair or an occluder covers the landmark (or it is outside the image);
    the points themselves are always given, as 300-W gives occluded points.
    """
    if isinstance(seed_or_params, FaceParams):
        params = seed_or_params
    else:
        params = FaceParams.sample(_check_int("seed_or_params", seed_or_params), 0)
    size = _check_size(size)
    image, points, visible = _render.render(params, size, _Layout(params.shape_values(), size))
    return (image, points, visible) if with_visibility else (image, points)


def generate(n, seed=0, size=256, progress=None, *, start=0, occlusion=0.15, workers=1,
             max_yaw=DEFAULT_POSE_RANGE[0], max_pitch=DEFAULT_POSE_RANGE[1], max_roll=DEFAULT_POSE_RANGE[2],
             with_visibility=False):
    """Return ``(images, shapes)``: n synthetic faces as a (n, size, size, 3) uint8 array
    and their (n, 68, 2) landmarks in pixels (``with_visibility=True`` adds a (n, 68)
    bool array, False where hair or an occluder hides a landmark).

    Face ``i`` is ``render_face(FaceParams.sample(seed, start + i, ...))``. ``progress``:
    None shows a bar for long runs on a terminal, False never, True always. ``workers``
    > 1 renders in that many processes (the result does not depend on it).
    """
    n = _check_int("n", n)
    seed = _check_int("seed", seed)
    start = _check_int("start", start)
    size = _check_size(size)
    workers = _check_int("workers", workers, minimum=1)
    _pose_range(max_yaw, max_pitch, max_roll)
    occlusion = _check_occlusion(occlusion)
    images = np.zeros((n, size, size, 3), np.uint8)
    shapes = np.zeros((n, geo.N_POINTS, 2))
    visible = np.zeros((n, geo.N_POINTS), bool)
    kw = dict(occlusion=occlusion, max_yaw=max_yaw, max_pitch=max_pitch, max_roll=max_roll)
    for i, image, points, vis in render_many(seed, range(start, start + n), size, kw, workers, progress):
        images[i - start] = image
        shapes[i - start] = points
        visible[i - start] = vis
    return (images, shapes, visible) if with_visibility else (images, shapes)


def write_dataset(outdir, n, seed=0, size=256, progress=None, *, start=0, occlusion=0.15, workers=1,
                  max_yaw=DEFAULT_POSE_RANGE[0], max_pitch=DEFAULT_POSE_RANGE[1],
                  max_roll=DEFAULT_POSE_RANGE[2], overwrite=False):
    """Write n synthetic faces to ``outdir`` and return the list of image paths.

    Each face ``i`` becomes ``{i:05d}.png`` and ``{i:05d}.pts`` (300-W format, 1-based on
    disk), each written atomically; ``README.txt`` and ``manifest.json`` (with
    ``"synthetic": true``, the generator settings, and per face the pose, expression,
    occluder and the 0-based indices of hidden landmarks) say plainly that the data is
    synthetic. Existing files of the same names are replaced. Other ``NNNNN.png`` /
    ``NNNNN.pts`` files already in ``outdir`` (which readers would take for part of the
    set) are deleted when ``outdir`` is an earlier synthetic output or ``overwrite`` is
    True, and are an error otherwise. The folder is built under a temporary name and
    swapped in when complete (:func:`shapekit._files.atomic_folder`), so a kill leaves
    the old folder or the new one.
    """
    n = _check_int("n", n)
    seed = _check_int("seed", seed)
    start = _check_int("start", start)
    size = _check_size(size)
    workers = _check_int("workers", workers, minimum=1)
    _pose_range(max_yaw, max_pitch, max_roll)
    occlusion = _check_occlusion(occlusion)
    kw = dict(occlusion=occlusion, max_yaw=max_yaw, max_pitch=max_pitch, max_roll=max_roll)
    outdir = Path(outdir)
    indices = range(start, start + n)
    stale = {f.name for f in _stale_faces(outdir, indices)}
    if stale and not (overwrite or is_synthetic(outdir)):
        raise ShapekitError(
            f"outdir {outdir} already holds {len(stale)} image/landmark files this run would not replace "
            f"(e.g. {min(stale)}); use an empty folder, or overwrite=True (--overwrite) to delete them")
    # built complete aside and swapped in: a kill at any instant leaves the old folder or the
    # new one; other files of the old folder are carried over, its stale faces are not
    with atomic_folder(outdir, carry_old=lambda rel: rel not in stale) as stage:
        paths = write_many(stage, seed, indices, size, kw, workers, progress, overwrite=True)
    return [outdir / p.name for p in paths]


def is_synthetic(path):
    """Return True when ``path`` (a folder, or a file inside one) holds faces written by
    :func:`write_dataset`: its ``manifest.json`` says ``"synthetic": true``."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        with open(manifest, encoding="utf-8") as fh:
            return json.load(fh).get("synthetic") is True
    except (OSError, ValueError, AttributeError):
        return False


# ----------------------------------------------------------------------------------
# Many faces: processes and files
# ----------------------------------------------------------------------------------

def _render_index(args):
    seed, index, size, kw = args
    params = FaceParams.sample(seed, index, **kw)
    image, points, visible = _render.render(params, size, _Layout(params.shape_values(), size))
    return index, image, points, visible, params


def _iterate(seed, indices, size, kw, workers, progress, desc):
    indices = list(indices)
    jobs = [(seed, i, size, kw) for i in indices]
    disable = None if progress is None else (not progress)
    if workers <= 1 or len(jobs) < 2:
        for job in progress_bar(jobs, total=len(jobs), desc=desc, disable=disable):
            yield _render_index(job)
        return
    # fork is cheap and safe here on Linux (workers use numpy/scipy only); elsewhere spawn
    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ctx.Pool(workers) as pool:
        chunk = max(1, min(32, len(jobs) // (4 * workers)))
        for out in progress_bar(pool.imap(_render_index, jobs, chunksize=chunk), total=len(jobs), desc=desc,
                                disable=disable):
            yield out


def render_many(seed, indices, size, kw, workers, progress):
    """Yield ``(index, image, points, visible)`` for the faces ``indices`` of run ``seed``
    (``visible`` as in :func:`render_face` with ``with_visibility=True``)."""
    for index, image, points, visible, _ in _iterate(seed, indices, size, kw, workers, progress, "synth"):
        yield index, image, points, visible


def _stale_faces(outdir, indices):
    """Return the NNNNN.png / NNNNN.pts files in ``outdir`` that a run of ``indices`` would not write."""
    if not outdir.is_dir():
        return []
    keep = set(indices)
    pattern = re.compile(r"(\d{5,})\.(png|pts)")
    return sorted(f for f in outdir.iterdir()
                  if (m := pattern.fullmatch(f.name)) and int(m.group(1)) not in keep)


def write_many(outdir, seed, indices, size, kw, workers, progress, overwrite=False):
    """Write faces as PNG + .pts with a README.txt and manifest.json; return the image paths.

    Faces of an earlier run left in ``outdir`` would be read as part of this data set
    without being in its manifest: they are removed when the folder is an earlier
    synthetic output (or ``overwrite``), and are an error otherwise.
    """
    outdir = Path(outdir)
    indices = list(indices)
    stale = _stale_faces(outdir, indices)
    if stale and not (overwrite or is_synthetic(outdir)):
        raise ShapekitError(
            f"outdir {outdir} already holds {len(stale)} image/landmark files this run would not replace "
            f"(e.g. {stale[0].name}); use an empty folder, or overwrite=True (--overwrite) to delete them")
    for f in stale:
        f.unlink()
    outdir.mkdir(parents=True, exist_ok=True)
    paths, faces = [], []
    t0 = time.perf_counter()
    for index, image, points, visible, params in _iterate(seed, indices, size, kw, workers, progress, "synth"):
        png = outdir / f"{index:05d}.png"
        with atomic_path(png) as tmp:
            imsave(tmp, image, check_contrast=False)
        write_pts(outdir / f"{index:05d}.pts", points)
        paths.append(png)
        occ = params.appearance.get("occluder")
        faces.append(dict(image=png.name, index=index, yaw=round(params.yaw, 3), pitch=round(params.pitch, 3),
                          roll=round(params.roll, 3), occluder=occ["kind"] if occ else None,
                          hidden=[int(k) for k in np.flatnonzero(~visible)],
                          expression={k: round(float(v), 4) for k, v in
                                      zip(geo.EXPRESSION_NAMES, params.expression)}))
    manifest = dict(synthetic=True, note=SYNTHETIC_NOTE, generator="shapekit.data.synth", schema="ibug68",
                    n_points=geo.N_POINTS, coordinates="pts files are 300-W .pts, 1-based on disk",
                    seed=seed, size=size, first_index=indices[0] if indices else 0, count=len(indices),
                    options=kw, seconds=round(time.perf_counter() - t0, 3), faces=faces)
    with atomic_open(outdir / "manifest.json", "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1)
    with atomic_open(outdir / "README.txt", "w", encoding="utf-8") as fh:
        fh.write(SYNTHETIC_NOTE + "\n\n")
        fh.write(f"{len(indices)} faces, {size}x{size} px, seed {seed}, faces {indices[0] if indices else 0}.."
                 f"{indices[-1] if indices else -1}.\nNNNNN.png is the image, NNNNN.pts its 68 landmarks "
                 "(300-W format, 1-based pixel coordinates; every point is given, hidden ones too). "
                 "manifest.json lists the pose, expression, occluder and hidden landmarks (0-based "
                 "indices) of each face.\nRegenerate with: shapekit synth -n N -o OUTDIR --seed S --size S\n")
    return paths
