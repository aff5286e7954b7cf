from __future__ import annotations

import hashlib
import itertools
import logging

import numpy as np
import pytest

from h2rec.data import cache
from h2rec.evaluation import candidates as cmod
from h2rec.evaluation.candidates import (
    interaction_keys,
    load_or_draw_negatives,
    negatives_hash,
    parse_protocol,
    sample_negatives,
)
from h2rec.evaluation.evaluator import Evaluator

from .helpers import constant_score_fn, hashed_score_fn, random_dataset


def test_parse_protocol() -> None:
    assert parse_protocol("full").name == "full" and not parse_protocol("full").sampled
    p = parse_protocol("uni100")
    assert (p.kind, p.n_negatives, p.sampled, p.name) == ("uni", 100, True, "uni100")
    assert parse_protocol(" pop5 ").name == "pop5"
    for bad in ["uni", "pop0", "full10", "random100", "UNI100", "uni-5", ""]:
        with pytest.raises(ValueError):
            parse_protocol(bad)


@pytest.mark.parametrize("protocol", ["uni10", "pop10"])
@pytest.mark.parametrize("split", ["valid", "test"])
def test_negatives_exclude_every_item_of_the_user_and_are_distinct(
    protocol: str, split: str
) -> None:
    ds = random_dataset(3, n_users=60, n_items=60)
    neg = load_or_draw_negatives(ds, split, protocol, seed=1)
    assert neg.path is None  # no prepared folder: in memory only
    assert neg.negatives.shape == (len(neg.users), 10)
    pop = ds.item_popularity("train")
    for u, row in zip(neg.users, neg.negatives, strict=True):
        seen = set(ds.sequence(int(u)).tolist())  # every split, target included
        assert not seen & set(row.tolist())
        assert len(set(row.tolist())) == len(row)
        assert row.min() >= 1 and row.max() <= ds.n_items
        if protocol.startswith("pop"):
            assert (pop[row] > 0).all()


def test_same_candidates_for_every_model_and_evaluator_and_seed_changes_them() -> None:
    ds = random_dataset(4, n_users=50, n_items=80)
    seen: list[list[np.ndarray]] = [[], []]

    def recorder(i: int, fn):
        def score(hist, cand):
            seen[i].append(cand.numpy().copy())
            return fn(hist, cand)

        return score

    e1 = Evaluator(ds, protocol="uni20", negatives_seed=7, batch_size=8)
    e2 = Evaluator(ds, protocol="uni20", negatives_seed=7, batch_size=13)
    e1.evaluate(recorder(0, hashed_score_fn(ds.n_items)), model_name="a")
    e2.evaluate(recorder(1, constant_score_fn(ds.n_items)), model_name="b")
    assert np.array_equal(np.concatenate(seen[0]), np.concatenate(seen[1]))
    # batches go out in order of history length (so score functions can trim padding)
    order = np.argsort(e1.examples.history_lengths, kind="stable")
    assert np.array_equal(e1.candidates()[order], np.concatenate(seen[0]))
    assert np.array_equal(e1.candidates()[:, 0], e1.examples.targets)
    e3 = Evaluator(ds, protocol="uni20", negatives_seed=8)
    assert not np.array_equal(e1.negatives, e3.negatives)
    e4 = Evaluator(ds, protocol="pop20", negatives_seed=7)
    assert not np.array_equal(e1.negatives, e4.negatives)


def test_candidates_are_stored_reloaded_and_invalidated(tmp_path, monkeypatch, caplog) -> None:
    ds = random_dataset(5, n_users=50, n_items=80)
    cache.save(ds, tmp_path / "prep", config={}, source={})
    assert ds.path == tmp_path / "prep"
    first = Evaluator(ds, protocol="pop15", negatives_seed=3)
    path = tmp_path / "prep" / "candidates" / "test-pop15-seed3.npz"
    assert first.negatives_path == path and path.is_file()
    with np.load(path) as z:
        assert str(z["content_hash"]) == ds.content_hash()
        assert z["negatives"].shape == (len(z["users"]), 15)

    calls = []
    real_draw = cmod.draw_negatives

    def counting_draw(*a, **k):
        calls.append(a)
        return real_draw(*a, **k)

    monkeypatch.setattr(cmod, "draw_negatives", counting_draw)
    reloaded = cache.load(tmp_path / "prep")
    second = Evaluator(reloaded, protocol="pop15", negatives_seed=3)
    assert calls == []  # read from disk, not redrawn
    assert np.array_equal(first.negatives, second.negatives)

    # A file made for other data content is redrawn (and replaced), never trusted.
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["content_hash"] = np.array("0" * 64)
    arrays["negatives"] = np.ones_like(arrays["negatives"])
    np.savez(path, **arrays)
    with caplog.at_level(logging.WARNING, logger="h2rec"):
        third = Evaluator(reloaded, protocol="pop15", negatives_seed=3)
    assert len(calls) == 1 and "stale" in caplog.text
    assert np.array_equal(first.negatives, third.negatives)
    with np.load(path) as z:
        assert str(z["content_hash"]) == ds.content_hash()

    # A corrupted file is redrawn too.
    path.write_bytes(b"not an npz")
    fourth = Evaluator(reloaded, protocol="pop15", negatives_seed=3)
    assert len(calls) == 2 and np.array_equal(first.negatives, fourth.negatives)

    # Another dataset stored at the same place gets its own negatives.
    other = random_dataset(6, n_users=50, n_items=80)
    other.path = tmp_path / "prep"
    Evaluator(other, protocol="pop15", negatives_seed=3)
    assert len(calls) == 3
    with np.load(path) as z:
        assert str(z["content_hash"]) == other.content_hash()


def _keys(user_items: dict[int, list[int]], n_items: int) -> np.ndarray:
    return np.unique([u * (n_items + 1) + i for u, items in user_items.items() for i in items])


def test_pop_sampling_follows_training_popularity() -> None:
    n_items = 8
    w = np.array([0, 1, 2, 3, 4, 0, 6, 7, 8], dtype=np.float64)  # item 5 can never be drawn
    keys = _keys({1: [4, 8]}, n_items)  # user 1 owns items 4 and 8
    users = np.ones(200_000, dtype=np.int64)
    draws = sample_negatives(keys, users, n_items, 1, np.random.default_rng(0), w)[:, 0]
    freq = np.bincount(draws, minlength=n_items + 1) / len(draws)
    expected = w.copy()
    expected[[4, 8]] = 0
    expected /= expected.sum()
    assert freq[[0, 4, 5, 8]].sum() == 0
    chi2 = len(draws) * np.sum((freq - expected)[expected > 0] ** 2 / expected[expected > 0])
    assert chi2 < 25  # 5 degrees of freedom; p < 1e-4 beyond this
    np.testing.assert_allclose(freq, expected, atol=0.005)


def _successive_sampling_inclusion(w: np.ndarray, allowed: list[int], n: int) -> np.ndarray:
    """Exact P(item in sample) for sequential weighted draws without replacement."""
    incl = np.zeros(len(w))
    for seq in itertools.permutations(allowed, n):
        p, left = 1.0, float(w[allowed].sum())
        for i in seq:
            p *= w[i] / left
            left -= w[i]
        for i in seq:
            incl[i] += p
    return incl


@pytest.mark.parametrize("exact_path", [False, True])
def test_multi_draw_law_is_sequential_sampling_without_replacement(exact_path: bool) -> None:
    n_items, n = 6, 3
    w = np.array([0, 9, 5, 1, 3, 2, 1], dtype=np.float64)
    keys = _keys({2: [2]}, n_items)
    rows = 40_000 if not exact_path else 8_000
    users = np.full(rows, 2, dtype=np.int64)
    rng = np.random.default_rng(1)
    out = sample_negatives(keys, users, n_items, n, rng, w, max_rounds=0 if exact_path else 30)
    assert (np.sort(out, axis=1)[:, 1:] != np.sort(out, axis=1)[:, :-1]).all()
    freq = np.bincount(out.ravel(), minlength=n_items + 1) / rows
    expected = _successive_sampling_inclusion(w, [1, 3, 4, 5, 6], n)
    np.testing.assert_allclose(freq, expected, atol=0.02)


def test_uniform_sampling_is_uniform_over_eligible_items() -> None:
    n_items = 20
    keys = _keys({1: [1, 2, 3], 2: list(range(1, 18))}, n_items)
    users = np.repeat([1, 2], 20_000)
    out = sample_negatives(keys, users, n_items, 2, np.random.default_rng(2))
    for u, owned in [(1, {1, 2, 3}), (2, set(range(1, 18)))]:
        rows = out[users == u]
        freq = np.bincount(rows.ravel(), minlength=n_items + 1)[1:] / len(rows)
        eligible = [i for i in range(1, n_items + 1) if i not in owned]
        assert set(np.unique(rows).tolist()) == set(eligible)
        np.testing.assert_allclose(freq[np.array(eligible) - 1], 2 / len(eligible), atol=0.02)


def test_too_few_eligible_items_is_a_clear_error() -> None:
    n_items = 6
    keys = _keys({1: [1, 2, 3, 4]}, n_items)
    with pytest.raises(ValueError, match="fewer than 3 eligible negatives"):
        sample_negatives(keys, np.array([1]), n_items, 3, np.random.default_rng(0))
    w = np.array([0, 1, 1, 1, 1, 1, 0], dtype=np.float64)  # item 6 never seen in training
    with pytest.raises(ValueError, match="non-zero training count"):
        sample_negatives(keys, np.array([1]), n_items, 2, np.random.default_rng(0), w)
    # exactly enough: the only eligible items are returned
    out = sample_negatives(keys, np.array([1, 1]), n_items, 2, np.random.default_rng(0))
    assert sorted(out[0].tolist()) == [5, 6] and sorted(out[1].tolist()) == [5, 6]


def test_deterministic_given_seed() -> None:
    ds = random_dataset(7, n_users=40, n_items=50)
    keys = interaction_keys(ds)
    users = np.arange(1, ds.n_users + 1)
    a = sample_negatives(keys, users, ds.n_items, 5, np.random.default_rng(11))
    b = sample_negatives(keys, users, ds.n_items, 5, np.random.default_rng(11))
    assert np.array_equal(a, b)


def test_unwritable_folder_falls_back_to_memory(tmp_path, monkeypatch, caplog) -> None:
    ds = random_dataset(5, n_users=30, n_items=60)
    ds.path = tmp_path / "prep"

    def refuse(path, data):
        raise PermissionError("read-only")

    monkeypatch.setattr(cmod, "atomic_write_bytes", refuse)
    with caplog.at_level(logging.WARNING, logger="h2rec"):
        neg = load_or_draw_negatives(ds, "test", "uni5", seed=0)
    assert neg.path is None and "cannot store" in caplog.text
    ds.path = None
    assert np.array_equal(neg.negatives, load_or_draw_negatives(ds, "test", "uni5", 0).negatives)


def test_rows_owning_almost_all_the_mass_mix_with_ordinary_rows() -> None:
    n_items = 30
    w = np.ones(n_items + 1)
    w[1] = 10_000.0  # item 1 holds > 98% of the mass
    keys = _keys({1: [1], 2: [2, 3]}, n_items)  # user 1 owns it: exact path; user 2: vectorised
    users = np.array([1, 2, 1, 2, 2, 1])
    out = sample_negatives(keys, users, n_items, 10, np.random.default_rng(0), w)
    for u, row in zip(users, out, strict=True):
        owned = {1} if u == 1 else {2, 3}
        assert not owned & set(row.tolist()) and len(set(row.tolist())) == 10
        assert row.min() >= 1 and row.max() <= n_items
    assert (out[users == 2] == 1).any(axis=1).mean() > 0.9  # the heavy item is nearly always in


def test_stamp_fingerprints_the_negatives() -> None:
    ds = random_dataset(4, n_users=50, n_items=80)
    a = Evaluator(ds, protocol="uni20", negatives_seed=1)
    b = Evaluator(ds, protocol="uni20", negatives_seed=1, max_len=5)
    c = Evaluator(ds, protocol="uni20", negatives_seed=2)
    fn = constant_score_fn(ds.n_items)
    sa, sb, sc = (e.evaluate(fn, model_name="m").stamp for e in (a, b, c))
    assert sa.negatives_hash == sb.negatives_hash != sc.negatives_hash
    assert sa.protocol_key() == sb.protocol_key() != sc.protocol_key()
    assert Evaluator(ds).evaluate(fn, model_name="m").stamp.negatives_hash is None


def test_weights_must_be_counts_and_the_last_item_can_be_drawn() -> None:
    n_items = 4
    keys = _keys({1: [1]}, n_items)
    with pytest.raises(ValueError, match="integer counts"):
        sample_negatives(keys, np.array([1]), n_items, 1, np.random.default_rng(0), np.full(5, 0.5))
    w = np.array([0, 5, 0, 0, 1])  # only the last id is drawable for user 1
    out = sample_negatives(
        keys, np.ones(1000, dtype=np.int64), n_items, 1, np.random.default_rng(0), w
    )
    assert (out == 4).all()


def test_new_files_are_int32_and_hold_the_int64_draw(tmp_path) -> None:
    ds = random_dataset(8, n_users=50, n_items=80)
    cache.save(ds, tmp_path / "prep", config={}, source={})
    neg = load_or_draw_negatives(ds, "test", "uni12", seed=4)
    users, drawn = cmod.draw_negatives(ds, "test", parse_protocol("uni12"), 4)
    assert drawn.dtype == np.int64  # the sampler itself is unchanged
    assert neg.negatives.dtype == np.int32 and np.array_equal(neg.negatives, drawn)
    assert neg.path is not None
    with np.load(neg.path) as z:
        assert z["negatives"].dtype == np.int32 and np.array_equal(z["negatives"], drawn)
        assert np.array_equal(z["users"], users)
    # the fingerprint hashes int64 ids whatever the storage: equal to hashing the int64 draw
    expected = hashlib.sha256(users.astype("<i8").tobytes() + drawn.astype("<i8").tobytes())
    assert negatives_hash(neg.users, neg.negatives) == expected.hexdigest()[:16]
    assert negatives_hash(users, drawn, block_rows=7) == expected.hexdigest()[:16]


def test_old_int64_files_are_read_as_they_are_and_rank_identically(tmp_path, monkeypatch) -> None:
    ds = random_dataset(9, n_users=50, n_items=80)
    cache.save(ds, tmp_path / "prep", config={}, source={})
    new = Evaluator(ds, protocol="uni15", negatives_seed=2, tie="random")
    path = new.negatives_path
    assert path is not None
    # Rewrite the file as earlier versions wrote it: the same draw and keys, int64 negatives.
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["negatives"] = arrays["negatives"].astype(np.int64)
    np.savez(path, **arrays)
    old_bytes = path.read_bytes()

    def no_draw(*a, **k):
        raise AssertionError("an existing valid file must not be redrawn")

    monkeypatch.setattr(cmod, "draw_negatives", no_draw)
    old = Evaluator(cache.load(tmp_path / "prep"), protocol="uni15", negatives_seed=2, tie="random")
    assert path.read_bytes() == old_bytes  # read, not rewritten
    assert old.negatives is not None and old.negatives.dtype == np.int32
    assert np.array_equal(old.negatives, new.negatives)
    assert old.negatives_hash == new.negatives_hash
    fn = hashed_score_fn(ds.n_items)
    assert np.array_equal(old.ranks(fn), new.ranks(fn))


def test_files_with_ids_outside_the_catalogue_are_redrawn(tmp_path, caplog) -> None:
    ds = random_dataset(10, n_users=40, n_items=60)
    cache.save(ds, tmp_path / "prep", config={}, source={})
    first = load_or_draw_negatives(ds, "test", "uni5", seed=0)
    assert first.path is not None
    with np.load(first.path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["negatives"] = arrays["negatives"].astype(np.int64) + 2**32  # int32 would wrap
    np.savez(first.path, **arrays)
    with caplog.at_level(logging.WARNING, logger="h2rec"):
        again = load_or_draw_negatives(ds, "test", "uni5", seed=0)
    assert "outside" in caplog.text and np.array_equal(again.negatives, first.negatives)


def test_for_users_is_a_read_only_view_for_the_stored_users_else_a_copy() -> None:
    ds = random_dataset(11, n_users=40, n_items=60)
    neg = load_or_draw_negatives(ds, "test", "uni5", seed=0)
    same = neg.for_users(neg.users.copy())
    assert np.shares_memory(same, neg.negatives) and np.array_equal(same, neg.negatives)
    assert not same.flags.writeable
    some = neg.users[::3]
    part = neg.for_users(some)
    assert not np.shares_memory(part, neg.negatives)
    assert np.array_equal(part, neg.negatives[::3])
    with pytest.raises(ValueError, match="not drawn"):
        neg.for_users(np.array([neg.users.max() + 1]))
