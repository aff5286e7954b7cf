"""Yelp open dataset: reviews (dates -> unix seconds, UTC) and old/new style business records."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from h2rec.data.config import YelpSource
from h2rec.data.readers import read_source
from h2rec.data.readers.yelp import read_yelp, read_yelp_business, read_yelp_reviews
from h2rec.errors import DataFormatError

REVIEWS = [
    {
        "review_id": "r1",
        "user_id": "U1",
        "business_id": "B1",
        "stars": 4,
        "date": "2016-03-09 00:00:00",
        "text": "Nice",
    },
    {"review_id": "r2", "user_id": "U2", "business_id": "B2", "stars": 2.5, "date": "2016-03-09"},
    {"review_id": "r3", "user_id": "U1", "business_id": "B2", "date": "2017-12-31 23:59:59"},
]
OLD_BUSINESS = {
    "business_id": "B1",
    "name": "Pizza Place",
    "categories": ["Pizza", "Restaurants"],
    "open": True,
    "type": "business",
    "review_count": 17,
    "city": "Phoenix",
    "state": "AZ",
    "stars": 4.5,
}
NEW_BUSINESS = {
    "business_id": "B2",
    "name": "Corner Cafe",
    "categories": "Coffee & Tea, Cafes",
    "is_open": 1,
    "review_count": 3,
    "city": "Toronto",
    "state": "ON",
    "stars": 4.0,
    "attributes": {"WiFi": "free"},
}
CLOSED_UNREVIEWED = {"business_id": "B3", "name": "Gone", "categories": None, "is_open": 0}


def _utc(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


def _jsonl(path: Path, records: list[dict | str]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    review = _jsonl(tmp_path / "yelp_academic_dataset_review.json", REVIEWS)
    business = _jsonl(
        tmp_path / "yelp_academic_dataset_business.json",
        [CLOSED_UNREVIEWED, OLD_BUSINESS, NEW_BUSINESS],
    )
    return review, business


def _check(raw) -> None:
    inter = raw.interactions
    assert inter.columns == ["user_id", "item_id", "timestamp", "rating"]
    assert inter["user_id"].to_list() == ["U1", "U2", "U1"]
    assert inter["item_id"].to_list() == ["B1", "B2", "B2"]
    assert inter["rating"].to_list() == [4.0, 2.5, None]
    assert inter["timestamp"].to_list() == [
        _utc(2016, 3, 9),
        _utc(2016, 3, 9),
        _utc(2017, 12, 31, 23, 59, 59),
    ]
    assert inter["timestamp"][0] == 1457481600.0
    items = raw.items
    assert items is not None
    assert items.rows(named=True) == [
        {
            "item_id": "B1",
            "name": "Pizza Place",
            "categories": "Pizza Restaurants",
            "type": "business",
            "open": "True",
            "review_count": "17",
            "city": "Phoenix",
            "state": "AZ",
            "stars": "4.5",
        },
        {
            "item_id": "B2",
            "name": "Corner Cafe",
            "categories": "Coffee & Tea, Cafes",
            "type": None,
            "open": "True",
            "review_count": "3",
            "city": "Toronto",
            "state": "ON",
            "stars": "4.0",
        },
    ]
    assert raw.default_template == "llmesr-yelp"


def test_read_yelp(files: tuple[Path, Path]) -> None:
    review, business = files
    raw = read_yelp(review, business)
    _check(raw)
    assert raw.source == {"format": "yelp", "paths": [str(review), str(business)]}


def test_read_source(files: tuple[Path, Path]) -> None:
    review, business = files
    _check(read_source(YelpSource(review=str(review), business=str(business))))


def test_reviews_only(files: tuple[Path, Path]) -> None:
    raw = read_yelp(files[0])
    assert raw.items is None
    assert raw.interactions.height == 3


def test_closed_business(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "b.json", [CLOSED_UNREVIEWED, {**OLD_BUSINESS, "open": False}])
    df = read_yelp_business(path)
    assert df["item_id"].to_list() == ["B3", "B1"]
    assert df["open"].to_list() == ["False", "False"]
    assert df["categories"].to_list() == [None, "Pizza Restaurants"]


def test_bad_date_names_line(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "review.json",
        [REVIEWS[0], "", {**REVIEWS[1], "date": "09.03.2016 noon"}, REVIEWS[2]],
    )
    with pytest.raises(DataFormatError) as ei:
        read_yelp_reviews(path)
    err = ei.value
    assert (err.path, err.line, err.field) == (str(path), 3, "date")
    assert "09.03.2016 noon" in err.reason
    assert "line 3, field 'date'" in str(err)


def test_impossible_date_names_line(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "review.json",
        [REVIEWS[0], REVIEWS[1], "", "", {**REVIEWS[2], "date": "2016-02-30"}],
    )
    with pytest.raises(DataFormatError) as ei:
        read_yelp_reviews(path)
    assert (ei.value.line, ei.value.field) == (5, "date")


def test_bad_first_date(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "review.json", ["", {**REVIEWS[0], "date": "yesterday"}, REVIEWS[1]])
    with pytest.raises(DataFormatError) as ei:
        read_yelp_reviews(path)
    assert (ei.value.line, ei.value.field) == (2, "date")


@pytest.mark.parametrize("field", ["user_id", "business_id", "date"])
def test_missing_review_field(tmp_path: Path, field: str) -> None:
    bad = {k: v for k, v in REVIEWS[1].items() if k != field}
    path = _jsonl(tmp_path / "review.json", [REVIEWS[0], "", bad])
    with pytest.raises(DataFormatError) as ei:
        read_yelp(path)
    assert (ei.value.path, ei.value.line, ei.value.field) == (str(path), 3, field)


def test_bad_stars(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "review.json", [{**REVIEWS[0], "stars": "many"}])
    with pytest.raises(DataFormatError) as ei:
        read_yelp(path)
    assert (ei.value.line, ei.value.field) == (1, "stars")


def test_business_missing_id(files: tuple[Path, Path], tmp_path: Path) -> None:
    business = _jsonl(tmp_path / "business.json", [OLD_BUSINESS, {"name": "No id"}])
    with pytest.raises(DataFormatError) as ei:
        read_yelp(files[0], business)
    assert (ei.value.path, ei.value.line, ei.value.field) == (str(business), 2, "business_id")


def test_malformed_json_line(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "review.json", [REVIEWS[0], "{'user_id': 'U1'}"])
    with pytest.raises(DataFormatError) as ei:
        read_yelp(path)  # Yelp is strict JSON: no Python-literal fallback
    assert (ei.value.path, ei.value.line) == (str(path), 2)
    assert "JSON" in ei.value.reason


def test_non_utf8_line(tmp_path: Path) -> None:
    path = tmp_path / "review.json"
    path.write_bytes(json.dumps(REVIEWS[0]).encode() + b"\n\n" + b'{"user_id": "\xff\xfe"}\n')
    with pytest.raises(DataFormatError) as ei:
        read_yelp(path)
    assert (ei.value.path, ei.value.line) == (str(path), 3)


def test_empty_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "review.json"
    path.write_text("\n")
    assert read_yelp(path).interactions.height == 0
    with pytest.raises(DataFormatError) as ei:
        read_source(YelpSource(review=str(path)))
    assert ei.value.path == str(path)
    with pytest.raises(DataFormatError) as ei:
        read_yelp(tmp_path / "missing.json")
    assert ei.value.path == str(tmp_path / "missing.json")


@pytest.mark.parametrize("dates", [["soon"], ["100", "later"]], ids=["one", "no-format"])
def test_no_parseable_date_at_all(tmp_path: Path, dates: list[str]) -> None:
    path = _jsonl(tmp_path / "review.json", ["", *({**REVIEWS[0], "date": d} for d in dates)])
    with pytest.raises(DataFormatError) as ei:
        read_yelp_reviews(path)
    assert (ei.value.path, ei.value.line, ei.value.field) == (str(path), 2, "date")
    assert dates[0] in ei.value.reason
