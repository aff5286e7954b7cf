"""Which items a model recommends, not only whether it hits: exposure of head and tail items.

Accuracy by target group (head/tail users) cannot tell a model that ranks tail targets well from
one that recommends few tail items at all; these catalogue-side figures can. Over every evaluated
user's top-k list under full ranking (the model's real recommendations; sampled protocols have no
list), with popularity and the head set exactly as the evaluator's groups use them:

- ``head_share@k``: share of recommended slots that hold head items. Its reference is
  ``target_head_share``, the share of the evaluated users' targets that are head items (what a
  recommender exposing items in proportion to demand would give).
- ``arp@k``: average recommendation popularity (Abdollahpouri et al., 2019): mean training
  popularity of the recommended items, over all slots.
- ``coverage@k``: distinct recommended items / catalogue size.
- ``gini@k``: Gini index of how often each catalogue item is recommended (0: every item equally,
  -> 1: all slots on one item); RecBole's GiniIndex.
"""

from __future__ import annotations

import numpy as np


def gini(counts: np.ndarray) -> float:
    """Gini index of non-negative counts (sorted-rank form; 0 for all-equal or all-zero)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), float(x.sum())
    if n == 0 or total == 0.0:
        return 0.0
    rank = np.arange(1, n + 1, dtype=np.float64)
    return float(((2 * rank - n - 1) * x).sum() / (n * total))


def exposure(
    top: np.ndarray, popularity: np.ndarray, head: np.ndarray, targets: np.ndarray
) -> dict[str, float]:
    """Exposure figures of `top` ([U, k] internal item ids, >= 1) for one k.

    `popularity` and `head` are indexed by internal id (index 0 = padding); `targets` are the
    evaluated users' targets, for the reference `target_head_share`."""
    top = np.asarray(top, dtype=np.int64)
    if top.ndim != 2 or top.shape[1] == 0:
        raise ValueError(f"top must be [users, k] with k >= 1, got shape {top.shape}")
    n_items = len(popularity) - 1
    if top.size and (top.min() < 1 or top.max() > n_items):
        raise ValueError(f"recommended ids must be in 1..{n_items}")
    k = top.shape[1]
    counts = np.bincount(top.ravel(), minlength=n_items + 1)[1:]
    return {
        f"head_share@{k}": float(np.asarray(head)[top].mean()),
        f"arp@{k}": float(np.asarray(popularity, dtype=np.float64)[top].mean()),
        f"coverage@{k}": float((counts > 0).sum() / n_items),
        f"gini@{k}": gini(counts),
        "target_head_share": float(np.asarray(head)[np.asarray(targets)].mean()),
    }
