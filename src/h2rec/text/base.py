"""The `Embedder` interface every text -> vector backend implements, and the checks they share.

An embedder is identified by its `key`: the cache and every stamp use it, so two embedders that can
give different vectors for the same text must never share a key (the model, its weights where a
name is ambiguous, the normalisation, and for corpus-fitted models the corpus itself).
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from h2rec.errors import H2RecError


class EmbeddingError(H2RecError):
    """Embedding failed in a way the user can fix (bad input file, bad key, no text); says how."""


class StaleEmbeddingsError(EmbeddingError):
    """Saved item embeddings no longer match the dataset they were made for."""


class Embedder(ABC):
    """Turns texts into float32 vectors, one row per text, in input order.

    Subclasses load heavy resources lazily (in `load`), so building one is cheap and a run whose
    texts are all cached never loads a model or opens a connection.
    """

    #: whether a text's vector depends only on that text (so the per-text cache may store it);
    #: False for models fitted on the corpus, whose vectors change when any other text changes.
    cacheable: bool = True

    @property
    @abstractmethod
    def key(self) -> str:
        """Stable identity used for caching and stamps, e.g. `st:all-MiniLM-L6-v2:norm`."""

    @property
    def dim(self) -> int | None:
        """Vector size, or None while unknown (an API model reveals it with its first reply)."""
        return None

    def fit(self, corpus: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Learn from the whole corpus before embedding it (TF-IDF); a no-op for pretrained models."""

    def load(self) -> None:  # noqa: B027 - optional hook, a no-op for light embedders
        """Load the model; called once, only when something needs embedding, before timing starts."""

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array [len(texts), dim]; normalised to unit length when the embedder is."""


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero instead of becoming NaN."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def text_digest(text: str) -> bytes:
    """SHA-256 of a text (UTF-8): the per-text cache key, the same across datasets."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def texts_sha256(texts: Sequence[str]) -> str:
    """One hash over texts in order (length-prefixed, so no two lists collide by concatenation)."""
    h = hashlib.sha256(b"h2rec-texts-v1")
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def slug(key: str, max_len: int = 60) -> str:
    """A file-name-safe form of a key (lower case, `[a-z0-9._-]`)."""
    s = re.sub(r"[^a-z0-9._-]+", "-", key.lower()).strip("-.")
    return s[:max_len].rstrip("-.") or "x"


def check_vectors(
    vectors: np.ndarray,
    *,
    source: str,
    n_rows: int | None = None,
    dim: int | None = None,
    row_labels: Sequence[str] | None = None,
) -> np.ndarray:
    """Return `vectors` as float32 [n, d] after checking shape and finiteness.

    Errors name `source` (a file or URL) and the first offending row (`row_labels[r]` when given,
    e.g. "row 7 (item B00ABC)"), because a NaN that reaches training only shows up as a NaN loss hours
    later.
    """
    arr = np.asarray(vectors)
    if arr.ndim != 2:
        raise EmbeddingError(f"{source}: expected a 2-D array [rows, dim], got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise EmbeddingError(f"{source}: expected real numbers, got dtype {arr.dtype}")
    if n_rows is not None and arr.shape[0] != n_rows:
        raise EmbeddingError(f"{source}: expected {n_rows} rows, got {arr.shape[0]}")
    if dim is not None and arr.shape[1] != dim:
        raise EmbeddingError(f"{source}: expected vectors of size {dim}, got {arr.shape[1]}")
    if arr.shape[1] == 0:
        raise EmbeddingError(f"{source}: vectors have size 0")
    arr = arr.astype(
        np.float32, copy=False
    )  # float64 beyond float32 range becomes inf: caught below
    finite = np.isfinite(arr)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        r = int(bad_rows[0])
        what = "NaN" if np.isnan(arr[r]).any() else "infinity"
        label = row_labels[r] if row_labels is not None else f"row {r}"
        more = f"; {len(bad_rows) - 1} more rows are not finite" if len(bad_rows) > 1 else ""
        raise EmbeddingError(f"{source}: {label} contains {what}{more}")
    return arr
