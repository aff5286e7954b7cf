"""The protocol stamp carried by every result: what was evaluated, how, and on which data.

Sampled and full-ranking numbers differ by up to 10x and models can swap places between them, so
a number without its protocol is meaningless; the stamp makes every result self-describing and
lets the report refuse to mix incomparable rows.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, set, frozenset)):
        return sorted(obj) if isinstance(obj, (set, frozenset)) else str(obj)
    raise TypeError(f"config value of type {type(obj).__name__} is not JSON-serialisable")


def canonical_json(obj: Any) -> str:
    """Key-sorted, whitespace-free JSON (NaN/inf rejected) so equal configs hash equally."""
    return json.dumps(
        obj,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_jsonable,
    )


def config_hash(config: dict[str, Any] | BaseModel) -> str:
    """SHA-256 hex digest of the canonical JSON of a (model) configuration."""
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()


class ProtocolStamp(BaseModel):
    """Everything that defines an evaluation result (protocol fields, then model fields)."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    # data
    dataset: str
    dataset_hash: str
    split: str
    n_users: int  # evaluated users
    n_items: int
    # protocol
    protocol: str  # 'full', 'uniN' or 'popN'
    n_negatives: int | None  # None for full ranking
    negatives_seed: int | None  # None for full ranking
    negatives_hash: str | None  # fingerprint of the evaluated users' negatives; None for full
    tie_policy: str
    tie_seed: int | None  # None unless tie_policy == 'random'
    exclude_history: bool
    max_len: int
    min_history: int
    # groups
    head_rule: str
    popularity: str
    short_threshold: float
    # model
    model_name: str
    model_config_hash: str | None = None
    train_seed: int | None = None
    h2rec_version: str

    @property
    def sampled(self) -> bool:
        return self.n_negatives is not None

    def protocol_key(self) -> tuple[Any, ...]:
        """Fields that must be equal for two results to share a table (max_len excluded)."""
        return (
            self.dataset_hash,
            self.split,
            self.protocol,
            self.negatives_seed,
            self.negatives_hash,
            self.tie_policy,
            self.tie_seed,
            self.exclude_history,
            self.min_history,
            self.head_rule,
            self.popularity,
            self.short_threshold,
        )

    def describe(self) -> str:
        """One line for table captions and logs."""
        seed = "-" if self.negatives_seed is None else str(self.negatives_seed)
        tie = (
            self.tie_policy
            if self.tie_seed is None
            else f"{self.tie_policy} (seed {self.tie_seed})"
        )
        return (
            f"protocol {self.protocol} | split {self.split} | ties {tie} | "
            f"exclude_history {str(self.exclude_history).lower()} | negatives seed {seed} | "
            f"dataset {self.dataset} {self.dataset_hash[:12]} | {self.n_users} users | "
            f"head: {self.head_rule} | short < {self.short_threshold:g}"
        )
