"""User groups for head/tail reporting: the paper's whole claim is a head/tail comparison.

Every evaluated user has exactly one target, so item groups become user groups through the
target item. Groups (each is a partition of the evaluated users):

- ``head`` / ``tail``: head = the top ``head_fraction`` (default 20%) of items by popularity, ties
  broken by internal id (`data.popularity.head_mask`), or LLM-ESR's count rule
  ``popularity >= head_threshold`` (its ``ts_item``) when a threshold is given.
- ``pop a-b``: LLM-ESR / H2Rec's five count buckets (boundaries 10, 30, 60, 100).
- ``pop Q1``..``pop Q5``: five equal-size item groups by popularity (Q1 least popular), cut from
  the same (count desc, id asc) order as the head, so Q5 == head at the default 20%.
- ``short`` / ``long``: history length (untruncated) < / >= ``short_threshold``; default = the
  median history length of the evaluated users. LLM-ESR counts the history capped at max_len;
  the two agree whenever the threshold is <= max_len.

Popularity = interactions per item in the training split (default), or in all splits
(``popularity="all"``, what LLM-ESR's ``get_item_pop`` uses for its ``ts_item`` rule).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from h2rec.data.dataset import Dataset
from h2rec.data.popularity import (
    LLMESR_GROUP_BOUNDARIES,
    count_groups,
    head_mask,
    threshold_head_mask,
)

PopularitySource = Literal["train", "all"]


@dataclass(frozen=True)
class GroupSpec:
    """How evaluated users are grouped; stored (resolved) in every result's stamp."""

    head_fraction: float = 0.2
    head_threshold: int | None = None
    popularity: PopularitySource = "train"
    boundaries: tuple[int, ...] = LLMESR_GROUP_BOUNDARIES
    n_quantiles: int = 5
    short_threshold: float | None = None  # None: median history length of the evaluated users

    def __post_init__(self) -> None:
        if not 0.0 < self.head_fraction < 1.0:
            raise ValueError(f"head_fraction must be in (0, 1), got {self.head_fraction}")
        if self.head_threshold is not None and self.head_threshold < 1:
            raise ValueError(f"head_threshold must be >= 1, got {self.head_threshold}")
        if self.popularity not in ("train", "all"):
            raise ValueError(f"popularity must be 'train' or 'all', got {self.popularity!r}")
        b = self.boundaries
        if not b or any(x < 1 for x in b) or list(b) != sorted(set(b)):
            raise ValueError(f"boundaries must be increasing positive counts, got {b}")
        if self.n_quantiles < 1:
            raise ValueError(f"n_quantiles must be >= 1, got {self.n_quantiles}")

    @property
    def head_rule(self) -> str:
        if self.head_threshold is not None:
            return f"{self.popularity} count >= {self.head_threshold}"
        return f"top {self.head_fraction:.0%} by {self.popularity} count"


def item_popularity(ds: Dataset, source: PopularitySource = "train") -> np.ndarray:
    """Interactions per internal item id (index 0 = padding = 0)."""
    if source == "train":
        return ds.item_popularity("train")
    return ds.item_popularity("train", "valid", "test")


def bucket_names(boundaries: tuple[int, ...]) -> list[str]:
    """'pop 0-9', 'pop 10-29', ..., 'pop 100+' for boundaries (10, 30, 60, 100)."""
    edges = [0, *boundaries]
    names = [f"pop {lo}-{hi - 1}" for lo, hi in itertools.pairwise(edges)]
    return [*names, f"pop {edges[-1]}+"]


def quantile_groups(popularity: np.ndarray, n_groups: int = 5) -> np.ndarray:
    """Group per internal id: 0 = least popular ... n_groups-1 = most popular; padding = -1.

    Items are ordered by (count desc, id asc) and cut into n_groups near-equal chunks (larger
    chunks first), so the most popular chunk is exactly `head_mask(popularity, 1/n_groups)`.
    """
    counts = np.asarray(popularity)[1:]
    order = np.lexsort((np.arange(len(counts)), -counts))
    group = np.full(len(counts) + 1, -1, dtype=np.int64)
    for g, chunk in enumerate(np.array_split(order, n_groups)):
        group[chunk + 1] = n_groups - 1 - g
    return group


def item_head_mask(popularity: np.ndarray, spec: GroupSpec) -> np.ndarray:
    """Boolean mask over internal ids (index 0 = padding, never head) of the head items."""
    if spec.head_threshold is not None:
        return threshold_head_mask(popularity, spec.head_threshold)
    return head_mask(popularity, spec.head_fraction)


def user_groups(
    targets: np.ndarray,
    history_lengths: np.ndarray,
    popularity: np.ndarray,
    spec: GroupSpec,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Boolean masks over the evaluated users, per group name, and the resolved group settings."""
    targets = np.asarray(targets, dtype=np.int64)
    lengths = np.asarray(history_lengths)
    groups: dict[str, np.ndarray] = {}
    head = item_head_mask(popularity, spec)
    groups["head"] = head[targets]
    groups["tail"] = ~head[targets]
    bucket = count_groups(popularity, spec.boundaries)[targets]
    for g, name in enumerate(bucket_names(spec.boundaries)):
        groups[name] = bucket == g
    quint = quantile_groups(popularity, spec.n_quantiles)[targets]
    for g in range(spec.n_quantiles):
        groups[f"pop Q{g + 1}"] = quint == g
    threshold = spec.short_threshold
    if threshold is None:
        threshold = float(np.median(lengths)) if len(lengths) else 0.0
    groups["short"] = lengths < threshold
    groups["long"] = lengths >= threshold
    info = {
        "head_rule": spec.head_rule,
        "head_items": int(head.sum()),
        "popularity": spec.popularity,
        "boundaries": list(spec.boundaries),
        "n_quantiles": spec.n_quantiles,
        "short_threshold": float(threshold),
        "short_threshold_rule": "given" if spec.short_threshold is not None else "median",
    }
    return groups, info
