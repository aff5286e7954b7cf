"""Scorers: user vectors x item table -> logits.

Output embeddings are tied to the input table (the item representation's `weight_for_scoring`).
The final dot products run in float32 with autocast disabled, and logits are float32: with bf16's
8-bit mantissa, close scores collapse into ties, which changes ranks (and pessimistic tie-breaking
then penalises every tied target). The cost is one [N, d] x [d, n_items] product per batch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from h2rec.models.parts.take import take_rows


def dot_all(user: Tensor, weights: Tensor) -> Tensor:
    """`[N, d] x [M, d] -> [N, M]` in float32, outside autocast.

    On CPU without autograd (evaluation, inference) the product is computed items-major,
    `weights @ user.T`, and returned as its transposed view (not contiguous): with d = 64 and
    ~10^4 items that is 1.5-2.5x faster on CPU (MKL's small-inner-dimension kernels), and the
    evaluator's ranking reads the items-major layout directly (`evaluation.ranking.rank_full`).
    """
    with torch.autocast(device_type=user.device.type, enabled=False):
        u, w = user.float(), weights.float()
        if u.device.type == "cpu" and not torch.is_grad_enabled():
            return (w @ u.t()).t()
        return u @ w.t()


def dot_items(user: Tensor, item_vecs: Tensor) -> Tensor:
    """`[N, d] x [N, k, d] -> [N, k]` in float32, outside autocast.

    A broadcast product and sum, not `einsum`/`bmm`: for the few candidates per row of sampled
    losses (k = 1..100) a batch of N tiny matrix products is 1.5-3x slower on CPU, forward and
    backward."""
    with torch.autocast(device_type=user.device.type, enabled=False):
        return (user.float().unsqueeze(-2) * item_vecs.float()).sum(-1)


class DotScorer(nn.Module):
    """logit(u, i) = T(u)ᵀ e_i (+ b_i).

    `bias`: a learnable per-item output bias (BERT4Rec's `output_bias`), zero-initialised.
    `transform`: BERT's masked-LM head T(u) = LN(GELU(W u + c)) applied to the user vector before
    the dot product (BERT4Rec has it); identity otherwise.
    """

    def __init__(self, n_items: int, d: int, bias: bool = False, transform: bool = False) -> None:
        super().__init__()
        self.n_items = n_items
        self.bias = nn.Parameter(torch.zeros(n_items + 1)) if bias else None
        self.transform = (
            nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d, eps=1e-12))
            if transform
            else nn.Identity()
        )

    def project(self, user: Tensor) -> Tensor:
        return self.transform(user)

    def linear(
        self, user: Tensor, weights: Tensor, bias: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """`score_all` as the parts of ONE linear map (T(u), table, bias): logits = T(u) Eᵀ + b.
        Lets a loss consume the scores without building them (`losses.chunked_ce`)."""
        return self.project(user), weights, bias

    def score_all(self, user: Tensor, weights: Tensor, bias: Tensor | None) -> Tensor:
        """`user [N, d]`, `weights [n_items + 1, d]` -> `[N, n_items + 1]` float32 (column 0 raw)."""
        user, weights, bias = self.linear(user, weights, bias)
        logits = dot_all(user, weights)
        if bias is not None:
            logits = logits + bias.float()
        return logits

    def score_items(
        self, user: Tensor, weights: Tensor, bias: Tensor | None, items: Tensor
    ) -> Tensor:
        """`user [N, d]`, `items [N, k]` ids -> `[N, k]` float32, without building the full matrix."""
        logits = dot_items(self.project(user), take_rows(weights, items))
        if bias is not None:
            logits = logits + take_rows(bias, items).float()
        return logits
