from __future__ import annotations

import itertools

import numpy as np

from h2rec.data.preprocess import build_dataset
from h2rec.training.batching import BatchIterator, TrainSequences, sample_negatives

from ..data.helpers import config, raw_from_rows


def _dataset(seed: int = 0, n_users: int = 30, n_items: int = 25):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for t in range(int(rng.integers(3, 15))):
            rows.append((f"u{u}", f"i{int(rng.integers(n_items))}", t))
    return build_dataset(raw_from_rows(rows), config())


def _naive_train_seqs(ds) -> dict[int, list[int]]:
    return {u: ds.sequence(u, ("train",)).tolist() for u in range(1, ds.n_users + 1)}


def test_windows_equal_naive_left_padding() -> None:
    ds = _dataset()
    seqs = TrainSequences(ds, min_len=1)
    naive = _naive_train_seqs(ds)
    users = np.arange(1, ds.n_users + 1)
    for width in (1, 4, 30):
        win = seqs.windows(users, width)
        for row, u in zip(win, users, strict=True):
            s = naive[u][-width:]
            assert row.tolist() == [0] * (width - len(s)) + s


def test_next_item_targets_and_last_position() -> None:
    ds = _dataset(1)
    seqs = TrainSequences(ds)
    it = BatchIterator(seqs, batch_size=8, max_len=5, seed=0)
    b = next(it.epoch(0))
    naive = _naive_train_seqs(ds)
    for inp, tgt, u in zip(b.inputs.numpy(), b.targets.numpy(), b.users.numpy(), strict=True):
        s = naive[u][-6:]
        real_in = s[:-1]
        assert inp.tolist() == [0] * (5 - len(real_in)) + real_in
        assert tgt.tolist() == [0] * (5 - len(real_in)) + s[1:]
    last = BatchIterator(seqs, batch_size=8, max_len=5, seed=0, positions="last")
    bl = next(last.epoch(0))
    assert (bl.targets[:, :-1] == 0).all()
    np.testing.assert_array_equal(bl.targets[:, -1].numpy(), b.targets[:, -1].numpy())


def test_epochs_are_reproducible_and_cover_every_user_once() -> None:
    ds = _dataset(2)
    seqs = TrainSequences(ds)
    it = BatchIterator(seqs, batch_size=7, max_len=5, seed=3, num_negatives=2)
    a = [b.users.tolist() for b in it.epoch(4)]
    b = [b.users.tolist() for b in it.epoch(4)]
    assert a == b
    assert sorted(itertools.chain.from_iterable(a)) == sorted(seqs.users.tolist())
    assert a != [b.users.tolist() for b in it.epoch(5)]
    # resuming mid-epoch replays the same remaining batches, negatives included
    full = list(it.epoch(4))
    tail = list(it.epoch(4, start_step=2))
    for x, y in zip(full[2:], tail, strict=True):
        assert (x.negatives == y.negatives).all() and (x.inputs == y.inputs).all()


def test_negatives_avoid_history_and_positive() -> None:
    ds = _dataset(3, n_items=40)
    seqs = TrainSequences(ds)
    users = seqs.users
    positives = np.random.default_rng(0).integers(1, ds.n_items + 1, size=(len(users), 6))
    neg = sample_negatives(np.random.default_rng(1), seqs, users, positives, 5, "history")
    naive = _naive_train_seqs(ds)
    for row_u, row_pos, row_neg in zip(users, positives, neg, strict=True):
        hist = set(naive[row_u])
        for p, ns in zip(row_pos, row_neg, strict=True):
            assert all(n != p and n not in hist and 1 <= n <= ds.n_items for n in ns)
    neg2 = sample_negatives(np.random.default_rng(1), seqs, users, positives, 5, "positive")
    assert (neg2 != positives[..., None]).all()


def test_expected_targets_per_batch_matches_a_full_epoch() -> None:
    ds = _dataset(5)
    seqs = TrainSequences(ds)
    for positions in ("all", "last"):
        it = BatchIterator(seqs, batch_size=6, max_len=4, seed=0, positions=positions)
        counted = sum(b.n_targets for b in it.epoch(0))
        assert it.targets_per_batch() * len(it) == counted
    cloze = BatchIterator(seqs, batch_size=6, max_len=4, seed=0, kind="sequence")
    real = sum(int((b.inputs > 0).sum()) for b in cloze.epoch(0))
    assert cloze.targets_per_batch(0.5) * len(cloze) == 0.5 * real


def test_cloze_batches_carry_negatives_for_sampled_losses() -> None:
    """Cloze (BERT4Rec-style) batches with num_negatives > 0 get [B, L, k] negatives: none at
    padding, none from the user's training history (the label of a slot is its own item)."""
    ds = _dataset(4, n_items=40)
    seqs = TrainSequences(ds)
    it = BatchIterator(seqs, batch_size=8, max_len=6, seed=0, kind="sequence", num_negatives=3)
    naive = _naive_train_seqs(ds)
    for b in it.epoch(0):
        assert b.negatives is not None
        assert tuple(b.negatives.shape) == (*b.inputs.shape, 3)
        inputs, neg = b.inputs.numpy(), b.negatives.numpy()
        assert (neg[inputs == 0] == 0).all()
        for u, row_in, row_neg in zip(b.users.numpy(), inputs, neg, strict=True):
            hist = set(naive[int(u)])
            for item, ns in zip(row_in, row_neg, strict=True):
                if item:
                    assert all(1 <= n <= ds.n_items and n not in hist for n in ns)
    # without a sampled loss nothing is drawn
    plain = BatchIterator(seqs, batch_size=8, max_len=6, seed=0, kind="sequence")
    assert next(plain.epoch(0)).negatives is None


# -- negatives shared by the batch (objective.negatives_shared) ------------------------------------
def _shared_iter(seqs, exclude: str = "history", **kw):  # type: ignore[no-untyped-def]
    return BatchIterator(
        seqs,
        batch_size=8,
        max_len=6,
        seed=3,
        num_negatives=12,
        negatives_exclude=exclude,  # type: ignore[arg-type]
        negatives_shared=True,
        **kw,
    )


def test_shared_negatives_are_one_draw_per_batch_zero_at_padding() -> None:
    """[B, L, k]; every real position carries the batch's one draw (up to the per-position
    masking of what `negatives_exclude` forbids, here "none"); padding positions are 0."""
    ds = _dataset(6, n_items=40)
    seqs = TrainSequences(ds)
    for kind in ("next_item", "sequence"):
        it = _shared_iter(seqs, "none", kind=kind)
        batches = list(it.epoch(0))
        draws = []
        for b in batches:
            labels = (b.targets if kind == "next_item" else b.inputs).numpy()
            neg = b.negatives.numpy()
            assert neg.shape == (*labels.shape, 12)
            assert (neg[labels == 0] == 0).all()
            rows = neg[labels != 0]
            assert (rows == rows[0]).all() and (rows >= 1).all() and (rows <= ds.n_items).all()
            # the draw is the batch generator's first k integers, as seeded today
            step = len(draws)
            rng = np.random.default_rng([3, 0, step, 1])
            np.testing.assert_array_equal(rows[0], rng.integers(1, ds.n_items + 1, size=12))
            draws.append(tuple(rows[0]))
        assert len(set(draws)) == len(draws)  # a fresh draw per batch


def test_shared_negatives_are_reproducible_and_resume_exactly() -> None:
    ds = _dataset(7, n_items=40)
    seqs = TrainSequences(ds)
    it = _shared_iter(seqs)
    a, b = list(it.epoch(2)), list(it.epoch(2))
    for x, y in zip(a, b, strict=True):
        assert (x.negatives == y.negatives).all()
    tail = list(it.epoch(2, start_step=3))
    for x, y in zip(a[3:], tail, strict=True):
        assert (x.negatives == y.negatives).all() and (x.users == y.users).all()
    other = list(it.epoch(3))
    assert any(
        x.negatives.shape != y.negatives.shape or (x.negatives != y.negatives).any()
        for x, y in zip(a, other, strict=False)
    )


def test_shared_negatives_mask_what_exclude_forbids_per_position() -> None:
    """Nothing is re-drawn: a shared negative equal to a position's target ("positive"), or in
    the user's training history ("history"), is set to 0 (no negative) at that position only."""
    ds = _dataset(8, n_items=15)  # small catalogue: many hits
    seqs = TrainSequences(ds)
    naive = _naive_train_seqs(ds)
    hits = {"positive": 0, "history": 0}
    for exclude in ("positive", "history"):
        base = _shared_iter(seqs, "none")
        for b, raw in zip(_shared_iter(seqs, exclude).epoch(0), base.epoch(0), strict=True):
            tgt, neg, unmasked = b.targets.numpy(), b.negatives.numpy(), raw.negatives.numpy()
            for u, row_t, row_n, row_raw in zip(b.users.numpy(), tgt, neg, unmasked, strict=True):
                hist = set(naive[int(u)])
                for t, ns, raw_ns in zip(row_t, row_n, row_raw, strict=True):
                    if t == 0:
                        continue
                    forbidden = {int(t)} | (hist if exclude == "history" else set())
                    expect = [0 if n in forbidden else n for n in raw_ns]
                    assert ns.tolist() == expect
                    hits[exclude] += sum(n == 0 for n in expect)
    assert hits["positive"] > 0 and hits["history"] > hits["positive"]


def test_per_position_negatives_unchanged_by_the_shared_option() -> None:
    """The default (negatives_shared=False) path draws exactly what sample_negatives draws."""
    ds = _dataset(9, n_items=40)
    seqs = TrainSequences(ds)
    it = BatchIterator(seqs, batch_size=8, max_len=6, seed=3, num_negatives=4)
    users = it.batches_of(1)[2]
    b = it.batch(users, np.random.default_rng([3, 1, 2, 1]))
    assert b.negatives is not None
    neg = sample_negatives(
        np.random.default_rng([3, 1, 2, 1]), seqs, users, b.targets.numpy(), 4, "history"
    )
    neg[b.targets.numpy() == 0] = 0
    np.testing.assert_array_equal(b.negatives.numpy(), neg)
    assert b.negatives.numpy().shape[-1] == 4
