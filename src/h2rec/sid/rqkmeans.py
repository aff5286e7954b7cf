"""Residual k-means (RQ-KMeans: OneRec, GRID, PSRQ's base) and plain VQ (one k-means codebook).

RQ-KMeans: C_l = KMeans(R_l), code_l = nearest(R_l, C_l), R_{l+1} = R_l - C_l[code_l], starting
from R_1 = x. No encoder or decoder is trained, so it is deterministic and cheap, and with
K >= n distinct points the first level already reconstructs exactly. VQ is the same with L = 1,
which is why it is a subclass: the weakest setting of the paper's Table 6.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from h2rec.sid.base import Tokenizer, TokenizerError, pack_arrays, unpack_arrays
from h2rec.sid.kmeans import assign, distances, fit_codebook


class RQKMeansTokenizer(Tokenizer):
    """Residual k-means with faiss; level l is seeded with `seed + l`."""

    method = "rqkmeans"

    def __init__(self, cfg: Any = None) -> None:
        super().__init__(cfg)
        self._books: list[np.ndarray] = []

    def _fit(self, x: np.ndarray) -> None:
        cfg = self.cfg
        residual = x.copy()
        books = []
        for level in range(self.levels):
            cb = fit_codebook(
                residual,
                cfg.codebook_size,
                distance=cfg.distance,
                niter=cfg.kmeans_iters,
                seed=cfg.seed + level,
            )
            # residuals follow the encode rule exactly, so encode(train) == the fitted codes
            residual = residual - cb[assign(residual, cb, cfg.distance)]
            books.append(cb)
        self._books = books

    def _residuals(self, x: np.ndarray, codes: np.ndarray, upto: int) -> np.ndarray:
        r = x.copy()
        for level in range(upto):
            r -= self._books[level][codes[:, level]]
        return r

    def _encode(self, x: np.ndarray) -> np.ndarray:
        codes = np.empty((len(x), self.levels), dtype=np.int64)
        r = x.copy()
        for level, cb in enumerate(self._books):
            codes[:, level] = assign(r, cb, self.cfg.distance)
            r -= cb[codes[:, level]]
        return codes

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        out = np.zeros((len(codes), self._books[0].shape[1]), dtype=np.float32)
        for level, cb in enumerate(self._books):
            out += cb[codes[:, level]]
        return out

    def _last_level_distances(self, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
        r = self._residuals(x, codes, self.levels - 1)
        return distances(r, self._books[-1], self.cfg.distance)

    def _codebooks(self) -> list[np.ndarray]:
        return self._books

    def _state(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        arrays = {f"codebook.{i}": cb for i, cb in enumerate(self._books)}
        return {"levels": len(self._books)}, {"arrays.safetensors": pack_arrays(arrays)}

    def _restore(self, meta: dict[str, Any], blobs: dict[str, bytes], input_dim: int) -> None:
        arrays = unpack_arrays(blobs["arrays.safetensors"])
        books = [arrays[f"codebook.{i}"] for i in range(int(meta["levels"]))]
        expected = (self.cfg.codebook_size, input_dim)
        if len(books) != self.levels or any(b.shape != expected for b in books):
            raise TokenizerError("saved codebooks do not match the saved config")
        self._books = [np.ascontiguousarray(b, dtype=np.float32) for b in books]


class VQTokenizer(RQKMeansTokenizer):
    """One k-means codebook (L = 1): every item gets a single code, so collisions are at least
    1 - K/n (95% at K = 512 for 11k items)."""

    method = "vq"
