"""A value derived from tensors, reused while none of them changed.

Why: models whose output item table is computed (H2Rec's per-level rows, LLM-ESR's adapter,
CCFRec's Q-Former, URL4DR's quantiser, PCR-CA's auto-encoder) rebuild it only when a weight
changed. A tensor's storage pointer and in-place version counter change with every optimiser
step or `load_state_dict`, so together they tell whether a cached table is stale without hashing
any values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor, nn

T = TypeVar("T")


def no_grad_eval(module: nn.Module) -> bool:
    """True in eval mode with autograd off: where a cached table may be served."""
    return not (module.training or torch.is_grad_enabled())


class TensorCache(Generic[T]):
    """`get(tensors, compute)`: compute's value, recomputed when any tensor was replaced or
    modified in place (or `extra` differs) since the last call; `clear()` forgets it."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._value: T | None = None

    def get(self, tensors: Iterable[Tensor], compute: Callable[[], T], extra: tuple = ()) -> T:
        key = (*extra, *((t.data_ptr(), t._version) for t in tensors))
        if self._value is None or self._key != key:
            self._value, self._key = compute(), key
        return self._value

    def clear(self) -> None:
        self._key = self._value = None

    @property
    def empty(self) -> bool:
        return self._value is None
