"""Top-K metrics from 0-based target ranks (one target per user, so every metric is a user mean).

HR@K = mean(rank < K); NDCG@K = mean(1/log2(rank + 2) if rank < K else 0) (a single relevant item
has ideal DCG 1); MRR@K = mean(1/(rank + 1) if rank < K else 0). Fractional ranks (tie policy
'mean') are used as they are. An empty set of users gives NaN, never 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_KS: tuple[int, ...] = (5, 10, 20)
METRICS: tuple[str, ...] = ("HR", "NDCG", "MRR")


def check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(k) for k in ks)
    if not out or any(k < 1 for k in out) or len(set(out)) != len(out):
        raise ValueError(f"ks must be distinct positive integers, got {tuple(ks)}")
    return tuple(sorted(out))


def metric_names(ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    """Column order used everywhere: HR@k..., NDCG@k..., MRR@k..."""
    ks = check_ks(ks)
    return [f"{m}@{k}" for m in METRICS for k in ks]


def compute_metrics(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """{'HR@10': ..., 'NDCG@10': ..., 'MRR@10': ...} for every k in `ks`."""
    ks = check_ks(ks)
    r = np.asarray(ranks, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"ranks must be a 1-d array, got shape {r.shape}")
    if r.size and (not np.all(np.isfinite(r)) or np.any(r < 0)):
        raise ValueError("ranks must be finite and >= 0")
    out: dict[str, float] = {}
    if r.size == 0:
        return {name: float("nan") for name in metric_names(ks)}
    gain = 1.0 / np.log2(r + 2.0)
    recip = 1.0 / (r + 1.0)
    for k in ks:
        out[f"HR@{k}"] = float(np.mean(r < k))
    for k in ks:
        out[f"NDCG@{k}"] = float(np.mean(np.where(r < k, gain, 0.0)))
    for k in ks:
        out[f"MRR@{k}"] = float(np.mean(np.where(r < k, recip, 0.0)))
    return out
