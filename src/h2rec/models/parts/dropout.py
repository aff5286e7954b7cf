"""Inverted dropout with cheap masks on CPU.

Why: on CPU, `torch.bernoulli_` (what `nn.Dropout` and the attention dropout of
`scaled_dot_product_attention` use) draws one number at a time and was the single largest cost of a
SASRec training step at d = 64 (23% of it; 18% of H2Rec's). Two cheaper draws with the same
distribution (each element kept independently with probability 1 - p, then scaled by 1 / (1 - p)):

- p a multiple of 1/2, 1/4, 1/16 or 1/256 (dyadic, e.g. the 0.5 of SASRec, H2Rec and LLM-ESR):
  uniform random BITS. A uniform k-bit integer v is >= p 2^k with probability exactly 1 - p, so one
  64-bit draw serves 64 / k elements; a 256-row lookup table turns each random byte into its
  8 / k mask values (0 or 1 / (1 - p)) at once. Measured at p = 0.5 on a [256, 50, 64] tensor:
  about 5x faster than the uniform-float mask below.
- any other p: `torch.rand >= p`, vectorised, about 3.5x faster than `bernoulli_`.

Both draw from torch's global CPU generator, so runs stay seeded and resumable. On CUDA the fused
kernel of `F.dropout` is already fast and is used unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_BITS_PER_ELEMENT = (1, 2, 4, 8)
_TABLES: dict[tuple[int, int, torch.dtype, torch.device], Tensor] = {}


def dyadic(p: float) -> tuple[int, int] | None:
    """(k, j) with p = j / 2^k for the smallest k in (1, 2, 4, 8), or None."""
    for k in _BITS_PER_ELEMENT:
        j = p * (1 << k)
        if j == int(j):
            return k, int(j)
    return None


def _byte_table(k: int, j: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """`[256, 8 // k]`: for each byte, its 8 / k k-bit fields mapped to 0 (field < j, dropped)
    or 1 / (1 - p) (kept), p = j / 2^k."""
    key = (k, j, dtype, device)
    table = _TABLES.get(key)
    if table is None:
        shifts = torch.arange(0, 8, k)
        fields = (torch.arange(256).unsqueeze(-1) >> shifts) & ((1 << k) - 1)
        scale = 1.0 / (1.0 - j / (1 << k))
        table = _TABLES[key] = ((fields >= j).to(torch.float64) * scale).to(dtype).to(device)
    return table


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, like: Tensor) -> Tensor:
    """0 or 1 / (1 - p) per element, kept with probability 1 - p, in `like`'s dtype and device.
    For 0 < p < 1 on CPU (see the module docstring for how it is drawn)."""
    n = math.prod(shape)
    found = dyadic(p)
    if found is None:
        return torch.rand(shape, dtype=like.dtype, device=like.device).ge_(p).mul_(1.0 / (1.0 - p))
    k, j = found
    per_byte = 8 // k
    n_words = -(-n // (8 * per_byte))  # 64-bit draws needed: 8 bytes x per_byte fields each
    # the whole int64 range: every one of the 64 bits uniform (`random_()` leaves the sign bit 0)
    words = torch.randint(-(2**63), 2**63 - 1, (n_words,), dtype=torch.int64, device=like.device)
    table = _byte_table(k, j, like.dtype, like.device)
    values = F.embedding(words.view(torch.uint8).long(), table)  # [8 n_words, per_byte]
    return values.view(-1)[:n].view(shape)


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """`F.dropout(x, p, training)` in distribution, with a cheap mask on CPU."""
    if not training or p == 0.0:
        return x
    if x.is_cuda or p >= 1.0:
        return F.dropout(x, p, True)
    return x * keep_mask(x.shape, p, x)


class Dropout(nn.Module):
    """Drop-in for `nn.Dropout` using `dropout` above."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
