"""numba kernels of the shape models, each with the NumPy reference it must agree with.

Many small symmetric positive definite systems (one per shape, K x K with K the number
of modes) arise in shape completion; LAPACK called once per matrix is dominated by call
overhead, so these loop over the batch in compiled code.
"""

from __future__ import annotations

import numpy as np

from shapekit._numba import njit

__all__ = [
    "cholesky_factor", "cholesky_solve", "cholesky_factor_ref", "cholesky_solve_ref",
    "centre_rows", "centre_rows_ref", "gpa_sweep", "gpa_sweep_ref", "scale_shift_rows",
    "missing_scatter", "missing_scatter_ref", "pose_rows", "pose_rows_ref",
]


@njit(fastmath=True)
def _cholesky_factor(G, L):
    n, k, _ = G.shape
    for b in range(n):
        for j in range(k):
            s = G[b, j, j]
            for p in range(j):
                s -= L[b, j, p] * L[b, j, p]
            d = np.sqrt(s) if s > 1e-300 else 1e-150
            L[b, j, j] = d
            for i in range(j + 1, k):
                s = G[b, i, j]
                for p in range(j):
                    s -= L[b, i, p] * L[b, j, p]
                L[b, i, j] = s / d


@njit(fastmath=True)
def _substitute(L, r, y, x):
    """x = (L L^T)^-1 r by forward then back substitution; y is scratch (it may be x itself)."""
    k = r.shape[0]
    for j in range(k):
        s = r[j]
        for p in range(j):
            s -= L[j, p] * y[p]
        y[j] = s / L[j, j]
    for j in range(k - 1, -1, -1):
        s = y[j]
        for p in range(j + 1, k):
            s -= L[p, j] * x[p]
        x[j] = s / L[j, j]


@njit(fastmath=True)
def _cholesky_solve(L, index, R, X):
    n, k = R.shape
    y = np.empty(k)
    for b in range(n):
        _substitute(L[index[b]], R[b], y, X[b])


def cholesky_factor(G):
    """Return the lower Cholesky factors (n, K, K) of symmetric positive definite G (n, K, K)."""
    G = np.ascontiguousarray(G, dtype=np.float64)
    L = np.zeros_like(G)
    if G.size:
        _cholesky_factor(G, L)
    return L


def cholesky_solve(L, R, index=None):
    """Return X (n, K) solving ``L L^T X = R`` for the factors of :func:`cholesky_factor`.

    ``index`` (n,) picks the factor of each row (rows that share a system share a factor);
    by default row i uses factor i.
    """
    L = np.ascontiguousarray(L, dtype=np.float64)
    R = np.ascontiguousarray(R, dtype=np.float64)
    index = np.arange(len(R)) if index is None else np.ascontiguousarray(index, dtype=np.int64)
    if len(index) != len(R) or (len(index) and (index.min() < 0 or index.max() >= len(L))):
        raise ValueError("cholesky_solve: index does not match the factors")
    X = np.zeros_like(R)
    if R.size:
        _cholesky_solve(L, index.astype(np.int64), R, X)
    return X


def cholesky_factor_ref(G):
    """NumPy reference of :func:`cholesky_factor` (column loop vectorised over the batch)."""
    n, k, _ = G.shape
    L = np.zeros_like(G, dtype=float)
    for j in range(k):
        lj = L[:, j, :j]
        d = np.sqrt(np.maximum(G[:, j, j] - np.einsum("nk,nk->n", lj, lj), 1e-300))
        L[:, j, j] = d
        if j + 1 < k:
            L[:, j + 1:, j] = (G[:, j + 1:, j] - np.einsum("nik,nk->ni", L[:, j + 1:, :j], lj)) / d[:, None]
    return L


def cholesky_solve_ref(L, R):
    """NumPy reference of :func:`cholesky_solve`."""
    n, k = R.shape
    y = np.empty_like(R, dtype=float)
    for j in range(k):
        y[:, j] = (R[:, j] - np.einsum("nk,nk->n", L[:, j, :j], y[:, :j])) / L[:, j, j]
    x = np.empty_like(y)
    for j in range(k - 1, -1, -1):
        x[:, j] = (y[:, j] - np.einsum("nk,nk->n", L[:, j + 1:, j], x[:, j + 1:])) / L[:, j, j]
    return x


# -- GPA over complete shapes: one pass over the data per step ------------------------
# A shape is a row of complex points. NumPy needs several passes (mean, subtract, norm;
# two matrix-vector products per iteration; scale, shift); these fuse each step into one
# read of the (N, L) array, which is what bounds the time for large N.

@njit
def _centre_rows(x, y, mux, nx2):
    n, m = x.shape
    for i in range(n):
        s = 0j
        for j in range(m):
            s += x[i, j]
        mu = s / m
        mux[i] = mu
        acc = 0.0
        for j in range(m):
            d = x[i, j] - mu
            y[i, j] = d
            acc += d.real * d.real + d.imag * d.imag
        nx2[i] = acc


def centre_rows(x):
    """Return (y, mux, nx2): rows of complex shapes ``x`` (N, L) centred, their centroids and squared norms."""
    x = np.ascontiguousarray(x, dtype=np.complex128)
    y = np.empty_like(x)
    mux = np.empty(len(x), np.complex128)
    nx2 = np.empty(len(x))
    _centre_rows(x, y, mux, nx2)
    return y, mux, nx2


def centre_rows_ref(x):
    """NumPy reference of :func:`centre_rows`."""
    mux = x.mean(1)
    y = x - mux[:, None]
    return y, mux, (np.abs(y) ** 2).sum(1)


@njit
def _gpa_sweep(y, m, nx2, nm2, scale, accumulate, z, cross, num):
    n, k = y.shape
    for j in range(k):
        num[j] = 0j
    for i in range(n):
        c = 0j
        for j in range(k):
            c += np.conj(y[i, j]) * m[j]
        cross[i] = c
        a = abs(c)
        u = c / a if a > 0 else 1.0 + 0j
        zi = u * np.sqrt(nm2 / nx2[i]) if scale else u
        z[i] = zi
        if accumulate:
            for j in range(k):
                num[j] += y[i, j] * zi


def gpa_sweep(y, m, nx2, scale, accumulate=True):
    """Return (z, cross, num) of one GPA step over centred complex shapes ``y`` (N, L) and mean ``m`` (L,).

    ``cross[i] = sum_j conj(y_ij) m_j``; ``z[i]`` is the rotation (phase of ``cross``)
    times, with ``scale``, the factor giving shape i the norm of the centred mean;
    ``num = sum_i z_i y_i`` (when ``accumulate``), the numerator of the new mean.
    """
    y = np.ascontiguousarray(y, dtype=np.complex128)
    m = np.ascontiguousarray(m, dtype=np.complex128)
    mc = m - m.mean()
    nm2 = float(np.sum(mc.real ** 2 + mc.imag ** 2))
    z = np.empty(len(y), np.complex128)
    cross = np.empty(len(y), np.complex128)
    num = np.empty(y.shape[1], np.complex128)
    _gpa_sweep(y, m, np.ascontiguousarray(nx2, dtype=np.float64), nm2, bool(scale), bool(accumulate), z, cross, num)
    return z, cross, (num if accumulate else None)


def gpa_sweep_ref(y, m, nx2, scale, accumulate=True):
    """NumPy reference of :func:`gpa_sweep`."""
    mc = m - m.mean()
    nm2 = float(np.sum(np.abs(mc) ** 2))
    cross = np.conj(y @ np.conj(m))
    a = np.abs(cross)
    u = np.where(a > 0, cross / np.where(a > 0, a, 1.0), 1.0 + 0j)
    z = u * np.sqrt(nm2 / nx2) if scale else u
    return z, cross, (y.T @ z if accumulate else None)


@njit
def _scale_shift_rows(y, z, o):
    n, k = y.shape
    for i in range(n):
        zi = z[i]
        oi = o[i]
        for j in range(k):
            y[i, j] = y[i, j] * zi + oi


def scale_shift_rows(y, z, o):
    """Set ``y[i] = z[i] * y[i] + o[i]`` in place for complex rows (N, L); return ``y``."""
    if not (y.flags.c_contiguous and y.dtype == np.complex128):
        raise ValueError("scale_shift_rows: y must be a C-contiguous complex128 array")
    _scale_shift_rows(y, np.ascontiguousarray(z, dtype=np.complex128), np.ascontiguousarray(o, dtype=np.complex128))
    return y


# -- EM: posterior covariance of the inferred coordinates -------------------------------

@njit
def _missing_scatter(L, v, missing, count, sigma2, out):
    n_pat, k, _ = L.shape
    d = v.shape[1]
    idx = np.empty(d, np.int64)
    y = np.empty(k)
    for u in range(n_pat):
        nm = 0
        for c in range(d):
            if missing[u, c]:
                idx[nm] = c
                nm += 1
        if nm == 0:
            continue
        w = count[u] * sigma2
        for ia in range(nm):
            a = idx[ia]
            # y = G^-1 v[:, a] with G = L L^T
            _substitute(L[u], v[:, a], y, y)
            for ib in range(nm):
                b = idx[ib]
                s = 0.0
                for j in range(k):
                    s += v[j, b] * y[j]
                out[a, b] += w * s
            out[a, a] += w


def missing_scatter(chol, v, missing, count, sigma2):
    """Return sum_u count_u * [V^T (sigma2 G_u^-1) V + sigma2 I] restricted to pattern u's missing coordinates.

    ``chol`` (U, K, K): Cholesky factors of the G_u; ``v`` (K, D) real modes; ``missing``
    (U, D) bool per coordinate; ``count`` (U,). Only the missing-by-missing block of each
    pattern is formed, so the cost follows the number of missing coordinates.
    """
    d = v.shape[1]
    out = np.zeros((d, d))
    if len(chol) and v.shape[0]:
        _missing_scatter(np.ascontiguousarray(chol, dtype=np.float64), np.ascontiguousarray(v, dtype=np.float64),
                         np.ascontiguousarray(missing, dtype=np.bool_), np.ascontiguousarray(count, dtype=np.float64),
                         float(sigma2), out)
    elif v.shape[0] == 0:
        out[np.diag_indices(d)] = sigma2 * (np.asarray(count, float)[:, None] * np.asarray(missing, bool)).sum(0)
    return out


def missing_scatter_ref(G, v, missing, count, sigma2):
    """NumPy reference of :func:`missing_scatter` from the matrices G (U, K, K) themselves."""
    d = v.shape[1]
    out = np.zeros((d, d))
    for u in range(len(G)):
        m = np.asarray(missing[u], float)
        full = v.T @ (sigma2 * np.linalg.inv(G[u])) @ v + sigma2 * np.eye(d)
        out += count[u] * full * np.outer(m, m)
    return out


# -- joint pose + shape fit: the pose step ------------------------------------------------

@njit
def _pose_rows(inst, xc, w, scale, z, o):
    n, m = inst.shape
    for i in range(n):
        sw = 0.0
        mu = 0j
        for j in range(m):
            sw += w[i, j]
            mu += w[i, j] * inst[i, j]
        mu = mu / sw
        c = 0j
        ni2 = 0.0
        for j in range(m):
            if w[i, j] > 0:
                d = inst[i, j] - mu
                c += w[i, j] * np.conj(d) * xc[i, j]
                ni2 += w[i, j] * (d.real * d.real + d.imag * d.imag)
        a = abs(c)
        if a > 0:
            zt = c / max(ni2, 1e-300) if scale else c / a
        else:
            zt = 1.0 + 0j
        z[i] = 1.0 / zt
        o[i] = mu


def pose_rows(inst, xc, w, scale):
    """Return (z, o): per row, the inverse of the weighted least-squares similarity from ``inst`` onto ``xc``.

    ``inst`` (N, L) complex model instances, ``xc`` (N, L) complex image points centred on
    their weighted centroid, ``w`` (N, L) point weights. Model-frame points are
    ``z * xc + o``; ``o`` is the instance's weighted centroid. Without ``scale`` the
    similarity is a rotation.
    """
    n = len(inst)
    z = np.empty(n, np.complex128)
    o = np.empty(n, np.complex128)
    _pose_rows(np.ascontiguousarray(inst, dtype=np.complex128), np.ascontiguousarray(xc, dtype=np.complex128),
               np.ascontiguousarray(w, dtype=np.float64), bool(scale), z, o)
    return z, o


def pose_rows_ref(inst, xc, w, scale):
    """NumPy reference of :func:`pose_rows`."""
    sw = w.sum(1)
    mut = (w * inst).sum(1) / sw
    ic = np.where(w > 0, inst - mut[:, None], 0)
    c = (w * np.conj(ic) * xc).sum(1)
    ni2 = (w * (ic.real ** 2 + ic.imag ** 2)).sum(1)
    a = np.abs(c)
    if scale:
        zt = np.where(a > 0, c / np.maximum(ni2, 1e-300), 1.0 + 0j)
    else:
        zt = np.where(a > 0, c / np.where(a > 0, a, 1.0), 1.0 + 0j)
    return 1.0 / zt, mut
