"""The canonical prepared dataset every later stage reads: ids, sequences, item text, codes, split.

Internal ids are contiguous and 1-based for users and items; 0 is reserved for padding. The
interaction arrays are sorted by (user, time) so each user's sequence is a contiguous slice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

SCHEMA_VERSION = 1
TRAIN, VALID, TEST = 0, 1, 2
SPLIT_NAMES = {"train": TRAIN, "valid": VALID, "test": TEST}
PAD = 0


@dataclass(eq=False)
class Dataset:
    """A prepared dataset held in memory (see `h2rec.data.cache` for its on-disk form)."""

    name: str
    user_ids: np.ndarray  # external user ids, index = internal id; [0] is "" (padding)
    item_ids: np.ndarray  # external item ids, index = internal id; [0] is "" (padding)
    inter_user: np.ndarray  # int32, sorted ascending
    inter_item: np.ndarray  # int32
    inter_split: np.ndarray  # int8: 0 train, 1 valid, 2 test
    inter_time: np.ndarray | None = None  # float64 unix seconds, when known
    inter_rating: np.ndarray | None = None  # float32, when known
    items: pl.DataFrame | None = None  # item (1..n), item_id, text fields..., text
    users: pl.DataFrame | None = None  # user (1..n), user_id, attributes...
    codes: np.ndarray | None = None  # int64 [n_items + 1, L]; row 0 is -1 (padding)
    code_source: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # the prepared folder it was loaded from / saved to (for side files)

    # ---- sizes -------------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.user_ids) - 1

    @property
    def n_items(self) -> int:
        return len(self.item_ids) - 1

    @property
    def n_interactions(self) -> int:
        return len(self.inter_item)

    @cached_property
    def offsets(self) -> np.ndarray:
        """offsets[u]:offsets[u+1] slices user u's interactions (length n_users + 2)."""
        counts = np.bincount(self.inter_user, minlength=self.n_users + 1)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    @property
    def seq_lengths(self) -> np.ndarray:
        """Number of interactions per user, index = internal user id (index 0 is 0)."""
        return np.diff(self.offsets)

    # ---- access ------------------------------------------------------------------------------
    def sequence(self, user: int, splits: tuple[str, ...] | None = None) -> np.ndarray:
        """User's items in time order, optionally only those in the given splits."""
        lo, hi = self.offsets[user], self.offsets[user + 1]
        items = self.inter_item[lo:hi]
        if splits is None:
            return items
        mask = np.isin(self.inter_split[lo:hi], [SPLIT_NAMES[s] for s in splits])
        return items[mask]

    def split_mask(self, *splits: str) -> np.ndarray:
        return np.isin(self.inter_split, [SPLIT_NAMES[s] for s in splits])

    def item_popularity(self, *splits: str) -> np.ndarray:
        """Interaction count per internal item id (index 0 = padding = 0); default: training split."""
        mask = self.split_mask(*(splits or ("train",)))
        return np.bincount(self.inter_item[mask], minlength=self.n_items + 1)

    @cached_property
    def item_index(self) -> dict[str, int]:
        """External item id -> internal id."""
        return {str(e): i for i, e in enumerate(self.item_ids) if i > 0}

    @cached_property
    def user_index(self) -> dict[str, int]:
        return {str(e): i for i, e in enumerate(self.user_ids) if i > 0}

    @property
    def item_text(self) -> list[str]:
        """Assembled text per internal item id 1..n (index 0 of the returned list is item 1)."""
        if self.items is None or "text" not in self.items.columns:
            return [""] * self.n_items
        return self.items["text"].to_list()

    @property
    def has_timestamps(self) -> bool:
        return self.inter_time is not None

    # ---- identity ----------------------------------------------------------------------------
    def content_hash(self) -> str:
        """SHA-256 over everything a model could see; stamps every downstream artefact."""
        h = hashlib.sha256()
        h.update(f"h2rec-dataset-v{SCHEMA_VERSION}".encode())

        def arr(a: np.ndarray | None, dtype: str) -> None:
            h.update(b"\x00none" if a is None else np.ascontiguousarray(a, dtype=dtype).tobytes())

        h.update("\x1f".join(map(str, self.user_ids)).encode())
        h.update("\x1e".join(map(str, self.item_ids)).encode())
        arr(self.inter_user, "<i4")
        arr(self.inter_item, "<i4")
        arr(self.inter_split, "<i1")
        arr(self.inter_time, "<f8")
        arr(self.inter_rating, "<f4")
        h.update("\x1e".join(self.item_text).encode())
        arr(self.codes, "<i8")
        return h.hexdigest()

    def counts(self) -> dict[str, int]:
        return {
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "train": int((self.inter_split == TRAIN).sum()),
            "valid": int((self.inter_split == VALID).sum()),
            "test": int((self.inter_split == TEST).sum()),
        }
