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
from h2rec.training.distributed import shard_indices


@dataclass
class TrainBatch:
    """Left-padded tensors: `targets[b, t]` is the item after `inputs[b, :t+1]` (0 = no target)."""

    inputs: torch.Tensor  # [B, L] int64
    targets: torch.Tensor | None  # [B, L] int64; None for whole-sequence objectives (cloze)
    negatives: torch.Tensor | None  # [B, L, k] int64 (0 = none); shared: same k ids per slot
    users: torch.Tensor  # [B] internal user ids

    def to(self, device: torch.device | str) -> TrainBatch:
        """The batch on `device`. To CUDA the host tensors are pinned first, so the copy is
        truly asynchronous: the host goes on building the next batch while it runs."""
        pin = torch.device(device).type == "cuda"

        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            if pin and t.device.type == "cpu":
                t = t.pin_memory()
            return t.to(device, non_blocking=True)

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


def shared_negatives(
    rng: np.random.Generator,
    seqs: TrainSequences,
    users: np.ndarray,
    positives: np.ndarray,
    k: int,
    exclude: Literal["none", "positive", "history"] = "history",
) -> np.ndarray:
    """k uniform negatives drawn ONCE for the whole batch and shared by every position
    (CCFRec's / RecBole-style sampled softmax): `[*positives.shape, k]`, every real position (a
    nonzero entry of `positives [B, L]`) holding the same k ids, 0 at padding.

    The draw is `rng.integers(1, n_items + 1, size=k)`, with replacement like `sample_negatives`,
    from the batch's own generator. Nothing is re-drawn (one set serves every position); what
    `exclude` forbids is MASKED per position instead, by setting that entry to 0 (0 = no negative,
    which the losses drop): "positive" zeroes a shared negative equal to the position's own
    target; "history" also those in the user's training history (which holds every training
    target); "none" zeroes nothing here (the objectives still drop a negative equal to the
    target). A position therefore keeps at most k negatives, the same ones as its neighbours.
    """
    neg = rng.integers(1, seqs.n_items + 1, size=k)
    keep = (positives != 0)[..., None]  # [B, L, 1]
    if exclude != "none":
        keep = keep & (positives[..., None] != neg)  # [B, L, k]
    if exclude == "history":
        hist = seqs.in_history(users.reshape(-1, 1), neg.reshape(1, -1))  # [B, k]
        keep = keep & ~hist.reshape(len(users), *([1] * (positives.ndim - 1)), k)
    return np.where(keep, neg, 0)


class BatchIterator:
    """Epoch-wise shuffled batches of next-item (seq2seq) or whole-sequence (cloze) examples.

    `num_negatives` > 0 adds `negatives [B, L, k]`: drawn per position (`sample_negatives`, the
    default), or with `negatives_shared` drawn once per batch and shared by every position
    (`shared_negatives`: forbidden ones masked to 0 per position instead of re-drawn). Either
    way the sampled losses take the same tensor.
    """

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
        negatives_shared: bool = False,
        bucket_by_length: bool = True,
        bucket_batches: int = 50,
    ) -> None:
        self.seqs, self.batch_size, self.max_len, self.seed = seqs, batch_size, max_len, seed
        self.kind, self.positions = kind, positions
        self.num_negatives, self.negatives_exclude = num_negatives, negatives_exclude
        self.negatives_shared = negatives_shared
        self.bucket_by_length, self.bucket_batches = bucket_by_length, bucket_batches

    def __len__(self) -> int:
        return -(-len(self.seqs.users) // self.batch_size)

    def targets_per_batch(self, mask_ratio: float = 1.0) -> float:
        """Expected number of training targets in a batch, the same for every batch of an epoch.

        Next-item: each user contributes min(len, max_len + 1) - 1 targets; whole-sequence (cloze):
        `mask_ratio` of its min(len, max_len) items. Dividing a batch's summed loss by this
        constant gives every target the same weight however the batches were composed (length
        bucketing makes per-batch target counts differ by an order of magnitude).
        """
        lengths = np.diff(self.seqs.offsets)[self.seqs.users]
        if self.kind == "sequence":
            total = mask_ratio * np.minimum(lengths, self.max_len).sum()
        elif self.positions == "last":
            total = len(lengths)
        else:
            total = (np.minimum(lengths, self.max_len + 1) - 1).sum()
        return float(total) / len(self)

    def batches_of(self, epoch: int) -> list[np.ndarray]:
        """The epoch's batches of user ids: a seeded shuffle; with length bucketing, users are
        sorted by length inside windows of `bucket_batches` batches and the batches shuffled, so a
        batch's padded width (and its cost) follows its own longest sequence."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.seqs.users)
        bs = self.batch_size
        if self.bucket_by_length:
            width = self.max_len + 1
            lengths = np.minimum(np.diff(self.seqs.offsets)[order], width)
            window = bs * self.bucket_batches
            for lo in range(0, len(order), window):
                part = slice(lo, lo + window)
                order[part] = order[part][np.argsort(lengths[part], kind="stable")]
        batches = [order[i : i + bs] for i in range(0, len(order), bs)]
        if self.bucket_by_length:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def steps(self, world_size: int = 1) -> int:
        """Optimizer steps per epoch on each of `world_size` data-parallel ranks."""
        return -(-len(self) // world_size)

    def epoch(
        self, epoch: int, start_step: int = 0, *, rank: int = 0, world_size: int = 1
    ) -> Iterator[TrainBatch]:
        """The epoch's batches from `start_step` on; with `world_size` > 1, rank `rank`'s share.

        Every rank builds the same batch list and takes batches rank, rank + W, ... (wrapping
        around so that every rank runs the same number of steps). A batch's negatives are seeded
        by (seed, epoch, its index in the list), so they are the same whichever rank draws them
        and no two ranks draw the same ones.
        """
        batches = self.batches_of(epoch)
        if world_size == 1:
            for step in range(start_step, len(batches)):
                yield self.batch(batches[step], np.random.default_rng([self.seed, epoch, step, 1]))
            return
        n = len(batches)
        for index in shard_indices(n, rank, world_size)[start_step:]:
            rng = np.random.default_rng([self.seed, epoch, index, 1])
            yield self.batch(batches[index % n], rng)

    def _width(self, users: np.ndarray, cap: int) -> int:
        """Padded width of a batch: its longest sequence (+1 spare slot), at most `cap`.

        Encoders number positions from the right, so dropping columns that are padding in every
        row leaves every output unchanged; the spare slot keeps BERT4Rec's append-[MASK] exact.
        """
        longest = int(np.diff(self.seqs.offsets)[users].max(initial=1))
        return min(cap, longest + 1)

    def _negatives(
        self, rng: np.random.Generator, users: np.ndarray, positives: np.ndarray
    ) -> np.ndarray:
        """`[*positives.shape, k]`: per position (`sample_negatives`) or shared by the batch
        (`shared_negatives`, already 0 at padding). Both draw from the batch's own generator,
        seeded by (seed, epoch, step), so a resumed epoch replays the same negatives."""
        draw = shared_negatives if self.negatives_shared else sample_negatives
        return draw(rng, self.seqs, users, positives, self.num_negatives, self.negatives_exclude)

    def batch(self, users: np.ndarray, rng: np.random.Generator) -> TrainBatch:
        if self.kind == "sequence":
            inputs = self.seqs.windows(users, self._width(users, self.max_len))
            seq_negatives = None
            if self.num_negatives > 0:  # cloze with a sampled loss: the label of a slot is its item
                neg = self._negatives(rng, users, inputs)
                neg[inputs == 0] = 0
                seq_negatives = torch.from_numpy(neg)
            return TrainBatch(
                torch.from_numpy(inputs), None, seq_negatives, torch.from_numpy(users)
            )
        win = self.seqs.windows(users, self._width(users, self.max_len + 1))
        inputs, targets = win[:, :-1], win[:, 1:].copy()
        targets[inputs == 0] = 0
        if self.positions == "last":
            targets[:, :-1] = 0
        negatives = None
        if self.num_negatives > 0:
            negatives = self._negatives(rng, users, targets)
            negatives[targets == 0] = 0
            negatives = torch.from_numpy(negatives)
        return TrainBatch(
            torch.from_numpy(np.ascontiguousarray(inputs)),
            torch.from_numpy(targets),
            negatives,
            torch.from_numpy(users),
        )
