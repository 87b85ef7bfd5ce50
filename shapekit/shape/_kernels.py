"""numba kernels of the shape models, each with the NumPy reference it must agree with.

Many small symmetric positive definite systems (one per shape, K x K with K the number
of modes) arise in shape completion; LAPACK called once per matrix is dominated by call
overhead, so these loop over the batch in compiled code.
"""

from __future__ import annotations

import numpy as np

from shapekit._numba import njit

__all__ = ["cholesky_factor", "cholesky_solve", "cholesky_factor_ref", "cholesky_solve_ref"]


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
def _cholesky_solve(L, index, R, X):
    n, k = R.shape
    y = np.empty(k)
    for b in range(n):
        f = index[b]
        for j in range(k):
            s = R[b, j]
            for p in range(j):
                s -= L[f, j, p] * y[p]
            y[j] = s / L[f, j, j]
        for j in range(k - 1, -1, -1):
            s = y[j]
            for p in range(j + 1, k):
                s -= L[f, p, j] * X[b, p]
            X[b, j] = s / L[f, j, j]


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
