"""Item popularity groups shared by statistics and evaluation.

The paper's head = top 20% of items by training interactions; ties at the boundary are broken
by internal id so the split is deterministic and exactly ceil(20% of items) long.
"""

from __future__ import annotations

import math

import numpy as np

LLMESR_GROUP_BOUNDARIES = (10, 30, 60, 100)


def head_mask(popularity: np.ndarray, head_fraction: float = 0.2) -> np.ndarray:
    """Boolean mask over internal ids (index 0 = padding, never head) of the top items."""
    counts = np.asarray(popularity)[1:]
    n_head = math.ceil(round(head_fraction * len(counts), 9))  # 0.55 * 100 is 55.000000000000014
    order = np.lexsort((np.arange(len(counts)), -counts))  # by count desc, then id asc
    mask = np.zeros(len(counts) + 1, dtype=bool)
    mask[order[:n_head] + 1] = True
    return mask


def threshold_head_mask(popularity: np.ndarray, threshold: int) -> np.ndarray:
    """LLM-ESR's `ts_item` rule: head = items with popularity >= threshold."""
    mask = np.asarray(popularity) >= threshold
    mask[0] = False
    return mask


def count_groups(
    popularity: np.ndarray, boundaries: tuple[int, ...] = LLMESR_GROUP_BOUNDARIES
) -> np.ndarray:
    """Group index per item from count boundaries, e.g. [<10, 10-29, 30-59, 60-99, >=100]."""
    return np.searchsorted(np.asarray(boundaries), np.asarray(popularity), side="right")
