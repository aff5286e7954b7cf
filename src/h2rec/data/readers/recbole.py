"""RecBole atomic files (`.inter`, `.item`, `.user`): tab-separated with `name:type` headers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from h2rec.data.raw import RawData
from h2rec.data.readers._lines import iter_text_lines, read_bytes
from h2rec.errors import DataFormatError
from h2rec.io import atomic_write_text

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")


def parse_header(path: Path) -> list[tuple[str, str]]:
    """Return [(name, type)] from an atomic file's first line, validating every type."""
    for lineno, line in iter_text_lines(path, skip_blank=False):
        if lineno != 1:
            break
        fields = []
        for col in line.split("\t"):
            name, sep, typ = col.rpartition(":")
            if not sep or not name:
                raise DataFormatError(
                    f"header column '{col}' is not of the form name:type", path=path, line=1
                )
            if typ not in ATOMIC_TYPES:
                raise DataFormatError(
                    f"header column '{col}' has unknown type '{typ}' (expected one of {', '.join(ATOMIC_TYPES)})",
                    path=path,
                    line=1,
                    field=name,
                )
            fields.append((name, typ))
        return fields
    raise DataFormatError("file is empty (no header line)", path=path)


def _diagnose(path: Path, header: list[tuple[str, str]]) -> None:
    """Scan the file and raise at the first line that does not fit the header."""
    for lineno, line in iter_text_lines(path):
        if lineno == 1:
            continue
        parts = line.split("\t")
        if len(parts) != len(header):
            raise DataFormatError(
                f"expected {len(header)} tab-separated fields, found {len(parts)}",
                path=path,
                line=lineno,
            )
        for (name, typ), value in zip(header, parts, strict=True):
            if typ == "float" and value.strip():
                try:
                    float(value)
                except ValueError:
                    raise DataFormatError(
                        f"'{value}' is not a number", path=path, line=lineno, field=name
                    ) from None


def read_atomic(path: str | Path) -> pl.DataFrame:
    """Read one atomic file into a frame: token/seq columns as strings, float columns as Float64."""
    path = Path(path)
    header = parse_header(path)
    names = [n for n, _ in header]
    if len(set(names)) != len(names):
        raise DataFormatError("duplicate column names in header", path=path, line=1)
    data = read_bytes(path)
    try:
        df = pl.read_csv(
            data,
            separator="\t",
            has_header=False,
            skip_rows=1,
            new_columns=names,
            schema_overrides={n: pl.String for n in names},
            quote_char=None,
            encoding="utf8",
            truncate_ragged_lines=False,
        )
    except (pl.exceptions.ComputeError, pl.exceptions.ShapeError, pl.exceptions.PolarsError) as exc:
        _diagnose(path, header)
        raise DataFormatError(f"cannot parse ({exc})", path=path) from exc
    # the parser keeps blank lines as all-null rows; skip them, as `_diagnose` and
    # `iter_text_lines` do, so that rows map 1:1 to the non-blank data lines
    blank = pl.all_horizontal(pl.all().is_null() | (pl.all().str.strip_chars() == ""))
    df = df.filter(~blank)
    if df.width != len(names) or df.select(pl.any_horizontal(pl.all().is_null()).any()).item():
        # ragged lines are padded with nulls by the parser: find and name the line
        _diagnose(path, header)
    casts = []
    for name, typ in header:
        if typ == "float":
            text = df[name].str.strip_chars()
            casted = text.cast(pl.Float64, strict=False)
            bad = casted.is_null() & text.is_not_null() & (text != "")
            if bad.any():
                _diagnose(path, header)
                # Python's float() accepts a few spellings the parser does not (e.g. "1_000")
                row = int(bad.arg_true()[0])
                raise DataFormatError(
                    f"'{df[name][row]}' is not a number",
                    path=path,
                    line=_line_of_row(path, row),
                    field=name,
                )
            casts.append(casted.alias(name))
    return df.with_columns(casts) if casts else df


def _line_of_row(path: Path, row: int) -> int | None:
    """1-based line number of data row `row` (0-based; header and blank lines not counted)."""
    n = -1
    for lineno, _ in iter_text_lines(path):
        if lineno == 1:
            continue
        n += 1
        if n == row:
            return lineno
    return None


def _find(base: Path, name: str | None, suffix: str) -> Path | None:
    if base.is_file():
        candidate = base.with_suffix(suffix)
        return candidate if candidate.is_file() else None
    if name:
        candidate = base / f"{name}{suffix}"
        return candidate if candidate.is_file() else None
    found = sorted(base.glob(f"*{suffix}"))
    if len(found) > 1:
        raise DataFormatError(f"several {suffix} files; set the dataset name", path=base)
    return found[0] if found else None


def read_recbole(
    path: str | Path,
    name: str | None = None,
    *,
    user_field: str = "user_id",
    item_field: str = "item_id",
    time_field: str = "timestamp",
    rating_field: str = "rating",
) -> RawData:
    """Read `<name>.inter` (required), `<name>.item` and `<name>.user` (optional) from a folder."""
    base = Path(path)
    if not base.exists():
        raise DataFormatError("dataset folder or file not found", path=base)
    inter_path = _find(base, name, ".inter")
    if inter_path is None:
        raise DataFormatError(f"no {name + '.inter' if name else '*.inter'} file", path=base)
    inter = read_atomic(inter_path)
    for required in (user_field, item_field):
        if required not in inter.columns:
            raise DataFormatError(
                f"missing column (have: {', '.join(inter.columns)})",
                path=inter_path,
                line=1,
                field=required,
            )
    for required in (user_field, item_field):
        empty = inter[required].is_null()
        if empty.any():
            line = _line_of_row(inter_path, int(empty.arg_true()[0]))
            raise DataFormatError("empty id", path=inter_path, line=line, field=required)
    rename: dict[str, str] = {user_field: "user_id", item_field: "item_id"}
    if time_field in inter.columns:
        rename[time_field] = "timestamp"
    if rating_field in inter.columns:
        rename[rating_field] = "rating"
    # select only the mapped columns: a renamed field may share a name with another column
    # (e.g. user_field="session_id" in a file that also has user_id)
    interactions = inter.select([pl.col(src).alias(dst) for src, dst in rename.items()])
    for dst in ("timestamp", "rating"):
        if dst in interactions.columns and interactions.schema[dst] == pl.String:
            # a token-typed time/rating column: must still hold numbers
            text = interactions[dst].str.strip_chars()
            number = text.cast(pl.Float64, strict=False)
            bad = number.is_null() & text.is_not_null() & (text != "")
            if bad.any():
                row = int(bad.arg_true()[0])
                src = next(s for s, d in rename.items() if d == dst)
                raise DataFormatError(
                    f"'{interactions[dst][row]}' is not a number",
                    path=inter_path,
                    line=_line_of_row(inter_path, row),
                    field=src,
                )
            interactions = interactions.with_columns(number.alias(dst))

    item_path = _find(base, name, ".item")
    items = _read_side_table(item_path, item_field, "item_id") if item_path else None
    if items is not None:
        items = items.with_columns(pl.exclude("item_id").cast(pl.String))
    user_path = _find(base, name, ".user")
    users = _read_side_table(user_path, user_field, "user_id") if user_path else None
    return RawData(
        interactions=interactions,
        items=items,
        users=users,
        source={
            "format": "recbole",
            "paths": [str(p) for p in (inter_path, item_path, user_path) if p],
        },
        default_template="fields",
    )


def _read_side_table(path: Path, id_field: str, id_name: str) -> pl.DataFrame:
    """An `.item` / `.user` file keyed by `id_name`; the first row of a repeated id wins."""
    df = read_atomic(path)
    if id_field not in df.columns:
        raise DataFormatError(
            f"missing {id_name[:-3]} id column", path=path, line=1, field=id_field
        )
    return df.rename({id_field: id_name}).unique(id_name, keep="first", maintain_order=True)


def write_atomic(path: str | Path, df: pl.DataFrame, types: Mapping[str, str]) -> None:
    """Write a frame as a RecBole atomic file (atomically); `types` maps column -> atomic type."""
    lines = ["\t".join(f"{c}:{types[c]}" for c in df.columns)]
    for c in df.columns:
        if types[c] not in ATOMIC_TYPES:
            raise ValueError(f"unknown atomic type {types[c]!r} for column {c!r}")
    str_df = df.select(pl.col(c).cast(pl.String).fill_null("") for c in df.columns)
    for row in str_df.iter_rows():
        for value in row:
            if "\t" in value or "\n" in value:
                raise ValueError(
                    f"value {value!r} contains a tab or newline; atomic files cannot hold it"
                )
        lines.append("\t".join(row))
    atomic_write_text(path, "\n".join(lines) + "\n")
