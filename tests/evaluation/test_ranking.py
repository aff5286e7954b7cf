from __future__ import annotations

import pytest
import torch

from h2rec.evaluation import ranking


@pytest.fixture(params=["numpy", "numpy-items-major", "torch"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every test runs on both counting back-ends (numpy on CPU, torch on accelerators), and on
    numpy with items-major full-ranking scores (the transposed view CPU scorers return)."""
    return request.param


def items_major(scores: torch.Tensor) -> torch.Tensor:
    """The same values as a transposed view of a contiguous [n_items + 1, B] tensor."""
    return scores.t().contiguous().t()


def rank_full(scores, *args, backend: str, **kw):
    if backend == "numpy-items-major":
        return ranking.rank_full(items_major(scores), *args, backend="numpy", **kw)
    return ranking.rank_full(scores, *args, backend=backend, **kw)


def rank_sampled(*args, backend: str, **kw):
    return ranking.rank_sampled(*args, backend=backend.removesuffix("-items-major"), **kw)


def full(scores: list[list[float]]) -> torch.Tensor:
    return torch.tensor(scores, dtype=torch.float32)


# column 0 = padding; items 1..5
SCORES = full(
    [
        [9.0, 0.5, 0.7, 0.5, 0.1, 0.5],  # target 1 (0.5): above {2}, tied {3, 5}
        [9.0, 0.9, 0.8, 0.7, 0.6, 0.5],  # target 1 is the best
    ]
)
TARGETS = torch.tensor([1, 1])


@pytest.mark.parametrize(
    ("tie", "expected"),
    [("pessimistic", [3.0, 0.0]), ("optimistic", [1.0, 0.0]), ("mean", [2.0, 0.0])],
)
def test_tie_policies_by_hand(tie: str, expected: list[float], backend: str) -> None:
    assert rank_full(SCORES, TARGETS, tie=tie, backend=backend).tolist() == expected
    # same numbers as a sampled candidate list with the target first
    sampled = SCORES[:, [1, 2, 3, 4, 5]]
    assert rank_sampled(sampled, tie=tie, backend=backend).tolist() == expected


def test_random_ties_stay_between_optimistic_and_pessimistic_and_are_seeded(backend: str) -> None:
    scores = torch.zeros(2000, 11)  # target + 10 tied negatives
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    r1 = rank_sampled(scores, tie="random", generator=g1, backend=backend)
    r2 = rank_sampled(scores, tie="random", generator=g2, backend=backend)
    assert torch.equal(r1, r2)
    assert r1.min() == 0 and r1.max() == 10
    assert set(r1.tolist()) == set(range(11))  # uniform integer over [0, ties]
    assert abs(r1.mean().item() - 5.0) < 0.3
    u = torch.tensor([0.0, 0.999999, 0.5])
    r = rank_sampled(torch.zeros(3, 11), tie="random", tie_uniform=u, backend=backend)
    assert r.tolist() == [0.0, 10.0, 5.0]
    # no ties: random = optimistic = pessimistic
    s = torch.tensor([[0.5, 0.9, 0.1, 0.7]])
    assert (
        rank_sampled(s, tie="random", tie_uniform=torch.tensor([0.9]), backend=backend).item()
        == 2.0
    )
    with pytest.raises(ValueError, match="Generator"):
        rank_sampled(s, tie="random", backend=backend)


def test_constant_score_model_gets_the_worst_rank_when_pessimistic(backend: str) -> None:
    n_items = 50
    scores = torch.zeros(4, n_items + 1)
    targets = torch.tensor([1, 7, 25, 50])
    assert rank_full(scores, targets, backend=backend).tolist() == [n_items - 1] * 4
    assert rank_full(scores, targets, tie="optimistic", backend=backend).tolist() == [0.0] * 4
    assert (
        rank_full(scores, targets, tie="mean", backend=backend).tolist() == [(n_items - 1) / 2] * 4
    )
    assert rank_sampled(torch.ones(3, 101), backend=backend).tolist() == [100.0] * 3
    assert rank_sampled(torch.ones(3, 101), tie="optimistic", backend=backend).tolist() == [0.0] * 3


def test_padding_column_is_never_a_candidate(backend: str) -> None:
    scores = torch.tensor([[100.0, 0.2, 0.1, 0.3], [float("inf"), 0.2, 0.1, 0.3]])
    assert rank_full(scores, torch.tensor([1, 1]), backend=backend).tolist() == [1.0, 1.0]
    # NaN in the padding column is ignored, NaN in an item column is an error
    scores = torch.tensor([[float("nan"), 0.2, 0.1, 0.3]])
    assert rank_full(scores, torch.tensor([3]), backend=backend).tolist() == [0.0]
    with pytest.raises(ValueError, match="NaN"):
        rank_full(torch.tensor([[0.0, 0.2, float("nan"), 0.3]]), torch.tensor([3]), backend=backend)
    with pytest.raises(ValueError, match="NaN"):
        rank_sampled(torch.tensor([[0.2, float("nan")]]), backend=backend)
    with pytest.raises(ValueError, match="item ids"):
        rank_full(scores.nan_to_num(), torch.tensor([0]), backend=backend)


def test_exclude_history_by_hand(backend: str) -> None:
    # items 1..6; target 4 (score 0.5); items 2, 5 and 6 score higher
    scores = torch.tensor([[0.0, 0.1, 0.9, 0.2, 0.5, 0.8, 0.7]])
    target = torch.tensor([4])
    assert rank_full(scores, target, backend=backend).item() == 3.0
    history = torch.tensor([[0, 0, 2, 5, 1]])  # left padded; 2 and 5 were seen
    assert rank_full(scores, target, exclude=history, backend=backend).item() == 1.0
    # the target repeats an earlier item: it is still ranked, never excluded
    history = torch.tensor([[4, 2, 4, 2]])
    assert rank_full(scores, target, exclude=history, backend=backend).item() == 2.0
    # excluded items stay excluded even when tied with the target (pessimistic)
    tied = torch.tensor([[0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]])
    assert rank_full(tied, target, exclude=torch.tensor([[1, 2, 4]]), backend=backend).item() == 3.0


def test_model_emitting_minus_inf_is_ranked_consistently(backend: str) -> None:
    # the model itself gives -inf to the target and to an excluded item
    ninf = float("-inf")
    scores = torch.tensor([[0.0, ninf, ninf, 0.3, ninf]])
    target = torch.tensor([1])
    assert rank_full(scores, target, backend=backend).item() == 3.0  # items 2 and 4 tie, 3 is above
    assert rank_full(scores, target, exclude=torch.tensor([[2]]), backend=backend).item() == 2.0
    assert rank_full(scores, target, tie="optimistic", backend=backend).item() == 1.0


def test_other_dtypes_and_devices_shapes(backend: str) -> None:
    scores = torch.tensor([[0, 3, 1, 2]], dtype=torch.int64)
    assert rank_full(scores, torch.tensor([3]), backend=backend).item() == 1.0
    half = torch.tensor([[0.0, 0.3, 0.1, 0.2]], dtype=torch.bfloat16)
    assert rank_full(half, torch.tensor([2]), backend=backend).item() == 2.0
    out = rank_full(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long), backend=backend)
    assert out.shape == (0,) and out.dtype == torch.float64
    with pytest.raises(ValueError):
        rank_full(torch.zeros(2, 5), torch.tensor([1]), backend=backend)
    with pytest.raises(ValueError, match="tie policy"):
        rank_sampled(torch.zeros(1, 3), tie="best", backend=backend)


def test_backends_agree_on_random_tied_scores() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (64, 40), generator=gen).to(torch.float32)
    targets = torch.randint(1, 40, (64,), generator=gen)
    exclude = torch.randint(0, 40, (64, 6), generator=gen)
    u = torch.rand(64, generator=gen, dtype=torch.float64)
    for tie in ranking.TIE_POLICIES:
        kw = {"tie": tie, "tie_uniform": u}
        a = ranking.rank_full(scores, targets, exclude=exclude, backend="numpy", **kw)
        b = ranking.rank_full(scores, targets, exclude=exclude, backend="torch", **kw)
        assert torch.equal(a, b)
        assert torch.equal(
            ranking.rank_sampled(scores, backend="numpy", **kw),
            ranking.rank_sampled(scores, backend="torch", **kw),
        )


def brute_rank(scores: list[list[float]], target: int, exclude: set[int], tie: str) -> float:
    """One user's rank by a loop over the candidates (items 1.., minus `exclude`, target kept)."""
    row = scores[target]
    others = [s for item, s in enumerate(scores) if item not in (0, target) and item not in exclude]
    above = sum(s > row for s in others)
    tied = sum(s == row for s in others)
    return {"pessimistic": above + tied, "optimistic": above, "mean": above + tied / 2}[tie]


@pytest.mark.parametrize("tie", ["pessimistic", "optimistic", "mean"])
def test_items_major_scores_rank_like_a_loop_over_candidates(tie: str) -> None:
    """Items-major scores (a transposed view) with ties and exclusions: each user's rank equals a
    plain loop's, and the row-major array's."""
    gen = torch.Generator().manual_seed(1)
    table = torch.randint(0, 4, (31, 9), generator=gen).to(torch.float32)  # [items + 1, users]
    scores = table.t()  # the view dot_all returns on CPU
    assert not scores.is_contiguous()
    targets = torch.randint(1, 31, (9,), generator=gen)
    exclude = torch.randint(0, 31, (9, 5), generator=gen)
    got = ranking.rank_full(scores, targets, tie=tie, exclude=exclude, backend="numpy")
    want = [
        brute_rank(table[:, u].tolist(), int(targets[u]), set(exclude[u].tolist()) - {0}, tie)
        for u in range(9)
    ]
    assert got.tolist() == want
    row_major = ranking.rank_full(
        scores.contiguous(), targets, tie=tie, exclude=exclude, backend="numpy"
    )
    assert torch.equal(got, row_major)


def test_nan_check_is_exact_with_infinities(backend: str) -> None:
    inf = float("inf")
    scores = torch.tensor([[0.0, inf, -inf, 0.5, -inf]])
    assert rank_full(scores, torch.tensor([3]), backend=backend).item() == 1.0
    assert rank_sampled(scores[:, 1:], backend=backend).item() == 0.0
    with pytest.raises(ValueError, match="NaN"):
        rank_full(
            torch.tensor([[0.0, inf, -inf, float("nan")]]), torch.tensor([1]), backend=backend
        )
