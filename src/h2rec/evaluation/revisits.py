"""Revisits: targets the user has already interacted with (repeat consumption).

Yelp users go back to businesses: 6.7% of its test targets are items already in the user's
history (Beauty: none), and full ranking does not exclude history by default (LLM-ESR's protocol
does not deduplicate either). A model that learns to re-recommend history items collects those
hits nearly for free, and since revisits are spread over head and tail items alike, they can
dominate a group's metric: on Yelp, half of BERT4Rec's top-10 hits are revisits and its tail
NDCG@10 falls from 0.026 to 0.004 without them. Splitting metrics into revisit and new targets
tells "ranks unseen items well" apart from "repeats the history".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from h2rec.data.dataset import Dataset
from h2rec.evaluation.examples import EvalExamples, padded_full_histories
from h2rec.evaluation.metrics import compute_metrics


def revisit_mask(ds: Dataset, ex: EvalExamples) -> np.ndarray:
    """bool [U]: whether each example's target occurs anywhere in the user's earlier history
    (untruncated, not only the last max_len items the model sees)."""
    if len(ex) == 0:
        return np.zeros(0, dtype=bool)
    out = np.zeros(len(ex), dtype=bool)
    for start in range(0, len(ex), 4096):  # bounded memory for long histories
        rows = np.arange(start, min(start + 4096, len(ex)))
        hist = padded_full_histories(ds, ex, rows)
        out[rows] = (hist == ex.targets[rows, None]).any(axis=1)
    return out


def revisit_breakdown(
    ranks: np.ndarray,
    revisit: np.ndarray,
    groups: Mapping[str, np.ndarray],
    ks: Sequence[int] = (10,),
) -> dict[str, dict[str, float]]:
    """Metrics of every group (plus "overall") on all its users, on its revisit targets only and
    on its new targets only, with each part's user count and the share of the group's hits@k
    that are revisits.

    `ranks`, `revisit` and every group mask are aligned per evaluated user (an `Evaluator`'s
    order, which `EvalResult.users` keeps)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    revisit = np.asarray(revisit, dtype=bool)
    if ranks.shape != revisit.shape:
        raise ValueError(f"ranks {ranks.shape} and revisit mask {revisit.shape} differ in shape")
    out: dict[str, dict[str, float]] = {}
    for name, mask in {"overall": np.ones_like(revisit), **groups}.items():
        mask = np.asarray(mask, dtype=bool)
        row: dict[str, float] = {
            "n_users": float(mask.sum()),
            "revisit_share": float(revisit[mask].mean()) if mask.any() else float("nan"),
        }
        for part, sel in (("all", mask), ("revisits", mask & revisit), ("new", mask & ~revisit)):
            row.update({f"{part} {m}": v for m, v in compute_metrics(ranks[sel], ks).items()})
        for k in ks:
            hits = ranks[mask] < k
            row[f"hits@{k} that are revisits"] = (
                float((hits & revisit[mask]).sum() / hits.sum()) if hits.any() else float("nan")
            )
        out[name] = row
    return out


def breakdown_json(out: dict[str, dict[str, float]]) -> dict[str, dict[str, float | None]]:
    """`revisit_breakdown`'s output with NaN (an empty part, e.g. no revisits on Beauty) as None,
    so the file is standard JSON."""
    return {g: {k: None if v != v else v for k, v in row.items()} for g, row in out.items()}
