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


def code_guided_alignment(
    e_sid: Tensor, e_hid: Tensor, positive: Tensor, temperature: float
) -> Tensor:
    """L_CA = L_CA^1 + L_CA^2 (Eq. 7): SID anchors against HID positives, then the reverse.

    Row i of `e_sid`/`e_hid` is the same item (the batch's anchors); `positive[i, k]` says item k
    is in P(i) (identity included), so both directions use the same matrix. The sums over P(i)
    and over j run over the batch, as the denominator of Eq. 7 does.
    """
    sim = _cosine(e_sid, e_hid, temperature)  # the reverse direction's similarities are sim^T
    return _info_nce(sim, positive) + _info_nce(sim.t(), positive)


def masked_granularity_loss(u_full: Tensor, u_masked: Tensor, temperature: float) -> Tensor:
    """L_MSG = L_MSG^1 + L_MSG^2 (Eq. 8): each user's global and granularity-masked SID
    representations are a positive pair; other users in the batch are the negatives."""
    eye = torch.eye(u_full.shape[0], dtype=torch.bool, device=u_full.device)
    sim = _cosine(u_full, u_masked, temperature)
    return _info_nce(sim, eye) + _info_nce(sim.t(), eye)
