"""Per-model store of text vectors keyed by sha256(text), so re-runs embed only new or changed texts.

Layout: `<cache dir>/<slug of key>-<hash of key>/` holding `meta.json` (the full key and the
vector size) and shards `shard-*.npz` (`digests` uint8 [n, 32], `vectors` float32 [n, d]). A run
adds a new shard per flush (written atomically under a unique name), so concurrent runs never
overwrite each other and an interrupted run keeps what it flushed; `compact` merges shards. The
store is keyed by text alone, so one store serves every dataset embedded with the same model.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from h2rec.io import atomic_write_bytes, atomic_write_json
from h2rec.text.base import EmbeddingError, slug

log = logging.getLogger("h2rec")

DIGEST_BYTES = 32


def default_cache_dir() -> Path:
    """`$H2REC_CACHE_DIR/embeddings` when set, else `~/.cache/h2rec/embeddings`."""
    root = os.environ.get("H2REC_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "h2rec"
    return base / "embeddings"


def store_dir(cache_dir: str | Path, key: str) -> Path:
    """The store folder for one embedder key (readable slug + a hash so distinct keys never mix)."""
    return Path(cache_dir) / f"{slug(key)}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


class TextVectorStore:
    """sha256(text) -> vector for one embedder key; reads every shard at open, writes new ones."""

    def __init__(self, cache_dir: str | Path, key: str) -> None:
        self.key = key
        self.path = store_dir(cache_dir, key)
        self.dim: int | None = None
        self._index: dict[bytes, tuple[int, int]] = {}  # digest -> (shard number, row)
        self._shards: list[np.ndarray] = []
        self._shard_files: list[Path | None] = []  # None: added this run, not yet flushed
        self._pending: list[tuple[int, np.ndarray]] = []  # (shard number, digests) to write
        self._load()

    # ---- reading ---------------------------------------------------------------------------------
    def _load(self) -> None:
        meta = self.path / "meta.json"
        if meta.is_file():
            try:
                info = json.loads(meta.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise EmbeddingError(
                    f"{meta}: unreadable embedding-cache metadata ({exc})"
                ) from exc
            if info.get("key") != self.key:
                raise EmbeddingError(
                    f"{meta}: store belongs to embedder '{info.get('key')}', not '{self.key}'"
                )
            self.dim = int(info["dim"])
        for f in sorted(self.path.glob("shard-*.npz")):
            try:
                with np.load(f) as z:
                    digests, vectors = z["digests"], z["vectors"]
            except FileNotFoundError:  # removed by a concurrent compaction; its rows are merged
                continue
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                log.warning("ignoring unreadable embedding-cache shard %s (%s)", f, exc)
                continue
            if (
                digests.ndim != 2
                or digests.shape[1] != DIGEST_BYTES
                or vectors.ndim != 2
                or len(vectors) != len(digests)
                or (self.dim is not None and vectors.shape[1] != self.dim)
            ):
                log.warning("ignoring embedding-cache shard %s with unexpected shape", f)
                continue
            n = len(self._shards)
            self._shards.append(vectors.astype(np.float32, copy=False))
            self._shard_files.append(f)
            for row, d in enumerate(digests):
                self._index[d.tobytes()] = (n, row)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._index

    def get_many(self, digests: Sequence[bytes]) -> np.ndarray:
        """Vectors for digests that are all present (check with `in` first)."""
        out = np.empty((len(digests), self.dim or 0), dtype=np.float32)
        for i, d in enumerate(digests):
            s, r = self._index[d]
            out[i] = self._shards[s][r]
        return out

    # ---- writing ---------------------------------------------------------------------------------
    def add(self, digests: Sequence[bytes], vectors: np.ndarray) -> None:
        """Queue vectors for the next `flush` (and make them visible to this store at once)."""
        if len(digests) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.dim is None:
            self.dim = int(vectors.shape[1])
        elif vectors.shape[1] != self.dim:
            raise EmbeddingError(
                f"{self.path}: embedder '{self.key}' returned vectors of size {vectors.shape[1]}, "
                f"but its cache holds size {self.dim}; delete the folder if the model changed"
            )
        d = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, DIGEST_BYTES)
        n = len(self._shards)
        self._pending.append((n, d))
        self._shards.append(vectors)
        self._shard_files.append(None)  # in memory only until `flush`
        for row, dg in enumerate(digests):
            self._index[dg] = (n, row)

    @property
    def pending(self) -> int:
        return sum(len(d) for _, d in self._pending)

    def flush(self) -> Path | None:
        """Write queued vectors as one new shard (atomic); returns its path, or None if none."""
        if not self._pending:
            return None
        digests = np.concatenate([d for _, d in self._pending])
        vectors = np.concatenate([self._shards[n] for n, _ in self._pending])
        self._write_meta()
        path = self._write_shard(digests, vectors)
        for n, _ in self._pending:
            self._shard_files[n] = path
        self._pending.clear()
        return path

    def _write_meta(self) -> None:
        meta = self.path / "meta.json"
        if not meta.is_file():
            atomic_write_json(meta, {"key": self.key, "dim": self.dim, "format": 1})

    def _write_shard(self, digests: np.ndarray, vectors: np.ndarray) -> Path:
        buf = io.BytesIO()
        np.savez(buf, digests=digests, vectors=vectors)
        path = self.path / f"shard-{uuid.uuid4().hex}.npz"
        atomic_write_bytes(path, buf.getvalue())
        return path

    def compact(self, min_shards: int = 8) -> None:
        """Merge on-disk shards into one once there are at least `min_shards` (keeps loads fast)."""
        self.flush()
        on_disk = {f for f in self._shard_files if f is not None}
        if len(on_disk) < min_shards:
            return
        digests = np.frombuffer(b"".join(self._index), dtype=np.uint8).reshape(-1, DIGEST_BYTES)
        vectors = self.get_many(list(self._index))
        merged = self._write_shard(digests, vectors)
        for f in on_disk:  # the merged shard is complete before any old one goes
            if f != merged:
                f.unlink(missing_ok=True)
        self._shards, self._shard_files = [vectors], [merged]
        self._index = {d: (0, r) for r, d in enumerate(self._index)}
