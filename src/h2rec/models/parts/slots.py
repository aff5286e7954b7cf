"""Selecting the trained slots of a `[B, L, ...]` batch."""

from __future__ import annotations

from torch import Tensor


def take_slots(x: Tensor, flat: Tensor) -> Tensor:
    """`x [B, L, ...]` at the slots `flat = row * L + col` -> `[N, ...]`: `x[rows, cols]` as a
    1-D `index_select` on the flattened slots. Its backward is an `index_add_`, where advanced
    indexing's is a sorting `index_put_` with accumulation (several times slower on CPU)."""
    return x.reshape(-1, *x.shape[2:]).index_select(0, flat)
