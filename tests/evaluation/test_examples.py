from __future__ import annotations

import numpy as np
import pytest

from h2rec.evaluation.examples import build_examples, padded_full_histories

from .helpers import make_dataset, naive_examples, random_dataset, random_rows


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("split", ["valid", "test"])
@pytest.mark.parametrize("max_len", [1, 3, 50])
def test_vectorised_examples_equal_naive_construction(seed: int, split: str, max_len: int) -> None:
    ds = random_dataset(seed)
    ex = build_examples(ds, split, max_len)
    naive = naive_examples(ds, split, max_len)
    assert ex.users.tolist() == [n[0] for n in naive]
    assert ex.targets.tolist() == [n[1] for n in naive]
    assert ex.histories.tolist() == [n[2] for n in naive]
    assert ex.history_lengths.tolist() == [n[3] for n in naive]
    assert ex.histories.dtype == np.int64 and ex.histories.shape == (len(naive), max_len)
    full = padded_full_histories(ds, ex, np.arange(len(ex)))
    for row, n in zip(full, naive, strict=True):
        assert row[: n[3]].tolist() == n[4] and not row[n[3] :].any()


def test_temporal_split_targets_are_first_interaction_after_cut() -> None:
    rows = random_rows(5, n_users=30)
    ds = make_dataset(rows, split={"kind": "temporal", "valid_frac": 0.2, "test_frac": 0.2})
    for split in ("valid", "test"):
        for min_history in (0, 1, 3):
            ex = build_examples(ds, split, 4, min_history=min_history)
            naive = naive_examples(ds, split, 4, min_history)
            assert ex.users.tolist() == [n[0] for n in naive]
            assert ex.targets.tolist() == [n[1] for n in naive]
            assert ex.histories.tolist() == [n[2] for n in naive]
            assert (ex.history_lengths >= min_history).all()
    # some users have several test interactions or none at all: exactly one example each
    test = build_examples(ds, "test", 4)
    assert len(set(test.users.tolist())) == len(test)


def test_leave_one_out_by_hand() -> None:
    # u1: a b c d -> train a b, valid c, test d; u2: two items -> train only (not evaluated)
    rows = [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u1", "d", 4)]
    rows += [("u2", "b", 1), ("u2", "c", 2)]
    rows += [("u3", "c", 1), ("u3", "c", 2), ("u3", "a", 3)]  # repeat in history
    ds = make_dataset(rows)
    a, b, c, d = (ds.item_index[x] for x in "abcd")
    valid = build_examples(ds, "valid", 3)
    assert valid.users.tolist() == [1, 3]
    assert valid.targets.tolist() == [c, c]
    assert valid.histories.tolist() == [[0, a, b], [0, 0, c]]
    test = build_examples(ds, "test", 2)
    assert test.targets.tolist() == [d, a]
    assert test.histories.tolist() == [[b, c], [c, c]]
    assert test.history_lengths.tolist() == [3, 2]


def test_bad_arguments() -> None:
    ds = random_dataset(0)
    with pytest.raises(ValueError, match="split"):
        build_examples(ds, "train", 5)
    with pytest.raises(ValueError, match="max_len"):
        build_examples(ds, "test", 0)
