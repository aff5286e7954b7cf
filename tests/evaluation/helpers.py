"""Small datasets, score functions and a brute-force reference evaluator for evaluation tests."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from h2rec.data.dataset import SPLIT_NAMES, Dataset
from h2rec.data.preprocess import build_dataset

from ..data.helpers import config, raw_from_rows


def random_rows(
    seed: int, n_users: int = 40, n_items: int = 30, max_len: int = 14
) -> list[tuple[str, str, float]]:
    """Random (user, item, time) rows with repeats, skewed popularity and some short users."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1) ** 0.8
    p /= p.sum()
    rows = []
    for u in range(n_users):
        length = int(rng.integers(1, max_len + 1))
        items = rng.choice(n_items, size=length, p=p)
        times = np.sort(rng.integers(0, 1000, size=length))
        rows += [(f"u{u}", f"i{i}", float(t)) for i, t in zip(items, times, strict=True)]
    return rows


def make_dataset(rows: list[tuple[Any, ...]], **sections: Any) -> Dataset:
    return build_dataset(raw_from_rows(rows), config(**sections))


def random_dataset(seed: int = 0, **kw: Any) -> Dataset:
    return make_dataset(random_rows(seed, **kw))


def popularity_score_fn(ds: Dataset):
    """MostPop: every user gets the training popularity of each item (many ties)."""
    pop = torch.as_tensor(ds.item_popularity("train"), dtype=torch.float32)

    def score(hist: torch.Tensor, cand: torch.Tensor | None) -> torch.Tensor:
        full = pop.expand(hist.shape[0], -1)
        return full.clone() if cand is None else full.gather(1, cand)

    return score


def hashed_score_fn(n_items: int, modulus: int = 7):
    """Deterministic integer scores per (history, item) with plenty of exact ties.

    Row-independent, so scoring one user alone or in a batch gives identical numbers.
    """

    def full(hist: torch.Tensor) -> torch.Tensor:
        h = (hist * torch.arange(1, hist.shape[1] + 1)).sum(1, keepdim=True)
        items = torch.arange(n_items + 1).unsqueeze(0)
        return ((h * 31 + items * 17 + (items * h) % 5) % modulus).to(torch.float64)

    def score(hist: torch.Tensor, cand: torch.Tensor | None) -> torch.Tensor:
        s = full(hist)
        return s if cand is None else s.gather(1, cand)

    return score


def constant_score_fn(n_items: int):
    def score(hist: torch.Tensor, cand: torch.Tensor | None) -> torch.Tensor:
        width = n_items + 1 if cand is None else cand.shape[1]
        return torch.zeros(hist.shape[0], width)

    return score


# ---- an independent, per-user reference ------------------------------------------------------


def naive_examples(ds: Dataset, split: str, max_len: int, min_history: int = 0):
    """Per-user Python construction: (users, targets, padded histories, lengths, full histories)."""
    code = SPLIT_NAMES[split]
    out = []
    for u in range(1, ds.n_users + 1):
        items = list(ds.sequence(u))
        codes = list(ds.inter_split[ds.offsets[u] : ds.offsets[u + 1]])
        if code not in codes:
            continue
        j = codes.index(code)
        hist = items[:j]
        if len(hist) < min_history:
            continue
        window = hist[-max_len:] if hist else []
        padded = [0] * (max_len - len(window)) + window
        out.append((u, items[j], padded, len(hist), hist, set(items)))
    return out


def naive_rank(scores: list[float], target_col: int, candidate_cols: list[int], tie: str) -> float:
    t = scores[target_col]
    others = [c for c in candidate_cols if c != target_col]
    ge = sum(1 for c in others if scores[c] >= t)
    gt = sum(1 for c in others if scores[c] > t)
    if tie == "pessimistic":
        return float(ge)
    if tie == "optimistic":
        return float(gt)
    if tie == "mean":
        return gt + (ge - gt) / 2
    raise ValueError(tie)


def naive_metrics(ranks: list[float], ks: tuple[int, ...]) -> dict[str, float]:
    n = len(ranks)
    out = {}
    for k in ks:
        out[f"HR@{k}"] = sum(1 for r in ranks if r < k) / n
        out[f"NDCG@{k}"] = sum(1 / math.log2(r + 2) for r in ranks if r < k) / n
        out[f"MRR@{k}"] = sum(1 / (r + 1) for r in ranks if r < k) / n
    return out


def brute_force_ranks(
    ds: Dataset,
    score_fn,
    *,
    split: str,
    max_len: int,
    tie: str,
    exclude_history: bool = False,
    negatives: dict[int, list[int]] | None = None,
    min_history: int = 1,
) -> tuple[list[int], list[float]]:
    """One user at a time, plain Python loops; `negatives` (user -> ids) selects sampled mode."""
    users, ranks = [], []
    for u, target, padded, _, hist, _ in naive_examples(ds, split, max_len, min_history):
        h = torch.tensor([padded], dtype=torch.long)
        if negatives is None:
            scores = score_fn(h, None)[0].tolist()
            cands = list(range(1, ds.n_items + 1))
            if exclude_history:
                seen = set(hist) - {target}
                cands = [c for c in cands if c not in seen]
            ranks.append(naive_rank(scores, target, cands, tie))
        else:
            cand = [target, *negatives[u]]
            scores = score_fn(h, torch.tensor([cand]))[0].tolist()
            ranks.append(naive_rank(scores, 0, list(range(len(cand))), tie))
        users.append(u)
    return users, ranks
