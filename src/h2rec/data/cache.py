"""The prepared-dataset cache: Parquet tables plus a JSON manifest, written atomically.

A cache folder is complete exactly when it exists under its final name: it is built in a temp
folder and renamed in one step, the manifest lists every file's SHA-256, and `load` refuses a
folder whose manifest is missing or whose files do not match it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import h2rec
from h2rec.data.dataset import SCHEMA_VERSION, Dataset
from h2rec.errors import CacheError
from h2rec.io import atomic_directory, atomic_write_json, sha256_file

MANIFEST = "manifest.json"


def source_fingerprint(paths: list[str]) -> list[dict[str, Any]]:
    """Size and modification time of each raw file: a cheap check that the source is unchanged."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append({"path": str(p), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def save(
    ds: Dataset, out_dir: str | Path, *, config: dict[str, Any], source: dict[str, Any]
) -> Path:
    """Write `ds` to `out_dir` atomically and return the folder; updates `ds.manifest`."""
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        inter: dict[str, Any] = {
            "user": pl.Series(ds.inter_user, dtype=pl.Int32),
            "item": pl.Series(ds.inter_item, dtype=pl.Int32),
            "split": pl.Series(ds.inter_split, dtype=pl.Int8),
        }
        if ds.inter_time is not None:
            inter["timestamp"] = pl.Series(ds.inter_time, dtype=pl.Float64)
        if ds.inter_rating is not None:
            inter["rating"] = pl.Series(ds.inter_rating, dtype=pl.Float32)
        files = {"interactions.parquet": pl.DataFrame(inter)}
        files["items.parquet"] = (
            ds.items
            if ds.items is not None
            else pl.DataFrame(
                {
                    "item": np.arange(1, ds.n_items + 1, dtype=np.int32),
                    "item_id": ds.item_ids[1:].astype(str),
                }
            )
        )
        files["users.parquet"] = (
            ds.users
            if ds.users is not None
            else pl.DataFrame(
                {
                    "user": np.arange(1, ds.n_users + 1, dtype=np.int32),
                    "user_id": ds.user_ids[1:].astype(str),
                }
            )
        )
        if ds.codes is not None:
            files["codes.parquet"] = pl.DataFrame(
                {
                    "item": np.arange(1, ds.n_items + 1, dtype=np.int32),
                    "codes": pl.Series(ds.codes[1:].tolist(), dtype=pl.List(pl.Int64)),
                }
            )
        for name, frame in files.items():
            frame.write_parquet(tmp / name, compression="zstd", statistics=False)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "name": ds.name,
            "h2rec_version": h2rec.__version__,
            "created_unix": time.time(),
            "source": {**source, "fingerprint": source_fingerprint(source.get("paths", []))},
            "config": config,
            "counts": ds.counts(),
            "has_timestamps": ds.inter_time is not None,
            "has_ratings": ds.inter_rating is not None,
            "codes": None
            if ds.codes is None
            else {
                "source": ds.code_source,
                "levels": int(ds.codes.shape[1]),
                "max_code": int(ds.codes[1:].max()),
            },
            **{k: v for k, v in ds.manifest.items() if k not in ("files", "content_hash")},
            "content_hash": ds.content_hash(),
            "files": {
                name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
                for name in files
            },
        }
        atomic_write_json(tmp / MANIFEST, manifest)
        _carry_derived(out_dir, tmp, manifest["content_hash"])
    ds.manifest = manifest
    ds.path = out_dir
    return out_dir


def _carry_derived(old_dir: Path, new_dir: Path, content_hash: str) -> None:
    """Keep what was derived from an identical dataset (embeddings, SIDs, stored candidates).

    A re-prepare that yields the same content (e.g. the raw files were merely touched or copied)
    must not throw away hours of embedding work. Entries are hard-linked (copied across
    filesystems) into the new folder, so the old folder stays intact until the swap.
    """
    try:
        old = read_manifest(old_dir)
    except CacheError:
        return
    if old.get("content_hash") != content_hash:
        return
    for entry in old_dir.iterdir():
        target = new_dir / entry.name
        if (
            entry.name.startswith(".")
            or entry.name in old.get("files", {})
            or entry.name == MANIFEST
            or target.exists()
        ):
            continue
        if entry.is_dir():
            shutil.copytree(entry, target, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, target)


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def read_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    mpath = path / MANIFEST
    if not path.is_dir():
        raise CacheError(f"{path}: no prepared dataset here (run `h2rec prepare` first)")
    if not mpath.is_file():
        raise CacheError(f"{path}: no {MANIFEST}; the folder is not a complete prepared dataset")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CacheError(f"{mpath}: manifest is corrupted ({exc})") from exc
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise CacheError(
            f"{mpath}: schema version {manifest.get('schema_version')} is not {SCHEMA_VERSION}; "
            "re-run `h2rec prepare`"
        )
    return manifest


def load(path: str | Path, *, verify: bool = True) -> Dataset:
    """Load a prepared dataset; with `verify`, every file must match the manifest's SHA-256."""
    path = Path(path)
    manifest = read_manifest(path)
    for name, meta in manifest["files"].items():
        fpath = path / name
        if not fpath.is_file():
            raise CacheError(f"{fpath}: listed in the manifest but missing")
        if fpath.stat().st_size != meta["bytes"] or (
            verify and sha256_file(fpath) != meta["sha256"]
        ):
            raise CacheError(f"{fpath}: does not match the manifest (modified or truncated)")
    inter = pl.read_parquet(path / "interactions.parquet")
    items = pl.read_parquet(path / "items.parquet")
    users = pl.read_parquet(path / "users.parquet")
    item_ids = np.concatenate([[""], items["item_id"].to_numpy()]).astype(object)
    user_ids = np.concatenate([[""], users["user_id"].to_numpy()]).astype(object)
    codes = None
    if "codes.parquet" in manifest["files"]:
        cdf = pl.read_parquet(path / "codes.parquet")
        levels = manifest["codes"]["levels"]
        flat = cdf["codes"].explode().to_numpy().astype(np.int64).reshape(-1, levels)
        codes = np.vstack([np.full((1, levels), -1, dtype=np.int64), flat])
    return Dataset(
        name=manifest["name"],
        user_ids=user_ids,
        item_ids=item_ids,
        inter_user=inter["user"].to_numpy(),
        inter_item=inter["item"].to_numpy(),
        inter_split=inter["split"].to_numpy(),
        inter_time=inter["timestamp"].to_numpy() if "timestamp" in inter.columns else None,
        inter_rating=inter["rating"].to_numpy() if "rating" in inter.columns else None,
        items=items,
        users=users,
        codes=codes,
        code_source=(manifest.get("codes") or {}).get("source"),
        manifest=manifest,
        path=path,
    )


def is_fresh(path: str | Path, config: dict[str, Any]) -> bool:
    """True when `path` holds a complete cache made from this config and unchanged source files."""
    try:
        manifest = read_manifest(path)
    except CacheError:
        return False
    if manifest.get("config") != config:
        return False
    old = manifest["source"].get("fingerprint", [])
    try:
        return old == source_fingerprint([f["path"] for f in old])
    except OSError:
        return False
