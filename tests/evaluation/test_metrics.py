from __future__ import annotations

import math

import numpy as np
import pytest

from h2rec.evaluation.metrics import compute_metrics, metric_names


def test_metrics_match_hand_computation() -> None:
    ranks = np.array([0, 1, 4, 9, 10, 25], dtype=np.float64)
    m = compute_metrics(ranks, ks=(1, 5, 10))
    n = 6
    assert m["HR@1"] == pytest.approx(1 / n)
    assert m["HR@5"] == pytest.approx(3 / n)
    assert m["HR@10"] == pytest.approx(4 / n)
    # NDCG: 1/log2(rank + 2) for hits
    assert m["NDCG@1"] == pytest.approx(1.0 / n)
    assert m["NDCG@5"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / n)
    assert m["NDCG@10"] == pytest.approx(
        (1 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(11)) / n
    )
    assert m["MRR@10"] == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 10) / n)
    assert m["MRR@5"] == pytest.approx((1 + 1 / 2 + 1 / 5) / n)


def test_rank_equal_to_k_is_a_miss_and_fractional_ranks_are_used() -> None:
    m = compute_metrics(np.array([10.0]), ks=(10,))
    assert m == {"HR@10": 0.0, "NDCG@10": 0.0, "MRR@10": 0.0}
    m = compute_metrics(np.array([9.5]), ks=(10,))
    assert m["HR@10"] == 1.0
    assert m["NDCG@10"] == pytest.approx(1 / math.log2(11.5))


def test_names_order_and_empty_groups() -> None:
    assert metric_names((10, 5)) == ["HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR@5", "MRR@10"]
    assert list(compute_metrics(np.zeros(3))) == metric_names((5, 10, 20))
    empty = compute_metrics(np.zeros(0), ks=(10,))
    assert all(math.isnan(v) for v in empty.values())


@pytest.mark.parametrize("bad", [np.array([-1.0]), np.array([np.nan]), np.array([[0.0]])])
def test_invalid_ranks_are_rejected(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        compute_metrics(bad)


@pytest.mark.parametrize("ks", [(), (0,), (5, 5)])
def test_invalid_ks(ks: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        compute_metrics(np.zeros(2), ks=ks)
