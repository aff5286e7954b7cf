"""Recommendation losses as pure functions of logits, plus a validated `LossConfig`.

Shapes: `pos [N]` logits of the targets, `neg [N, k]` logits of k sampled negatives per target,
`neg_valid [N, k]` (optional bool, True = a real negative; False drops it, e.g. a padding id or an
accidental hit on the target). All losses compute in float32 and return a scalar mean over N.
`chunked_ce` is the exception to "functions of logits": full-softmax CE from the user vectors and
the item table, so that the `[N, n_items]` logits never exist at once. σ is the logistic sigmoid;
-log σ(x) = softplus(-x) and -log(1 - σ(x)) = softplus(x) are used for numerical stability.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

LossName = Literal["bce", "bpr", "ce", "sampled_softmax", "gbce"]


def _valid(neg: Tensor, neg_valid: Tensor | None) -> Tensor:
    return torch.ones_like(neg, dtype=torch.bool) if neg_valid is None else neg_valid


def bce(pos: Tensor, neg: Tensor, neg_valid: Tensor | None = None) -> Tensor:
    """Binary cross-entropy with sampled negatives, as in SASRec (Kang & McAuley, 2018).

    L = (1/N) Σ_n [ -log σ(s⁺_n) - Σ_k log(1 - σ(s⁻_nk)) ]

    Negatives are SUMMED over k and the result averaged over N (SASRec's formula; with k = 1 it
    equals LLM-ESR's per-position BCE pos + neg terms).
    """
    pos, neg = pos.float(), neg.float()
    neg_term = (F.softplus(neg) * _valid(neg, neg_valid)).sum(dim=1)
    return (F.softplus(-pos) + neg_term).mean()


def bpr(pos: Tensor, neg: Tensor, neg_valid: Tensor | None = None) -> Tensor:
    """Bayesian personalised ranking (Rendle et al., 2009; H2Rec Eq. 10).

    L = mean over valid pairs (n, k) of -log σ(s⁺_n - s⁻_nk)

    With k negatives every (target, negative) pair counts once: averaged over N and k.
    """
    pos, neg = pos.float(), neg.float()
    valid = _valid(neg, neg_valid)
    pair = F.softplus(-(pos.unsqueeze(1) - neg)) * valid
    return pair.sum() / valid.sum().clamp(min=1)


def full_ce(logits: Tensor, targets: Tensor, *, padding_column: bool = True) -> Tensor:
    """Softmax cross-entropy over the whole catalogue ("SASRec+", Klenitskiy & Vasilev, 2023).

    L = (1/N) Σ_n -log softmax(z_n[1:])[y_n]   with logits `[N, n_items + 1]`, targets `[N]` in 1..n_items

    Column 0 (padding) is excluded from the softmax, not merely masked. With
    `padding_column=False` the logits are already `[N, n_items]` (column j = item j + 1).
    """
    if padding_column:
        logits = logits[:, 1:]
    return F.cross_entropy(logits.float(), targets - 1)


CE_CHUNK_ELEMENTS = 1 << 23
"""Default logits budget of `chunked_ce`: 8M float32 (32 MiB) per chunk, 693 rows on Beauty
(12,101 items), where the full logits of a 256 x 50 batch are 620 MB (plus as much again for the
saved log-softmax and for its gradient). Chunks of this size are still large, efficient matrix
products: on Beauty's longest batches a CE step was no slower than with the full logits."""

CE_SAVED_CHUNKS = 4
"""`chunked_ce` keeps the softmax of the first `CE_SAVED_CHUNKS * chunk_elements` logits (128 MiB
by default) from the forward pass for the backward pass, which then needs no second product and
no second exp for those rows; rows beyond the budget are recomputed chunk by chunk. On Beauty
(12,101 items) that covers the ~1,800 targets of a typical batch."""


def _chunk_logits(
    user: Tensor, weight: Tensor, bias: Tensor | None, out: Tensor | None = None
) -> Tensor:
    if out is None:
        return user @ weight.t() if bias is None else torch.addmm(bias, user, weight.t())
    if bias is None:
        return torch.mm(user, weight.t(), out=out)
    return torch.addmm(bias, user, weight.t(), out=out)


def _chunks(n: int, rows: int, saved: int) -> list[tuple[int, int]]:
    """Row ranges of at most `rows`, with `saved` (the end of the kept rows) a boundary."""
    edges = [*range(0, saved, rows), *range(saved, n, rows), n]
    return [(lo, hi) for lo, hi in itertools.pairwise(edges) if hi > lo]


class _ChunkedCE(torch.autograd.Function):
    """Mean softmax CE of `user @ weight.T + bias` against `targets`, one row chunk at a time.

    Forward keeps each row's log-sum-exp (`[N]`) and, for the first `saved_rows` rows, the softmax
    itself (built in place of the logits, `[saved_rows, M]`). Backward turns a kept softmax into
    softmax - onehot in place, or recomputes a chunk's logits for the other rows, and accumulates
    the three gradients from it. So nothing beyond the budget `saved_rows x M` plus one
    `[rows, M]` chunk is ever held. Inputs are float32 (the caller casts); autocast is off inside,
    so products stay float32.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        user: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        targets: Tensor,
        rows: int,
        saved_rows: int,
    ) -> Tensor:
        n = user.shape[0]
        saved_rows = min(n, saved_rows)
        lse = user.new_empty(n)
        picked = user.new_empty(n)
        probs = user.new_empty(saved_rows, weight.shape[0]) if saved_rows else None
        with torch.autocast(device_type=user.device.type, enabled=False):
            for start, stop in _chunks(n, rows, saved_rows):
                keep = probs is not None and stop <= saved_rows
                out = probs[start:stop] if keep else None  # type: ignore[index]
                z = _chunk_logits(user[start:stop], weight, bias, out=out)
                picked[start:stop] = z.gather(1, targets[start:stop, None]).squeeze(1)
                top = z.amax(dim=1, keepdim=True)
                # logsumexp in place: torch.logsumexp would allocate a second chunk-sized buffer
                total = z.sub_(top).exp_().sum(dim=1)
                lse[start:stop] = total.log() + top.squeeze(1)
                if keep:
                    z.div_(total.unsqueeze(1))  # the softmax, kept for backward
        ctx.save_for_backward(user, weight, bias, targets, lse)
        ctx.rows = rows
        ctx.probs = probs  # an intermediate, not an input or output: held on ctx
        return (lse - picked).mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, ...]:
        user, weight, bias, targets, lse = ctx.saved_tensors
        rows: int = ctx.rows  # type: ignore[attr-defined]
        probs: Tensor | None = ctx.probs  # type: ignore[attr-defined]
        ctx.probs = None  # type: ignore[attr-defined]
        saved_rows = 0 if probs is None else probs.shape[0]
        need_user, need_weight, need_bias = ctx.needs_input_grad[:3]
        n = user.shape[0]
        scale = grad.float() / n  # d mean / d row = 1 / N
        grad_user = user.new_empty(user.shape) if need_user else None  # contiguous, for out=
        grad_weight = torch.zeros_like(weight) if need_weight else None
        grad_bias = torch.zeros_like(bias) if need_bias and bias is not None else None
        with torch.autocast(device_type=user.device.type, enabled=False):
            for start, stop in _chunks(n, rows, saved_rows):
                u = user[start:stop]
                # dL/dz = (softmax(z) - onehot(y)) / N, built in the chunk's own buffer
                if stop <= saved_rows:
                    assert probs is not None
                    dz = probs[start:stop]
                else:
                    dz = _chunk_logits(u, weight, bias).sub_(lse[start:stop, None]).exp_()
                dz[torch.arange(stop - start, device=dz.device), targets[start:stop]] -= 1.0
                dz.mul_(scale)
                if grad_user is not None:
                    torch.mm(dz, weight, out=grad_user[start:stop])
                if grad_weight is not None:
                    grad_weight.addmm_(dz.t(), u)
                if grad_bias is not None:
                    grad_bias += dz.sum(dim=0)
        return grad_user, grad_weight, grad_bias, None, None, None


def chunked_ce(
    user: Tensor,
    weight: Tensor,
    targets: Tensor,
    bias: Tensor | None = None,
    *,
    chunk_elements: int = CE_CHUNK_ELEMENTS,
    saved_chunks: int = CE_SAVED_CHUNKS,
) -> Tensor:
    """`full_ce` of the linear scores `user @ weight.T (+ bias)` without materialising them.

    L = (1/N) Σ_n [ logsumexp_j (u_n · w_j + b_j) - (u_n · w_{y_n} + b_{y_n}) ]

    `user [N, d]`, `weight [M, d]`, `bias [M]` or None, `targets [N]` in 0..M-1 (ROW indices of
    `weight`: pass the catalogue rows only and `item_id - 1`). Rows are processed
    `max(1, chunk_elements // M)` at a time; the softmax of the first `saved_chunks` chunks is
    kept for the backward pass (no recomputation there), later rows are recomputed. So peak extra
    memory is `saved_chunks + 1` chunks instead of the `[N, M]` logits, their log-softmax and its
    gradient. Computes in float32 (bf16 inputs are upcast; gradients flow back in the inputs'
    dtypes); equal to `full_ce` on the explicit logits up to float rounding.
    """
    if chunk_elements < 1:
        raise ValueError(f"chunk_elements must be >= 1, got {chunk_elements}")
    if saved_chunks < 0:
        raise ValueError(f"saved_chunks must be >= 0, got {saved_chunks}")
    if user.dim() != 2 or weight.dim() != 2 or user.shape[1] != weight.shape[1]:
        raise ValueError(
            f"expected user [N, d] and weight [M, d], got {tuple(user.shape)}, {tuple(weight.shape)}"
        )
    rows = max(1, chunk_elements // max(1, weight.shape[0]))
    with torch.autocast(device_type=user.device.type, enabled=False):
        b = None if bias is None else bias.float()
        return _ChunkedCE.apply(user.float(), weight.float(), b, targets, rows, rows * saved_chunks)


def sampled_softmax(
    pos: Tensor,
    neg: Tensor,
    log_q_pos: Tensor | None = None,
    log_q_neg: Tensor | None = None,
    neg_valid: Tensor | None = None,
) -> Tensor:
    """Softmax over the target and its k sampled negatives, with optional logQ correction.

    L = (1/N) Σ_n -log [ exp(s⁺_n - log q⁺_n) / (exp(s⁺_n - log q⁺_n) + Σ_k exp(s⁻_nk - log q⁻_nk)) ]

    q is the probability with which the sampler draws an item (Yi et al., RecSys'19, "sampling-bias
    corrected"); omitted log q terms count as 0 (uniform sampling needs no correction).
    """
    pos, neg = pos.float(), neg.float()
    if log_q_pos is not None:
        pos = pos - log_q_pos.float()
    if log_q_neg is not None:
        neg = neg - log_q_neg.float()
    neg = neg.masked_fill(~_valid(neg, neg_valid), -math.inf)
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
    return (torch.logsumexp(logits, dim=1) - pos).mean()


def gbce_beta(num_negatives: int, n_items: int, t: float) -> float:
    """β = α (t (1 - 1/α) + 1/α) with α = k / (|I| - 1), from gSASRec (Petrov & Macdonald, RecSys'23).

    t = 0 gives β = 1 (plain BCE); t = 1 gives β = α (fully calibrated). Computed in float64.
    The paper's sampling rate uses |I| - 1 (all items but the positive); the authors'
    `train_gsasrec.py` passes pool_size = num_items - 1 to a class that divides by pool_size - 1,
    a one-item difference that is negligible for real catalogues; we follow the paper.
    """
    if n_items < 2:
        raise ValueError("gBCE needs at least 2 items")
    if not 0 < num_negatives <= n_items - 1:
        raise ValueError(f"gBCE needs 1 <= num_negatives <= n_items - 1, got {num_negatives}")
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"gBCE calibration t must be in [0, 1], got {t}")
    alpha = num_negatives / (n_items - 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


def gbce(
    pos: Tensor, neg: Tensor, n_items: int, t: float = 0.75, neg_valid: Tensor | None = None
) -> Tensor:
    """Generalised BCE of gSASRec (Petrov & Macdonald, RecSys'23; asash/gsasrec README, gSASRec-pytorch `gbce.py`).

    L = (1/N) Σ_n [ -β log σ(s⁺_n) - Σ_k log(1 - σ(s⁻_nk)) ],   β = gbce_beta(k, n_items, t)

    i.e. BCE with σ(s⁺) replaced by σ(s⁺)^β (log σ(s⁺)^β = β log σ(s⁺)). k = `neg.shape[1]`
    (negatives sampled per positive). Same reduction as `bce` (sum over k, mean over N), so t = 0
    equals `bce` exactly. The authors' definition divides each position's term by k + 1 instead
    (L_gBCE = -1/(k+1) (log σ^β(s⁺) + Σ log(1 - σ(s⁻)))): a constant factor, i.e. a learning-rate
    rescaling when porting their hyperparameters.
    """
    beta = gbce_beta(neg.shape[1], n_items, t)
    pos, neg = pos.float(), neg.float()
    neg_term = (F.softplus(neg) * _valid(neg, neg_valid)).sum(dim=1)
    return (beta * F.softplus(-pos) + neg_term).mean()


class LossConfig(BaseModel):
    """Which recommendation loss to train with.

    name: bce (SASRec, LLM-ESR lineage) | bpr (H2Rec Eq. 10) | ce (full softmax) |
          sampled_softmax (optionally with logQ) | gbce (gSASRec)
    num_negatives: negatives per target (ignored by ce).
    gbce_t: gSASRec's calibration parameter t in [0, 1].
    logq: subtract log q(item) of the negative sampler (sampled_softmax only).
    ce_chunk_elements: ce only: logits budget per chunk of `chunked_ce`, used for models whose
        all-item scores are one linear map (`SequentialModel.full_scoring`); 0 = build the full
        `[N, n_items]` logits (`full_ce`). Same loss up to float rounding, far less memory.
    """

    model_config = ConfigDict(extra="forbid")

    name: LossName = "bce"
    num_negatives: int = Field(1, ge=0)
    gbce_t: float = Field(0.75, ge=0.0, le=1.0)
    logq: bool = False
    ce_chunk_elements: int = Field(CE_CHUNK_ELEMENTS, ge=0)

    @model_validator(mode="after")
    def _check(self) -> LossConfig:
        if self.name != "ce" and self.num_negatives < 1:
            raise ValueError(f"loss '{self.name}' needs num_negatives >= 1")
        if self.logq and self.name != "sampled_softmax":
            raise ValueError("logq correction applies only to loss 'sampled_softmax'")
        return self


def num_negatives_needed(cfg: LossConfig) -> int:
    """How many negatives per target the sampler must provide (0 for full CE)."""
    return 0 if cfg.name == "ce" else cfg.num_negatives


class SampledLoss:
    """The configured loss applied to (pos, neg) logits; for ce use `full_ce` on all logits."""

    def __init__(self, cfg: LossConfig, n_items: int) -> None:
        if cfg.name == "ce":
            raise ValueError("loss 'ce' uses all items, not sampled negatives")
        self.cfg = cfg
        self.n_items = n_items
        if cfg.name == "gbce":
            gbce_beta(cfg.num_negatives, n_items, cfg.gbce_t)  # fail early on bad k / t

    def __call__(
        self,
        pos: Tensor,
        neg: Tensor,
        neg_valid: Tensor | None = None,
        log_q_pos: Tensor | None = None,
        log_q_neg: Tensor | None = None,
    ) -> Tensor:
        name = self.cfg.name
        if name == "bce":
            return bce(pos, neg, neg_valid)
        if name == "bpr":
            return bpr(pos, neg, neg_valid)
        if name == "gbce":
            return gbce(pos, neg, self.n_items, self.cfg.gbce_t, neg_valid)
        return sampled_softmax(pos, neg, log_q_pos, log_q_neg, neg_valid)
