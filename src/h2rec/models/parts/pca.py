"""PCA (numpy SVD) for initialising item and code tables from pretrained vectors."""

from __future__ import annotations

import numpy as np


def pca_basis(x: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean [d_in], axes [d_in, k]) of rows `x`, k = min(d, rank bound) principal axes.

    Each axis's sign is fixed (its largest-magnitude loading positive), so results do not depend on
    the LAPACK build.
    """
    if d < 1:
        raise ValueError(f"d must be >= 1, got {d}")
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    axes = vt[:d]
    signs = np.sign(axes[np.arange(axes.shape[0]), np.abs(axes).argmax(axis=1)])
    return mean, (axes * np.where(signs == 0, 1.0, signs)[:, None]).T


def pca_item_vectors(text_vectors: np.ndarray, d: int) -> np.ndarray:
    """`[n_items + 1, d]` float32: items' text vectors projected on their first d principal axes.

    Fitted on rows 1..n_items only (row 0 is padding and stays zero). Fewer than d axes available
    (few items or narrow vectors): the remaining columns are zero. Unscaled: callers rescale to
    their init scale.
    """
    vectors = np.asarray(text_vectors, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] < 2:
        raise ValueError(f"expected text vectors [n_items + 1, d_text], got {vectors.shape}")
    mean, axes = pca_basis(vectors[1:], d)
    out = np.zeros((vectors.shape[0], d), dtype=np.float32)
    out[1:, : axes.shape[1]] = (vectors[1:] - mean) @ axes
    return out
