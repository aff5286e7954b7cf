"""The synthetic dataset must be exact, deterministic, long-tailed and semantically coherent."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from h2rec.data.readers.recbole import read_recbole
from h2rec.data.synth import (
    TAXONOMY,
    SynthConfig,
    SynthData,
    generate,
    n_product_types,
    write_recbole,
)

SMALL = {"n_users": 1500, "n_items": 600}
ITEM_COLUMNS = [
    "item_id",
    "title",
    "brand",
    "category",
    "subcategory",
    "product_type",
    "attributes",
    "description",
]


@pytest.fixture(scope="module")
def small() -> SynthData:
    return generate(SynthConfig(**SMALL))


@pytest.fixture(scope="module")
def default() -> tuple[SynthData, float]:
    t0 = time.perf_counter()
    data = generate(SynthConfig())
    return data, time.perf_counter() - t0


def _counts_desc(data: SynthData) -> np.ndarray:
    return np.sort(data.interactions["item_id"].value_counts()["count"].to_numpy())[::-1]


def _mid_slope(counts: np.ndarray) -> float:
    """Log-log rank-frequency slope over ranks 1%..50% (head saturation and the tail excluded)."""
    n = len(counts)
    ranks = np.arange(1, n + 1)
    lo, hi = max(n // 100, 1), n // 2
    return float(np.polyfit(np.log(ranks[lo - 1 : hi]), np.log(counts[lo - 1 : hi]), 1)[0])


def _consecutive(data: SynthData, column: str) -> tuple[float, float]:
    """Share of consecutive pairs (same user) agreeing on `column`, and the same for a shuffle."""
    joined = data.interactions.join(
        data.items.select("item_id", column), on="item_id", how="left", maintain_order="left"
    )
    values = joined[column].to_numpy()
    users = joined["user_id"].to_numpy()
    same_user = users[:-1] == users[1:]
    pair_share = float((values[:-1] == values[1:])[same_user].mean())
    shuffled = np.random.default_rng(0).permutation(values)
    base_share = float((values[:-1] == shuffled[1:])[same_user].mean())
    return pair_share, base_share


# ---------------------------------------------------------------------------------------------


def test_taxonomy_is_a_tree_with_unique_names() -> None:
    subs = [s.name for c in TAXONOMY for s in c.subcategories]
    types = [p for c in TAXONOMY for s in c.subcategories for p in s.product_types]
    assert 6 <= len(TAXONOMY) <= 10
    assert len(set(subs)) == len(subs)
    assert len(set(types)) == len(types)  # a product type names exactly one subcategory
    for c in TAXONOMY:
        assert 3 <= len(c.subcategories) <= 5
        for s in c.subcategories:
            assert 3 <= len(s.product_types) <= 6
            assert s.attributes and c.attributes
    assert n_product_types() == len(types)
    assert n_product_types(1) == sum(len(s.product_types) for s in TAXONOMY[0].subcategories)


@pytest.mark.parametrize(
    "bad",
    [
        {"min_seq_len": 10, "max_seq_len": 5, "mean_seq_len": 7},
        {"mean_seq_len": 3.0},  # below min_seq_len
        {"mean_seq_len": 60.0},  # above max_seq_len
        {"n_items": 50},  # fewer items than product types
        {"n_users": 10, "n_items": 300},  # not enough interaction slots for every item
        {"p_stay": 1.5},
        {"p_noise": -0.1},
        {"n_users": 0},
        {"seed": -1},
        {"n_categories": len(TAXONOMY) + 1},
        {"no_such_field": 1},
    ],
)
def test_config_rejects_bad_values(bad: dict) -> None:
    with pytest.raises(ValidationError):
        SynthConfig(**bad)


def test_config_allows_tiny_taxonomy_slices() -> None:
    cfg = SynthConfig(n_categories=1, n_items=n_product_types(1), n_users=6)
    data = generate(cfg)
    assert data.items["category"].unique().to_list() == [TAXONOMY[0].name]
    assert data.interactions["item_id"].n_unique() == cfg.n_items


def test_same_config_is_identical_and_seed_changes_output(small: SynthData) -> None:
    again = generate(SynthConfig(**SMALL))
    assert again.interactions.equals(small.interactions)
    assert again.items.equals(small.items)
    other = generate(SynthConfig(**SMALL, seed=1))
    assert not other.interactions.equals(small.interactions)
    assert not other.items.equals(small.items)
    assert other.interactions.height != small.interactions.height or not np.array_equal(
        other.interactions["timestamp"].to_numpy(), small.interactions["timestamp"].to_numpy()
    )


def test_written_files_are_byte_identical(small: SynthData, tmp_path: Path) -> None:
    a = write_recbole(small, tmp_path / "a")
    b = write_recbole(generate(SynthConfig(**SMALL)), tmp_path / "b")
    for key in ("inter", "item", "config"):
        assert a[key].read_bytes() == b[key].read_bytes()


def test_exact_counts_lengths_and_order(small: SynthData) -> None:
    cfg, inter, items = small.config, small.interactions, small.items
    assert inter.schema == pl.Schema(
        {"user_id": pl.String, "item_id": pl.String, "rating": pl.Float64, "timestamp": pl.Int64}
    )
    assert inter["user_id"].n_unique() == cfg.n_users
    assert items.height == cfg.n_items
    assert items["item_id"].n_unique() == cfg.n_items
    # every item appears in at least one interaction, and no interaction names an unknown item
    assert set(inter["item_id"].unique()) == set(items["item_id"])
    lengths = inter.group_by("user_id").len()["len"]
    assert lengths.min() >= cfg.min_seq_len
    assert lengths.max() <= cfg.max_seq_len
    assert inter.height == lengths.sum()
    # rows ordered by user then time, times strictly increasing within a user
    assert inter.equals(inter.sort(["user_id", "timestamp"], maintain_order=True))
    strictly = inter.select((pl.col("timestamp").diff().over("user_id").fill_null(1) > 0).all())
    assert strictly.item()
    assert inter["user_id"][0] == "u00001"
    assert inter["item_id"].str.contains(r"^i\d{5}$").all()


def test_timestamps_ratings_and_text_fields(small: SynthData) -> None:
    cfg, inter, items = small.config, small.interactions, small.items
    ts = inter["timestamp"]
    span = int(cfg.time_span_days * 86_400)
    assert ts.min() >= cfg.start_timestamp
    assert ts.max() <= cfg.start_timestamp + span
    assert ts.max() - ts.min() > span * 0.9  # users spread over the window: temporal splits work
    ratings = inter["rating"]
    assert set(ratings.unique().to_list()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert (ratings >= 4.0).mean() > 0.7
    assert items.columns == ITEM_COLUMNS
    assert all(dtype == pl.String for dtype in items.dtypes)
    assert items["title"].n_unique() == items.height
    for col in ITEM_COLUMNS:
        assert not items[col].str.contains(r"[\t\n\r]").any()
        assert (items[col].str.len_chars() > 0).all()
    # text agrees with the taxonomy
    parent = {
        p: (c.name, s.name) for c in TAXONOMY for s in c.subcategories for p in s.product_types
    }
    for row in items.iter_rows(named=True):
        assert parent[row["product_type"]] == (row["category"], row["subcategory"])
        assert row["title"].startswith(row["brand"] + " ")
        assert row["product_type"] in row["title"]
        assert row["product_type"] in row["description"]
        assert f"from {row['brand']}." in row["description"]
        assert row["description"].endswith(f"Category: {row['category']} > {row['subcategory']}.")


def test_default_size_is_fast_and_long_tailed(default: tuple[SynthData, float]) -> None:
    data, seconds = default
    cfg = data.config
    assert seconds < 3.0
    inter = data.interactions
    assert inter["user_id"].n_unique() == cfg.n_users == 6000
    assert inter["item_id"].n_unique() == cfg.n_items == 3000
    assert 9.0 <= inter.height / cfg.n_users <= 13.0
    counts = _counts_desc(data)
    top = counts[: len(counts) // 5].sum() / counts.sum()
    assert top > 0.6  # top 20% of items take well over half of the interactions
    assert counts[0] > 50 * np.median(counts)
    assert abs(_mid_slope(counts) + cfg.zipf_exponent) < 0.35
    # repeats are rare, as in review data
    assert inter.unique(["user_id", "item_id"]).height > 0.97 * inter.height


def test_zipf_exponent_controls_the_tail() -> None:
    base = {"n_users": 3000, "n_items": 1500}
    flat = _counts_desc(generate(SynthConfig(**base, zipf_exponent=0.7)))
    steep = _counts_desc(generate(SynthConfig(**base, zipf_exponent=1.4)))
    assert _mid_slope(steep) < _mid_slope(flat) - 0.3
    assert steep[:300].sum() / steep.sum() > flat[:300].sum() / flat.sum() + 0.1


def test_consecutive_items_share_taxonomy_and_text(default: tuple[SynthData, float]) -> None:
    data, _ = default
    same_sub, base_sub = _consecutive(data, "subcategory")
    assert same_sub > 0.6
    assert same_sub > 5 * base_sub
    same_type, base_type = _consecutive(data, "product_type")
    assert same_type > 10 * base_type
    # the signal is in the text itself: word overlap of consecutive descriptions beats random pairs
    desc = dict(data.items.select("item_id", "description").iter_rows())
    words = {k: set(v.lower().replace(".", " ").replace(",", " ").split()) for k, v in desc.items()}
    inter = data.interactions.head(20_000)
    seq, users = inter["item_id"].to_list(), inter["user_id"].to_list()

    def jaccard(a: str, b: str) -> float:
        return len(words[a] & words[b]) / len(words[a] | words[b])

    pairs = [(seq[i], seq[i + 1]) for i in range(len(seq) - 1) if users[i] == users[i + 1]]
    rng = np.random.default_rng(1)
    shuffled = [seq[j] for j in rng.permutation(len(seq))]
    consecutive = np.mean([jaccard(a, b) for a, b in pairs])
    random_pairs = np.mean([jaccard(a, b) for a, b in zip(seq, shuffled, strict=True)])
    assert consecutive > random_pairs + 0.15


def test_users_follow_few_interests(small: SynthData) -> None:
    joined = small.interactions.join(
        small.items.select("item_id", "subcategory"), on="item_id", how="left"
    )
    per_user = joined.group_by("user_id").agg(
        pl.col("subcategory").n_unique().alias("subs"), pl.len().alias("n")
    )
    assert per_user["subs"].median() <= 3
    # a random draw of the same number of items would scatter over many more subcategories
    shuffled = joined.with_columns(pl.col("subcategory").shuffle(seed=0))
    random_subs = shuffled.group_by("user_id").agg(pl.col("subcategory").n_unique())
    assert random_subs["subcategory"].mean() > 2 * per_user["subs"].mean()


def test_recbole_round_trip(small: SynthData, tmp_path: Path) -> None:
    paths = write_recbole(small, tmp_path, name="synth")
    assert {p.name for p in paths.values()} == {"synth.inter", "synth.item", "synth.synth.json"}
    header = paths["inter"].read_text().splitlines()[0]
    assert header == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    raw = read_recbole(tmp_path, "synth")
    got = raw.interactions.select("user_id", "item_id", "rating", "timestamp")
    want = small.interactions.with_columns(pl.col("timestamp").cast(pl.Float64))
    assert got.equals(want.select("user_id", "item_id", "rating", "timestamp"))
    assert raw.items is not None
    assert raw.items.select(ITEM_COLUMNS).equals(small.items)
    saved = json.loads(paths["config"].read_text())
    assert SynthConfig(**saved) == small.config
