"""SASRec / S3Rec text: one line per user, `user item item ...`, items in time order."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from h2rec.data.raw import RawData
from h2rec.data.readers._lines import iter_text_lines
from h2rec.data.readers.lcrec import read_item_json
from h2rec.errors import DataFormatError


def read_sasrec(
    path: str | Path, items_path: str | Path | None = None, *, items_id_offset: int = 0
) -> RawData:
    """Read `user item item ...` lines; optional item attributes from an LC-Rec style item JSON.

    `items_id_offset` shifts the item JSON's integer ids onto this file's ids (S3Rec ids are
    LC-Rec ids + 1).
    """
    path = Path(path)
    users: list[str] = []
    items: list[str] = []
    seen: set[str] = set()
    for lineno, line in iter_text_lines(path):
        parts = line.split()
        if len(parts) < 2:
            raise DataFormatError("expected 'user item [item ...]'", path=path, line=lineno)
        if parts[0] in seen:
            raise DataFormatError(
                f"user {parts[0]!r} appears on more than one line", path=path, line=lineno
            )
        seen.add(parts[0])
        users.extend([parts[0]] * (len(parts) - 1))
        items.extend(parts[1:])
    interactions = pl.DataFrame(
        {"user_id": users, "item_id": items}, schema={"user_id": pl.String, "item_id": pl.String}
    )
    item_table = None
    if items_path is not None:
        item_table = read_item_json(Path(items_path), id_offset=items_id_offset)
    default = "fields"
    if item_table is not None and "title" in item_table.columns:
        default = "title-description" if "description" in item_table.columns else "title"
    return RawData(
        interactions=interactions,
        items=item_table,
        source={
            "format": "sasrec",
            "paths": [str(path)] + ([str(items_path)] if items_path else []),
        },
        default_template=default,
    )
