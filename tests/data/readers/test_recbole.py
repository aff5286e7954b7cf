"""RecBole atomic files: header parsing, values, error locations and the write/read round trip."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from h2rec.data.config import RecBoleSource
from h2rec.data.readers import read_source
from h2rec.data.readers.recbole import parse_header, read_atomic, read_recbole, write_atomic
from h2rec.errors import DataFormatError

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "u1\ti1\t5\t100\n"
    "u2\ti2\t3.5\t50\n"
    "u1\ti3\t\t200\n"
)
ITEM = (
    "item_id:token\ttitle:token_seq\tprice:float\n"
    'i1\tRed "Running" Shoes\t9.99\n'
    "i2\tBlue Hat\t\n"
    "i1\tDuplicate Title\t1\n"
)
USER = "user_id:token\tage:float\nu1\t30\nu2\t41.5\n"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "ml"
    folder.mkdir()
    _write(folder / "ml.inter", INTER)
    _write(folder / "ml.item", ITEM)
    _write(folder / "ml.user", USER)
    return folder


def _check_dataset(raw) -> None:
    inter = raw.interactions
    assert inter.columns == ["user_id", "item_id", "timestamp", "rating"]
    assert inter["user_id"].to_list() == ["u1", "u2", "u1"]
    assert inter["item_id"].to_list() == ["i1", "i2", "i3"]
    assert inter["timestamp"].to_list() == [100.0, 50.0, 200.0]
    assert inter["rating"].to_list() == [5.0, 3.5, None]
    assert inter.schema["timestamp"] == pl.Float64
    assert inter.schema["rating"] == pl.Float64
    items = raw.items
    assert items is not None
    assert items["item_id"].to_list() == ["i1", "i2"]  # duplicates keep the first row
    assert items["title"].to_list() == ['Red "Running" Shoes', "Blue Hat"]
    assert items["price"].to_list() == ["9.99", None]
    users = raw.users
    assert users is not None
    assert users["user_id"].to_list() == ["u1", "u2"]
    assert users["age"].to_list() == [30.0, 41.5]


def test_read_recbole_folder_with_name(dataset: Path) -> None:
    raw = read_recbole(dataset, "ml")
    _check_dataset(raw)
    assert raw.source["format"] == "recbole"
    assert raw.source["paths"] == [str(dataset / f"ml.{s}") for s in ("inter", "item", "user")]
    assert raw.has_timestamps is True  # a rating is missing, but every timestamp is present
    assert raw.interactions["timestamp"].null_count() == 0


def test_read_recbole_folder_without_name_and_file_path(dataset: Path) -> None:
    _check_dataset(read_recbole(dataset))
    _check_dataset(read_recbole(dataset / "ml.inter"))


def test_read_recbole_inter_only(tmp_path: Path) -> None:
    _write(tmp_path / "x.inter", "user_id:token\titem_id:token\n7\t8\n7\t9\n")
    raw = read_recbole(tmp_path)
    assert raw.interactions["user_id"].to_list() == ["7", "7"]
    assert raw.interactions["item_id"].to_list() == ["8", "9"]
    assert raw.interactions["timestamp"].to_list() == [None, None]
    assert raw.interactions["rating"].to_list() == [None, None]
    assert raw.items is None and raw.users is None


def test_custom_field_names(tmp_path: Path) -> None:
    _write(
        tmp_path / "d.inter",
        "uid:token\tiid:token\tts:float\tscore:float\tuser_id:token\na\tx\t1.5\t2\tignored\n",
    )
    raw = read_recbole(
        tmp_path, "d", user_field="uid", item_field="iid", time_field="ts", rating_field="score"
    )
    assert raw.interactions.row(0) == ("a", "x", 1.5, 2.0)


def test_missing_user_column(tmp_path: Path) -> None:
    _write(tmp_path / "d.inter", "uid:token\titem_id:token\na\tx\n")
    with pytest.raises(DataFormatError) as ei:
        read_recbole(tmp_path, "d")
    assert ei.value.field == "user_id"
    assert ei.value.line == 1
    assert ei.value.path == str(tmp_path / "d.inter")
    assert "uid" in str(ei.value)


def test_gzip_atomic_file(tmp_path: Path) -> None:
    path = tmp_path / "d.inter"
    path.write_bytes(gzip.compress(INTER.encode()))
    df = read_atomic(path)
    assert df["user_id"].to_list() == ["u1", "u2", "u1"]
    assert df["rating"].to_list() == [5.0, 3.5, None]


def test_crlf_and_blank_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "d.inter",
        "user_id:token\titem_id:token\ttimestamp:float\r\nu1\ti1\t1\r\n\r\nu2\ti2\t2\r\n\n",
    )
    df = read_atomic(path)
    assert df["user_id"].to_list() == ["u1", "u2"]
    assert df["item_id"].to_list() == ["i1", "i2"]
    assert df["timestamp"].to_list() == [1.0, 2.0]


def test_parse_header(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.item", "item_id:token\ttitle:token_seq\tvec:float_seq\tp:float\n")
    assert parse_header(path) == [
        ("item_id", "token"),
        ("title", "token_seq"),
        ("vec", "float_seq"),
        ("p", "float"),
    ]


def test_header_unknown_type(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.inter", "user_id:token\titem_id:int\nu\ti\n")
    with pytest.raises(DataFormatError) as ei:
        read_atomic(path)
    err = ei.value
    assert (err.path, err.line, err.field) == (str(path), 1, "item_id")
    assert "int" in err.reason
    assert str(path) in str(err) and "line 1" in str(err) and "item_id" in str(err)


def test_header_without_type(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.inter", "user_id\titem_id:token\nu\ti\n")
    with pytest.raises(DataFormatError) as ei:
        read_atomic(path)
    assert (ei.value.path, ei.value.line) == (str(path), 1)
    assert "user_id" in ei.value.reason


def test_empty_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.inter", "")
    with pytest.raises(DataFormatError) as ei:
        read_atomic(path)
    assert ei.value.path == str(path)
    assert "empty" in ei.value.reason


def test_duplicate_header_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.inter", "user_id:token\tuser_id:token\nu\tv\n")
    with pytest.raises(DataFormatError) as ei:
        read_atomic(path)
    assert ei.value.line == 1


@pytest.mark.parametrize(
    "bad_line",
    ["u3\ti3\t1\t5\textra", "u3\ti3\t1", "u3"],
    ids=["too-many", "too-few", "one-field"],
)
def test_wrong_number_of_fields_names_line(tmp_path: Path, bad_line: str) -> None:
    path = _write(
        tmp_path / "d.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "u1\ti1\t5\t1\n"
        "\n"
        "u2\ti2\t4\t2\n"
        f"{bad_line}\n"
        "u4\ti4\t3\t4\n",
    )
    with pytest.raises(DataFormatError) as ei:
        read_atomic(path)
    assert ei.value.path == str(path)
    assert ei.value.line == 5
    assert "expected 4" in ei.value.reason
    assert "line 5" in str(ei.value)


def test_float_column_not_a_number(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "d.inter",
        "user_id:token\titem_id:token\trating:float\nu1\ti1\t5\nu2\ti2\tabc\n",
    )
    with pytest.raises(DataFormatError) as ei:
        read_recbole(path)
    err = ei.value
    assert (err.path, err.line, err.field) == (str(path), 3, "rating")
    assert "abc" in err.reason


def test_non_utf8_line(tmp_path: Path) -> None:
    path = tmp_path / "d.inter"
    path.write_bytes(b"user_id:token\titem_id:token\nu1\ti1\nu2\t\xff\xfe\n")
    with pytest.raises(DataFormatError) as ei:
        read_atomic(path)
    assert ei.value.path == str(path)
    assert ei.value.line == 3


def test_not_found(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError) as ei:
        read_recbole(tmp_path / "nope")
    assert ei.value.path == str(tmp_path / "nope")
    with pytest.raises(DataFormatError) as ei:
        read_recbole(tmp_path, "missing")
    assert "missing.inter" in str(ei.value)
    with pytest.raises(DataFormatError):
        read_atomic(tmp_path / "missing.inter")


def test_several_inter_files_need_a_name(tmp_path: Path) -> None:
    _write(tmp_path / "a.inter", "user_id:token\titem_id:token\nu\ti\n")
    _write(tmp_path / "b.inter", "user_id:token\titem_id:token\nv\tj\n")
    with pytest.raises(DataFormatError):
        read_recbole(tmp_path)
    assert read_recbole(tmp_path, "b").interactions["user_id"].to_list() == ["v"]


def test_read_source(dataset: Path) -> None:
    raw = read_source(RecBoleSource(path=str(dataset), name="ml"))
    _check_dataset(raw)


def test_read_source_header_only_is_empty(tmp_path: Path) -> None:
    _write(tmp_path / "d.inter", "user_id:token\titem_id:token\n")
    with pytest.raises(DataFormatError) as ei:
        read_source(RecBoleSource(path=str(tmp_path)))
    assert ei.value.path == str(tmp_path / "d.inter")


def test_write_read_round_trip(tmp_path: Path) -> None:
    df = pl.DataFrame(
        {
            "user_id": ["u1", "u2", "u3"],
            "item_id": ["i 1", "i2", "i3"],
            "rating": [5.0, None, 2.25],
            "tags": ["a b", "c", 'with "quotes"'],
        }
    )
    types = {"user_id": "token", "item_id": "token", "rating": "float", "tags": "token_seq"}
    path = tmp_path / "out" / "x.inter"
    write_atomic(path, df, types)
    assert path.read_text().splitlines()[0] == (
        "user_id:token\titem_id:token\trating:float\ttags:token_seq"
    )
    assert parse_header(path) == list(types.items())
    back = read_atomic(path)
    assert back.schema["rating"] == pl.Float64
    assert back.to_dict(as_series=False) == df.to_dict(as_series=False)


def test_write_atomic_refuses_tab(tmp_path: Path) -> None:
    df = pl.DataFrame({"item_id": ["i1"], "title": ["bad\tvalue"]})
    path = tmp_path / "x.item"
    with pytest.raises(ValueError, match="tab"):
        write_atomic(path, df, {"item_id": "token", "title": "token_seq"})
    assert not path.exists()


def test_write_atomic_refuses_unknown_type(tmp_path: Path) -> None:
    df = pl.DataFrame({"item_id": ["i1"]})
    with pytest.raises(ValueError):
        write_atomic(tmp_path / "x.item", df, {"item_id": "int"})


def test_empty_user_id_names_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "d.inter",
        "user_id:token\titem_id:token\trating:float\nu1\ti1\t5\n\n\ti2\t4\n",
    )
    with pytest.raises(DataFormatError) as ei:
        read_recbole(path)
    assert (ei.value.path, ei.value.line, ei.value.field) == (str(path), 4, "user_id")


def test_float_with_spaces_and_python_only_spelling(tmp_path: Path) -> None:
    header = "user_id:token\titem_id:token\trating:float\n"
    path = _write(tmp_path / "a.inter", header + "u1\ti1\t 5 \nu2\ti2\t4\n")
    assert read_atomic(path)["rating"].to_list() == [5.0, 4.0]
    # float("1_000") works in Python but is no number in a data file: name it, never null it
    path = _write(tmp_path / "b.inter", header + "u1\ti1\t5\n\nu2\ti2\t1_000\n")
    with pytest.raises(DataFormatError) as ei:
        read_atomic(path)
    assert (ei.value.line, ei.value.field) == (4, "rating")


def test_truncated_gzip(tmp_path: Path) -> None:
    body = "".join(f"u{i}\ti{i * 7919 % 10007}\t{i}\n" for i in range(20000))
    data = gzip.compress(("user_id:token\titem_id:token\ttimestamp:float\n" + body).encode())
    path = tmp_path / "d.inter"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError) as ei:
        read_recbole(path)
    assert ei.value.path == str(path)
    assert "gzip" in ei.value.reason


def test_token_typed_timestamp(tmp_path: Path) -> None:
    header = "user_id:token\titem_id:token\ttimestamp:token\n"
    _write(tmp_path / "a.inter", header + "u\ti\t12\nv\tj\t 7.5\n")
    raw = read_recbole(tmp_path, "a")
    assert raw.interactions["timestamp"].to_list() == [12.0, 7.5]
    path = _write(tmp_path / "b.inter", header + "u\ti\t12\n\nv\tj\tlater\n")
    with pytest.raises(DataFormatError) as ei:
        read_recbole(tmp_path, "b")
    assert (ei.value.path, ei.value.line, ei.value.field) == (str(path), 4, "timestamp")
