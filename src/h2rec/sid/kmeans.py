"""Seeded k-means and nearest-codeword assignment shared by RQ-KMeans, VQ, PQ and RQ-VAE init.

Two distance rules, used identically for fitting and encoding so that `encode(train)` reproduces
the codes seen during fitting:

* euclidean: code = argmin_k ||r - e_k||^2; the codeword is the k-means centroid.
* cosine: code = argmax_k cos(r, e_k) (the codeword's direction only; its norm is ignored). Codes
  are clustered by spherical k-means on the normalised vectors, and each codeword is then set to
  the *mean of the raw vectors* assigned to it, so `sum of codewords` still reconstructs a
  residual and decode stays meaningful. (vector-quantize-pytorch's cosine codebooks, used by the
  H2Rec reference code, instead emit unit codewords; ours keep magnitude so residuals shrink.)
"""

from __future__ import annotations

from typing import Literal

import faiss
import numpy as np
import scipy.sparse as sp

Distance = Literal["euclidean", "cosine"]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm; zero rows stay zero (they then never win a cosine argmax)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(np.divide(x, norms, out=np.zeros_like(x), where=norms > 0))


def assign(x: np.ndarray, codebook: np.ndarray, distance: Distance) -> np.ndarray:
    """Index int64 [n] of each row's nearest codeword under `distance` (exact, via faiss)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    cb = np.ascontiguousarray(codebook, dtype=np.float32)
    if distance == "euclidean":
        _, idx = faiss.knn(x, cb, 1)
    else:
        _, idx = faiss.knn(x, _unit_rows(cb), 1, metric=faiss.METRIC_INNER_PRODUCT)
    return idx[:, 0].astype(np.int64)


def distances(x: np.ndarray, codebook: np.ndarray, distance: Distance) -> np.ndarray:
    """All distances float64 [n, K]: squared L2, or 1 - cosine similarity."""
    x64 = np.asarray(x, dtype=np.float64)
    cb = np.asarray(codebook, dtype=np.float64)
    if distance == "euclidean":
        d = (x64**2).sum(1)[:, None] - 2.0 * x64 @ cb.T + (cb**2).sum(1)[None, :]
        return np.maximum(d, 0.0)
    return 1.0 - _unit_rows(x64) @ _unit_rows(cb).T


def cluster_sums(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per-cluster sums float64 [k, d] via one sparse product (np.add.at is far slower)."""
    n = len(labels)
    onehot = sp.csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(k, n))
    return np.asarray(onehot @ np.asarray(x, dtype=np.float64))


def _small_codebook(x: np.ndarray, k: int) -> np.ndarray | None:
    """When there are at most k distinct rows, the codebook is those rows (exact quantisation).

    faiss refuses k > n, and k-means on k distinct points is exact anyway. The remaining slots
    repeat the distinct rows: duplicates are harmless (assignment picks one of them) and, in an
    RQ-VAE, get re-seeded by dead-code restarts.
    """
    if len(x) > k:
        # cheap screen: distinct projections onto a fixed direction imply distinct rows
        probe = np.random.default_rng(0).normal(size=x.shape[1])
        if len(np.unique(x.astype(np.float64) @ probe)) > k:
            return None
    uniq = np.unique(x, axis=0)
    u = len(uniq)
    if u > k:
        return None
    fill = uniq[np.arange(k - u) % u] if u else np.zeros((k, x.shape[1]), np.float32)
    return np.ascontiguousarray(np.concatenate([uniq, fill], axis=0), dtype=np.float32)


def fit_codebook(x: np.ndarray, k: int, *, distance: Distance, niter: int, seed: int) -> np.ndarray:
    """A [k, d] float32 codebook for the rows of x (faiss.Kmeans, seeded, deterministic)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    d = x.shape[1]
    small = _small_codebook(x, k)
    if small is not None:
        return small
    if distance == "euclidean":
        km = faiss.Kmeans(
            d, k, niter=niter, seed=seed, verbose=False, spherical=False, min_points_per_centroid=1
        )
        km.train(x)
        return np.ascontiguousarray(km.centroids, dtype=np.float32)
    # cosine: cluster directions, then give each codeword the mean raw vector of its cluster.
    xu = _unit_rows(x)
    nonzero = np.linalg.norm(x, axis=1) > 0
    if int(nonzero.sum()) <= k or _small_codebook(xu[nonzero], k) is not None:
        # too few distinct directions for k-means: fall back to exact euclidean codewords
        return fit_codebook(x, k, distance="euclidean", niter=niter, seed=seed)
    km = faiss.Kmeans(
        d, k, niter=niter, seed=seed, verbose=False, spherical=True, min_points_per_centroid=1
    )
    km.train(xu[nonzero])
    directions = np.ascontiguousarray(km.centroids, dtype=np.float32)
    labels = assign(x, directions, "cosine")
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = cluster_sums(x, labels, k)
    mean_norm = float(np.linalg.norm(x, axis=1).mean())
    cb = np.where(
        counts[:, None] > 0,
        sums / np.maximum(counts, 1.0)[:, None],
        _unit_rows(directions.astype(np.float64)) * mean_norm,
    )
    return np.ascontiguousarray(cb, dtype=np.float32)
