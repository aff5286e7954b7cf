"""SASRec / S3Rec text: `user item item ...` lines, optional item JSON, error locations."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from h2rec.data.config import SASRecSource
from h2rec.data.readers import read_source
from h2rec.data.readers.sasrec import read_sasrec
from h2rec.errors import DataFormatError

TEXT = "1 5 3 9\n2 3\n\n10 1 2 3 4\n"


def _check(raw) -> None:
    inter = raw.interactions
    assert inter["user_id"].to_list() == ["1", "1", "1", "2", "10", "10", "10", "10"]
    assert inter["item_id"].to_list() == ["5", "3", "9", "3", "1", "2", "3", "4"]
    assert inter["timestamp"].null_count() == 8
    assert inter["rating"].null_count() == 8


def test_read(tmp_path: Path) -> None:
    path = tmp_path / "Beauty.txt"
    path.write_text(TEXT)
    raw = read_sasrec(path)
    _check(raw)
    assert raw.items is None
    assert raw.default_template == "fields"
    assert raw.source == {"format": "sasrec", "paths": [str(path)]}


def test_read_gzip_tabs_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "Beauty.txt"  # gzip detected by magic bytes, not by name
    path.write_bytes(gzip.compress(b"1\t5 3  9\r\n2 3\r\n\r\n10 1 2 3 4\r\n"))
    _check(read_sasrec(path))


def test_items_with_offset(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text(TEXT)
    items = tmp_path / "items.json"
    items.write_text(
        json.dumps({"4": {"title": "Four", "description": "d4"}, "8": {"title": "Eight"}})
    )
    raw = read_sasrec(path, items, items_id_offset=1)
    _check(raw)
    assert raw.items is not None
    assert raw.items["item_id"].to_list() == ["5", "9"]
    assert raw.items["title"].to_list() == ["Four", "Eight"]
    assert raw.items["description"].to_list() == ["d4", None]
    assert raw.default_template == "title-description"
    assert raw.source["paths"] == [str(path), str(items)]


def test_read_source(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text(TEXT)
    items = tmp_path / "items.json"
    items.write_text(json.dumps({"3": {"title": "Three"}}))
    raw = read_source(SASRecSource(path=str(path), items_path=str(items)))
    _check(raw)
    assert raw.items is not None
    assert raw.items.rows() == [("3", "Three")]
    assert raw.default_template == "title"


def test_user_without_items(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("1 2 3\n\n7\n8 1\n")
    with pytest.raises(DataFormatError) as ei:
        read_sasrec(path)
    assert (ei.value.path, ei.value.line) == (str(path), 3)
    assert "line 3" in str(ei.value)


def test_repeated_user(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("1 2 3\n2 4\n1 5\n")
    with pytest.raises(DataFormatError) as ei:
        read_sasrec(path)
    assert (ei.value.path, ei.value.line) == (str(path), 3)
    assert "'1'" in ei.value.reason


def test_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_bytes(b"1 2 3\n2 \xff\xfe\n")
    with pytest.raises(DataFormatError) as ei:
        read_sasrec(path)
    assert (ei.value.path, ei.value.line) == (str(path), 2)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("")
    assert read_sasrec(path).interactions.height == 0
    with pytest.raises(DataFormatError) as ei:
        read_source(SASRecSource(path=str(path)))
    assert ei.value.path == str(path)


def test_not_found(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError) as ei:
        read_sasrec(tmp_path / "missing.txt")
    assert ei.value.path == str(tmp_path / "missing.txt")
    path = tmp_path / "s.txt"
    path.write_text(TEXT)
    with pytest.raises(DataFormatError) as ei:
        read_sasrec(path, tmp_path / "missing.json")
    assert ei.value.path == str(tmp_path / "missing.json")


def test_truncated_gzip(tmp_path: Path) -> None:
    text = "".join(
        f"{u} " + " ".join(str((u * 31 + k) % 997) for k in range(20)) + "\n" for u in range(2000)
    )
    blob = gzip.compress(text.encode())
    path = tmp_path / "s.txt"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataFormatError) as ei:
        read_sasrec(path)
    assert ei.value.path == str(path)
    assert ei.value.line is not None and ei.value.line > 1
    assert "gzip" in ei.value.reason
