"""Generic CSV / TSV / Parquet interaction tables with a column mapping."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from h2rec.data.raw import RawData
from h2rec.data.readers._lines import iter_text_lines, read_bytes
from h2rec.errors import DataFormatError


def _separator(path: Path, sep: str | None) -> str:
    if sep is not None:
        return "\t" if sep in ("\\t", "tab") else sep
    name = path.name.lower().removesuffix(".gz")
    return "\t" if name.endswith((".tsv", ".tab")) else ","


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PAR1"


LINE = "_line"  # column holding each row's 1-based line in the file (Parquet: row number)


def read_frame(path: str | Path, sep: str | None = None, has_header: bool = True) -> pl.DataFrame:
    """Read a CSV/TSV (optionally gzipped) or Parquet file with every column as a string.

    Blank lines are skipped; the `_line` column keeps each remaining row's line number so errors
    found later still point at the right line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError("file not found", path=path)
    if path.stat().st_size == 0:
        raise DataFormatError("file is empty", path=path)
    if _is_parquet(path):
        try:
            df = pl.read_parquet(path)
        except Exception as exc:  # pyarrow/polars raise many types for corrupt files
            raise DataFormatError(f"cannot read Parquet ({exc})", path=path) from exc
        return df.with_columns(pl.all().cast(pl.String)).with_row_index(LINE, offset=1)
    separator = _separator(path, sep)
    raw = read_bytes(path)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataFormatError("not valid UTF-8", path=path, line=line) from exc
    try:
        df = pl.read_csv(raw, separator=separator, has_header=has_header, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        width = None
        for lineno, line in iter_text_lines(path):
            n = len(line.split(separator))
            if width is None:
                width = n
            elif n != width:
                raise DataFormatError(
                    f"expected {width} fields, found {n}", path=path, line=lineno
                ) from exc
        raise DataFormatError(f"cannot parse ({exc})", path=path) from exc
    if not has_header:
        df = df.rename({c: str(i) for i, c in enumerate(df.columns)})
    blank = df.select(pl.all_horizontal(pl.all().is_null() | (pl.all().str.strip_chars() == "")))
    return df.with_row_index(LINE, offset=2 if has_header else 1).filter(~blank.to_series())


def _timestamp(
    col: pl.Series, fmt: str | None, path: Path, field: str, lines: pl.Series
) -> pl.Series:
    """Numbers stay numbers; date strings are parsed (with `fmt` or ISO) into unix seconds."""
    numeric = col.cast(pl.Float64, strict=False)
    bad = numeric.is_null() & col.is_not_null()
    if not bad.any() and fmt is None:
        return numeric
    try:
        parsed = col.str.to_datetime(format=fmt, strict=False, time_unit="us")
        bad = parsed.is_null() & col.is_not_null()
    except pl.exceptions.PolarsError:
        # polars could infer no date format (or `fmt` is unusable): name the first value that
        # is not a number, since none of them parses as a date
        bad = numeric.is_null() & col.is_not_null()
        if not bad.any():
            bad = col.is_not_null()
    if bad.any():
        row = int(bad.arg_true()[0])
        raise DataFormatError(
            f"'{col[row]}' is neither a number nor a date{f' in format {fmt}' if fmt else ''}",
            path=path,
            line=int(lines[row]),
            field=field,
        )
    return (parsed.dt.epoch("us").cast(pl.Float64) / 1e6).alias(col.name)


def _column(df: pl.DataFrame, name: str, path: Path, role: str) -> None:
    if name not in df.columns:
        raise DataFormatError(
            f"{role} column not found (columns: {', '.join(c for c in df.columns if c != LINE)})",
            path=path,
            line=1,
            field=name,
        )


def read_table(
    path: str | Path,
    *,
    user: str = "user_id",
    item: str = "item_id",
    timestamp: str | None = None,
    rating: str | None = None,
    timestamp_format: str | None = None,
    sep: str | None = None,
    has_header: bool = True,
    items_path: str | Path | None = None,
    items_item: str | None = None,
    items_fields: list[str] | None = None,
    items_sep: str | None = None,
) -> RawData:
    """Interactions from a table with mapped columns; item text columns from an optional second table."""
    path = Path(path)
    df = read_frame(path, sep=sep, has_header=has_header)
    _column(df, user, path, "user")
    _column(df, item, path, "item")
    cols = {"user_id": df[user], "item_id": df[item]}
    if timestamp is not None:
        _column(df, timestamp, path, "timestamp")
        cols["timestamp"] = _timestamp(df[timestamp], timestamp_format, path, timestamp, df[LINE])
    if rating is not None:
        _column(df, rating, path, "rating")
        r = df[rating].cast(pl.Float64, strict=False)
        bad = r.is_null() & df[rating].is_not_null()
        if bad.any():
            row = int(bad.arg_true()[0])
            raise DataFormatError(
                f"'{df[rating][row]}' is not a number",
                path=path,
                line=int(df[LINE][row]),
                field=rating,
            )
        cols["rating"] = r
    for role, s in (("user", cols["user_id"]), ("item", cols["item_id"])):
        if s.null_count():
            row = int(s.is_null().arg_true()[0])
            raise DataFormatError(
                f"empty {role} id", path=path, line=int(df[LINE][row]), field=s.name
            )
    interactions = pl.DataFrame({k: v.alias(k) for k, v in cols.items()})
    items = None
    paths = [str(path)]
    if items_path is not None:
        ipath = Path(items_path)
        idf = read_frame(ipath, sep=items_sep)
        key = items_item or item
        _column(idf, key, ipath, "item")
        fields = (
            items_fields
            if items_fields is not None
            else [c for c in idf.columns if c not in (key, LINE)]
        )
        for f in fields:
            _column(idf, f, ipath, "item text")
        items = idf.select([pl.col(key).alias("item_id"), *[pl.col(f) for f in fields if f != key]])
        items = items.unique("item_id", keep="first", maintain_order=True)
        paths.append(str(ipath))
    return RawData(
        interactions=interactions,
        items=items,
        source={"format": "table", "paths": paths},
        default_template="fields",
    )
