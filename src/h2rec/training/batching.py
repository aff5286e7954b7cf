"""Vectorised training batches from the stored split: no per-sample Python in the hot path.

Batch order and negatives come from numpy generators seeded by (seed, epoch[, step]), so an epoch
is reproducible on its own and a resumed run replays exactly what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from h2rec.data.dataset import TRAIN, Dataset


@dataclass
class TrainBatch:
    """Left-padded tensors: `targets[b, t]` is the item after `inputs[b, :t+1]` (0 = no target)."""

    inputs: torch.Tensor  # [B, L] int64
    targets: torch.Tensor | None  # [B, L] int64; None for whole-sequence objectives (cloze)
    negatives: torch.Tensor | None  # [B, L, k] int64
    users: torch.Tensor  # [B] internal user ids

    def to(self, device: torch.device | str) -> TrainBatch:
        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return TrainBatch(mv(self.inputs), mv(self.targets), mv(self.negatives), mv(self.users))  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The mapping the objectives take (absent parts are left out)."""
        out = {"inputs": self.inputs, "users": self.users}
        if self.targets is not None:
            out["targets"] = self.targets
        if self.negatives is not None:
            out["negatives"] = self.negatives
        return out

    @property
    def n_targets(self) -> int:
        ref = self.targets if self.targets is not None else self.inputs
        return int((ref > 0).sum())


class TrainSequences:
    """Each user's training-split items as one CSR array (time order kept)."""

    def __init__(self, ds: Dataset, min_len: int = 2) -> None:
        mask = ds.inter_split == TRAIN
        users = ds.inter_user[mask].astype(np.int64)
        self.items = ds.inter_item[mask].astype(np.int64)
        counts = np.bincount(users, minlength=ds.n_users + 1)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        self.users = np.flatnonzero(counts >= min_len)  # users with at least one (input, target)
        self.n_items = ds.n_items
        # sorted (user, item) keys of training interactions, for history-excluding negatives
        self._keys = np.unique(users * (ds.n_items + 1) + self.items)

    def windows(self, users: np.ndarray, width: int) -> np.ndarray:
        """The last `width` training items of each user, left-padded with 0: [len(users), width]."""
        start, end = self.offsets[users], self.offsets[users + 1]
        idx = end[:, None] - width + np.arange(width)[None, :]
        valid = idx >= start[:, None]
        return np.where(valid, self.items[np.clip(idx, 0, len(self.items) - 1)], 0)

    def in_history(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (user, item) pair (broadcast) is a training interaction."""
        keys = users * (self.n_items + 1) + items
        pos = np.searchsorted(self._keys, keys)
        pos = np.clip(pos, 0, len(self._keys) - 1)
        return self._keys[pos] == keys


def sample_negatives(
    rng: np.random.Generator,
    seqs: TrainSequences,
    users: np.ndarray,
    positives: np.ndarray,
    k: int,
    exclude: Literal["none", "positive", "history"] = "history",
    max_rounds: int = 20,
) -> np.ndarray:
    """Uniform negatives [*positives.shape, k], re-drawn where they hit what `exclude` forbids."""
    shape = (*positives.shape, k)
    neg = rng.integers(1, seqs.n_items + 1, size=shape)
    if exclude == "none":
        return neg
    u = np.broadcast_to(users.reshape(-1, *([1] * (len(shape) - 1))), shape)
    pos = np.broadcast_to(positives[..., None], shape)
    for _ in range(max_rounds):
        bad = neg == pos
        if exclude == "history":
            bad |= seqs.in_history(u, neg)
        n_bad = int(bad.sum())
        if n_bad == 0:
            break
        neg[bad] = rng.integers(1, seqs.n_items + 1, size=n_bad)
    return neg


class BatchIterator:
    """Epoch-wise shuffled batches of next-item (seq2seq) or whole-sequence (cloze) examples."""

    def __init__(
        self,
        seqs: TrainSequences,
        *,
        batch_size: int,
        max_len: int,
        seed: int,
        kind: Literal["next_item", "sequence"] = "next_item",
        positions: Literal["all", "last"] = "all",
        num_negatives: int = 0,
        negatives_exclude: Literal["none", "positive", "history"] = "history",
    ) -> None:
        self.seqs, self.batch_size, self.max_len, self.seed = seqs, batch_size, max_len, seed
        self.kind, self.positions = kind, positions
        self.num_negatives, self.negatives_exclude = num_negatives, negatives_exclude

    def __len__(self) -> int:
        return -(-len(self.seqs.users) // self.batch_size)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[TrainBatch]:
        order = np.random.default_rng([self.seed, epoch]).permutation(self.seqs.users)
        for step in range(start_step, len(self)):
            users = order[step * self.batch_size : (step + 1) * self.batch_size]
            yield self.batch(users, np.random.default_rng([self.seed, epoch, step, 1]))

    def batch(self, users: np.ndarray, rng: np.random.Generator) -> TrainBatch:
        if self.kind == "sequence":
            inputs = self.seqs.windows(users, self.max_len)
            return TrainBatch(torch.from_numpy(inputs), None, None, torch.from_numpy(users))
        win = self.seqs.windows(users, self.max_len + 1)
        inputs, targets = win[:, :-1], win[:, 1:].copy()
        targets[inputs == 0] = 0
        if self.positions == "last":
            targets[:, :-1] = 0
        negatives = None
        if self.num_negatives > 0:
            negatives = sample_negatives(
                rng, self.seqs, users, targets, self.num_negatives, self.negatives_exclude
            )
            negatives[targets == 0] = 0
            negatives = torch.from_numpy(negatives)
        return TrainBatch(
            torch.from_numpy(np.ascontiguousarray(inputs)),
            torch.from_numpy(targets),
            negatives,
            torch.from_numpy(users),
        )
