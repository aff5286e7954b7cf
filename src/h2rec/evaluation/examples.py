"""Evaluation examples: one (history, target) pair per user for the validation or test split.

The target is the user's FIRST interaction in the split; the history is everything the user did
before it, in time order and from any split. Under leave-one-out this is the usual protocol
(valid: history = train, target = valid item; test: history = train + valid, target = test item);
under a global temporal split it is "predict the first interaction after the cut-off". Using the
first one only keeps exactly one example per user, so every metric is a mean over users.

Everything is built with array operations on the dataset's (user, time)-sorted interaction arrays;
no Python loop over users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from h2rec.data.dataset import SPLIT_NAMES, Dataset

EVAL_SPLITS = ("valid", "test")


@dataclass(frozen=True, eq=False)
class EvalExamples:
    """Per-user evaluation examples, rows sorted by internal user id."""

    split: str
    max_len: int
    users: np.ndarray  # int64 [U], internal user ids (ascending)
    targets: np.ndarray  # int64 [U], internal item id of the target
    histories: np.ndarray  # int64 [U, max_len], the LAST max_len history items, zeros on the left
    history_lengths: np.ndarray  # int64 [U], untruncated history length
    history_starts: np.ndarray  # int64 [U], index into the interaction arrays of history[0]

    def __len__(self) -> int:
        return len(self.users)


def check_split(split: str) -> int:
    """Split code of an evaluation split name; 'train' and unknown names are rejected."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"evaluation split must be one of {EVAL_SPLITS}, got {split!r}")
    return SPLIT_NAMES[split]


def check_sorted(ds: Dataset) -> None:
    """The example builder relies on interactions being grouped by user in ascending order."""
    if len(ds.inter_user) and np.any(np.diff(ds.inter_user) < 0):
        raise ValueError(f"dataset {ds.name!r}: inter_user is not sorted by user")


def target_positions(ds: Dataset, split: str) -> np.ndarray:
    """Index (into the interaction arrays) of each user's first interaction in `split`.

    One entry per user that has such an interaction, in ascending user order.
    """
    code = check_split(split)
    check_sorted(ds)
    idx = np.flatnonzero(ds.inter_split == code)
    # idx is ascending and interactions are grouped by user, so the first hit per user is the
    # first index of each run of equal users.
    _, first = np.unique(ds.inter_user[idx], return_index=True)
    return idx[first].astype(np.int64)


def build_examples(ds: Dataset, split: str, max_len: int, *, min_history: int = 0) -> EvalExamples:
    """Evaluation examples for `split`; users with fewer than `min_history` earlier items are dropped."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    if min_history < 0:
        raise ValueError(f"min_history must be >= 0, got {min_history}")
    pos = target_positions(ds, split)
    users = ds.inter_user[pos].astype(np.int64)
    starts = ds.offsets[users]
    lengths = pos - starts
    keep = lengths >= min_history
    pos, users, starts, lengths = pos[keep], users[keep], starts[keep], lengths[keep]
    # Column j of row r holds interaction pos[r] - max_len + j when that index is still the user's.
    src = pos[:, None] - max_len + np.arange(max_len, dtype=np.int64)[None, :]
    inside = src >= starts[:, None]
    items = ds.inter_item.astype(np.int64)
    histories = np.where(inside, items[np.maximum(src, 0)], 0)
    return EvalExamples(
        split=split,
        max_len=max_len,
        users=users,
        targets=items[pos],
        histories=np.ascontiguousarray(histories, dtype=np.int64),
        history_lengths=lengths,
        history_starts=starts,
    )


def padded_full_histories(ds: Dataset, ex: EvalExamples, rows: np.ndarray) -> np.ndarray:
    """The UNtruncated histories of `rows` as a right-padded int64 matrix (0 = nothing).

    Used to exclude every previously seen item (not only the last max_len) from full ranking.
    """
    lengths = ex.history_lengths[rows]
    starts = ex.history_starts[rows]
    width = int(lengths.max(initial=0))
    out = np.zeros((len(rows), max(width, 1)), dtype=np.int64)
    if width == 0:
        return out
    row = np.repeat(np.arange(len(rows)), lengths)
    col = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[row, col] = ds.inter_item[starts[row] + col]
    return out
