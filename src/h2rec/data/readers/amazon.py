"""Amazon review dumps: 2014 (`reviews_X.json.gz` + Python-literal `meta_X.json.gz`) and 2018 (JSON lines).

Both files are streamed line by line; metadata is kept only for items that have reviews.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import polars as pl

from h2rec.data.raw import ColumnBuffer, RawData
from h2rec.data.readers._lines import iter_records, optional_number, required_text
from h2rec.errors import DataFormatError

CATEGORY_CHARS = 2048  # LLM-ESR cuts the joined category list here

_REVIEW_SCHEMA = {
    "user_id": pl.String,
    "item_id": pl.String,
    "rating": pl.Float64,
    "timestamp": pl.Float64,
}
META_FIELDS = ("title", "brand", "price", "categories", "description", "features", "main_cat")


def _join(value: Any, sep: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        parts = [str(v).strip() for v in value if v is not None and str(v).strip()]
        return sep.join(parts) if parts else None
    text = str(value).strip()
    return text or None


def _categories(value: Any) -> str | None:
    """2014: list of category paths, the first one is used; 2018: a flat list."""
    if isinstance(value, list) and value and isinstance(value[0], list):
        value = value[0]
    text = _join(value, "; ")
    return text[:CATEGORY_CHARS] if text else None


def meta_fields(rec: dict[str, Any]) -> dict[str, str | None]:
    """Normalise one metadata record of either vintage to the same string fields."""
    return {
        "title": _join(rec.get("title"), " "),
        "brand": _join(rec.get("brand"), " "),
        "price": _join(rec.get("price"), " "),
        "categories": _categories(rec.get("categories", rec.get("category"))),
        "description": _join(rec.get("description"), " "),
        "features": _join(rec.get("feature"), "; "),
        "main_cat": _join(rec.get("main_cat"), " "),
    }


def read_reviews(path: str | Path) -> pl.DataFrame:
    """Stream reviews into (user_id, item_id, rating, timestamp), naming the line of any bad record."""
    buf = ColumnBuffer(_REVIEW_SCHEMA)
    for lineno, rec in iter_records(path, allow_python_literals=True):
        row = {
            "user_id": required_text(rec, "reviewerID", path, lineno),
            "item_id": required_text(rec, "asin", path, lineno),
            "timestamp": optional_number(rec, "unixReviewTime", path, lineno, required=True),
            "rating": optional_number(rec, "overall", path, lineno),
        }
        buf.append(row)
    return buf.frame()


def read_meta(path: str | Path, keep: set[str] | None = None) -> pl.DataFrame:
    """Stream metadata (JSON or Python literals, parsed safely) for the items in `keep`."""
    schema = {"item_id": pl.String, **{f: pl.String for f in META_FIELDS}}
    buf = ColumnBuffer(schema)
    for lineno, rec in iter_records(path, allow_python_literals=True):
        asin = rec.get("asin")
        if asin is None:
            raise DataFormatError("missing", path=path, line=lineno, field="asin")
        asin = str(asin)
        if keep is not None and asin not in keep:
            continue
        buf.append({"item_id": asin, **meta_fields(rec)})
    return buf.frame().unique("item_id", keep="first", maintain_order=True)


def read_amazon(
    reviews: str | Path,
    meta: str | Path | None = None,
    *,
    version: Literal["2014", "2018"] = "2014",
    domain: str | None = None,
) -> RawData:
    """Read an Amazon review dump and (optionally) its metadata; `domain` fills the text template."""
    interactions = read_reviews(reviews)
    items = None
    paths = [str(reviews)]
    if meta is not None:
        keep = set(interactions["item_id"].unique().to_list())
        items = read_meta(meta, keep)
        paths.append(str(meta))
    if domain is None:
        stem = Path(reviews).name.split(".")[0]
        domain = stem.removeprefix("reviews_").removesuffix("_5").replace("_", " ").lower()
    return RawData(
        interactions=interactions,
        items=items,
        source={"format": f"amazon{version}", "paths": paths},
        default_template="llmesr-amazon",
        template_variables={"domain": domain},
    )
