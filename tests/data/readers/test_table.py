"""Generic CSV / TSV / gzip / Parquet tables with a column mapping."""

from __future__ import annotations

import gzip
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from h2rec.data.config import TableSource
from h2rec.data.readers import read_source
from h2rec.data.readers.table import read_frame, read_table
from h2rec.errors import DataFormatError

CSV = "uid,iid,ts,score,extra\nu1,i1,100,5,x\nu2,i2,50,3.5,y\nu1,i3,200,,z\n"


def _utc(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


def _check(raw, *, rating: bool = True) -> None:
    inter = raw.interactions
    assert inter.columns == ["user_id", "item_id", "timestamp", "rating"]
    assert inter["user_id"].to_list() == ["u1", "u2", "u1"]
    assert inter["item_id"].to_list() == ["i1", "i2", "i3"]
    assert inter["timestamp"].to_list() == [100.0, 50.0, 200.0]
    if rating:
        assert inter["rating"].to_list() == [5.0, 3.5, None]


MAPPING = {"user": "uid", "item": "iid", "timestamp": "ts", "rating": "score"}


def test_csv(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text(CSV)
    raw = read_table(path, **MAPPING)
    _check(raw)
    assert raw.source == {"format": "table", "paths": [str(path)]}
    assert raw.items is None


def test_tsv_detected_by_suffix(tmp_path: Path) -> None:
    path = tmp_path / "inter.tsv"
    path.write_text(CSV.replace(",", "\t"))
    _check(read_table(path, **MAPPING))


def test_gzip_tsv(tmp_path: Path) -> None:
    path = tmp_path / "inter.tsv.gz"
    path.write_bytes(gzip.compress(CSV.replace(",", "\t").encode()))
    _check(read_table(path, **MAPPING))


def test_gzip_csv_detected_by_magic(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"  # no .gz suffix: still decompressed
    path.write_bytes(gzip.compress(CSV.encode()))
    _check(read_table(path, **MAPPING))


def test_explicit_separator(tmp_path: Path) -> None:
    path = tmp_path / "inter.txt"
    path.write_text(CSV.replace(",", "\t"))
    _check(read_table(path, sep="\\t", **MAPPING))
    _check(read_table(path, sep="tab", **MAPPING))
    semi = tmp_path / "inter.csv"
    semi.write_text(CSV.replace(",", ";"))
    _check(read_table(semi, sep=";", **MAPPING))


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "inter.data"  # detected by the PAR1 magic, not the name
    pl.DataFrame(
        {"uid": ["u1", "u2", "u1"], "iid": ["i1", "i2", "i3"], "ts": [100, 50, 200]}
    ).with_columns(score=pl.Series([5.0, 3.5, None])).write_parquet(path)
    _check(read_table(path, **MAPPING))
    assert read_frame(path).schema == {
        "_line": pl.UInt32,  # row number, for error messages
        "uid": pl.String,
        "iid": pl.String,
        "ts": pl.String,
        "score": pl.String,
    }


def test_no_header(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text("u1,i1,100\nu2,i2,50\nu1,i3,200\n")
    raw = read_table(path, user="0", item="1", timestamp="2", has_header=False)
    _check(raw, rating=False)
    assert raw.interactions["rating"].null_count() == 3


def test_defaults_without_time(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text("user_id,item_id\n7,8\n7,9\n")
    raw = read_table(path)
    assert raw.interactions.rows() == [("7", "8", None, None), ("7", "9", None, None)]


def test_iso_dates_without_format(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text("u,i,t\na,x,2016-03-09 10:30:00\nb,y,2016-03-10 00:00:00\n")
    raw = read_table(path, user="u", item="i", timestamp="t")
    assert raw.interactions["timestamp"].to_list() == [
        _utc(2016, 3, 9, 10, 30),
        _utc(2016, 3, 10),
    ]


def test_dates_with_format(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text("u,i,t\na,x,09/03/2016 10:30\nb,y,31/12/2015 23:59\n")
    raw = read_table(path, user="u", item="i", timestamp="t", timestamp_format="%d/%m/%Y %H:%M")
    assert raw.interactions["timestamp"].to_list() == [
        _utc(2016, 3, 9, 10, 30),
        _utc(2015, 12, 31, 23, 59),
    ]


def test_date_not_matching_format(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text("u,i,t\na,x,09/03/2016\nb,y,2016-03-10\n")
    with pytest.raises(DataFormatError) as ei:
        read_table(path, user="u", item="i", timestamp="t", timestamp_format="%d/%m/%Y")
    err = ei.value
    assert (err.path, err.line, err.field) == (str(path), 3, "t")
    assert "2016-03-10" in err.reason and "%d/%m/%Y" in err.reason


def test_bad_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text("u,i,t\na,x,100\nb,y,soon\n")
    with pytest.raises(DataFormatError) as ei:
        read_table(path, user="u", item="i", timestamp="t")
    assert (ei.value.line, ei.value.field) == (3, "t")


def test_bad_rating_names_line(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text("u,i,r\na,x,5\nb,y,4\nc,z,five\n")
    with pytest.raises(DataFormatError) as ei:
        read_table(path, user="u", item="i", rating="r")
    err = ei.value
    assert (err.path, err.line, err.field) == (str(path), 4, "r")
    assert "five" in err.reason
    assert "line 4" in str(err) and "field 'r'" in str(err)


def test_bad_rating_without_header(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text("a,x,5\nc,z,five\n")
    with pytest.raises(DataFormatError) as ei:
        read_table(path, user="0", item="1", rating="2", has_header=False)
    assert (ei.value.line, ei.value.field) == (2, "2")


def test_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text(CSV)
    with pytest.raises(DataFormatError) as ei:
        read_table(path, user="uid", item="item_id")
    err = ei.value
    assert (err.path, err.line, err.field) == (str(path), 1, "item_id")
    assert "uid, iid, ts, score, extra" in err.reason


def test_missing_rating_column(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text(CSV)
    with pytest.raises(DataFormatError) as ei:
        read_table(path, user="uid", item="iid", rating="stars")
    assert ei.value.field == "stars"


def test_empty_user_id(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text("u,i\na,x\n,y\n")
    with pytest.raises(DataFormatError) as ei:
        read_table(path, user="u", item="i")
    assert (ei.value.line, ei.value.field) == (3, "u")


def test_ragged_line(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text("u,i\na,x\nb,y\nc,z,extra\n")
    with pytest.raises(DataFormatError) as ei:
        read_table(path, user="u", item="i")
    assert (ei.value.path, ei.value.line) == (str(path), 4)


def test_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_bytes(b"u,i\na,x\nb,\xff\xfe\n")
    with pytest.raises(DataFormatError) as ei:
        read_table(path, user="u", item="i")
    assert (ei.value.path, ei.value.line) == (str(path), 3)


def test_empty_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text("")
    with pytest.raises(DataFormatError) as ei:
        read_table(path)
    assert ei.value.path == str(path)
    assert "empty" in ei.value.reason
    with pytest.raises(DataFormatError) as ei:
        read_table(tmp_path / "nope.csv")
    assert ei.value.path == str(tmp_path / "nope.csv")


def test_header_only_is_empty_source(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text("user_id,item_id\n")
    with pytest.raises(DataFormatError) as ei:
        read_source(TableSource(path=str(path)))
    assert ei.value.path == str(path)


def test_items_table(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text(CSV)
    items = tmp_path / "items.tsv"
    items.write_text(
        "iid\ttitle\tbrand\tprice\n"
        "i1\tRed Shoes\tAcme\t9.99\n"
        "i2\tBlue Hat\t\t\n"
        "i1\tDuplicate\tX\t1\n"
    )
    raw = read_table(path, items_path=items, **MAPPING)
    _check(raw)
    assert raw.items is not None
    assert raw.items.columns == ["item_id", "title", "brand", "price"]
    assert raw.items.rows() == [("i1", "Red Shoes", "Acme", "9.99"), ("i2", "Blue Hat", None, None)]
    assert raw.source["paths"] == [str(path), str(items)]

    chosen = read_table(path, items_path=items, items_fields=["title"], **MAPPING)
    assert chosen.items is not None
    assert chosen.items.columns == ["item_id", "title"]

    with pytest.raises(DataFormatError) as ei:
        read_table(path, items_path=items, items_fields=["colour"], **MAPPING)
    assert (ei.value.path, ei.value.field) == (str(items), "colour")


def test_items_table_other_key(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text(CSV)
    items = tmp_path / "items.csv"
    items.write_text("asin,title\ni2,Blue Hat\n")
    raw = read_table(path, items_path=items, items_item="asin", **MAPPING)
    assert raw.items is not None
    assert raw.items.rows() == [("i2", "Blue Hat")]


def test_read_source(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text(CSV)
    items = tmp_path / "items.csv"
    items.write_text("iid,title\ni3,Third\n")
    raw = read_source(TableSource(path=str(path), items_path=str(items), **MAPPING))
    _check(raw)
    assert raw.items is not None
    assert raw.items.rows() == [("i3", "Third")]

    dated = tmp_path / "dated.tsv"
    dated.write_text("u\ti\tt\na\tx\t2016-03-09\n")
    raw = read_source(
        TableSource(path=str(dated), user="u", item="i", timestamp="t", timestamp_format="%Y-%m-%d")
    )
    assert raw.interactions["timestamp"].to_list() == [_utc(2016, 3, 9)]


def test_undated_first_value(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text("u,i,t\na,x,soon\nb,y,2016-03-09\n")
    with pytest.raises(DataFormatError) as ei:
        read_table(path, user="u", item="i", timestamp="t")
    assert (ei.value.line, ei.value.field) == (2, "t")
    assert "soon" in ei.value.reason


def test_impossible_iso_date(tmp_path: Path) -> None:
    path = tmp_path / "inter.csv"
    path.write_text("u,i,t\na,x,2016-03-09\nb,y,2016-03-10\nc,z,2016-13-45\n")
    with pytest.raises(DataFormatError) as ei:
        read_table(path, user="u", item="i", timestamp="t")
    assert (ei.value.line, ei.value.field) == (4, "t")


def test_truncated_gzip(tmp_path: Path) -> None:
    body = "".join(f"u{i},i{i * 7919 % 10007},{i}\n" for i in range(20000))
    blob = gzip.compress(("u,i,t\n" + body).encode())
    path = tmp_path / "inter.csv.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataFormatError) as ei:
        read_table(path, user="u", item="i", timestamp="t")
    assert ei.value.path == str(path)
    assert "gzip" in ei.value.reason


def test_blank_lines_are_skipped_and_later_errors_keep_true_line_numbers(tmp_path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("u,i,r\na,x,1\n\nb,y,2\n\n")
    raw = read_table(path, user="u", item="i", rating="r")
    assert raw.interactions["user_id"].to_list() == ["a", "b"]
    assert raw.interactions["rating"].to_list() == [1.0, 2.0]
    bad = tmp_path / "bad.csv"
    bad.write_text("u,i,r\na,x,1\n\n\nb,y,lots\n")
    with pytest.raises(DataFormatError) as exc:
        read_table(bad, user="u", item="i", rating="r")
    assert exc.value.line == 5 and exc.value.field == "r"
