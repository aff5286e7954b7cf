"""Rank of the target among its candidates, from model scores, with an explicit tie policy.

Ranks are 0-based: rank 0 means no other candidate is placed above the target. Ties matter
(LLM-ESR breaks them by sort order; a constant-score model then looks excellent), so the policy
is always explicit:

- ``pessimistic`` (default): number of OTHER candidates with score >= the target's.
  A model scoring every item equally gets the worst possible rank.
- ``optimistic``: number of other candidates with score > the target's.
- ``mean``: optimistic + ties / 2 (the expected rank under random tie breaking; fractional).
- ``random``: optimistic + a uniform integer in [0, ties], from a seeded torch Generator.

NaN scores are rejected: they compare false with everything and would silently improve ranks.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

TiePolicy = Literal["pessimistic", "optimistic", "mean", "random"]
TIE_POLICIES: tuple[str, ...] = ("pessimistic", "optimistic", "mean", "random")


def check_tie(tie: str) -> str:
    if tie not in TIE_POLICIES:
        raise ValueError(f"tie policy must be one of {TIE_POLICIES}, got {tie!r}")
    return tie


def _combine(
    above: torch.Tensor | None,
    above_or_tied: torch.Tensor | None,
    tie: str,
    tie_uniform: torch.Tensor | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Final float64 rank from the counts of strictly-better and better-or-equal candidates."""
    if tie == "pessimistic":
        assert above_or_tied is not None
        return above_or_tied.to(torch.float64)
    assert above is not None
    if tie == "optimistic":
        return above.to(torch.float64)
    assert above_or_tied is not None
    ties = (above_or_tied - above).to(torch.float64)
    if tie == "mean":
        return above.to(torch.float64) + ties / 2
    if tie_uniform is None:
        if generator is None:
            raise ValueError("tie='random' needs a seeded torch.Generator or tie_uniform values")
        tie_uniform = torch.rand(len(ties), generator=generator, dtype=torch.float64)
    u = tie_uniform.to(device=ties.device, dtype=torch.float64)
    if u.shape != ties.shape or torch.any((u < 0) | (u >= 1)):
        raise ValueError("tie_uniform must hold one value in [0, 1) per row")
    extra = torch.minimum(torch.floor(u * (ties + 1)), ties)
    return above.to(torch.float64) + extra


def _needs(tie: str) -> tuple[bool, bool]:
    """(needs the '>' count, needs the '>=' count)."""
    return tie != "pessimistic", tie != "optimistic"


def _use_numpy(scores: torch.Tensor, backend: str) -> bool:
    """numpy's compare-and-count is ~8x faster than torch's on CPU; torch stays on accelerators."""
    if backend not in ("auto", "numpy", "torch"):
        raise ValueError(f"backend must be 'auto', 'numpy' or 'torch', got {backend!r}")
    if backend == "auto":
        return scores.device.type == "cpu"
    if backend == "numpy" and scores.device.type != "cpu":
        raise ValueError("backend='numpy' needs CPU tensors")
    return backend == "numpy"


def _as_numpy(scores: torch.Tensor) -> np.ndarray:
    scores = scores.detach()
    if scores.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
        scores = scores.to(torch.float32)
    return scores.numpy()


def _check_nan(scores: torch.Tensor, first_column: int) -> None:
    if not scores.is_floating_point():
        return
    part = scores[:, first_column:]
    if part.numel() == 0:
        return
    # max() propagates NaN and never creates one (unlike sum with +inf and -inf), and it needs
    # no temporary array: the cheapest exact NaN test on CPU.
    if part.device.type == "cpu":
        bad = bool(np.isnan(np.max(_as_numpy(part))))
    else:
        bad = bool(torch.isnan(part).any())
    if bad:
        raise ValueError("scores contain NaN; fix the model (NaN would silently improve ranks)")


def rank_full(
    scores: torch.Tensor,
    targets: torch.Tensor,
    *,
    tie: str = "pessimistic",
    exclude: torch.Tensor | None = None,
    tie_uniform: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """0-based ranks of `targets` under full ranking; float64 [B] on the scores' device.

    scores: [B, n_items + 1]; column 0 is padding and never a candidate (its value is ignored).
    targets: [B] internal item ids in 1..n_items.
    exclude: optional [B, L] item ids removed from the candidate set (0 entries are ignored),
    e.g. the user's history when excluding seen items. The target itself is never removed, even
    when it also appears in `exclude`. Removing a candidate is the same as giving it score -inf,
    but stays correct when the model itself outputs -inf.
    backend: 'auto' (numpy for CPU tensors, torch otherwise), 'numpy' or 'torch'; same results.
    """
    check_tie(tie)
    if scores.ndim != 2:
        raise ValueError(
            f"full-ranking scores must be [batch, n_items + 1], got {tuple(scores.shape)}"
        )
    bsz, width = scores.shape
    targets = targets.detach().to(device=scores.device, dtype=torch.long)
    if targets.shape != (bsz,):
        raise ValueError(f"targets must be [{bsz}], got {tuple(targets.shape)}")
    if bsz == 0:
        return torch.zeros(0, dtype=torch.float64, device=scores.device)
    if int(targets.min()) < 1 or int(targets.max()) >= width:
        raise ValueError(f"targets must be item ids in 1..{width - 1}")
    _check_nan(scores, 1)
    drop_rows = drop_items = None
    if exclude is not None:
        exclude = exclude.detach().to(device=scores.device, dtype=torch.long)
        if exclude.ndim != 2 or exclude.shape[0] != bsz:
            raise ValueError(f"exclude must be [{bsz}, L], got {tuple(exclude.shape)}")
        if exclude.numel() and (int(exclude.min()) < 0 or int(exclude.max()) >= width):
            raise ValueError(f"exclude must hold item ids in 0..{width - 1}")
        keep = exclude > 0
        drop_rows = torch.arange(bsz, device=scores.device).unsqueeze(1).expand_as(exclude)[keep]
        drop_items = exclude[keep]
    need_gt, need_ge = _needs(tie)
    if _use_numpy(scores, backend):
        s = _as_numpy(scores)
        tg = targets.numpy()
        rows = np.arange(bsz)
        dr = None if drop_rows is None else drop_rows.numpy()
        di = None if drop_items is None else drop_items.numpy()
        # Count along the items axis of whichever layout is contiguous: [B, W] as usual, or
        # [W, B] for the items-major scores `parts.scorers.dot_all` returns on CPU (a transposed
        # view), which then reads memory in order instead of striding through it.
        items_major = s.T.flags.c_contiguous and not s.flags.c_contiguous
        a, axis = (s.T, 0) if items_major else (s, 1)

        def at(users: object, items: object) -> tuple[object, object]:
            return (items, users) if items_major else (users, items)

        t = np.expand_dims(a[at(rows, tg)], axis)

        def count_np(better: np.ndarray) -> torch.Tensor:
            better[at(slice(None), 0)] = False  # padding
            better[at(rows, tg)] = False  # the target is not one of the OTHER candidates
            if dr is not None:
                better[at(dr, di)] = False
            return torch.from_numpy(np.count_nonzero(better, axis=axis).astype(np.int64))

        above = count_np(a > t) if need_gt else None
        above_or_tied = count_np(a >= t) if need_ge else None
    else:
        rows_t = torch.arange(bsz, device=scores.device)
        target_score = scores[rows_t, targets].unsqueeze(1)

        def count(better: torch.Tensor) -> torch.Tensor:
            better[:, 0] = False  # padding
            better[rows_t, targets] = False  # the target is not one of the OTHER candidates
            if drop_rows is not None:
                better[drop_rows, drop_items] = False
            return better.sum(dim=1)

        above = count(scores > target_score) if need_gt else None
        above_or_tied = count(scores >= target_score) if need_ge else None
    ranks = _combine(above, above_or_tied, tie, tie_uniform, generator)
    return ranks.to(scores.device)


def rank_sampled(
    scores: torch.Tensor,
    *,
    tie: str = "pessimistic",
    tie_uniform: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """0-based ranks of the target in column 0 of `scores` [B, 1 + N]; float64 [B]."""
    check_tie(tie)
    if scores.ndim != 2 or scores.shape[1] < 1:
        raise ValueError(
            f"sampled scores must be [batch, 1 + n_negatives], got {tuple(scores.shape)}"
        )
    _check_nan(scores, 0)
    need_gt, need_ge = _needs(tie)
    if _use_numpy(scores, backend):
        s = _as_numpy(scores)
        t, others = s[:, :1], s[:, 1:]

        def count_np(better: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.count_nonzero(better, axis=1).astype(np.int64))

        above = count_np(others > t) if need_gt else None
        above_or_tied = count_np(others >= t) if need_ge else None
    else:
        target_score, others_t = scores[:, :1], scores[:, 1:]
        above = (others_t > target_score).sum(dim=1) if need_gt else None
        above_or_tied = (others_t >= target_score).sum(dim=1) if need_ge else None
    return _combine(above, above_or_tied, tie, tie_uniform, generator).to(scores.device)
