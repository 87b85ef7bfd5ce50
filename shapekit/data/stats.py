"""What a landmark dataset holds: counts, image sizes, missing points, eye distance, head roll, face size."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from shapekit import schemas as _schemas
from shapekit.data import crops as _crops
from shapekit.data.datasets import LandmarkDataset
from shapekit.data.images import image_size
from shapekit.data.prepare import _describe
from shapekit.data.synth import is_synthetic
from shapekit.errors import ShapekitError
from shapekit.io import Annotations, read
from shapekit.metrics import normalizing_distance
from shapekit.viz.landmarks import plot_dataset_stats, plot_sample_grid

PERCENTILES = (0, 5, 25, 50, 75, 95, 100)


def _percentiles(values):
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {f"p{p}": None for p in PERCENTILES} | {"mean": None, "std": None, "n": 0}
    q = np.percentile(v, PERCENTILES)
    out = {f"p{p}": float(x) for p, x in zip(PERCENTILES, q)}
    out.update(mean=float(v.mean()), std=float(v.std()), n=int(len(v)))
    return out


def head_roll(shapes, schema):
    """Return the in-plane head roll of each shape in degrees ``(N,)``.

    The angle of the line from the first to the second group of the schema's
    default normalisation (outer eye corners for ibug68, eye centres for mtfl5),
    positive when the image-right eye is lower (clockwise on screen, y down).
    """
    s = _schemas.get(schema)
    a, b = s.norm_groups()
    shapes = np.asarray(shapes, dtype=float)
    with np.errstate(invalid="ignore"), _quiet():
        pa = np.nanmean(shapes[:, a], axis=1)
        pb = np.nanmean(shapes[:, b], axis=1)
    d = pb - pa
    return np.degrees(np.arctan2(d[:, 1], d[:, 0]))


class _quiet:
    def __enter__(self):
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def dataset_stats(source, format="auto", schema=None, values=False, read_sizes=True):
    """Return a dict describing a landmark dataset (JSON-ready).

    Keys: source, format, schema, n_samples, n_images (distinct image files),
    n_points, image_size (height/width percentiles and the most common sizes),
    images_missing, missing_per_point, samples_with_missing, missing_fraction,
    normalizing_distance (percentiles, pixels; the schema's default normalisation,
    e.g. inter-ocular), roll (degrees; percentiles and the fraction beyond 15 and
    30 degrees), face_size (longer landmark-box side, pixels) and face_fraction (face
    size / longer image side). With ``values`` the per-sample arrays are included
    under ``values`` (for plots). ``source`` is anything :func:`shapekit.io.read`
    reads, or an Annotations.
    """
    ann = source if isinstance(source, Annotations) else read(source, format=format, schema=schema)
    shapes = np.asarray(ann.shapes, dtype=float)
    n, n_points = shapes.shape[:2]
    if n == 0:
        raise ShapekitError(f"source {source!r}: no samples")
    schema_name = schema or ann.schema
    if schema_name is None:
        s = _schemas.for_n_points(n_points)
        schema_name = s.name if s is not None else None
    present = np.isfinite(shapes).all(-1)
    missing = (~present).sum(0)

    heights, widths, n_missing_img, n_no_image = [], [], 0, 0
    embedded = getattr(ann, "images", None)
    paths = [m.get("image") for m in ann.meta]
    if embedded is not None:
        heights = [np.asarray(embedded).shape[1]] * n
        widths = [np.asarray(embedded).shape[2]] * n
    elif read_sizes:
        cache = {}
        for p in paths:
            if p is None:
                n_no_image += 1
                heights.append(np.nan)
                widths.append(np.nan)
                continue
            if p not in cache:
                try:
                    cache[p] = image_size(p)
                except ShapekitError:
                    cache[p] = (np.nan, np.nan)
                    n_missing_img += 1
            heights.append(cache[p][0])
            widths.append(cache[p][1])
    heights = np.asarray(heights, dtype=float)
    widths = np.asarray(widths, dtype=float)

    valid = present.any(1)
    box = np.full((n, 4), np.nan)
    box[valid] = _crops.landmark_box(shapes[valid])
    face = np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])
    if schema_name is not None and _schemas.get(schema_name).n_points == n_points:
        with _quiet():
            nd = normalizing_distance(np.where(np.isfinite(shapes), shapes, np.nan), schema=schema_name)
        roll = head_roll(shapes, schema_name)
        norm_name = _schemas.get(schema_name).default_norm
    else:
        nd = np.full(n, np.nan)
        roll = np.full(n, np.nan)
        norm_name = None

    sizes = {}
    if len(heights) and np.isfinite(heights).any():
        hw = [(int(h), int(w)) for h, w in zip(heights, widths) if np.isfinite(h)]
        uniq, counts = np.unique(np.array(hw), axis=0, return_counts=True)
        order = np.argsort(-counts)[:5]
        sizes = {"height": _percentiles(heights), "width": _percentiles(widths),
                 "most_common": [{"height": int(uniq[k][0]), "width": int(uniq[k][1]), "count": int(counts[k])}
                                 for k in order], "n_distinct": int(len(uniq))}
    longer = np.fmax(heights, widths) if len(heights) else np.full(n, np.nan)
    abs_roll = np.abs(roll[np.isfinite(roll)])
    out = {
        "source": _describe(source),
        "format": ann.format,
        "schema": schema_name,
        "synthetic": _is_synthetic(ann),
        "n_samples": int(n),
        "n_images": int(len({p for p in paths if p is not None})) if embedded is None else int(n),
        "n_points": int(n_points),
        "image_size": sizes,
        "images_missing": int(n_missing_img),
        "samples_without_image": int(n_no_image),
        "missing_per_point": missing.astype(int).tolist(),
        "samples_with_missing": int((~present).any(1).sum()),
        "missing_fraction": float((~present).mean()),
        "normalization": norm_name,
        "normalizing_distance": _percentiles(nd),
        "roll": _percentiles(roll) | {
            "frac_abs_over_15": float(np.mean(abs_roll > 15)) if len(abs_roll) else None,
            "frac_abs_over_30": float(np.mean(abs_roll > 30)) if len(abs_roll) else None},
        "face_size": _percentiles(face),
        "face_fraction": _percentiles(face / longer) if len(longer) == n else _percentiles([]),
    }
    if values:
        out["values"] = {"normalizing_distance": nd.tolist(), "roll": roll.tolist(), "face_size": face.tolist()}
        out["_annotations"] = ann
    return out


def format_stats(stats):
    """Return a human-readable multi-line summary of :func:`dataset_stats`."""
    def pct(d, unit="", fmt="{:.1f}"):
        if not d or d.get("n", 0) == 0:
            return "n/a"
        # "from A to B": "-13.6-13.2" would read as a subtraction
        return (f"median {fmt.format(d['p50'])}{unit}, 5th to 95th percentile {fmt.format(d['p5'])} to "
                f"{fmt.format(d['p95'])}{unit}, min {fmt.format(d['p0'])}, max {fmt.format(d['p100'])}")

    lines = [f"source     {stats['source']}  (format {stats['format']}, schema {stats['schema']}"
             + (", SYNTHETIC" if stats.get("synthetic") else "") + ")",
             f"samples    {stats['n_samples']} faces in {stats['n_images']} images, {stats['n_points']} points"]
    sz = stats["image_size"]
    if sz:
        common = ", ".join(f"{c['width']}x{c['height']} ({c['count']})" for c in sz["most_common"][:3])
        lines.append(f"images     {sz['n_distinct']} distinct sizes; most common {common}; "
                     f"height {pct(sz['height'], ' px', '{:.0f}')}")
    if stats["images_missing"]:
        lines.append(f"           {stats['images_missing']} image files missing or unreadable")
    if stats.get("samples_without_image"):
        lines.append(f"images     {stats['samples_without_image']} samples have no image (annotations only)")
    miss = np.asarray(stats["missing_per_point"])
    if miss.any():
        worst = np.argsort(-miss)[:5]
        lines.append(f"missing    {stats['samples_with_missing']} samples with missing points "
                     f"({100 * stats['missing_fraction']:.2f}% of points); most often "
                     + ", ".join(f"#{k} ({miss[k]})" for k in worst if miss[k]))
    else:
        lines.append("missing    none")
    lines.append(f"{(stats['normalization'] or 'norm'):10s} {pct(stats['normalizing_distance'], ' px')}")
    r = stats["roll"]
    if r.get("n"):
        lines.append(f"roll       {pct(r, ' deg')}; |roll| > 15 deg: {100 * r['frac_abs_over_15']:.1f}%, "
                     f"> 30 deg: {100 * r['frac_abs_over_30']:.1f}%")
    lines.append(f"face size  {pct(stats['face_size'], ' px')} (longer landmark-box side)")
    ff = stats["face_fraction"]
    if ff.get("n"):
        lines.append(f"face/image {pct(ff, '', '{:.2f}')}")
    return "\n".join(lines)


def plot_stats(stats, outdir, n_samples=16, seed=0, size=160):
    """Write ``samples.png`` (a grid of landmark crops with the schema's edges) and ``distributions.png`` into ``outdir``.

    ``stats`` must come from :func:`dataset_stats` with ``values=True``. Returns the two paths.
    """
    ann = stats["_annotations"]
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    n = len(ann)
    idx = np.sort(np.random.default_rng(seed).choice(n, min(n_samples, n), replace=False))
    sub = ann[idx]
    ds = LandmarkDataset.from_annotations(sub, size=size)
    items = [ds[k] for k in range(len(ds))]
    shapes = np.stack([np.where(it["mask"].numpy()[:, None], it["shape"].numpy(), np.nan) for it in items])
    titles = [ds.names[k][:24] for k in range(len(ds))]
    grid = plot_sample_grid([it["image"] for it in items], shapes, outdir / "samples.png", schema=ds.schema,
                            titles=titles, suptitle=f"{stats['source']}: {len(items)} random samples"
                            + (" (SYNTHETIC)" if stats.get("synthetic") else ""))
    dist = plot_dataset_stats(stats, outdir / "distributions.png")
    return grid, dist


def _is_synthetic(ann):
    """Return True when the annotations come from folders written by shapekit's face generator."""
    if getattr(ann, "synthetic", False):
        return True
    folders = {os.path.dirname(m["source"]) for m in ann.meta if m.get("source")}
    return any(is_synthetic(f) for f in folders if f)
