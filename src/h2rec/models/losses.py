"""Recommendation losses as pure functions of logits, plus a validated `LossConfig`.

Shapes: `pos [N]` logits of the targets, `neg [N, k]` logits of k sampled negatives per target,
`neg_valid [N, k]` (optional bool, True = a real negative; False drops it, e.g. a padding id or an
accidental hit on the target). All losses compute in float32 and return a scalar mean over N.
σ is the logistic sigmoid; -log σ(x) = softplus(-x) and -log(1 - σ(x)) = softplus(x) are used for
numerical stability.
"""

from __future__ import annotations

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
    """

    model_config = ConfigDict(extra="forbid")

    name: LossName = "bce"
    num_negatives: int = Field(1, ge=0)
    gbce_t: float = Field(0.75, ge=0.0, le=1.0)
    logq: bool = False

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
