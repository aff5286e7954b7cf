"""Revisit targets (the item is already in the user's history) and the metrics split by them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from h2rec.evaluation import Evaluator, revisit_breakdown
from h2rec.evaluation.revisits import breakdown_json

from .helpers import make_dataset, random_dataset


def test_revisits_by_hand_including_items_older_than_max_len() -> None:
    rows = [
        # u0: test target a, seen first at position 0, far beyond max_len = 2 -> revisit
        *[("u0", it, float(t)) for t, it in enumerate(["a", "b", "c", "d", "e", "a"])],
        # u1: test target z is new; its validation target b was seen before -> valid revisit
        *[("u1", it, float(t)) for t, it in enumerate(["b", "c", "b", "z"])],
        # u2: the same item twice in a row
        *[("u2", it, float(t)) for t, it in enumerate(["c", "d", "d"])],
    ]
    ds = make_dataset(rows)
    test = Evaluator(ds, split="test", max_len=2)
    valid = Evaluator(ds, split="valid", max_len=2)
    got_test = dict(zip(ds.user_ids[test.users], test.revisits().tolist(), strict=True))
    got_valid = dict(zip(ds.user_ids[valid.users], valid.revisits().tolist(), strict=True))
    assert got_test == {"u0": True, "u1": False, "u2": True}
    assert got_valid == {"u0": False, "u1": True, "u2": False}


def test_revisits_match_a_naive_scan_on_random_data() -> None:
    ds = random_dataset(5, n_users=60, n_items=12, max_len=14)  # small catalogue: many repeats
    ev = Evaluator(ds, split="test", max_len=3)
    want = []
    for u in ev.users:
        seq = ds.inter_item[ds.offsets[u] : ds.offsets[u + 1]].tolist()
        want.append(seq[-1] in seq[:-1])  # leave-one-out: the test target is the last item
    assert ev.revisits().tolist() == want
    assert 0 < np.mean(want) < 1


def test_breakdown_by_hand() -> None:
    ranks = np.array([0.0, 5.0, 20.0, 1.0])
    revisit = np.array([True, False, False, True])
    tail = np.array([True, True, False, False])
    out = revisit_breakdown(ranks, revisit, {"tail": tail}, ks=(10,))

    def ndcg(rs: list[float]) -> float:
        return sum(1 / math.log2(r + 2) if r < 10 else 0.0 for r in rs) / len(rs)

    o, t = out["overall"], out["tail"]
    assert o["n_users"] == 4 and o["revisit_share"] == 0.5
    assert o["all HR@10"] == 0.75 and o["revisits HR@10"] == 1.0 and o["new HR@10"] == 0.5
    assert o["all NDCG@10"] == pytest.approx(ndcg([0, 5, 20, 1]))
    assert o["new NDCG@10"] == pytest.approx(ndcg([5, 20]))
    assert o["hits@10 that are revisits"] == pytest.approx(2 / 3)
    assert t["n_users"] == 2 and t["revisit_share"] == 0.5
    assert t["revisits NDCG@10"] == 1.0 and t["new NDCG@10"] == pytest.approx(ndcg([5]))
    assert t["hits@10 that are revisits"] == 0.5
    with pytest.raises(ValueError, match="shape"):
        revisit_breakdown(ranks, revisit[:3], {})
    none = revisit_breakdown(ranks, np.zeros(4, dtype=bool), {})["overall"]  # Beauty: no revisits
    assert math.isnan(none["revisits NDCG@10"]) and none["new NDCG@10"] == o["all NDCG@10"]
    as_json = json.loads(json.dumps(breakdown_json({"overall": none}), allow_nan=False))
    assert as_json["overall"]["revisits NDCG@10"] is None
