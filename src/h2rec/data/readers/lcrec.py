"""LC-Rec / LETTER JSON: `X.inter.json`, `X.item.json`, `X.index.json` (published semantic IDs)."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from h2rec.data.raw import RawData
from h2rec.data.readers._lines import load_json
from h2rec.errors import DataFormatError

_TOKEN = re.compile(r"^<([a-z])_(\d+)>$")


def _locate(base: Path, name: str | None) -> tuple[Path, str]:
    if base.is_file():
        if not base.name.endswith(".inter.json"):
            raise DataFormatError("expected a '<name>.inter.json' file or its folder", path=base)
        return base.parent, base.name[: -len(".inter.json")]
    if not base.is_dir():
        raise DataFormatError("dataset folder not found", path=base)
    if name:
        return base, name
    found = sorted(base.glob("*.inter.json"))
    if not found:
        raise DataFormatError("no '*.inter.json' file in folder", path=base)
    if len(found) > 1:
        raise DataFormatError("several '*.inter.json' files; set the dataset name", path=base)
    return base, found[0].name[: -len(".inter.json")]


def parse_index_codes(path: Path) -> pl.DataFrame:
    """Parse `{"item": ["<a_12>", "<b_7>", ...]}` into item_id + integer code list (level order a, b, ...)."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise DataFormatError(
            "expected a JSON object mapping item id -> list of code tokens", path=path
        )
    item_ids: list[str] = []
    codes: list[list[int]] = []
    n_levels: int | None = None
    for item, tokens in data.items():
        if not isinstance(tokens, list) or not tokens:
            raise DataFormatError("code list must be a non-empty list", path=path, field=str(item))
        row = []
        for level, tok in enumerate(tokens):
            if isinstance(tok, int) and not isinstance(tok, bool):
                row.append(tok)
                continue
            m = _TOKEN.match(str(tok))
            if m is None:
                raise DataFormatError(
                    f"code token {tok!r} is not of the form <a_12>", path=path, field=str(item)
                )
            if ord(m.group(1)) - ord("a") != level:
                raise DataFormatError(
                    f"code token {tok!r} at position {level} has the wrong level letter",
                    path=path,
                    field=str(item),
                )
            row.append(int(m.group(2)))
        if n_levels is None:
            n_levels = len(row)
        elif len(row) != n_levels:
            raise DataFormatError(
                f"has {len(row)} code levels, others have {n_levels}", path=path, field=str(item)
            )
        item_ids.append(str(item))
        codes.append(row)
    return pl.DataFrame(
        {"item_id": item_ids, "codes": codes},
        schema={"item_id": pl.String, "codes": pl.List(pl.Int64)},
    )


def read_item_json(path: Path, id_offset: int = 0) -> pl.DataFrame:
    """`{"item": {"field": value}}` -> frame with item_id and one string column per field."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise DataFormatError("expected a JSON object mapping item id -> attributes", path=path)
    fields: dict[str, None] = {}
    for item, attrs in data.items():
        if not isinstance(attrs, dict):
            raise DataFormatError("item attributes must be an object", path=path, field=str(item))
        fields.update(dict.fromkeys(attrs))
    cols: dict[str, list[str | None]] = {"item_id": []}
    cols.update({f: [] for f in fields if f != "item_id"})
    for item, attrs in data.items():
        cols["item_id"].append(_shift(item, id_offset, path))
        for f in cols:
            if f == "item_id":
                continue
            value = attrs.get(f)
            cols[f].append(_to_text(value))
    return pl.DataFrame(cols, schema={c: pl.String for c in cols})


def _shift(item: str, offset: int, path: Path) -> str:
    if offset == 0:
        return str(item)
    try:
        return str(int(item) + offset)
    except ValueError:
        raise DataFormatError(f"id_offset needs integer ids, got {item!r}", path=path) from None


def _to_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return ", ".join(str(v) for v in value if v is not None and str(v).strip())
    return str(value)


def read_lcrec(path: str | Path, name: str | None = None) -> RawData:
    """Read an LC-Rec/LETTER dataset folder; item text and SIDs are optional."""
    folder, name = _locate(Path(path), name)
    inter_path = folder / f"{name}.inter.json"
    data = load_json(inter_path)
    if not isinstance(data, dict):
        raise DataFormatError(
            "expected a JSON object mapping user id -> list of item ids", path=inter_path
        )
    users: list[str] = []
    items: list[str] = []
    for user, seq in data.items():
        if not isinstance(seq, list):
            raise DataFormatError(
                "sequence must be a list of item ids", path=inter_path, field=str(user)
            )
        for it in seq:
            if isinstance(it, (dict, list)) or it is None:
                raise DataFormatError(
                    f"item id {it!r} is not a scalar", path=inter_path, field=str(user)
                )
        users.extend([str(user)] * len(seq))
        items.extend(str(it) for it in seq)
    interactions = pl.DataFrame(
        {"user_id": users, "item_id": items}, schema={"user_id": pl.String, "item_id": pl.String}
    )
    item_path = folder / f"{name}.item.json"
    index_path = folder / f"{name}.index.json"
    item_table = read_item_json(item_path) if item_path.is_file() else None
    codes = parse_index_codes(index_path) if index_path.is_file() else None
    paths = [str(p) for p in (inter_path, item_path, index_path) if p.is_file()]
    default = "fields"
    if item_table is not None and "title" in item_table.columns:
        default = "title-description" if "description" in item_table.columns else "title"
    return RawData(
        interactions=interactions,
        items=item_table,
        codes=codes,
        code_source=str(index_path) if codes is not None else None,
        source={"format": "lcrec", "name": name, "paths": paths},
        default_template=default,
    )
