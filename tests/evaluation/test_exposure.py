"""Exposure figures by hand and by independent formulas; top-k lists against a per-user sort."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from h2rec.data.popularity import head_mask
from h2rec.evaluation import Evaluator, exposure, gini

from .helpers import naive_examples, random_dataset


def mean_difference_gini(x: np.ndarray) -> float:
    """G = sum_ij |x_i - x_j| / (2 n^2 mean): the textbook definition, not the sorted form."""
    x = np.asarray(x, dtype=np.float64)
    diffs = sum(abs(a - b) for a, b in itertools.product(x, x))
    return float(diffs / (2 * len(x) ** 2 * x.mean()))


def test_gini_matches_the_mean_difference_definition() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.integers(0, 9, size=int(rng.integers(2, 30)))
        x[0] += 1  # not all zero
        assert gini(x) == pytest.approx(mean_difference_gini(x))
    assert gini(np.array([0, 0, 1, 3])) == pytest.approx(0.625)  # 20 / (2 * 16 * 1)
    assert gini(np.array([4, 4, 4])) == 0.0 and gini(np.zeros(3)) == 0.0


def test_exposure_by_hand() -> None:
    popularity = np.array([0, 5, 3, 1, 0])  # items 1..4; item 1 is the head
    head = np.array([False, True, False, False, False])
    top = np.array([[1, 2], [1, 3]])
    got = exposure(top, popularity, head, targets=np.array([1, 4]))
    assert got == {
        "head_share@2": 0.5,  # 2 of 4 slots
        "arp@2": 3.5,  # (5 + 3 + 5 + 1) / 4
        "coverage@2": 0.75,  # items 1, 2, 3 of 4
        "gini@2": pytest.approx(mean_difference_gini(np.array([2, 1, 1, 0]))),
        "target_head_share": 0.5,
    }
    with pytest.raises(ValueError, match=r"1\.\.4"):
        exposure(np.array([[0, 1]]), popularity, head, np.array([1]))


def smooth_score_fn(n_items: int):
    """Distinct, row-independent float scores (no ties), a function of the history."""

    def score(hist: torch.Tensor, cand: torch.Tensor | None) -> torch.Tensor:
        h = (hist.double() * torch.arange(1, hist.shape[1] + 1)).sum(1, keepdim=True)
        items = torch.arange(n_items + 1, dtype=torch.float64).unsqueeze(0)
        s = torch.sin(0.37 * items * (h + 1.0) + 0.11 * items)
        return s if cand is None else s.gather(1, cand)

    return score


@pytest.mark.parametrize("exclude_history", [False, True])
def test_recommend_is_each_users_best_items(exclude_history: bool) -> None:
    ds = random_dataset(3, n_items=40)
    ev = Evaluator(ds, exclude_history=exclude_history, batch_size=6, max_len=8)
    fn = smooth_score_fn(ds.n_items)
    top = ev.recommend(fn, 5)
    users = list(ev.users)
    for u, _, padded, _, hist, _ in naive_examples(ds, "test", 8, min_history=1):
        scores = fn(torch.tensor([padded]), None)[0].numpy()
        allowed = [i for i in range(1, ds.n_items + 1) if not (exclude_history and i in hist)]
        expected = sorted(allowed, key=lambda i: -scores[i])[:5]
        assert list(top[users.index(u)]) == expected


def test_evaluator_exposure_uses_its_head_rule() -> None:
    ds = random_dataset(4, n_items=40)
    ev = Evaluator(ds, batch_size=5)
    fn = smooth_score_fn(ds.n_items)
    got = ev.exposure(fn, ks=(5, 10))
    top = ev.recommend(fn, 10)
    pop = ds.item_popularity("train")
    head = head_mask(pop, 0.2)
    assert got["head_share@5"] == pytest.approx(head[top[:, :5]].mean())
    assert got["arp@10"] == pytest.approx(pop[top].mean())
    assert got["target_head_share"] == pytest.approx(head[ev.examples.targets].mean())
    with pytest.raises(ValueError, match="k must be"):
        ev.recommend(fn, 0)
