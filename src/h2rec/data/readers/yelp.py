"""The Yelp open dataset: `review.json` (interactions) + `business.json` (item text), streamed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from h2rec.data.raw import ColumnBuffer, RawData
from h2rec.data.readers._lines import iter_records, optional_number, required_text
from h2rec.errors import DataFormatError

BUSINESS_FIELDS = ("name", "categories", "type", "open", "review_count", "city", "state", "stars")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):  # old dumps: list of categories, LLM-ESR joins them with spaces
        parts = [str(v) for v in value if v is not None]
        return " ".join(parts) if parts else None
    if isinstance(value, bool):
        return str(value)
    text = str(value).strip()
    return text or None


def read_yelp_reviews(path: str | Path) -> pl.DataFrame:
    """Stream (user_id, business_id, stars, date) rows; dates become unix seconds (UTC)."""
    schema = {"user_id": pl.String, "item_id": pl.String, "rating": pl.Float64, "date": pl.String}
    buf = ColumnBuffer(schema)
    for lineno, rec in iter_records(path):
        row = {
            "user_id": required_text(rec, "user_id", path, lineno),
            "item_id": required_text(rec, "business_id", path, lineno),
            "date": required_text(rec, "date", path, lineno),
            "rating": optional_number(rec, "stars", path, lineno),
        }
        buf.append(row)
    df = buf.frame()
    try:
        parsed = df["date"].str.to_datetime(strict=False, time_unit="us")
        bad = parsed.is_null()
    except pl.exceptions.PolarsError:
        # no date format could be inferred from any value: the first row is already bad
        parsed = pl.Series("date", [None] * df.height, dtype=pl.Datetime("us"))
        bad = pl.Series([True] * df.height)
    if bad.any():
        row = int(bad.arg_true()[0])
        # rows map 1:1 to non-blank lines; find the line number of the offending row
        n = -1
        for lineno, _ in iter_records(path):
            n += 1
            if n == row:
                raise DataFormatError(
                    f"'{df['date'][row]}' is not a date", path=path, line=lineno, field="date"
                )
    ts = (parsed.dt.epoch("us").cast(pl.Float64) / 1e6).alias("timestamp")
    return df.with_columns(ts).drop("date")


def read_yelp_business(path: str | Path, keep: set[str] | None = None) -> pl.DataFrame:
    schema = {"item_id": pl.String, **{f: pl.String for f in BUSINESS_FIELDS}}
    buf = ColumnBuffer(schema)
    for lineno, rec in iter_records(path):
        bid = rec.get("business_id")
        if bid is None:
            raise DataFormatError("missing", path=path, line=lineno, field="business_id")
        if keep is not None and str(bid) not in keep:
            continue
        row = {"item_id": str(bid)}
        for f in BUSINESS_FIELDS:
            value = rec.get(f)
            if f == "open" and value is None and "is_open" in rec:  # current dumps renamed it
                value = bool(rec["is_open"])
            row[f] = _text(value)
        buf.append(row)
    return buf.frame().unique("item_id", keep="first", maintain_order=True)


def read_yelp(review: str | Path, business: str | Path | None = None) -> RawData:
    """Read Yelp reviews and (optionally) business attributes for the reviewed businesses."""
    interactions = read_yelp_reviews(review)
    items = None
    paths = [str(review)]
    if business is not None:
        keep = set(interactions["item_id"].unique().to_list())
        items = read_yelp_business(business, keep)
        paths.append(str(business))
    return RawData(
        interactions=interactions,
        items=items,
        source={"format": "yelp", "paths": paths},
        default_template="llmesr-yelp",
    )
