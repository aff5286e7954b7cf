"""Vectors the user brings (e.g. from the paper's ada-002 run, or items with no text at all).

Two forms: a `.npy` array whose rows follow the dataset's internal item order (n_items rows, or
n_items + 1 with a padding row 0), and a Parquet table with an item id column and a vector column,
matched to the dataset by external item id (extra rows are ignored, so one file serves several
filtered variants of a dataset). Shape, NaN and infinity are checked up front; errors name the
file and the offending row or item.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from h2rec.data.dataset import Dataset
from h2rec.io import sha256_file
from h2rec.text.base import EmbeddingError, check_vectors

log = logging.getLogger("h2rec")


def precomputed_key(path: str | Path) -> str:
    """Identity of a vector file: its name and a hash of its bytes."""
    p = Path(path)
    return f"precomputed:{p.name}@{sha256_file(p)[:12]}"


def load_precomputed(
    path: str | Path,
    ds: Dataset,
    *,
    id_column: str = "item_id",
    vector_column: str = "embedding",
) -> np.ndarray:
    """float32 [n_items + 1, d] for internal items (row 0 = zeros), from a .npy or .parquet file."""
    p = Path(path)
    if not p.is_file():
        raise EmbeddingError(f"{p}: precomputed embedding file not found")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        rows = _from_npy(p, ds)
    elif suffix in (".parquet", ".pq"):
        rows = _from_parquet(p, ds, id_column, vector_column)
    else:
        raise EmbeddingError(f"{p}: precomputed embeddings must be .npy or .parquet")
    out = np.zeros((ds.n_items + 1, rows.shape[1]), dtype=np.float32)
    out[1:] = rows
    return out


def _from_npy(p: Path, ds: Dataset) -> np.ndarray:
    try:
        arr = np.load(p, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise EmbeddingError(f"{p}: cannot read as .npy ({exc})") from exc
    n = ds.n_items
    if arr.ndim != 2 or arr.shape[0] not in (n, n + 1):
        raise EmbeddingError(
            f"{p}: expected shape [n_items, dim] = [{n}, d] (or [{n + 1}, d] with padding row 0), "
            f"got {list(arr.shape)}"
        )
    offset = arr.shape[0] - n  # 1 when the file has the padding row (ignored, so not checked)
    labels = [f"row {r + offset} (item {x})" for r, x in enumerate(ds.item_ids[1:])]
    return check_vectors(np.asarray(arr[offset:]), source=str(p), row_labels=labels)


def _from_parquet(p: Path, ds: Dataset, id_column: str, vector_column: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(p, columns=[id_column, vector_column])
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
        try:
            have = pq.read_schema(p).names
        except Exception:
            have = []
        missing = [c for c in (id_column, vector_column) if have and c not in have]
        why = f"missing column(s) {missing}; it has {have}" if missing else str(exc)
        raise EmbeddingError(f"{p}: cannot read precomputed embeddings ({why})") from exc
    ids = table.column(id_column)
    if ids.null_count:
        raise EmbeddingError(f"{p}: column '{id_column}' has {ids.null_count} null ids")
    id_list = [str(x) for x in ids.to_pylist()]
    vectors = _vector_column(
        table.column(vector_column).combine_chunks(), p, vector_column, id_list
    )
    index: dict[str, int] = {}
    for row, item in enumerate(id_list):
        if item in index:
            raise EmbeddingError(f"{p}: item {item} appears twice (rows {index[item]} and {row})")
        index[item] = row
    wanted = [str(x) for x in ds.item_ids[1:]]
    missing = [w for w in wanted if w not in index]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise EmbeddingError(
            f"{p}: no vector for {len(missing)} of the dataset's {len(wanted)} items "
            f"(column '{id_column}'): item {shown}"
        )
    take = np.fromiter((index[w] for w in wanted), dtype=np.int64, count=len(wanted))
    if len(index) > len(wanted):
        log.info(
            "%s: %d rows are for items not in the dataset (ignored)", p, len(index) - len(wanted)
        )
    labels = [f"row {r} (item {w})" for w, r in zip(wanted, take.tolist(), strict=True)]
    return check_vectors(vectors[take], source=str(p), row_labels=labels)


def _vector_column(col: object, p: Path, name: str, ids: list[str]) -> np.ndarray:
    """A list / large-list / fixed-size-list column of numbers -> float64 [rows, d]."""
    import pyarrow as pa

    assert isinstance(col, pa.Array)
    t = col.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        raise EmbeddingError(f"{p}: column '{name}' must hold lists of numbers, not {t}")
    if not (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
        raise EmbeddingError(f"{p}: column '{name}' holds lists of {t.value_type}, not numbers")
    if col.null_count:
        row = next(i for i, v in enumerate(col.is_null().to_pylist()) if v)
        raise EmbeddingError(f"{p}: row {row} (item {ids[row]}) has no vector in '{name}'")
    if pa.types.is_fixed_size_list(t):
        lengths = np.full(len(col), t.list_size, dtype=np.int64)
    else:
        offsets = col.offsets.to_numpy()
        lengths = np.diff(offsets)
    if len(col) == 0:
        raise EmbeddingError(f"{p}: the file has no rows")
    if (lengths != lengths[0]).any():
        row = int(np.flatnonzero(lengths != lengths[0])[0])
        raise EmbeddingError(
            f"{p}: row {row} (item {ids[row]}) has a vector of size {lengths[row]}, "
            f"row 0 has {lengths[0]}"
        )
    values = col.flatten()  # respects slicing offsets, unlike .values
    if values.null_count:
        flat = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        row = flat // int(lengths[0])
        raise EmbeddingError(f"{p}: row {row} (item {ids[row]}) has a null inside its vector")
    return (
        values.to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(col), int(lengths[0]))
    )
