"""One reader per source format; `read_source` dispatches on the config's `format`."""

from __future__ import annotations

from h2rec.data.config import (
    AmazonSource,
    LCRecSource,
    RecBoleSource,
    SASRecSource,
    SourceConfig,
    TableSource,
    YelpSource,
)
from h2rec.data.raw import RawData
from h2rec.data.readers.amazon import read_amazon
from h2rec.data.readers.lcrec import read_lcrec
from h2rec.data.readers.recbole import read_recbole
from h2rec.data.readers.sasrec import read_sasrec
from h2rec.data.readers.table import read_table
from h2rec.data.readers.yelp import read_yelp
from h2rec.errors import DataFormatError

FORMATS = ("lcrec", "sasrec", "recbole", "table", "amazon2014", "amazon2018", "yelp")

__all__ = [
    "FORMATS",
    "read_amazon",
    "read_lcrec",
    "read_recbole",
    "read_sasrec",
    "read_source",
    "read_table",
    "read_yelp",
]


def read_source(src: SourceConfig) -> RawData:
    """Read any supported source; an empty result is an error naming the file."""
    if isinstance(src, LCRecSource):
        raw = read_lcrec(src.path, src.name)
    elif isinstance(src, SASRecSource):
        raw = read_sasrec(src.path, src.items_path, items_id_offset=src.items_id_offset)
    elif isinstance(src, RecBoleSource):
        raw = read_recbole(
            src.path,
            src.name,
            user_field=src.user_field,
            item_field=src.item_field,
            time_field=src.time_field,
            rating_field=src.rating_field,
        )
    elif isinstance(src, TableSource):
        raw = read_table(
            src.path,
            user=src.user,
            item=src.item,
            timestamp=src.timestamp,
            rating=src.rating,
            timestamp_format=src.timestamp_format,
            sep=src.sep,
            has_header=src.has_header,
            items_path=src.items_path,
            items_item=src.items_item,
            items_fields=src.items_fields,
            items_sep=src.items_sep,
        )
    elif isinstance(src, AmazonSource):
        raw = read_amazon(src.reviews, src.meta, version=src.format[-4:], domain=src.domain)  # type: ignore[arg-type]
    elif isinstance(src, YelpSource):
        raw = read_yelp(src.review, src.business)
    else:  # pragma: no cover - pydantic rejects unknown formats first
        raise DataFormatError(f"unknown source format {getattr(src, 'format', src)!r}")
    if raw.interactions.height == 0:
        raise DataFormatError(
            "no interactions found (is the file empty?)", path=raw.source["paths"][0]
        )
    return raw
