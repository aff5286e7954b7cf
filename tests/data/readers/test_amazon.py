"""Amazon 2014 (Python-literal meta) and 2018 (JSON lines) dumps, parsed without eval."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from h2rec.data.config import AmazonSource
from h2rec.data.readers import read_source
from h2rec.data.readers.amazon import CATEGORY_CHARS, meta_fields, read_amazon, read_meta
from h2rec.errors import DataFormatError

REVIEWS = [
    {
        "reviewerID": "A1",
        "asin": "B001",
        "overall": 5.0,
        "unixReviewTime": 1300000000,
        "reviewText": "Great",
    },
    {"reviewerID": "A2", "asin": "B002", "overall": 3.0, "unixReviewTime": 1200000000},
    {"reviewerID": "A1", "asin": "B002", "overall": 4.0, "unixReviewTime": 1400000000},
    {"reviewerID": "A3", "asin": "B003", "unixReviewTime": 1100000000},
]
LONG_PATH = [f"Category number {i:03d}" for i in range(200)]
META_2014 = [
    {
        "asin": "B001",
        "title": "Men's Face Cream",  # repr() quotes this one with double quotes
        "price": 12.5,
        "brand": "Acme",
        "categories": [["Beauty", "Skin Care", "Face"], ["Men", "Grooming"]],
        "description": "A cream.",
        "related": {"also_bought": ["B002"]},
    },
    {"asin": "B999", "title": "Never reviewed", "categories": [["Beauty"]]},
    {"asin": "B002", "title": "Long", "categories": [LONG_PATH, ["Other"]], "price": 7},
    {"asin": "B001", "title": "Duplicate meta row"},
]


def _jsonl_gz(path: Path, records: list[dict]) -> Path:
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode()))
    return path


def _lines_gz(path: Path, lines: list[str]) -> Path:
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


@pytest.fixture
def files_2014(tmp_path: Path) -> tuple[Path, Path]:
    reviews = _jsonl_gz(tmp_path / "reviews_Beauty_5.json.gz", REVIEWS)
    meta = _lines_gz(tmp_path / "meta_Beauty.json.gz", [repr(m) for m in META_2014])
    return reviews, meta


def _check_reviews(raw) -> None:
    inter = raw.interactions
    assert inter.columns == ["user_id", "item_id", "timestamp", "rating"]
    assert inter["user_id"].to_list() == ["A1", "A2", "A1", "A3"]
    assert inter["item_id"].to_list() == ["B001", "B002", "B002", "B003"]
    assert inter["timestamp"].to_list() == [1300000000.0, 1200000000.0, 1400000000.0, 1100000000.0]
    assert inter["rating"].to_list() == [5.0, 3.0, 4.0, None]


def _check_2014(raw) -> None:
    _check_reviews(raw)
    items = raw.items
    assert items is not None
    assert items["item_id"].to_list() == ["B001", "B002"]  # B999 has no review; B003 no meta
    b001, b002 = items.row(0, named=True), items.row(1, named=True)
    assert b001 == {
        "item_id": "B001",
        "title": "Men's Face Cream",
        "brand": "Acme",
        "price": "12.5",
        "categories": "Beauty; Skin Care; Face",
        "description": "A cream.",
        "features": None,
        "main_cat": None,
    }
    assert b002["price"] == "7"
    full = "; ".join(LONG_PATH)
    assert len(full) > CATEGORY_CHARS == 2048
    assert b002["categories"] == full[:2048]
    assert raw.template_variables == {"domain": "beauty"}
    assert raw.default_template == "llmesr-amazon"


def test_meta_lines_are_python_literals(files_2014: tuple[Path, Path]) -> None:
    first = gzip.decompress(files_2014[1].read_bytes()).decode().splitlines()[0]
    assert first.startswith("{'asin': 'B001'")
    with pytest.raises(json.JSONDecodeError):
        json.loads(first)


def test_2014(files_2014: tuple[Path, Path]) -> None:
    reviews, meta = files_2014
    raw = read_amazon(reviews, meta, version="2014")
    _check_2014(raw)
    assert raw.source == {"format": "amazon2014", "paths": [str(reviews), str(meta)]}


def test_read_source_2014(files_2014: tuple[Path, Path]) -> None:
    reviews, meta = files_2014
    _check_2014(
        read_source(AmazonSource(format="amazon2014", reviews=str(reviews), meta=str(meta)))
    )


def test_reviews_only_and_domain(tmp_path: Path) -> None:
    reviews = _jsonl_gz(tmp_path / "reviews_Cell_Phones_and_Accessories_5.json.gz", REVIEWS)
    raw = read_amazon(reviews)
    _check_reviews(raw)
    assert raw.items is None
    assert raw.template_variables == {"domain": "cell phones and accessories"}
    assert read_amazon(reviews, domain="phones").template_variables == {"domain": "phones"}


def test_malicious_meta_line_is_not_evaluated(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "PWNED"
    reviews = _jsonl_gz(tmp_path / "reviews_Beauty_5.json.gz", REVIEWS)
    meta = _lines_gz(
        tmp_path / "meta_Beauty.json.gz",
        [
            repr(META_2014[0]),
            "",
            f"__import__('os').system('touch {target}')",
            repr(META_2014[2]),
        ],
    )
    with pytest.raises(DataFormatError) as ei:
        read_amazon(reviews, meta)
    assert (ei.value.path, ei.value.line) == (str(meta), 3)
    assert "line 3" in str(ei.value)
    assert not target.exists()
    assert not (tmp_path / "PWNED").exists()


def test_malicious_value_inside_dict(tmp_path: Path) -> None:
    target = tmp_path / "PWNED"
    meta = _lines_gz(
        tmp_path / "meta.json.gz",
        ["{'asin': 'B001', 'title': __import__('os').system(" + repr(f"touch {target}") + ")}"],
    )
    with pytest.raises(DataFormatError) as ei:
        read_meta(meta)
    assert ei.value.line == 1
    assert not target.exists()


FILES_2018_META = [
    {
        "asin": "B001",
        "title": "Face Cream",
        "brand": "Acme",
        "category": ["Beauty", "Skin Care", "Face"],
        "description": ["Rich cream.", "", "For dry skin."],
        "feature": ["50 ml", "Unscented"],
        "price": "$9.99",
        "main_cat": "All Beauty",
    },
    {"asin": "B002", "title": "Soap", "category": [], "description": [], "price": ""},
    {"asin": "B777", "title": "Not reviewed"},
]


def _check_2018(raw) -> None:
    _check_reviews(raw)
    items = raw.items
    assert items is not None
    assert items.rows(named=True) == [
        {
            "item_id": "B001",
            "title": "Face Cream",
            "brand": "Acme",
            "price": "$9.99",
            "categories": "Beauty; Skin Care; Face",
            "description": "Rich cream. For dry skin.",
            "features": "50 ml; Unscented",
            "main_cat": "All Beauty",
        },
        {
            "item_id": "B002",
            "title": "Soap",
            "brand": None,
            "price": None,
            "categories": None,
            "description": None,
            "features": None,
            "main_cat": None,
        },
    ]
    assert raw.template_variables == {"domain": "beauty"}


def test_2018(tmp_path: Path) -> None:
    reviews = _jsonl_gz(tmp_path / "Beauty_5.json.gz", REVIEWS)
    meta = _jsonl_gz(tmp_path / "meta_Beauty.json.gz", FILES_2018_META)
    raw = read_amazon(reviews, meta, version="2018")
    _check_2018(raw)
    assert raw.source["format"] == "amazon2018"
    raw = read_source(AmazonSource(format="amazon2018", reviews=str(reviews), meta=str(meta)))
    _check_2018(raw)
    assert raw.source["format"] == "amazon2018"


def test_meta_fields_2014_categories_first_path() -> None:
    out = meta_fields({"categories": [["A", "B"], ["C"]], "price": 3.25, "title": ["x", "y"]})
    assert out["categories"] == "A; B"
    assert out["price"] == "3.25"
    assert out["title"] == "x y"


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('{"asin": "B1", "overall": 5, "unixReviewTime": 1}', "reviewerID"),
        ('{"reviewerID": "A", "overall": 5, "unixReviewTime": 1}', "asin"),
        ('{"reviewerID": "", "asin": "B1", "unixReviewTime": 1}', "reviewerID"),
        ('{"reviewerID": "A", "asin": "B1", "overall": 5}', "unixReviewTime"),
        ('{"reviewerID": "A", "asin": "B1", "unixReviewTime": "x"}', "unixReviewTime"),
        ('{"reviewerID": "A", "asin": "B1", "unixReviewTime": 1, "overall": "good"}', "overall"),
    ],
    ids=["no-reviewer", "no-asin", "empty-reviewer", "no-time", "bad-time", "bad-rating"],
)
def test_bad_review_field(tmp_path: Path, line: str, field: str) -> None:
    good = json.dumps(REVIEWS[0])
    reviews = _lines_gz(tmp_path / "reviews_Beauty_5.json.gz", [good, good, line])
    with pytest.raises(DataFormatError) as ei:
        read_amazon(reviews)
    err = ei.value
    assert (err.path, err.line, err.field) == (str(reviews), 3, field)
    assert f"line 3, field '{field}'" in str(err)


def test_malformed_review_line(tmp_path: Path) -> None:
    good = json.dumps(REVIEWS[0])
    reviews = _lines_gz(tmp_path / "reviews_Beauty_5.json.gz", [good, '{"reviewerID": "A2", '])
    with pytest.raises(DataFormatError) as ei:
        read_amazon(reviews)
    assert (ei.value.path, ei.value.line) == (str(reviews), 2)


def test_meta_not_an_object_and_missing_asin(tmp_path: Path) -> None:
    reviews = _jsonl_gz(tmp_path / "reviews_Beauty_5.json.gz", REVIEWS)
    meta = _lines_gz(tmp_path / "meta.json.gz", [repr(META_2014[0]), "[1, 2]"])
    with pytest.raises(DataFormatError) as ei:
        read_amazon(reviews, meta)
    assert (ei.value.path, ei.value.line) == (str(meta), 2)
    meta = _lines_gz(tmp_path / "meta.json.gz", ["{'title': 'no asin'}"])
    with pytest.raises(DataFormatError) as ei:
        read_amazon(reviews, meta)
    assert (ei.value.line, ei.value.field) == (1, "asin")


def test_non_utf8_line(tmp_path: Path) -> None:
    good = json.dumps(REVIEWS[0]).encode()
    reviews = tmp_path / "reviews_Beauty_5.json.gz"
    reviews.write_bytes(gzip.compress(good + b"\n" + good + b"\n" + b'{"x": "\xff\xfe"}\n'))
    with pytest.raises(DataFormatError) as ei:
        read_amazon(reviews)
    assert (ei.value.path, ei.value.line) == (str(reviews), 3)


def test_empty_and_missing(tmp_path: Path) -> None:
    reviews = tmp_path / "reviews_Beauty_5.json.gz"
    reviews.write_bytes(gzip.compress(b""))
    assert read_amazon(reviews).interactions.height == 0
    with pytest.raises(DataFormatError) as ei:
        read_source(AmazonSource(reviews=str(reviews)))
    assert ei.value.path == str(reviews)
    with pytest.raises(DataFormatError) as ei:
        read_amazon(tmp_path / "missing.json.gz")
    assert ei.value.path == str(tmp_path / "missing.json.gz")
    good = _jsonl_gz(tmp_path / "reviews_Toys_5.json.gz", REVIEWS)
    with pytest.raises(DataFormatError) as ei:
        read_amazon(good, tmp_path / "meta_missing.json.gz")
    assert ei.value.path == str(tmp_path / "meta_missing.json.gz")


def test_truncated_gzip(tmp_path: Path) -> None:
    many = [
        {**REVIEWS[0], "reviewerID": f"A{i}", "reviewText": f"text {i * 7919 % 10007}"}
        for i in range(5000)
    ]
    full = _jsonl_gz(tmp_path / "full.json.gz", many).read_bytes()
    reviews = tmp_path / "reviews_Beauty_5.json.gz"
    reviews.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataFormatError) as ei:
        read_amazon(reviews)
    assert ei.value.path == str(reviews)
    assert ei.value.line is not None and ei.value.line > 1
    assert "gzip" in ei.value.reason
