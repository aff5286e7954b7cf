"""LC-Rec / LETTER JSON: interactions, item text, semantic-ID index and error locations."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from h2rec.data.config import LCRecSource
from h2rec.data.readers import read_source
from h2rec.data.readers.lcrec import parse_index_codes, read_item_json, read_lcrec
from h2rec.errors import DataFormatError

INTER = {"0": [0, 1, 2], "1": [1, 3], "2": ["7"]}
ITEMS = {
    "0": {"title": "Lip Balm", "description": "Soft lips", "categories": ["Beauty", "Lips"]},
    "1": {"title": "Shampoo", "description": None, "brand": "Acme"},
    "3": {"title": 42, "description": ["Line one", "", "Line two"]},
}
INDEX = {
    "0": ["<a_12>", "<b_7>", "<c_200>"],
    "1": ["<a_0>", "<b_255>", "<c_3>"],
    "3": ["<a_12>", "<b_7>", "<c_201>"],
    "7": [1, 2, 3],
}


def _dump(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj, indent=1), encoding="utf-8")
    return path


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "Beauty"
    folder.mkdir()
    _dump(folder / "Beauty.inter.json", INTER)
    _dump(folder / "Beauty.item.json", ITEMS)
    _dump(folder / "Beauty.index.json", INDEX)
    return folder


def _check(raw, folder: Path) -> None:
    inter = raw.interactions
    assert inter["user_id"].to_list() == ["0", "0", "0", "1", "1", "2"]
    assert inter["item_id"].to_list() == ["0", "1", "2", "1", "3", "7"]
    assert inter["timestamp"].null_count() == 6
    assert inter["rating"].null_count() == 6
    items = raw.items
    assert items is not None
    assert items.columns == ["item_id", "title", "description", "categories", "brand"]
    assert items["item_id"].to_list() == ["0", "1", "3"]
    assert items["title"].to_list() == ["Lip Balm", "Shampoo", "42"]
    assert items["description"].to_list() == ["Soft lips", None, "Line one, Line two"]
    assert items["categories"].to_list() == ["Beauty, Lips", None, None]
    assert items["brand"].to_list() == [None, "Acme", None]
    codes = raw.codes
    assert codes is not None
    assert codes["item_id"].to_list() == ["0", "1", "3", "7"]
    assert codes["codes"].to_list() == [[12, 7, 200], [0, 255, 3], [12, 7, 201], [1, 2, 3]]
    assert raw.code_source == str(folder / "Beauty.index.json")
    assert raw.default_template == "title-description"
    assert raw.source["format"] == "lcrec"
    assert raw.source["name"] == "Beauty"
    assert raw.source["paths"] == [
        str(folder / f"Beauty.{s}.json") for s in ("inter", "item", "index")
    ]


def test_read_folder(dataset: Path) -> None:
    _check(read_lcrec(dataset), dataset)
    _check(read_lcrec(dataset, "Beauty"), dataset)


def test_read_inter_file_path(dataset: Path) -> None:
    _check(read_lcrec(dataset / "Beauty.inter.json"), dataset)


def test_read_source(dataset: Path) -> None:
    _check(read_source(LCRecSource(path=str(dataset))), dataset)


def test_gzip_json(tmp_path: Path) -> None:
    (tmp_path / "g.inter.json").write_bytes(gzip.compress(json.dumps({"u": ["a", "b"]}).encode()))
    raw = read_lcrec(tmp_path)
    assert raw.interactions["item_id"].to_list() == ["a", "b"]


def test_interactions_only(tmp_path: Path) -> None:
    _dump(tmp_path / "x.inter.json", {"5": [9]})
    raw = read_lcrec(tmp_path)
    assert raw.interactions.rows() == [("5", "9", None, None)]
    assert raw.items is None and raw.codes is None and raw.code_source is None
    assert raw.default_template == "fields"


def test_title_only_template(tmp_path: Path) -> None:
    _dump(tmp_path / "x.inter.json", {"5": [9]})
    _dump(tmp_path / "x.item.json", {"9": {"title": "T"}})
    assert read_lcrec(tmp_path).default_template == "title"


def test_parse_index_codes_levels(tmp_path: Path) -> None:
    path = _dump(tmp_path / "i.json", {"x": ["<a_1>", "<b_22>", "<c_333>", "<d_4>"]})
    df = parse_index_codes(path)
    assert df.rows() == [("x", [1, 22, 333, 4])]


@pytest.mark.parametrize(
    ("index", "bad_item"),
    [
        ({"0": ["<a_1>", "<b_2>"], "1": ["<a_1>"]}, "1"),  # mixed level counts
        ({"0": ["<a_1>", "<b_2>"], "1": ["<b_1>", "<a_2>"]}, "1"),  # wrong letter order
        ({"0": ["<a_1>", "<c_2>"]}, "0"),  # skipped level
        ({"0": ["a_1", "<b_2>"]}, "0"),  # not a token
        ({"0": []}, "0"),  # empty list
        ({"0": "<a_1>"}, "0"),  # not a list
    ],
    ids=["mixed-levels", "wrong-order", "skipped-level", "bad-token", "empty", "not-list"],
)
def test_bad_index(tmp_path: Path, index: dict, bad_item: str) -> None:
    path = _dump(tmp_path / "x.index.json", index)
    with pytest.raises(DataFormatError) as ei:
        parse_index_codes(path)
    assert ei.value.path == str(path)
    assert ei.value.field == bad_item
    assert f"field '{bad_item}'" in str(ei.value)


def test_bad_index_through_reader(tmp_path: Path) -> None:
    _dump(tmp_path / "x.inter.json", {"0": [1]})
    _dump(tmp_path / "x.index.json", {"1": ["<a_1>", "<b_2>"], "2": ["<a_1>", "<b_2>", "<c_3>"]})
    with pytest.raises(DataFormatError) as ei:
        read_lcrec(tmp_path)
    assert ei.value.path == str(tmp_path / "x.index.json")
    assert ei.value.field == "2"


def test_invalid_json_names_line(tmp_path: Path) -> None:
    path = tmp_path / "x.inter.json"
    path.write_text('{\n  "0": [1, 2],\n  "1": [3,, 4]\n}\n')
    with pytest.raises(DataFormatError) as ei:
        read_lcrec(tmp_path)
    assert (ei.value.path, ei.value.line) == (str(path), 3)
    assert "line 3" in str(ei.value)


def test_non_utf8_names_line(tmp_path: Path) -> None:
    path = tmp_path / "x.item.json"
    _dump(tmp_path / "x.inter.json", {"0": [1]})
    path.write_bytes(b'{\n "1": {"title": "ok"},\n "2": {"title": "\xff\xfe"}\n}\n')
    with pytest.raises(DataFormatError) as ei:
        read_lcrec(tmp_path)
    assert (ei.value.path, ei.value.line) == (str(path), 3)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "x.inter.json"
    path.write_text("")
    with pytest.raises(DataFormatError) as ei:
        read_lcrec(tmp_path)
    assert ei.value.path == str(path)
    assert "empty" in ei.value.reason


def test_empty_object_is_empty_source(tmp_path: Path) -> None:
    _dump(tmp_path / "x.inter.json", {})
    with pytest.raises(DataFormatError) as ei:
        read_source(LCRecSource(path=str(tmp_path)))
    assert ei.value.path == str(tmp_path / "x.inter.json")


@pytest.mark.parametrize(
    ("data", "field"),
    [({"0": 5}, "0"), ({"0": [1], "1": [2, {"x": 1}]}, "1"), ({"0": [None]}, "0")],
    ids=["not-list", "dict-item", "null-item"],
)
def test_bad_sequences(tmp_path: Path, data: dict, field: str) -> None:
    _dump(tmp_path / "x.inter.json", data)
    with pytest.raises(DataFormatError) as ei:
        read_lcrec(tmp_path)
    assert ei.value.field == field


def test_not_a_mapping(tmp_path: Path) -> None:
    _dump(tmp_path / "x.inter.json", [[1, 2]])
    with pytest.raises(DataFormatError):
        read_lcrec(tmp_path)


def test_not_found(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError) as ei:
        read_lcrec(tmp_path / "missing")
    assert ei.value.path == str(tmp_path / "missing")
    with pytest.raises(DataFormatError):
        read_lcrec(tmp_path)  # folder without *.inter.json
    with pytest.raises(DataFormatError) as ei:
        read_lcrec(tmp_path, "Games")
    assert ei.value.path == str(tmp_path / "Games.inter.json")


def test_several_datasets_need_a_name(tmp_path: Path) -> None:
    _dump(tmp_path / "a.inter.json", {"u": [1]})
    _dump(tmp_path / "b.inter.json", {"v": [2]})
    with pytest.raises(DataFormatError):
        read_lcrec(tmp_path)
    assert read_lcrec(tmp_path, "b").interactions["user_id"].to_list() == ["v"]


def test_read_item_json_offset(tmp_path: Path) -> None:
    path = _dump(tmp_path / "items.json", {"0": {"title": "A"}, "9": {"title": "B"}})
    df = read_item_json(path, id_offset=1)
    assert df.rows() == [("1", "A"), ("10", "B")]
    bad = _dump(tmp_path / "bad.json", {"x": {"title": "A"}})
    with pytest.raises(DataFormatError) as ei:
        read_item_json(bad, id_offset=1)
    assert ei.value.path == str(bad)


def test_truncated_gzip(tmp_path: Path) -> None:
    data = {str(u): [(u * 31 + k) % 997 for k in range(20)] for u in range(2000)}
    blob = gzip.compress(json.dumps(data).encode())
    path = tmp_path / "x.inter.json"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataFormatError) as ei:
        read_lcrec(tmp_path)
    assert ei.value.path == str(path)
    assert "gzip" in ei.value.reason
