"""What every reader returns: raw interactions, item attributes and optional codes, by external id.

Readers only parse; all filtering, ordering, id remapping and splitting happen in
`h2rec.data.preprocess`, identically for every source format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

INTERACTION_SCHEMA: dict[str, Any] = {
    "user_id": pl.String,
    "item_id": pl.String,
    "timestamp": pl.Float64,
    "rating": pl.Float64,
}


@dataclass
class RawData:
    """Parsed source data; rows of `interactions` are in file order (the tie-break for time)."""

    interactions: pl.DataFrame
    items: pl.DataFrame | None = None
    users: pl.DataFrame | None = None
    codes: pl.DataFrame | None = None  # item_id: str, codes: list[int]
    code_source: str | None = None
    source: dict[str, Any] = field(default_factory=dict)
    default_template: str = "fields"
    template_variables: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.interactions = conform_interactions(self.interactions)
        if self.items is not None:
            self.items = self.items.with_columns(pl.col("item_id").cast(pl.String))
        if self.users is not None:
            self.users = self.users.with_columns(pl.col("user_id").cast(pl.String))

    @property
    def has_timestamps(self) -> bool:
        ts = self.interactions["timestamp"]
        return ts.len() > 0 and ts.null_count() == 0


def conform_interactions(df: pl.DataFrame) -> pl.DataFrame:
    """Give an interaction frame exactly the canonical columns and types (missing ones null)."""
    cols = []
    for name, dtype in INTERACTION_SCHEMA.items():
        if name in df.columns:
            cols.append(pl.col(name).cast(dtype))
        else:
            cols.append(pl.lit(None, dtype=dtype).alias(name))
    return df.select(cols)


class ColumnBuffer:
    """Accumulates parsed rows in chunks so huge streamed files never sit in Python lists whole."""

    def __init__(self, schema: dict[str, Any], chunk_rows: int = 500_000) -> None:
        self.schema = schema
        self.chunk_rows = chunk_rows
        self._cols: dict[str, list[Any]] = {k: [] for k in schema}
        self._frames: list[pl.DataFrame] = []
        self._n = 0

    def append(self, row: dict[str, Any]) -> None:
        for k, col in self._cols.items():
            col.append(row.get(k))
        self._n += 1
        if self._n >= self.chunk_rows:
            self._flush()

    def _flush(self) -> None:
        if self._n:
            self._frames.append(pl.DataFrame(self._cols, schema=self.schema, strict=False))
            self._cols = {k: [] for k in self.schema}
            self._n = 0

    def frame(self) -> pl.DataFrame:
        self._flush()
        if not self._frames:
            return pl.DataFrame(schema=self.schema)
        return pl.concat(self._frames, how="vertical")
