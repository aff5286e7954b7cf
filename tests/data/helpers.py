"""Build RawData / configs for tests without touching disk."""

from __future__ import annotations

from typing import Any

import polars as pl

from h2rec.data.config import PrepareConfig
from h2rec.data.raw import RawData


def raw_from_rows(rows: list[tuple], items: dict[str, dict[str, Any]] | None = None) -> RawData:
    """rows: (user, item) or (user, item, timestamp) or (user, item, timestamp, rating)."""
    cols: dict[str, list[Any]] = {"user_id": [], "item_id": [], "timestamp": [], "rating": []}
    for r in rows:
        cols["user_id"].append(str(r[0]))
        cols["item_id"].append(str(r[1]))
        cols["timestamp"].append(float(r[2]) if len(r) > 2 and r[2] is not None else None)
        cols["rating"].append(float(r[3]) if len(r) > 3 and r[3] is not None else None)
    table = None
    if items is not None:
        fields = sorted({f for v in items.values() for f in v})
        table = pl.DataFrame(
            {"item_id": list(items), **{f: [items[i].get(f) for i in items] for f in fields}},
            schema={"item_id": pl.String, **{f: pl.String for f in fields}},
        )
    return RawData(
        interactions=pl.DataFrame(
            cols,
            schema={
                "user_id": pl.String,
                "item_id": pl.String,
                "timestamp": pl.Float64,
                "rating": pl.Float64,
            },
        ),
        items=table,
        source={"format": "test", "paths": ["<memory>"]},
    )


def config(**sections: Any) -> PrepareConfig:
    data = {"name": "t", "source": {"format": "lcrec", "path": "unused"}, **sections}
    return PrepareConfig.model_validate(data)
