"""The tokenizer interface every SID method implements, input checks, and save/load.

A tokenizer is fitted once on item-text embeddings and can then encode any vector of the same
dimension without refitting: that is what lets a model give Semantic IDs to items it never saw in
training (cold start). Saved tokenizers are a folder holding `tokenizer.json` (method, resolved
config, input dimension, sha256 of each array file) and safetensors array files, written through
`h2rec.io.atomic_directory` so a reader never sees half a tokenizer.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import safetensors.numpy as st_numpy

from h2rec.errors import H2RecError
from h2rec.io import atomic_directory, atomic_write_bytes, atomic_write_json, sha256_file
from h2rec.sid.config import TokenizerConfig

FORMAT = "h2rec-sid-tokenizer"
FORMAT_VERSION = 1
META_FILE = "tokenizer.json"
ARRAYS_FILE = "arrays.safetensors"


class TokenizerError(H2RecError, ValueError):
    """Bad input to a tokenizer (wrong shape, NaN/inf, out-of-range codes, corrupt file).

    Also a `ValueError`, so callers that do not know h2rec's error types still catch it.
    """


class NotFittedError(TokenizerError):
    """encode/decode/save called before fit (or load)."""


def as_vectors(x: Any, *, dim: int | None = None, name: str = "vectors") -> np.ndarray:
    """Validate a [n, d] matrix of finite numbers and return it as C-contiguous float32.

    Errors name the offending rows, because a single NaN embedding (an item with empty text
    through a broken encoder, say) otherwise silently poisons every k-means centroid.
    """
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TokenizerError(f"{name}: cannot be read as a numeric array ({exc})") from exc
    if arr.dtype.kind not in "fiub":
        raise TokenizerError(f"{name}: expected numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise TokenizerError(f"{name}: expected a 2-D array [n_items, dim], got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise TokenizerError(f"{name}: empty array of shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise TokenizerError(
            f"{name}: expected {dim} columns (the dimension the tokenizer was fitted on), "
            f"got {arr.shape[1]}"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise TokenizerError(
            f"{name}: {bad.size} row(s) contain NaN or inf (first rows: {bad[:5].tolist()}); "
            "fix or drop those embeddings before tokenizing"
        )
    return arr


def l2_normalise(x: np.ndarray, *, name: str = "vectors") -> np.ndarray:
    """Rows scaled to unit L2 norm; zero rows are an error (their direction is undefined)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    zero = norms[:, 0] == 0
    if zero.any():
        rows = np.flatnonzero(zero)
        raise TokenizerError(
            f"{name}: distance='cosine' needs non-zero vectors, but {rows.size} row(s) have zero "
            f"norm (first rows: {rows[:5].tolist()})"
        )
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def as_codes(codes: Any, sizes: list[int], *, name: str = "codes") -> np.ndarray:
    """Validate an integer [n, L] code matrix against per-level codebook sizes."""
    arr = np.asarray(codes)
    if arr.ndim != 2 or arr.shape[1] != len(sizes):
        raise TokenizerError(f"{name}: expected shape [n, {len(sizes)}], got {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise TokenizerError(f"{name}: expected integer codes, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size:
        lo = arr.min(axis=0)
        hi = arr.max(axis=0)
        for level, k in enumerate(sizes):
            if lo[level] < 0 or hi[level] >= k:
                raise TokenizerError(
                    f"{name}: level {level + 1} has codes in [{lo[level]}, {hi[level]}], "
                    f"outside [0, {k - 1}]"
                )
    return arr


class Tokenizer(ABC):
    """fit / encode / decode / codebooks / save / load, identical for every SID method.

    Subclasses work on *preprocessed* vectors (validated float32, L2-normalised when
    `distance="cosine"`) and implement the underscored hooks; this class owns validation,
    timing and persistence so every method behaves the same at the edges.
    """

    method: ClassVar[str]

    def __init__(self, cfg: TokenizerConfig | None = None) -> None:
        cfg = cfg if cfg is not None else TokenizerConfig(method=self.method)  # type: ignore[arg-type]
        if cfg.method != self.method:
            raise TokenizerError(f"{type(self).__name__} got a config for method={cfg.method!r}")
        self.cfg = cfg
        self.input_dim: int | None = None
        self.fit_info: dict[str, Any] = {}

    # ---- sizes ---------------------------------------------------------------------------------
    @property
    def levels(self) -> int:
        return self.cfg.n_levels

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.cfg.codebook_size] * self.levels

    @property
    def is_fitted(self) -> bool:
        return self.input_dim is not None

    def _require_fitted(self) -> int:
        if self.input_dim is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load() first")
        return self.input_dim

    # ---- public API ----------------------------------------------------------------------------
    def preprocess(self, x: Any, *, name: str = "vectors") -> np.ndarray:
        """Validated float32 vectors in the space the quantiser works in (normalised for cosine)."""
        arr = as_vectors(x, dim=self.input_dim, name=name)
        return l2_normalise(arr, name=name) if self.cfg.distance == "cosine" else arr

    def fit(self, x: Any) -> Tokenizer:
        """Learn codebooks from item vectors [n, d]; returns self. Refitting starts from scratch."""
        arr = as_vectors(x)
        xp = l2_normalise(arr) if self.cfg.distance == "cosine" else arr
        t0 = time.perf_counter()
        self._fit(xp)
        self.input_dim = int(arr.shape[1])
        self.fit_info = {"n_train": int(arr.shape[0]), "fit_seconds": time.perf_counter() - t0}
        return self

    def encode(self, x: Any, *, batch_size: int = 8192) -> np.ndarray:
        """Codes int64 [n, levels] of any vectors of the fitted dimension (no refitting)."""
        self._require_fitted()
        xp = self.preprocess(x)
        parts = [self._encode(xp[i : i + batch_size]) for i in range(0, len(xp), batch_size)]
        return np.concatenate(parts, axis=0).astype(np.int64, copy=False)

    def decode(self, codes: Any) -> np.ndarray:
        """Reconstructed vectors float32 [n, d] in the preprocessed space (unit-norm inputs for cosine)."""
        self._require_fitted()
        arr = as_codes(codes, self.codebook_sizes)
        return np.ascontiguousarray(self._decode(arr), dtype=np.float32)

    def reconstruct(self, x: Any) -> np.ndarray:
        return self.decode(self.encode(x))

    def last_level_distances(self, x: Any, codes: Any | None = None) -> np.ndarray:
        """Distances float64 [n, K_last] of each item's last-level input to the last codebook.

        "Last-level input" is the last residual for RQ methods (in latent space for RQ-VAE), the
        vector itself for VQ and the last sub-vector for PQ; the distance is the one the method
        assigns codes by. `codes` (default: `encode(x)`) fixes the prefix the residual follows.
        Used by the Sinkhorn collision policy.
        """
        self._require_fitted()
        xp = self.preprocess(x)
        c = self._encode(xp) if codes is None else as_codes(codes, self.codebook_sizes)
        if len(c) != len(xp):
            raise TokenizerError(f"codes has {len(c)} rows but vectors has {len(xp)}")
        return np.asarray(self._last_level_distances(xp, c), dtype=np.float64)

    def codebooks(self) -> list[np.ndarray]:
        """Per-level codebooks, each float32 [K_l, d_c] (H2Rec initialises code embeddings from them)."""
        self._require_fitted()
        return [np.array(cb, dtype=np.float32, copy=True) for cb in self._codebooks()]

    def save(self, path: str | Path) -> Path:
        """Write the fitted tokenizer to folder `path` atomically (replacing an older tokenizer)."""
        self._require_fitted()
        path = Path(path)
        if path.exists() and (
            not path.is_dir() or (any(path.iterdir()) and not (path / META_FILE).is_file())
        ):
            raise TokenizerError(
                f"{path}: exists and is not a saved tokenizer; refusing to replace it"
            )
        meta, blobs = self._state()
        with atomic_directory(path) as tmp:
            hashes = {}
            for fname, data in blobs.items():
                atomic_write_bytes(tmp / fname, data)
                hashes[fname] = sha256_file(tmp / fname)
            atomic_write_json(
                tmp / META_FILE,
                {
                    "format": FORMAT,
                    "version": FORMAT_VERSION,
                    "method": self.method,
                    "config": self.cfg.model_dump(mode="json"),
                    "input_dim": self.input_dim,
                    "fit_info": self.fit_info,
                    "state": meta,
                    "files": hashes,
                },
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Read a folder written by `save`; returns the right subclass for its method."""
        from h2rec.sid.factory import build_tokenizer

        path = Path(path)
        meta_path = path / META_FILE
        if not meta_path.is_file():
            raise TokenizerError(f"{path}: no {META_FILE}; not a saved tokenizer")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TokenizerError(f"{meta_path}: unreadable ({exc})") from exc
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise TokenizerError(
                f"{meta_path}: format {meta.get('format')!r} v{meta.get('version')} is not "
                f"{FORMAT!r} v{FORMAT_VERSION}"
            )
        blobs: dict[str, bytes] = {}
        for fname, digest in meta["files"].items():
            fpath = path / fname
            if not fpath.is_file() or sha256_file(fpath) != digest:
                raise TokenizerError(f"{fpath}: missing or corrupted (sha256 mismatch)")
            blobs[fname] = fpath.read_bytes()
        tok = build_tokenizer(TokenizerConfig.model_validate(meta["config"]))
        if cls is not Tokenizer and not isinstance(tok, cls):
            raise TokenizerError(f"{path}: holds a {meta['method']} tokenizer, not {cls.__name__}")
        tok._restore(meta["state"], blobs, int(meta["input_dim"]))
        tok.input_dim = int(meta["input_dim"])
        tok.fit_info = dict(meta.get("fit_info") or {})
        return tok

    # ---- hooks for subclasses ------------------------------------------------------------------
    @abstractmethod
    def _fit(self, x: np.ndarray) -> None: ...

    @abstractmethod
    def _encode(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _decode(self, codes: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _last_level_distances(self, x: np.ndarray, codes: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _codebooks(self) -> list[np.ndarray]: ...

    @abstractmethod
    def _state(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        """(small JSON metadata, {file name: bytes}) describing the fitted state."""

    @abstractmethod
    def _restore(self, meta: dict[str, Any], blobs: dict[str, bytes], input_dim: int) -> None: ...


def pack_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    return st_numpy.save({k: np.ascontiguousarray(v) for k, v in arrays.items()})


def unpack_arrays(blob: bytes) -> dict[str, np.ndarray]:
    return dict(st_numpy.load(blob))
