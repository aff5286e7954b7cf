from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from h2rec.evaluation import EvalResult, Evaluator, config_hash
from h2rec.evaluation.metrics import compute_metrics

from .helpers import (
    brute_force_ranks,
    constant_score_fn,
    hashed_score_fn,
    make_dataset,
    naive_metrics,
    popularity_score_fn,
    random_dataset,
    random_rows,
)

KS = (1, 5, 10)


def oracle_score_fn(ev: Evaluator):
    """Scores 1 for the target, 0 elsewhere; also checks that batches arrive in the documented
    order (users sorted by history length, stable) with their own histories."""
    state = {"pos": 0}
    order = np.argsort(ev.examples.history_lengths, kind="stable")

    def score(hist: torch.Tensor, cand: torch.Tensor | None) -> torch.Tensor:
        lo = state["pos"]
        rows = order[lo : lo + hist.shape[0]]
        state["pos"] += hist.shape[0]
        assert np.array_equal(hist.numpy(), ev.examples.histories[rows])
        targets = torch.from_numpy(ev.examples.targets[rows])
        if cand is None:
            s = torch.zeros(hist.shape[0], ev.dataset.n_items + 1)
            s[torch.arange(hist.shape[0]), targets] = 1.0
            return s
        return (cand == targets[:, None]).float()

    return score


@pytest.mark.parametrize("protocol", ["full", "uni7", "pop7"])
@pytest.mark.parametrize("exclude_history", [False, True])
def test_perfect_oracle_gets_hr1_of_one(protocol: str, exclude_history: bool) -> None:
    ds = random_dataset(10)
    ev = Evaluator(ds, protocol=protocol, ks=KS, exclude_history=exclude_history, batch_size=7)
    res = ev.evaluate(oracle_score_fn(ev), model_name="oracle")
    assert res.overall["HR@1"] == 1.0 and res.overall["NDCG@10"] == 1.0
    assert (res.ranks == 0).all()


@pytest.mark.parametrize("protocol", ["full", "uni20"])
def test_constant_model_is_worst_under_pessimistic_ties(protocol: str) -> None:
    ds = random_dataset(11, n_items=40)
    n_cand = ds.n_items if protocol == "full" else 21
    res = Evaluator(ds, protocol=protocol).evaluate(constant_score_fn(ds.n_items), model_name="c")
    assert (res.ranks == n_cand - 1).all()
    assert res.overall["HR@10"] == 0.0 and res.overall["NDCG@20"] == 0.0
    opt = Evaluator(ds, protocol=protocol, tie="optimistic")
    assert (opt.evaluate(constant_score_fn(ds.n_items), model_name="c").ranks == 0).all()
    # with seen items removed, the constant model ranks behind every unseen item
    ev = Evaluator(ds, exclude_history=True)
    res = ev.evaluate(constant_score_fn(ds.n_items), model_name="c")
    for u, t, r in zip(ev.users, ev.examples.targets, res.ranks, strict=True):
        lo, pos = (
            ds.offsets[u],
            ds.offsets[u] + ev.examples.history_lengths[list(ev.users).index(u)],
        )
        seen = set(ds.inter_item[lo:pos].tolist()) - {int(t)}
        assert r == ds.n_items - 1 - len(seen)


@pytest.mark.parametrize("split", ["valid", "test"])
@pytest.mark.parametrize("tie", ["pessimistic", "optimistic", "mean"])
@pytest.mark.parametrize("exclude_history", [False, True])
def test_full_ranking_equals_brute_force(split: str, tie: str, exclude_history: bool) -> None:
    ds = random_dataset(12, n_users=50, n_items=35)
    fn = hashed_score_fn(ds.n_items)
    ev = Evaluator(
        ds, split=split, tie=tie, exclude_history=exclude_history, max_len=6, ks=KS, batch_size=9
    )
    res = ev.evaluate(fn, model_name="hash")
    users, ranks = brute_force_ranks(
        ds, fn, split=split, max_len=6, tie=tie, exclude_history=exclude_history
    )
    assert res.users.tolist() == users
    assert res.ranks.tolist() == ranks
    expected = naive_metrics(ranks, KS)
    assert res.overall.keys() == expected.keys()
    for k, v in expected.items():
        assert res.overall[k] == pytest.approx(v, abs=1e-12)
    for name, g in res.groups.items():
        mask = ev.groups[name]
        assert g.n_users == int(mask.sum())
        if g.n_users:
            sub = naive_metrics([r for r, m in zip(ranks, mask, strict=True) if m], KS)
            for k, v in sub.items():
                assert g.metrics[k] == pytest.approx(v, abs=1e-12)


@pytest.mark.parametrize("protocol", ["uni10", "pop10"])
@pytest.mark.parametrize("tie", ["pessimistic", "optimistic", "mean"])
def test_sampled_equals_brute_force(protocol: str, tie: str) -> None:
    ds = random_dataset(13, n_users=50, n_items=45)
    fn = hashed_score_fn(ds.n_items, modulus=4)
    ev = Evaluator(ds, protocol=protocol, tie=tie, max_len=5, ks=KS, batch_size=16)
    res = ev.evaluate(fn, model_name="hash")
    negatives = dict(zip(ev.users.tolist(), ev.negatives.tolist(), strict=True))
    users, ranks = brute_force_ranks(ds, fn, split="test", max_len=5, tie=tie, negatives=negatives)
    assert res.users.tolist() == users and res.ranks.tolist() == ranks
    for k, v in naive_metrics(ranks, KS).items():
        assert res.overall[k] == pytest.approx(v, abs=1e-12)


def test_temporal_split_with_cold_users_equals_brute_force() -> None:
    ds = make_dataset(
        random_rows(14, n_users=60), split={"kind": "temporal", "valid_frac": 0.2, "test_frac": 0.2}
    )
    fn = hashed_score_fn(ds.n_items)
    for min_history in (0, 1, 2):
        ev = Evaluator(ds, min_history=min_history, max_len=4)
        res = ev.evaluate(fn, model_name="hash")
        users, ranks = brute_force_ranks(
            ds, fn, split="test", max_len=4, tie="pessimistic", min_history=min_history
        )
        assert res.users.tolist() == users and res.ranks.tolist() == ranks
        assert res.stamp.min_history == min_history


def test_results_do_not_depend_on_batch_size_even_with_random_ties() -> None:
    ds = random_dataset(15, n_users=60)
    fn = popularity_score_fn(ds)
    for protocol in ("full", "uni10"):
        runs = [
            Evaluator(ds, protocol=protocol, tie="random", tie_seed=5, batch_size=b).evaluate(
                fn, model_name="pop"
            )
            for b in (1, 7, 4096)
        ]
        assert all(np.array_equal(runs[0].ranks, r.ranks) for r in runs[1:])
        pess = Evaluator(ds, protocol=protocol).evaluate(fn, model_name="pop").ranks
        opt = (
            Evaluator(ds, protocol=protocol, tie="optimistic").evaluate(fn, model_name="pop").ranks
        )
        assert (runs[0].ranks >= opt).all() and (runs[0].ranks <= pess).all()
        assert runs[0].stamp.tie_seed == 5
        other = Evaluator(ds, protocol=protocol, tie="random", tie_seed=6).evaluate(
            fn, model_name="pop"
        )
        assert not np.array_equal(runs[0].ranks, other.ranks)


def test_score_fn_contract_violations_are_clear_errors() -> None:
    ds = random_dataset(16)
    ev = Evaluator(ds)
    with pytest.raises(ValueError, match="n_items \\+ 1"):
        ev.evaluate(lambda h, c: torch.zeros(h.shape[0], ds.n_items), model_name="x")
    with pytest.raises(ValueError, match="NaN"):
        ev.evaluate(
            lambda h, c: torch.full((h.shape[0], ds.n_items + 1), float("nan")), model_name="x"
        )
    sampled = Evaluator(ds, protocol="uni5")
    with pytest.raises(ValueError, match="one score per candidate"):
        sampled.evaluate(lambda h, c: torch.zeros(h.shape[0], 5), model_name="x")


def test_score_fn_writing_into_its_inputs_cannot_corrupt_the_evaluation() -> None:
    ds = random_dataset(17)
    ev = Evaluator(ds, protocol="uni5")
    before = (ev.examples.histories.copy(), ev.candidates().copy())

    def vandal(hist: torch.Tensor, cand: torch.Tensor | None) -> torch.Tensor:
        out = torch.rand(cand.shape)
        hist.zero_()
        cand.zero_()
        return out

    ev.evaluate(vandal, model_name="v")
    assert np.array_equal(before[0], ev.examples.histories)
    assert np.array_equal(before[1], ev.candidates())


def test_stamp_save_and_load(tmp_path) -> None:
    ds = random_dataset(18)
    ev = Evaluator(ds, protocol="pop5", negatives_seed=2, ks=(10,), head_threshold=50)
    cfg = {"hidden": 64, "layers": [1, 2]}
    res = ev.evaluate(
        popularity_score_fn(ds), model_name="mostpop", model_config=cfg, train_seed=42
    )
    s = res.stamp
    assert (s.dataset, s.dataset_hash, s.split, s.protocol) == (
        "t",
        ds.content_hash(),
        "test",
        "pop5",
    )
    assert (s.n_negatives, s.negatives_seed, s.tie_policy, s.tie_seed) == (
        5,
        2,
        "pessimistic",
        None,
    )
    assert (s.exclude_history, s.max_len, s.model_name, s.train_seed) == (False, 50, "mostpop", 42)
    assert s.model_config_hash == config_hash({"layers": [1, 2], "hidden": 64})
    assert s.n_users == len(res.ranks) == len(res.users)
    assert res.groups["head"].n_users == 0 and math.isnan(res.groups["head"].metrics["HR@10"])

    path = res.save(tmp_path / "res" / "mostpop.json")
    assert (tmp_path / "res" / "mostpop.ranks.npy").is_file()
    data = json.loads(path.read_text())
    assert data["groups"]["head"]["metrics"]["HR@10"] is None
    assert set(data) == {"format", "stamp", "overall", "groups", "group_info", "seconds", "files"}
    assert data["files"]["ranks"]["file"] == "mostpop.ranks.npy"  # per-user arrays live aside
    back = EvalResult.load(path)
    assert back.stamp == res.stamp and back.overall == res.overall
    assert np.array_equal(back.ranks, res.ranks) and np.array_equal(back.users, res.users)
    assert back.groups["tail"] == res.groups["tail"]
    assert math.isnan(back.groups["head"].metrics["NDCG@10"])
    assert compute_metrics(back.ranks, (10,)) == back.overall

    np.save(tmp_path / "res" / "mostpop.ranks.npy", res.ranks + 1)
    with pytest.raises(ValueError, match="does not match"):
        EvalResult.load(path)

    full = Evaluator(ds).evaluate(popularity_score_fn(ds), model_name="mostpop")
    assert full.stamp.n_negatives is None and full.stamp.negatives_seed is None


def test_config_hash_is_canonical() -> None:
    a = config_hash({"b": 1, "a": {"y": [1, 2], "x": 0.5}})
    b = config_hash({"a": {"x": 0.5, "y": [1, 2]}, "b": 1})
    assert a == b and len(a) == 64
    assert a != config_hash({"a": {"x": 0.5, "y": [2, 1]}, "b": 1})
    assert config_hash({"n": np.int64(3)}) == config_hash({"n": 3})
    with pytest.raises(ValueError):
        config_hash({"x": float("nan")})


def test_invalid_options() -> None:
    ds = random_dataset(19)
    for kw in [
        {"split": "train"},
        {"protocol": "uni"},
        {"tie": "best"},
        {"ks": (0,)},
        {"batch_size": 0},
        {"score_budget": 0},
        {"negatives_seed": -1},
        {"max_len": 0},
        {"head_fraction": 1.5},
    ]:
        with pytest.raises(ValueError):
            Evaluator(ds, **kw)
    with pytest.raises(ValueError, match="eligible negatives"):
        Evaluator(ds, protocol="uni1000")


def _recording(fn, sizes: list[int]):
    def score(hist: torch.Tensor, cand: torch.Tensor | None) -> torch.Tensor:
        sizes.append(hist.shape[0])
        return fn(hist, cand)

    return score


def test_rows_per_batch_is_capped_by_the_score_budget() -> None:
    ds = random_dataset(20, n_users=50, n_items=35)
    width = ds.n_items + 1
    assert Evaluator(ds).rows_per_batch == 256  # 2**26 // width is far above the batch size
    assert Evaluator(ds, batch_size=8).rows_per_batch == 8
    assert Evaluator(ds, score_budget=3 * width + width - 1).rows_per_batch == 3
    assert Evaluator(ds, score_budget=width - 1).rows_per_batch == 1  # never zero users
    sampled = Evaluator(ds, protocol="uni10", score_budget=50)
    assert sampled.n_candidates == 11 and sampled.rows_per_batch == 4  # 50 // 11


@pytest.mark.parametrize("protocol", ["full", "uni10"])
@pytest.mark.parametrize("tie", ["pessimistic", "random"])
def test_tiny_score_budget_gives_the_same_ranks_for_a_real_model(protocol: str, tie: str) -> None:
    """A SASRec with random weights, scored 1, 2 or 3 users at a time (a budget of 1-3 rows of
    scores) or all at once: every user's rank is identical, and no batch exceeds the budget."""
    from h2rec.models import build_model

    ds = random_dataset(21, n_users=70, n_items=40)
    torch.manual_seed(0)
    model = build_model("sasrec", ds.n_items, hidden_size=16, max_len=8).eval()
    reference_sizes: list[int] = []
    default = Evaluator(ds, protocol=protocol, tie=tie, max_len=8)
    reference = default.evaluate(_recording(model.score, reference_sizes), model_name="sasrec")
    n_users = default.n_users
    assert n_users > 50 and reference_sizes == [n_users]  # one batch under the default budget
    assert len(np.unique(reference.ranks)) > 5  # a real spread of ranks, not a constant model
    for rows in (1, 2, 3):
        budget = rows * default.n_candidates + 1
        ev = Evaluator(ds, protocol=protocol, tie=tie, max_len=8, score_budget=budget)
        sizes: list[int] = []
        res = ev.evaluate(_recording(model.score, sizes), model_name="sasrec")
        assert ev.rows_per_batch == rows
        assert max(sizes) == rows and sum(sizes) == n_users
        assert np.array_equal(res.users, reference.users)
        assert np.array_equal(res.ranks, reference.ranks)  # exactly, user by user


def test_rank_rows_ranks_any_rows_in_the_given_order() -> None:
    ds = random_dataset(22, n_users=60, n_items=35)
    fn = hashed_score_fn(ds.n_items)
    for protocol in ("full", "uni7"):
        ev = Evaluator(ds, protocol=protocol, tie="random", score_budget=2 * 36)
        everyone = ev.ranks(fn)
        rows = np.random.default_rng(0).permutation(ev.n_users)[:25]
        assert np.array_equal(ev.rank_rows(fn, rows), everyone[rows])
        assert ev.rank_rows(fn, np.array([], dtype=np.int64)).shape == (0,)
        with pytest.raises(ValueError, match="indices"):
            ev.rank_rows(fn, np.array([ev.n_users]))


def test_candidates_of_some_rows_are_those_rows_of_the_whole_matrix() -> None:
    ds = random_dataset(23, n_users=40, n_items=50)
    ev = Evaluator(ds, protocol="uni9")
    whole = ev.candidates()
    assert whole is not None and whole.dtype == np.int64 and whole.shape == (ev.n_users, 10)
    assert np.array_equal(whole[:, 0], ev.examples.targets)
    assert np.array_equal(whole[:, 1:], ev.negatives)
    rows = np.array([5, 0, 17, 17, 3])
    assert np.array_equal(ev.candidates(rows), whole[rows])
    assert Evaluator(ds).candidates() is None
