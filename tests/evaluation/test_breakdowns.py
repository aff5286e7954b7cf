from __future__ import annotations

import numpy as np
import pytest

from h2rec.data.popularity import head_mask
from h2rec.evaluation.breakdowns import GroupSpec, bucket_names, quantile_groups, user_groups
from h2rec.evaluation.evaluator import Evaluator

from .helpers import make_dataset, random_dataset

PARTITIONS = [
    ["head", "tail"],
    ["pop 0-9", "pop 10-29", "pop 30-59", "pop 60-99", "pop 100+"],
    ["pop Q1", "pop Q2", "pop Q3", "pop Q4", "pop Q5"],
    ["short", "long"],
]


def test_groups_partition_the_evaluated_users() -> None:
    ds = random_dataset(8, n_users=200, n_items=40)
    ev = Evaluator(ds)
    assert [g for part in PARTITIONS for g in part] == list(ev.groups)
    for part in PARTITIONS:
        stacked = np.stack([ev.groups[g] for g in part])
        assert (stacked.sum(0) == 1).all(), part


def test_head_tail_and_quintiles_by_hand() -> None:
    # training popularity of items 1..10 (index 0 = padding)
    pop = np.array([0, 50, 3, 3, 0, 12, 7, 30, 1, 100, 3])
    head = head_mask(pop, 0.2)  # 2 items: 9 (100) and 1 (50)
    assert np.flatnonzero(head).tolist() == [1, 9]
    q = quantile_groups(pop, 5)
    assert q[0] == -1
    # order by (count desc, id asc): 9 1 7 5 6 | 2 3 10 8 4 -> chunks of 2
    assert {i for i in range(1, 11) if q[i] == 4} == {9, 1}
    assert {i for i in range(1, 11) if q[i] == 3} == {7, 5}
    assert {i for i in range(1, 11) if q[i] == 2} == {6, 2}
    assert {i for i in range(1, 11) if q[i] == 1} == {3, 10}
    assert {i for i in range(1, 11) if q[i] == 0} == {8, 4}

    targets = np.array([9, 1, 2, 4, 7, 7, 10])
    lengths = np.array([1, 5, 2, 8, 3, 3, 9])
    groups, info = user_groups(targets, lengths, pop, GroupSpec())
    assert groups["head"].tolist() == [True, True, False, False, False, False, False]
    assert groups["pop 0-9"].tolist() == [False, False, True, True, False, False, True]
    assert groups["pop 30-59"].tolist() == [False, True, False, False, True, True, False]
    assert groups["pop 100+"].tolist() == [True, False, False, False, False, False, False]
    assert groups["pop Q5"].tolist() == groups["head"].tolist()
    assert groups["pop Q1"].tolist() == [False, False, False, True, False, False, False]
    assert info["short_threshold"] == 3.0  # median of the history lengths
    assert groups["short"].tolist() == [True, False, True, False, False, False, False]
    assert info["head_items"] == 2 and info["head_rule"] == "top 20% by train count"

    groups, info = user_groups(
        targets, lengths, pop, GroupSpec(head_threshold=12, short_threshold=5)
    )
    assert groups["head"].tolist() == [True, True, False, False, True, True, False]
    assert groups["short"].tolist() == [True, False, True, False, True, True, False]
    assert info["head_rule"] == "train count >= 12" and info["short_threshold_rule"] == "given"


def test_q5_equals_head_for_any_catalogue_size() -> None:
    rng = np.random.default_rng(0)
    for n in range(1, 40):
        pop = np.concatenate([[0], rng.integers(0, 5, n)])
        assert np.array_equal(quantile_groups(pop, 5) == 4, head_mask(pop, 0.2))


def test_group_counts_in_an_evaluation_match_a_hand_count() -> None:
    ds = random_dataset(9, n_users=150, n_items=40)
    ev = Evaluator(ds, head_threshold=4, popularity="all", short_threshold=4)
    pop_all = np.bincount(ds.inter_item, minlength=ds.n_items + 1)
    n_head = sum(1 for t in ev.examples.targets if pop_all[t] >= 4)
    n_short = sum(1 for n in ev.examples.history_lengths if n < 4)
    assert int(ev.groups["head"].sum()) == n_head
    assert int(ev.groups["short"].sum()) == n_short
    assert ev.group_info["head_rule"] == "all count >= 4"


def test_bucket_names_and_spec_validation() -> None:
    assert bucket_names((10, 30, 60, 100)) == [
        "pop 0-9",
        "pop 10-29",
        "pop 30-59",
        "pop 60-99",
        "pop 100+",
    ]
    for bad in [
        {"head_fraction": 0.0},
        {"head_threshold": 0},
        {"popularity": "test"},
        {"boundaries": (30, 10)},
        {"boundaries": ()},
    ]:
        with pytest.raises(ValueError):
            GroupSpec(**bad)


def test_popularity_source_changes_head_definition() -> None:
    # item x is popular only through valid/test interactions
    rows = []
    for u in range(6):
        rows += [(f"u{u}", "a", 1), (f"u{u}", "b", 2), (f"u{u}", "x", 3), (f"u{u}", "x", 4)]
    ds = make_dataset(rows)
    x = ds.item_index["x"]
    train = Evaluator(ds, head_threshold=3)
    every = Evaluator(ds, head_threshold=3, popularity="all")
    assert train.popularity[x] == 0 and every.popularity[x] == 12
    assert not train.groups["head"].any() and every.groups["head"].all()
