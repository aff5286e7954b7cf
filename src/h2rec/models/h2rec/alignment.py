"""H2Rec's dual-level alignment losses: code-guided alignment L_CA (Eq. 7) and the masked sequence
granularity loss L_MSG (Eq. 8), as pure functions of embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def multi_positive_info_nce(
    anchors: Tensor, others: Tensor, positive: Tensor, temperature: float
) -> Tensor:
    """-(1/M) sum_i log [ sum_{k: positive[i,k]} exp(cos(a_i, o_k)/tau) / sum_j exp(cos(a_i, o_j)/tau) ]

    `anchors [M, d]`, `others [N, d]`, `positive [M, N]` bool (each row needs at least one True).
    Computed with logsumexp in float32, so small temperatures do not overflow.
    """
    return _info_nce(_cosine(anchors, others, temperature), positive)


def _cosine(anchors: Tensor, others: Tensor, temperature: float) -> Tensor:
    """`[M, N]` cos(a_i, o_k) / tau in float32."""
    a = F.normalize(anchors.float(), dim=-1)
    o = F.normalize(others.float(), dim=-1)
    return a @ o.t() / temperature


def _info_nce(sim: Tensor, positive: Tensor) -> Tensor:
    log_num = torch.logsumexp(sim.masked_fill(~positive, float("-inf")), dim=1)
    return (torch.logsumexp(sim, dim=1) - log_num).mean()


# exp(cos / tau - 1 / tau) >= exp(-2 / tau) stays a normal float32 (> 1.2e-38) while 1 / tau <= 40
_SHARED_EXP_MAX_BOUND = 40.0


def bidirectional_info_nce(sim: Tensor, positive: Tensor | None, bound: float) -> Tensor:
    """Both directions of a multi-positive InfoNCE on one similarity matrix `sim [M, M]`:
    rows as anchors with `positive[i, k]` (k in P(i)), then columns as anchors with
    `positive[k, i]` (i in P(k)). `positive=None` means the identity (one positive per anchor).

    Why one function: when every logit is bounded, |sim| <= `bound` (cosine / tau: bound = 1 / tau),
    exp(sim - bound) cannot overflow and, for bound <= 40, cannot underflow either, so ONE
    exponential of the matrix serves all four log-sums (rows, columns, their positive parts). Two
    directions with logsumexp took eight passes of exp (forward and backward) and two masked
    copies; this is about 3x faster at 256 anchors. Larger bounds (tau < 0.025) take logsumexp.
    """
    if bound > _SHARED_EXP_MAX_BOUND:
        if positive is None:
            positive = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
        return _info_nce(sim, positive) + _info_nce(sim.t(), positive)
    e = torch.exp(sim - bound)
    log_all_rows, log_all_cols = e.sum(1).log(), e.sum(0).log()
    if positive is None:  # the diagonal: log of its exp is exact
        log_pos_rows = log_pos_cols = sim.diagonal() - bound
    else:
        log_pos_rows = (e * positive.to(e.dtype)).sum(1).log()
        log_pos_cols = (e * positive.t().to(e.dtype)).sum(0).log()
    return (log_all_rows - log_pos_rows).mean() + (log_all_cols - log_pos_cols).mean()


def code_guided_alignment(
    e_sid: Tensor, e_hid: Tensor, positive: Tensor, temperature: float
) -> Tensor:
    """L_CA = L_CA^1 + L_CA^2 (Eq. 7): SID anchors against HID positives, then the reverse.

    Row i of `e_sid`/`e_hid` is the same item (the batch's anchors); `positive[i, k]` says item k
    is in P(i) (identity included): SID anchor i's positives are the HID vectors of P(i), and HID
    anchor k's are the SID vectors of P(k). The sums over P(i) and over j run over the batch, as
    the denominator of Eq. 7 does.
    """
    sim = _cosine(e_sid, e_hid, temperature)
    return bidirectional_info_nce(sim, positive, 1.0 / temperature)


def masked_granularity_loss(u_full: Tensor, u_masked: Tensor, temperature: float) -> Tensor:
    """L_MSG = L_MSG^1 + L_MSG^2 (Eq. 8): each user's global and granularity-masked SID
    representations are a positive pair; other users in the batch are the negatives."""
    return bidirectional_info_nce(_cosine(u_full, u_masked, temperature), None, 1.0 / temperature)
