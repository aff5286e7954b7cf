"""Semantic IDs stored beside a prepared dataset: `<dataset>/sids/<name>/`.

The folder holds the fitted tokenizer (`tokenizer/`), the item codes aligned with internal ids
(`codes.npy`, row 0 = -1 for padding), `diagnostics.json`, `usage.png` and `meta.json` stamping the
dataset hash and the embeddings they were made from, so a model never trains on stale codes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from h2rec.data.dataset import Dataset
from h2rec.errors import H2RecError
from h2rec.io import atomic_directory, npy_bytes
from h2rec.sid.base import Tokenizer, TokenizerError
from h2rec.sid.config import TokenizerConfig
from h2rec.sid.diagnostics import diagnose_dataset, plot_code_usage, save_diagnostics
from h2rec.sid.factory import load_tokenizer
from h2rec.sid.fit import fit_tokenizer

PUBLISHED = "published"  # the name under which a dataset's own (published) codes are diagnosed


@dataclass
class ItemSIDs:
    """Codes for internal items 0..n (row 0 = -1) and where they came from."""

    codes: np.ndarray  # int64 [n_items + 1, L]
    name: str
    meta: dict[str, Any]
    path: Path | None = None

    @property
    def levels(self) -> int:
        return int(self.codes.shape[1])

    def tokenizer(self) -> Tokenizer:
        if self.path is None or not (self.path / "tokenizer").is_dir():
            raise TokenizerError(f"SIDs '{self.name}' have no saved tokenizer")
        return load_tokenizer(self.path / "tokenizer")


def sids_dir(ds: Dataset, name: str) -> Path:
    if ds.path is None:
        raise TokenizerError(f"dataset '{ds.name}' has no folder; prepare (save) it first")
    return Path(ds.path) / "sids" / name


def save_sids(
    ds: Dataset,
    name: str,
    codes: np.ndarray,
    diagnostics: dict[str, Any],
    *,
    tokenizer: Tokenizer | None = None,
    embeddings: dict[str, Any] | None = None,
) -> Path:
    """Write codes for items 1..n (`codes` is [n_items, L]) with their stamp, atomically."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2 or codes.shape[0] != ds.n_items:
        raise TokenizerError(
            f"codes have shape {codes.shape}; dataset '{ds.name}' has {ds.n_items} items"
        )
    full = np.vstack([np.full((1, codes.shape[1]), -1, dtype=np.int64), codes])
    out = sids_dir(ds, name)
    with atomic_directory(out) as tmp:
        (tmp / "codes.npy").write_bytes(npy_bytes(full))
        if tokenizer is not None:
            tokenizer.save(tmp / "tokenizer")
        (tmp / "diagnostics.json").write_text(json.dumps(diagnostics, indent=2))
        plot_code_usage(diagnostics, tmp / "usage.png", title=f"{ds.name} / {name}")
        meta = {
            "name": name,
            "dataset": ds.name,
            "dataset_content_hash": ds.content_hash(),
            "levels": int(codes.shape[1]),
            "embeddings": embeddings,
            "created_unix": time.time(),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return out


def load_sids(ds: Dataset, name: str) -> ItemSIDs:
    """Load `<dataset>/sids/<name>`; the dataset's published codes are available as 'published'."""
    if name == PUBLISHED:
        if ds.codes is None:
            raise TokenizerError(f"dataset '{ds.name}' has no published codes")
        return ItemSIDs(ds.codes, PUBLISHED, {"source": ds.code_source})
    path = sids_dir(ds, name)
    if not (path / "meta.json").is_file():
        raise TokenizerError(f"{path}: no SIDs named '{name}' (run `h2rec tokenize` first)")
    meta = json.loads((path / "meta.json").read_text())
    if meta["dataset_content_hash"] != ds.content_hash():
        raise TokenizerError(
            f"{path}: made from another version of dataset '{ds.name}'; re-run tokenize"
        )
    codes = np.load(path / "codes.npy")
    return ItemSIDs(codes, name, meta, path)


def default_sids_name(cfg: TokenizerConfig) -> str:
    """e.g. rqvae-4x128, pq-4x128-opq, vq-512; collision policies other than keep are suffixed."""
    levels = cfg.levels if cfg.levels is not None else (1 if cfg.method == "vq" else 4)
    name = (
        f"{cfg.method}-{cfg.codebook_size}"
        if cfg.method == "vq"
        else f"{cfg.method}-{levels}x{cfg.codebook_size}"
    )
    if cfg.opq:
        name += "-opq"
    if cfg.collision != "keep":
        name += f"-{cfg.collision}"
    return name


def _embeddings(ds: Dataset, name: str | None) -> Any:
    from h2rec.text import list_item_embeddings, load_item_embeddings

    if name is None:
        available = list_item_embeddings(ds)
        if not available:
            raise TokenizerError(
                f"dataset '{ds.name}' has no item embeddings; run `h2rec embed` first"
            )
        if len(available) > 1:
            raise TokenizerError(
                f"dataset '{ds.name}' has several embeddings ({', '.join(available)}); choose one"
            )
        name = available[0]
    return load_item_embeddings(ds, name)


def tokenize_dataset(
    ds: Dataset, cfg: TokenizerConfig, *, embeddings: str | None = None, name: str | None = None
) -> tuple[Path, dict[str, Any]]:
    """Fit `cfg` on the dataset's item embeddings, save the SIDs beside it, return (folder, diagnostics)."""
    emb = _embeddings(ds, embeddings)
    tok, codes, diag = fit_tokenizer(emb.vectors[1:], cfg)
    path = save_sids(
        ds,
        name or default_sids_name(cfg),
        codes,
        diag,
        tokenizer=tok,
        embeddings={"name": emb.name, "key": emb.key, "texts_sha256": emb.texts_sha256},
    )
    return path, diag


def diagnose_published(
    ds: Dataset, *, embeddings: str | None = None
) -> tuple[Path, dict[str, Any]]:
    """Diagnostics of the dataset's own (published) codes, written to `<dataset>/sids/published/`.

    With item embeddings available the semantic check is included; without, it is skipped.
    """
    vectors = None
    try:
        vectors = _embeddings(ds, embeddings).vectors[1:]
    except (TokenizerError, H2RecError):
        if embeddings is not None:
            raise
    diag = diagnose_dataset(ds, embeddings=vectors)
    out = sids_dir(ds, PUBLISHED)
    out.mkdir(parents=True, exist_ok=True)
    save_diagnostics(diag, out / "diagnostics.json")
    plot_code_usage(diag, out / "usage.png", title=f"{ds.name} / published ({ds.code_source})")
    return out, diag
