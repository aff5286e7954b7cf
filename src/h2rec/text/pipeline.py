"""Item text -> one vector per internal item, with the per-text cache, timing and saved artefacts.

`embed_items` returns float32 [n_items + 1, d] with row 0 all zeros (padding id 0), so row i is
internal item i everywhere downstream. Identical texts are embedded once; texts already in the
per-model store are not embedded again, so re-running after editing a few items costs seconds.

Empty text: an item whose text is empty is embedded as the empty string, so every such item gets
the same "no text" vector (TF-IDF gives it the zero vector) and a warning says how many there are.
When *every* item is empty (Instruments ships no text) embedding is refused: the vectors would
carry no information, so bring precomputed vectors (kind=precomputed) or use published codes.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from h2rec.data.dataset import Dataset
from h2rec.io import atomic_write_bytes, atomic_write_json, npy_bytes
from h2rec.progress import progress_enabled
from h2rec.text.api import ApiEmbedder
from h2rec.text.base import (
    Embedder,
    EmbeddingError,
    StaleEmbeddingsError,
    l2_normalize,
    slug,
    text_digest,
    texts_sha256,
)
from h2rec.text.cache import TextVectorStore, default_cache_dir
from h2rec.text.config import EmbedConfig
from h2rec.text.precomputed import load_precomputed, precomputed_key
from h2rec.text.sentence import DEFAULT_MODEL, SentenceTransformerEmbedder
from h2rec.text.tfidf import TfidfSvdEmbedder

log = logging.getLogger("h2rec")

FORMAT = 1
FLUSH_ITEMS = 8192  # write a cache shard at least this often (items) ...
FLUSH_SECONDS = 60.0  # ... or this often (seconds), so an interrupted run keeps most of its work


@dataclass
class ItemEmbeddings:
    """Vectors for internal items 0..n (row 0 = padding zeros) and how they were made."""

    vectors: np.ndarray  # float32 [n_items + 1, dim]
    key: str  # the embedder's identity (see Embedder.key)
    name: str  # file name under <dataset>/embeddings/
    texts_sha256: str  # hash of the item texts in internal order
    info: dict[str, Any] = field(default_factory=dict)  # counts, seconds, items/s
    config: dict[str, Any] | None = None  # the EmbedConfig that made them (saved in the stamp)
    meta: dict[str, Any] | None = None  # the saved JSON, when loaded from disk

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def n_items(self) -> int:
        return int(self.vectors.shape[0]) - 1


# ---- building embedders ----------------------------------------------------------------------------
def make_embedder(cfg: EmbedConfig) -> Embedder:
    """The text embedder a config describes (kind=precomputed has none: see `embed_items`)."""
    if cfg.kind == "sentence-transformers":
        return SentenceTransformerEmbedder(
            cfg.model, batch_size=cfg.batch_size, normalize=cfg.normalize, device=cfg.device
        )
    if cfg.kind == "api":
        a = cfg.api
        return ApiEmbedder(
            a.base_url,
            a.model,
            api_key_env=a.api_key_env,
            batch_size=cfg.batch_size,
            normalize=cfg.normalize,
            timeout=a.timeout,
            max_retries=a.max_retries,
            backoff=a.backoff,
            max_backoff=a.max_backoff,
        )
    if cfg.kind == "tfidf":
        t = cfg.tfidf
        return TfidfSvdEmbedder(
            t.dim,
            seed=t.seed,
            normalize=cfg.normalize,
            max_features=t.max_features,
            ngram_max=t.ngram_max,
        )
    raise EmbeddingError(f"kind={cfg.kind} does not embed text; use embed_items")


def default_name(cfg: EmbedConfig) -> str:
    """File name for saved vectors: `cfg.name`, else e.g. st-all-minilm-l6-v2 / tfidf-svd-256."""
    if cfg.name:
        return cfg.name
    if cfg.kind == "sentence-transformers":
        base = "st-" + slug(Path(cfg.model).name if cfg.model else DEFAULT_MODEL)
    elif cfg.kind == "api":
        base = "api-" + slug(cfg.api.model)
    elif cfg.kind == "tfidf":
        base = f"tfidf-svd-{cfg.tfidf.dim}"
    else:
        base = "precomputed-" + slug(Path(cfg.precomputed.path or "vectors").stem)
    return base if cfg.normalize else f"{base}-raw"


# ---- embedding ---------------------------------------------------------------------------------
def embed_items(
    ds: Dataset,
    cfg: EmbedConfig | None = None,
    *,
    cache_dir: str | Path | None = None,
    embedder: Embedder | None = None,
) -> ItemEmbeddings:
    """Embed every item's text (or load precomputed vectors) -> [n_items + 1, d], row 0 zeros.

    `embedder` overrides the one the config describes (custom backends, tests); `cache_dir`
    overrides `cfg.cache_dir`. The per-text cache is used when `cfg.cache` is on and the
    embedder is `cacheable`.
    """
    cfg = cfg or EmbedConfig()
    cfg_dump = cfg.model_dump(mode="json")
    texts = ds.item_text
    t_sha = texts_sha256(texts)
    t0 = time.perf_counter()
    if embedder is None and cfg.kind == "precomputed":
        assert cfg.precomputed.path is not None
        p = cfg.precomputed
        vectors = load_precomputed(p.path, ds, id_column=p.id_column, vector_column=p.vector_column)
        if cfg.normalize:
            vectors[1:] = l2_normalize(vectors[1:])
        seconds = time.perf_counter() - t0
        info = _info(precomputed_key(p.path), vectors.shape[1], len(texts), 0, 0, seconds, 0.0)
        info["source"] = str(p.path)
        return ItemEmbeddings(
            vectors, info["embedder_key"], default_name(cfg), t_sha, info, cfg_dump
        )

    n_empty = sum(1 for t in texts if not t.strip())
    if n_empty == len(texts):
        raise EmbeddingError(
            f"dataset '{ds.name}' has no item text (all {len(texts)} items are empty): "
            "embed.kind=precomputed with your own vectors, or use the published codes"
        )
    if n_empty:
        log.warning(
            "%d of %d items have empty text; they share one 'no text' vector", n_empty, len(texts)
        )
    emb = embedder if embedder is not None else make_embedder(cfg)
    store = None
    if cfg.cache and emb.cacheable:
        store = TextVectorStore(cache_dir or cfg.cache_dir or default_cache_dir(), emb.key)
    rows, info = embed_texts(texts, emb, store=store, description=f"embed {ds.name}")
    info["n_empty"] = n_empty
    info["seconds"] = time.perf_counter() - t0
    log.info(
        "%s: %d items, %d texts embedded (%.0f items/s), %d from cache, %.1fs",
        emb.key,
        len(texts),
        info["n_embedded"],
        info["items_per_s"],
        info["n_from_cache"],
        info["seconds"],
    )
    vectors = np.zeros((len(texts) + 1, rows.shape[1]), dtype=np.float32)
    vectors[1:] = rows
    name = cfg.name or (default_name(cfg) if embedder is None else slug(emb.key))
    return ItemEmbeddings(vectors, emb.key, name, t_sha, info, cfg_dump)


def embed_texts(
    texts: Sequence[str],
    embedder: Embedder,
    *,
    store: TextVectorStore | None = None,
    description: str = "embed",
) -> tuple[np.ndarray, dict[str, Any]]:
    """float32 [len(texts), d] in input order; each distinct text not in `store` is embedded once.

    Texts are embedded longest first in chunks of a few batches (less padding per batch, a
    progress bar that moves, and cache shards flushed as the run goes).
    """
    t0 = time.perf_counter()
    if len(texts) == 0:
        raise EmbeddingError("no texts to embed")
    embedder.fit(texts)  # corpus-fitted embedders learn here (their key depends on it)
    if not embedder.cacheable:
        store = None
    unique: dict[str, int] = {}
    inverse = np.fromiter((unique.setdefault(t, len(unique)) for t in texts), np.int64, len(texts))
    uniq = list(unique)
    digests = [text_digest(t) for t in uniq]
    todo = [i for i, d in enumerate(digests) if store is None or d not in store]
    n_cached = len(uniq) - len(todo)
    out: np.ndarray | None = None
    if n_cached:
        assert store is not None
        hit = [i for i, d in enumerate(digests) if d in store]
        cached = store.get_many([digests[i] for i in hit])
        out = np.empty((len(uniq), cached.shape[1]), dtype=np.float32)
        out[hit] = cached
    load_s = embed_s = 0.0
    if todo:
        t = time.perf_counter()
        embedder.load()
        load_s = time.perf_counter() - t
        todo.sort(key=lambda i: -len(uniq[i]))
        chunk = max(1, getattr(embedder, "batch_size", 64) * 4)
        t = time.perf_counter()
        last_flush = t
        try:
            with _bar(description, len(todo)) as advance:
                for s in range(0, len(todo), chunk):
                    idx = todo[s : s + chunk]
                    vecs = np.asarray(embedder.embed([uniq[i] for i in idx]), dtype=np.float32)
                    if vecs.ndim != 2 or len(vecs) != len(idx):
                        raise EmbeddingError(
                            f"embedder {embedder.key} returned shape {vecs.shape} for {len(idx)} texts"
                        )
                    if out is None:
                        out = np.empty((len(uniq), vecs.shape[1]), dtype=np.float32)
                    elif vecs.shape[1] != out.shape[1]:
                        raise EmbeddingError(
                            f"embedder {embedder.key} returned size {vecs.shape[1]}, "
                            f"the cache holds size {out.shape[1]}; delete {store.path if store else 'the cache'}"
                        )
                    out[idx] = vecs
                    if store is not None:
                        store.add([digests[i] for i in idx], vecs)
                        now = time.perf_counter()
                        if store.pending >= FLUSH_ITEMS or now - last_flush >= FLUSH_SECONDS:
                            store.flush()
                            last_flush = now
                    advance(len(idx))
        finally:
            embed_s = time.perf_counter() - t
            if store is not None:
                store.flush()  # keep finished work even when interrupted
        if store is not None:
            store.compact()
    assert out is not None
    dim = int(out.shape[1])
    info = _info(
        embedder.key, dim, len(texts), len(todo), n_cached, time.perf_counter() - t0, embed_s
    )
    info.update(
        n_unique_texts=len(uniq), load_seconds=load_s, cache=str(store.path) if store else None
    )
    return out[inverse], info


def _info(
    key: str, dim: int, n_items: int, n_new: int, n_cached: int, seconds: float, embed_s: float
) -> dict[str, Any]:
    return {
        "embedder_key": key,
        "dim": dim,
        "n_items": n_items,
        "n_embedded": n_new,  # distinct texts embedded in this run
        "n_from_cache": n_cached,  # distinct texts whose vectors came from the per-text cache
        "seconds": seconds,
        "embed_seconds": embed_s,  # time inside the model / API, without loading
        "items_per_s": n_new / embed_s if n_new and embed_s > 0 else 0.0,
    }


def _rate_column() -> Any:
    """A rich column showing items/s (built lazily: rich is imported only when bars are shown)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} items/s" if speed else "- items/s")

    return Rate()


@contextmanager
def _bar(description: str, total: int) -> Iterator[Any]:
    """`advance(n)` callback for a rich bar with items/s; a no-op unless progress is enabled."""
    if not progress_enabled():
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _rate_column(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ) as p:
        task = p.add_task(description, total=total)
        yield lambda n: p.advance(task, n)


# ---- saved artefacts ---------------------------------------------------------------------------
def _embeddings_dir(ds: Dataset) -> Path:
    if ds.path is None:
        raise EmbeddingError(
            f"dataset '{ds.name}' has no folder (ds.path is None); load or prepare it from disk first"
        )
    return Path(ds.path) / "embeddings"


def save_item_embeddings(result: ItemEmbeddings, ds: Dataset, name: str | None = None) -> Path:
    """Write `<ds.path>/embeddings/<name>.npy` and `<name>.json` (stamp) atomically; return the .npy.

    The .npy goes first and the JSON, which holds the .npy's sha256, last: a reader that finds a
    JSON whose hash does not match the array knows the pair is half-updated.
    """
    if result.n_items != ds.n_items:
        raise EmbeddingError(
            f"embeddings have {result.n_items} items, dataset '{ds.name}' has {ds.n_items}"
        )
    name = name or result.name
    folder = _embeddings_dir(ds)
    data = npy_bytes(np.ascontiguousarray(result.vectors, dtype=np.float32))
    meta = {
        "format": FORMAT,
        "name": name,
        "embedder_key": result.key,
        "dim": result.dim,
        "n_items": result.n_items,
        "dataset": ds.name,
        "dataset_content_hash": ds.content_hash(),
        "texts_sha256": result.texts_sha256,
        "vectors_sha256": hashlib.sha256(data).hexdigest(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "info": result.info,
        "config": result.config,
    }
    npy = folder / f"{name}.npy"
    atomic_write_bytes(npy, data)
    atomic_write_json(folder / f"{name}.json", meta)
    return npy


def list_item_embeddings(ds: Dataset) -> list[str]:
    """Names of saved embeddings for this dataset (whatever their freshness)."""
    folder = _embeddings_dir(ds)
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def load_item_embeddings(ds: Dataset, name: str) -> ItemEmbeddings:
    """Saved vectors for `ds`; refuses files made for other item texts or another dataset state."""
    folder = _embeddings_dir(ds)
    js, npy = folder / f"{name}.json", folder / f"{name}.npy"
    if not js.is_file() or not npy.is_file():
        have = ", ".join(list_item_embeddings(ds)) or "none"
        raise EmbeddingError(f"{folder}: no saved embeddings named '{name}' (saved: {have})")
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EmbeddingError(f"{js}: unreadable ({exc})") from exc
    rerun = "re-run the embed stage (unchanged texts come from the cache)"
    if meta.get("texts_sha256") != texts_sha256(ds.item_text):
        raise StaleEmbeddingsError(
            f"{npy} is stale: the item texts of dataset '{ds.name}' changed since it was made; {rerun}"
        )
    if meta.get("dataset_content_hash") != ds.content_hash():
        raise StaleEmbeddingsError(
            f"{npy} is stale: dataset '{ds.name}' changed since it was made (item texts are the "
            f"same, but ids, interactions or codes differ); {rerun}"
        )
    data = npy.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.get("vectors_sha256"):
        raise StaleEmbeddingsError(f"{npy} does not match {js.name} (interrupted write?); {rerun}")
    vectors = np.load(io.BytesIO(data), allow_pickle=False)
    if vectors.shape != (ds.n_items + 1, meta.get("dim")):
        raise EmbeddingError(f"{npy}: shape {vectors.shape} does not match {js.name}")
    return ItemEmbeddings(
        vectors=vectors,
        key=meta["embedder_key"],
        name=name,
        texts_sha256=meta["texts_sha256"],
        info=meta.get("info") or {},
        config=meta.get("config"),
        meta=meta,
    )
