"""Collision policies: keep, extra-level and Sinkhorn re-assignment of the last level."""

from __future__ import annotations

import numpy as np
import pytest

from h2rec.sid import (
    Tokenizer,
    TokenizerError,
    add_extra_level,
    apply_collision_policy,
    build_tokenizer,
    collision_stats,
    sinkhorn_dedup,
)
from h2rec.sid.collisions import sinkhorn_plan


def n_unique(codes: np.ndarray) -> int:
    return len({tuple(r) for r in codes.tolist()})


@pytest.fixture(scope="module")
def collided(mixture: np.ndarray) -> tuple[Tokenizer, np.ndarray]:
    """2 levels x 64 codes on 1000 points: plenty of collisions, every prefix group <= K."""
    tok = build_tokenizer(method="rqkmeans", levels=2, codebook_size=64, distance="euclidean").fit(
        mixture
    )
    codes = tok.encode(mixture)
    assert n_unique(codes) < 0.9 * len(codes)
    assert np.bincount(codes[:, 0]).max() <= 64  # so zero collisions are reachable
    return tok, codes


def test_extra_level_by_hand() -> None:
    codes = np.array([[1, 2], [0, 0], [1, 2], [3, 3], [1, 2], [0, 0]])
    out, size = add_extra_level(codes)
    np.testing.assert_array_equal(out[:, 2], [0, 0, 1, 0, 2, 1])  # rank in group, row order
    assert size == 3 and n_unique(out) == len(codes)


def test_keep_and_extra_level(collided: tuple[Tokenizer, np.ndarray]) -> None:
    _, codes = collided
    kept = apply_collision_policy(codes, "keep")
    np.testing.assert_array_equal(kept.codes, codes)
    assert kept.after["rate"] == kept.before["rate"] > 0
    extra = apply_collision_policy(codes, "extra-level")
    assert extra.codes.shape == (len(codes), 3) and n_unique(extra.codes) == len(codes)
    assert extra.extra_level_size == collision_stats(codes)["largest_group"]
    assert extra.codes[:, 2].max() == extra.extra_level_size - 1
    np.testing.assert_array_equal(extra.codes[:, :2], codes)
    assert extra.after["rate"] == 0.0


def test_sinkhorn_removes_collisions_when_feasible(
    collided: tuple[Tokenizer, np.ndarray], mixture: np.ndarray
) -> None:
    tok, codes = collided
    res = apply_collision_policy(codes, "sinkhorn", tokenizer=tok, vectors=mixture)
    assert res.after["rate"] == 0.0 and n_unique(res.codes) == len(codes)
    assert res.rounds >= 1
    np.testing.assert_array_equal(res.codes[:, :-1], codes[:, :-1])  # only the last level moves
    shared = collision_stats(codes)["n_colliding_items"]
    changed = (res.codes != codes).any(axis=1)
    assert changed.sum() <= shared  # items that were already unique keep their SID
    inv = np.unique(codes, axis=0, return_inverse=True)[1].reshape(-1)
    assert (np.bincount(inv)[inv][changed] > 1).all()


def test_sinkhorn_is_best_possible_when_infeasible(mixture: np.ndarray) -> None:
    tok = build_tokenizer(method="rqkmeans", levels=2, codebook_size=32, distance="euclidean").fit(
        mixture
    )
    codes = tok.encode(mixture)
    groups = np.bincount(codes[:, 0])
    assert groups.max() > 32  # some prefix groups cannot be made unique at K = 32
    res = apply_collision_policy(codes, "sinkhorn", tokenizer=tok, vectors=mixture)
    assert res.after["n_unique_sids"] == np.minimum(groups, 32).sum() < len(codes)


def test_sinkhorn_separates_identical_vectors() -> None:
    # five identical items under one prefix: argmax rounding can never split them
    codes = np.array([[0, 1]] * 5 + [[0, 2], [1, 0]])
    dist = np.tile(np.linspace(0.0, 1.0, 8), (7, 1))
    greedy, _ = sinkhorn_dedup(codes, dist)
    assert n_unique(greedy) == 7
    assert set(greedy[:5, 1]) & {2} == set()  # code 2 is held by another item of prefix 0
    argmax, _ = sinkhorn_dedup(codes, dist, rounding="argmax")
    assert n_unique(argmax) < 7


def test_sinkhorn_cannot_fix_prefix_groups_bigger_than_k() -> None:
    codes = np.zeros((6, 2), dtype=np.int64)  # six items, one prefix, only K = 4 last codes
    dist = np.random.default_rng(0).random((6, 4))
    out, rounds = sinkhorn_dedup(codes, dist, max_rounds=5)
    assert n_unique(out) == 4 and rounds <= 5  # best possible; reported, not raised


def test_sinkhorn_plan_has_uniform_marginals() -> None:
    plan = sinkhorn_plan(np.random.default_rng(1).random((5, 9)), epsilon=0.05, iters=200)
    np.testing.assert_allclose(plan.sum(axis=1), 1 / 5, rtol=1e-6)
    np.testing.assert_allclose(plan.sum(axis=0), 1 / 9, rtol=1e-3)


def test_sinkhorn_works_for_every_method(mixture: np.ndarray) -> None:
    for cfg in (
        {"method": "vq", "codebook_size": 8},
        {"method": "pq", "levels": 2, "codebook_size": 16},
        {
            "method": "rqvae",
            "levels": 2,
            "codebook_size": 16,
            "hidden": [16],
            "latent_dim": 4,
            "epochs": 1,
        },
    ):
        tok = build_tokenizer(**cfg).fit(mixture[:300])
        codes = tok.encode(mixture[:300])
        res = apply_collision_policy(codes, "sinkhorn", tokenizer=tok, vectors=mixture[:300])
        assert res.after["rate"] <= res.before["rate"]


def test_policy_errors(collided: tuple[Tokenizer, np.ndarray]) -> None:
    _, codes = collided
    with pytest.raises(TokenizerError, match="unknown collision policy"):
        apply_collision_policy(codes, "dedupe")
    with pytest.raises(TokenizerError, match="needs last_distances"):
        apply_collision_policy(codes, "sinkhorn")
