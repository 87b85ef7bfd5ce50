"""Grey-level profiles along shape normals: sampling, normalised derivative features and
Mahalanobis matching (Cootes et al. 1995), as numba kernels with NumPy references.

Conventions
-----------
* ``image`` is a 2-D float array (H, W) of grey levels; pixel ``(row, col)`` has its
  centre at ``x = col, y = row`` (0-based pixel centres, as everywhere in shapekit).
  Sampling is bilinear with the coordinates clamped to the image, so a profile that
  leaves the image repeats the border value (its derivative is then 0 there).
* A profile of half-length ``k`` is the vector of ``2k + 1`` grey-level derivatives at
  offsets ``t = -k .. k`` pixels along the unit normal ``n`` of a landmark ``p``: the
  derivative at ``t`` is the central difference ``(g(t + 1) - g(t - 1)) / 2`` of the
  grey levels ``g(t) = I(p + t n)``, so ``2k + 3`` grey levels are sampled. The
  derivative vector is divided by the sum of its absolute values (plus a small
  constant), which makes it invariant to the global brightness and contrast.
* Matching over ``±m`` pixels samples ``2(k + m) + 3`` grey levels once and slides the
  window of ``2k + 1`` derivatives over ``2m + 1`` candidate offsets; the cost of a
  candidate is the Mahalanobis distance ``(g - mean)^T C (g - mean)`` with ``C`` the
  (regularised) inverse covariance of the landmark's training profiles.

The numba kernels (``extract_profiles``, ``profile_costs``) and the NumPy references
(``extract_profiles_reference``, ``profile_costs_reference``) compute the same numbers;
``tests/test_asm.py`` holds them equal.
"""

from __future__ import annotations

import numpy as np

from shapekit import schemas
from shapekit._numba import njit
from shapekit.errors import ShapekitError

#: Added to the sum of absolute derivatives so that a flat profile normalises to zeros.
NORM_EPS = 1e-6


# --------------------------------------------------------------------------- checks
def _check(image, points, normals):
    image = np.asarray(image)
    if image.ndim != 2:
        raise ShapekitError(f"image: expected a 2-D grey image (H, W), got shape {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ShapekitError(f"image: needs at least 2x2 pixels, got {image.shape}")
    points = np.asarray(points, dtype=np.float64)
    normals = np.asarray(normals, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ShapekitError(f"points: expected (L, 2), got {points.shape}")
    if normals.shape != points.shape:
        raise ShapekitError(f"normals: expected {points.shape} like points, got {normals.shape}")
    return np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(points), np.ascontiguousarray(normals)


# --------------------------------------------------------------------------- numba
@njit(cache=True, nogil=True)
def _bilinear(img, x, y):
    h, w = img.shape
    if x < 0.0:
        x = 0.0
    elif x > w - 1.0:
        x = w - 1.0
    if y < 0.0:
        y = 0.0
    elif y > h - 1.0:
        y = h - 1.0
    x0 = int(x)
    y0 = int(y)
    if x0 > w - 2:
        x0 = w - 2
    if y0 > h - 2:
        y0 = h - 2
    fx = x - x0
    fy = y - y0
    top = img[y0, x0] * (1.0 - fx) + img[y0, x0 + 1] * fx
    bot = img[y0 + 1, x0] * (1.0 - fx) + img[y0 + 1, x0 + 1] * fx
    return top * (1.0 - fy) + bot * fy


@njit(cache=True, nogil=True)
def _sample_line(img, px, py, nx, ny, half, out):
    # grey levels at offsets -half .. half along (nx, ny)
    for j in range(2 * half + 1):
        t = j - half
        out[j] = _bilinear(img, px + t * nx, py + t * ny)


@njit(cache=True, nogil=True)
def _extract_profiles_nb(img, points, normals, k):
    n_pts = points.shape[0]
    n = 2 * k + 1
    out = np.zeros((n_pts, n))
    g = np.empty(n + 2)
    for i in range(n_pts):
        px = points[i, 0]
        py = points[i, 1]
        if not (np.isfinite(px) and np.isfinite(py)):
            for j in range(n):
                out[i, j] = np.nan
            continue
        _sample_line(img, px, py, normals[i, 0], normals[i, 1], k + 1, g)
        s = 0.0
        for j in range(n):
            d = 0.5 * (g[j + 2] - g[j])
            out[i, j] = d
            s += abs(d)
        s += NORM_EPS
        for j in range(n):
            out[i, j] /= s
    return out


@njit(cache=True, nogil=True)
def _profile_costs_nb(img, points, normals, mean, icov, k, m):
    n_pts = points.shape[0]
    n = 2 * k + 1
    n_off = 2 * m + 1
    costs = np.empty((n_pts, n_off))
    g = np.empty(2 * (k + m) + 3)
    d = np.empty(2 * (k + m) + 1)
    v = np.empty(n)
    for i in range(n_pts):
        _sample_line(img, points[i, 0], points[i, 1], normals[i, 0], normals[i, 1], k + m + 1, g)
        for j in range(d.shape[0]):
            d[j] = 0.5 * (g[j + 2] - g[j])
        for c in range(n_off):
            s = NORM_EPS
            for j in range(n):
                s += abs(d[c + j])
            for j in range(n):
                v[j] = d[c + j] / s - mean[i, j]
            acc = 0.0
            for a in range(n):
                row = 0.0
                for b in range(n):
                    row += icov[i, a, b] * v[b]
                acc += v[a] * row
            costs[i, c] = acc
    return costs


# --------------------------------------------------------------------------- NumPy references
def _bilinear_reference(img, x, y):
    h, w = img.shape
    x = np.clip(x, 0.0, w - 1.0)
    y = np.clip(y, 0.0, h - 1.0)
    x0 = np.minimum(np.floor(x).astype(np.intp), w - 2)
    y0 = np.minimum(np.floor(y).astype(np.intp), h - 2)
    fx = x - x0
    fy = y - y0
    img = img.astype(np.float64)
    top = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    bot = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bot * fy


def sample_lines_reference(image, points, normals, half):
    """Return grey levels ``(L, 2 half + 1)`` sampled at offsets ``-half .. half`` pixels
    along each normal (bilinear, coordinates clamped to the image)."""
    t = np.arange(-half, half + 1, dtype=np.float64)
    x = points[:, 0:1] + t * normals[:, 0:1]
    y = points[:, 1:2] + t * normals[:, 1:2]
    return _bilinear_reference(image, x, y)


def _normalise_reference(d):
    return d / (np.abs(d).sum(axis=-1, keepdims=True) + NORM_EPS)


def extract_profiles_reference(image, points, normals, k):
    """NumPy reference of :func:`extract_profiles`."""
    image, points, normals = _check(image, points, normals)
    g = sample_lines_reference(image, points, normals, k + 1)
    d = 0.5 * (g[:, 2:] - g[:, :-2])
    return _normalise_reference(d)


def profile_costs_reference(image, points, normals, mean, icov, k, m):
    """NumPy reference of :func:`profile_costs`."""
    image, points, normals = _check(image, points, normals)
    g = sample_lines_reference(image, points, normals, k + m + 1)
    d = 0.5 * (g[:, 2:] - g[:, :-2])  # (L, 2(k+m)+1)
    n = 2 * k + 1
    windows = np.lib.stride_tricks.sliding_window_view(d, n, axis=1)  # (L, 2m+1, n)
    v = _normalise_reference(windows) - np.asarray(mean)[:, None, :]
    return np.einsum("lca,lab,lcb->lc", v, np.asarray(icov), v)


# --------------------------------------------------------------------------- public kernels
def extract_profiles(image, points, normals, k):
    """Return the normalised derivative profiles ``(L, 2k + 1)`` of ``points`` along
    ``normals`` (both (L, 2), pixels of ``image``; normals of unit length).

    A point with a NaN coordinate gets a row of NaN.
    """
    image, points, normals = _check(image, points, normals)
    if int(k) < 1:
        raise ShapekitError(f"k: profile half-length must be >= 1, got {k}")
    return _extract_profiles_nb(image, points, normals, int(k))


def profile_costs(image, points, normals, mean, icov, k, m):
    """Return the Mahalanobis cost ``(L, 2m + 1)`` of each candidate offset
    ``-m .. m`` pixels along each normal: column ``m`` is the point itself.

    ``mean`` (L, 2k + 1) and ``icov`` (L, 2k + 1, 2k + 1) are the profile model of one
    pyramid level. Points must be finite.
    """
    image, points, normals = _check(image, points, normals)
    k, m = int(k), int(m)
    n = 2 * k + 1
    mean = np.ascontiguousarray(mean, dtype=np.float64)
    icov = np.ascontiguousarray(icov, dtype=np.float64)
    if mean.shape != (points.shape[0], n) or icov.shape != (points.shape[0], n, n):
        raise ShapekitError(
            f"profile model: expected mean {(points.shape[0], n)} and icov {(points.shape[0], n, n)}, "
            f"got {mean.shape} and {icov.shape}"
        )
    if m < 0:
        raise ShapekitError(f"m: search half-width must be >= 0, got {m}")
    if not np.all(np.isfinite(points)):
        raise ShapekitError("points: profile matching needs finite points")
    return _profile_costs_nb(image, points, normals, mean, icov, k, m)


# --------------------------------------------------------------------------- normals
def contour_neighbours(schema, n_points=None):
    """Return ``(prev, next)`` index arrays ``(L,)``: the two points whose difference gives
    the tangent of the outline at each landmark (a point is its own neighbour at the
    open end of a curve).

    For ``ibug68`` the outlines are the 300-W curves (jaw, each brow, nose bridge,
    nostrils, closed eyes and lips). Other schemas use their drawing edges: the first two
    neighbours of each point in the edge graph.
    """
    if schema is not None:
        schema = schemas.get(schema)
        n_points = schema.n_points
    if n_points is None:
        raise ShapekitError("contour_neighbours: give a schema or n_points")
    prev = np.arange(n_points)
    nxt = np.arange(n_points)
    if schema is not None and schema.name == "ibug68":
        curves = [(0, 16, False), (17, 21, False), (22, 26, False), (27, 30, False), (31, 35, False),
                  (36, 41, True), (42, 47, True), (48, 59, True), (60, 67, True)]
        for a, b, closed in curves:
            idx = list(range(a, b + 1))
            for j, i in enumerate(idx):
                if closed:
                    prev[i] = idx[j - 1]
                    nxt[i] = idx[(j + 1) % len(idx)]
                else:
                    prev[i] = idx[max(j - 1, 0)]
                    nxt[i] = idx[min(j + 1, len(idx) - 1)]
        return prev, nxt
    nbrs = [[] for _ in range(n_points)]
    for i, j in (schema.edges if schema is not None else ()):
        nbrs[i].append(j)
        nbrs[j].append(i)
    for i, nb in enumerate(nbrs):
        if len(nb) >= 2:
            prev[i], nxt[i] = sorted(nb[:2])
        elif len(nb) == 1:
            prev[i], nxt[i] = min(i, nb[0]), max(i, nb[0])
    return prev, nxt


def shape_normals(points, prev, nxt):
    """Return unit normals ``(L, 2)`` of the outline through ``points`` (pixels).

    The normal of point ``i`` is the tangent ``points[nxt[i]] - points[prev[i]]``
    turned by +90 degrees; a point without neighbours (or a degenerate tangent) gets the
    direction from the shape's centroid, so every normal is defined.
    """
    points = np.asarray(points, dtype=np.float64)
    t = points[nxt] - points[prev]
    nrm = np.stack([-t[:, 1], t[:, 0]], axis=1)
    length = np.hypot(nrm[:, 0], nrm[:, 1])
    bad = ~(length > 1e-9)
    if np.any(bad):
        radial = points - np.nanmean(points, axis=0)
        nrm[bad] = radial[bad]
        length = np.hypot(nrm[:, 0], nrm[:, 1])
        still = ~(length > 1e-9)
        nrm[still] = (1.0, 0.0)
        length[still] = 1.0
    return nrm / length[:, None]
