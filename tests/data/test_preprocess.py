from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from h2rec.data.dataset import TEST, TRAIN, VALID
from h2rec.data.preprocess import build_dataset, kcore_mask
from h2rec.errors import ConfigError, DataFormatError, EmptyDatasetError

from .helpers import config, raw_from_rows


def _seqs(ds) -> dict[str, list[str]]:
    return {
        ds.user_ids[u]: [ds.item_ids[i] for i in ds.sequence(u)] for u in range(1, ds.n_users + 1)
    }


def test_stable_time_order_ties_keep_file_order() -> None:
    rows = [("u", "c", 5), ("u", "a", 1), ("u", "b", 5), ("u", "d", 1), ("v", "a", 0)]
    ds = build_dataset(raw_from_rows(rows), config())
    # time 1: a, d (file order); time 5: c, b (file order)
    assert _seqs(ds) == {"u": ["a", "d", "c", "b"], "v": ["a"]}
    np.testing.assert_array_equal(ds.inter_time, [1, 1, 5, 5, 0])


def test_no_timestamps_keeps_file_order_and_first_seen_ids() -> None:
    rows = [("u2", "x"), ("u1", "y"), ("u2", "y"), ("u1", "z")]
    ds = build_dataset(raw_from_rows(rows), config())
    assert list(ds.user_ids) == ["", "u2", "u1"]  # users numbered by first appearance in file
    assert list(ds.item_ids) == [
        "",
        "x",
        "y",
        "z",
    ]  # items by first appearance in ordered sequences
    assert ds.inter_time is None
    assert _seqs(ds) == {"u2": ["x", "y"], "u1": ["y", "z"]}


def test_rating_threshold_and_consecutive_repeats() -> None:
    rows = [
        ("u", "a", 1, 5),
        ("u", "a", 2, 4),
        ("u", "b", 3, 1),
        ("u", "a", 4, 5),
        ("u", "a", 5, 2),
    ]
    ds = build_dataset(
        raw_from_rows(rows),
        config(preprocess={"min_rating": 3, "remove_consecutive_repeats": True}),
    )
    # rating filter drops b (1) and the last a (2); then a,a,a collapses to a
    assert _seqs(ds) == {"u": ["a"]}
    ds2 = build_dataset(
        raw_from_rows(rows), config(preprocess={"remove_consecutive_repeats": True})
    )
    assert _seqs(ds2) == {"u": ["a", "b", "a"]}


def test_min_rating_without_ratings_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="min_rating"):
        build_dataset(raw_from_rows([("u", "a", 1)]), config(preprocess={"min_rating": 3}))


def test_partial_timestamps_are_rejected() -> None:
    with pytest.raises(DataFormatError, match="1 of 2 interactions have no timestamp"):
        build_dataset(raw_from_rows([("u", "a", 1), ("u", "b", None)]), config())


def test_iterative_vs_single_pass_kcore() -> None:
    # user u3 has 2 interactions -> removed with user_core 3; that leaves item c with 2 -> removed
    # iteratively, which in turn leaves u1 with 2 items -> removed, and so on.
    rows = [
        ("u1", "a", 1),
        ("u1", "b", 2),
        ("u1", "c", 3),
        ("u2", "a", 1),
        ("u2", "b", 2),
        ("u2", "c", 3),
        ("u2", "d", 4),
        ("u3", "c", 1),
        ("u3", "d", 2),
        ("u4", "a", 1),
        ("u4", "b", 2),
        ("u4", "d", 3),
    ]
    # round 1: drop u3 (2); counts a3 b3 c2 d2 -> drop c, d; then u1 {a,b}, u2 {a,b}, u4 {a,b}
    # have 2 < 3 -> everything goes: the 3-core of this graph is empty
    with pytest.raises(EmptyDatasetError, match="k-core"):
        build_dataset(raw_from_rows(rows), config(preprocess={"user_core": 3, "item_core": 3}))
    sp = build_dataset(
        raw_from_rows(rows),
        config(preprocess={"user_core": 3, "item_core": 3, "kcore": "single-pass"}),
    )
    # single pass: counts on input: users u1 3, u2 4, u3 2, u4 3; items a3 b3 c3 d3
    # -> drop only u3's rows; c and d end with 2 interactions (not a true 3-core, as in LLM-ESR)
    assert _seqs(sp) == {"u1": ["a", "b", "c"], "u2": ["a", "b", "c", "d"], "u4": ["a", "b", "d"]}


def test_kcore_keeps_a_true_core() -> None:
    rows = [
        (u, i, t)
        for t, (u, i) in enumerate(
            [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u3", "a"), ("u3", "c")]
        )
    ]
    ds = build_dataset(raw_from_rows(rows), config(preprocess={"user_core": 2, "item_core": 2}))
    # c has 1 -> removed; then u3 has 1 -> removed; a: 2, b: 2 remain
    assert _seqs(ds) == {"u1": ["a", "b"], "u2": ["a", "b"]}


def _naive_kcore(pairs: list[tuple[int, int]], ku: int, ki: int) -> set[int]:
    """Independent reference: remove one offending row group at a time with Python sets."""
    alive = set(range(len(pairs)))
    changed = True
    while changed:
        changed = False
        ucount: dict[int, int] = {}
        icount: dict[int, int] = {}
        for r in alive:
            ucount[pairs[r][0]] = ucount.get(pairs[r][0], 0) + 1
            icount[pairs[r][1]] = icount.get(pairs[r][1], 0) + 1
        for r in sorted(alive):
            if ucount[pairs[r][0]] < ku or icount[pairs[r][1]] < ki:
                alive.discard(r)
                changed = True
                break
    return alive


@settings(max_examples=150, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=0, max_size=80),
    ku=st.integers(0, 5),
    ki=st.integers(0, 5),
)
def test_kcore_fixed_point_property(pairs: list[tuple[int, int]], ku: int, ki: int) -> None:
    users = np.array([p[0] for p in pairs], dtype=np.int64)
    items = np.array([p[1] for p in pairs], dtype=np.int64)
    keep = kcore_mask(users, items, ku, ki)
    # 1. every survivor meets both thresholds
    if keep.any():
        assert np.bincount(users[keep])[users[keep]].min() >= ku
        assert np.bincount(items[keep])[items[keep]].min() >= ki
    # 2. fixed point: filtering again removes nothing
    again = kcore_mask(users[keep], items[keep], ku, ki)
    assert again.all()
    # 3. it is the unique maximal core, equal to an independent naive computation
    assert set(np.flatnonzero(keep).tolist()) == _naive_kcore(pairs, ku, ki)


def test_min_seq_len_after_single_pass() -> None:
    rows = [("u1", "a", 1), ("u1", "b", 2), ("u2", "a", 1), ("u2", "b", 2), ("u2", "c", 3)]
    ds = build_dataset(
        raw_from_rows(rows), config(preprocess={"kcore": "single-pass", "min_seq_len": 3})
    )
    assert _seqs(ds) == {"u2": ["a", "b", "c"]}


def test_everything_filtered_names_the_trail() -> None:
    rows = [("u", "a", 1, 1.0)]
    with pytest.raises(EmptyDatasetError) as exc:
        build_dataset(raw_from_rows(rows), config(preprocess={"min_rating": 4}))
    assert "read: 1 interactions" in str(exc.value)
    assert "rating >= 4" in str(exc.value)


def test_leave_one_out_split_by_hand() -> None:
    rows = [("u1", i, t) for t, i in enumerate("abcde")] + [("u2", "a", 0), ("u2", "b", 1)]
    ds = build_dataset(raw_from_rows(rows), config())
    np.testing.assert_array_equal(ds.inter_split, [TRAIN, TRAIN, TRAIN, VALID, TEST, TRAIN, TRAIN])
    assert ds.manifest["split_info"] == {"kind": "loo", "users_train_only": 1}
    assert [ds.item_ids[i] for i in ds.sequence(1, ("train",))] == ["a", "b", "c"]
    assert [ds.item_ids[i] for i in ds.sequence(1, ("test",))] == ["e"]


def test_revisit_target_stays_in_test() -> None:
    rows = [("u", "a", 1), ("u", "b", 2), ("u", "a", 3), ("u", "a", 4)]
    ds = build_dataset(raw_from_rows(rows), config())
    assert [ds.item_ids[i] for i in ds.sequence(1)] == ["a", "b", "a", "a"]
    np.testing.assert_array_equal(ds.inter_split, [TRAIN, TRAIN, VALID, TEST])


def test_temporal_split_by_times_and_fractions() -> None:
    rows = [("u1", "a", 10), ("u1", "b", 20), ("u2", "a", 30), ("u2", "c", 40), ("u3", "b", 50)]
    ds = build_dataset(
        raw_from_rows(rows), config(split={"kind": "temporal", "valid_time": 30, "test_time": 45})
    )
    by_time = dict(zip(ds.inter_time.tolist(), ds.inter_split.tolist(), strict=True))
    assert by_time == {10: TRAIN, 20: TRAIN, 30: VALID, 40: VALID, 50: TEST}
    ds2 = build_dataset(
        raw_from_rows(rows), config(split={"kind": "temporal", "valid_frac": 0.2, "test_frac": 0.2})
    )
    # 5 interactions: test cut at sorted[floor(5*0.8)] = 50, valid cut at sorted[floor(5*0.6)] = 40
    assert ds2.manifest["split_info"] == {"kind": "temporal", "valid_time": 40.0, "test_time": 50.0}
    by_time2 = dict(zip(ds2.inter_time.tolist(), ds2.inter_split.tolist(), strict=True))
    assert by_time2 == {10: TRAIN, 20: TRAIN, 30: TRAIN, 40: VALID, 50: TEST}


def test_temporal_split_accepts_iso_dates_and_needs_timestamps() -> None:
    day = 86400.0
    rows = [("u", "a", 0.0), ("u", "b", day), ("u", "c", 2 * day)]
    ds = build_dataset(
        raw_from_rows(rows),
        config(split={"kind": "temporal", "valid_time": "1970-01-02", "test_time": "1970-01-03"}),
    )
    np.testing.assert_array_equal(ds.inter_split, [TRAIN, VALID, TEST])
    with pytest.raises(ConfigError, match="timestamps"):
        build_dataset(
            raw_from_rows([("u", "a")]),
            config(split={"kind": "temporal", "valid_frac": 0.1, "test_frac": 0.1}),
        )


def test_item_text_and_codes_follow_internal_ids() -> None:
    import polars as pl

    raw = raw_from_rows(
        [("u", "x", 1), ("u", "y", 2)],
        items={"y": {"title": "Yak wool", "brand": "B"}, "x": {"title": "Xylophone"}},
    )
    raw.codes = pl.DataFrame({"item_id": ["x", "y"], "codes": [[1, 2], [3, 4]]})
    raw.code_source = "codes.json"
    ds = build_dataset(raw, config(text={"template": "{title} by {brand}"}))
    assert ds.item_text == ["Xylophone by unknown", "Yak wool by B"]
    np.testing.assert_array_equal(ds.codes, [[-1, -1], [1, 2], [3, 4]])
    raw.codes = pl.DataFrame({"item_id": ["x"], "codes": [[1, 2]]})
    with pytest.raises(DataFormatError, match="1 items have no semantic ID"):
        build_dataset(raw, config())
