"""Row selection by 1-D `index_select`, whose backward is an `index_add_`.

Advanced indexing (`x[ids]`, `x[rows, cols]`) has a sorting `index_put_` with accumulation as its
backward, several times slower on CPU; these are the same values and gradients. With more than one
CPU thread that `index_put_` also adds repeated ids in a varying order (atomic adds), so a model
that gathers a differentiable table at repeated ids with `x[ids]` is not bit-reproducible there
(URL4DR and PCR-CA were; `tests/training/test_resume_every_model.py`). On one thread the two are
bit-identical.
"""

from __future__ import annotations

from torch import Tensor


def take_rows(table: Tensor, ids: Tensor) -> Tensor:
    """`table [R, ...]` at `ids` of any shape -> `[*ids.shape, ...]`: `table[ids]`."""
    return table.index_select(0, ids.reshape(-1)).view(*ids.shape, *table.shape[1:])


def take_slots(x: Tensor, flat: Tensor) -> Tensor:
    """`x [B, L, ...]` at the slots `flat = row * L + col` -> `[N, ...]`: `x[rows, cols]`."""
    return x.reshape(-1, *x.shape[2:]).index_select(0, flat)
