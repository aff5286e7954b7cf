"""Product quantisation (faiss ProductQuantizer), optionally after an OPQ rotation.

The vector is cut into M = `levels` contiguous sub-vectors and each is quantised by its own
k-means codebook of K = 2**nbits codes. The codes are an *unordered* tuple, not a hierarchy, so
"items sharing the first p codes" (H2Rec's code-guided positives) is less meaningful than for RQ.

* The dimension must be divisible by M; otherwise the vectors are padded with zero columns
  (they quantise to zero and are dropped again by decode), recorded as `pad`.
* With `opq=True` a faiss.OPQMatrix rotation R (orthonormal) is learned first; codebooks then
  live in the rotated space and decode rotates back (x = R^T y).
* `distance="cosine"` only L2-normalises the inputs: sub-vectors of a unit vector are not unit,
  so sub-vector assignment stays Euclidean (what faiss PQ does).
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from h2rec.sid.base import Tokenizer, TokenizerError, pack_arrays, unpack_arrays
from h2rec.sid.config import is_power_of_two, pq_power_of_two_message
from h2rec.sid.kmeans import assign, distances


class PQTokenizer(Tokenizer):
    """faiss PQ (M sub-vectors = levels, K = 2**nbits codes each), OPQ optional."""

    method = "pq"

    def __init__(self, cfg: Any = None) -> None:
        super().__init__(cfg)
        if not is_power_of_two(self.cfg.codebook_size):  # config already checks; keep it local too
            raise TokenizerError(pq_power_of_two_message(self.cfg.codebook_size))
        self.nbits = self.cfg.codebook_size.bit_length() - 1
        self._centroids: np.ndarray | None = None  # [M, K, dsub]
        self._rotation: np.ndarray | None = None  # [d', d'] (OPQ), y = x @ R.T
        self.pad = 0

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        """Pad to a multiple of M, then rotate (OPQ)."""
        if self.pad:
            x = np.concatenate([x, np.zeros((len(x), self.pad), np.float32)], axis=1)
        if self._rotation is not None:
            x = x @ self._rotation.T
        return np.ascontiguousarray(x, dtype=np.float32)

    def _fit(self, x: np.ndarray) -> None:
        cfg, m = self.cfg, self.levels
        n, d = x.shape
        if n < cfg.codebook_size:
            raise TokenizerError(
                f"pq with codebook_size={cfg.codebook_size} needs at least that many training "
                f"vectors (faiss k-means per sub-vector), got {n}"
            )
        self.pad = (-d) % m
        self._rotation = None
        xp = self._prepare(x)
        dp = xp.shape[1]

        def new_pq() -> Any:
            pq = faiss.ProductQuantizer(dp, m, self.nbits)
            pq.cp.seed = cfg.seed
            pq.cp.niter = cfg.kmeans_iters
            pq.cp.min_points_per_centroid = 1  # silence faiss's "provide 39*K points" warning
            pq.verbose = False
            return pq

        if cfg.opq:
            opq = faiss.OPQMatrix(dp, m)
            opq.pq = new_pq()  # OPQ's inner PQ must use our K, not its default 256
            opq.verbose = False
            opq.train(xp)
            self._rotation = faiss.vector_to_array(opq.A).reshape(dp, dp).astype(np.float32)
            xp = self._prepare(x)
        pq = new_pq()
        pq.train(xp)
        self._centroids = (
            faiss.vector_to_array(pq.centroids).reshape(m, pq.ksub, pq.dsub).astype(np.float32)
        )

    def _subvectors(self, xp: np.ndarray) -> list[np.ndarray]:
        assert self._centroids is not None
        dsub = self._centroids.shape[2]
        return [np.ascontiguousarray(xp[:, i * dsub : (i + 1) * dsub]) for i in range(self.levels)]

    def _encode(self, x: np.ndarray) -> np.ndarray:
        assert self._centroids is not None
        subs = self._subvectors(self._prepare(x))
        cols = [assign(s, self._centroids[i], "euclidean") for i, s in enumerate(subs)]
        return np.stack(cols, axis=1)

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        assert self._centroids is not None
        y = np.concatenate([self._centroids[i][codes[:, i]] for i in range(self.levels)], axis=1)
        if self._rotation is not None:
            y = y @ self._rotation  # R orthonormal: inverse = transpose
        return y[:, : y.shape[1] - self.pad] if self.pad else y

    def _last_level_distances(self, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
        assert self._centroids is not None
        last = self._subvectors(self._prepare(x))[-1]
        return distances(last, self._centroids[-1], "euclidean")

    def _codebooks(self) -> list[np.ndarray]:
        assert self._centroids is not None
        return list(self._centroids)

    def _state(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        assert self._centroids is not None
        arrays = {"centroids": self._centroids}
        if self._rotation is not None:
            arrays["opq_rotation"] = self._rotation
        return {"pad": self.pad, "nbits": self.nbits}, {"arrays.safetensors": pack_arrays(arrays)}

    def _restore(self, meta: dict[str, Any], blobs: dict[str, bytes], input_dim: int) -> None:
        arrays = unpack_arrays(blobs["arrays.safetensors"])
        self.pad = int(meta["pad"])
        cent = arrays["centroids"]
        dp = input_dim + self.pad
        if cent.shape != (self.levels, self.cfg.codebook_size, dp // self.levels):
            raise TokenizerError("saved PQ centroids do not match the saved config")
        self._centroids = np.ascontiguousarray(cent, dtype=np.float32)
        rot = arrays.get("opq_rotation")
        self._rotation = None if rot is None else np.ascontiguousarray(rot, dtype=np.float32)
