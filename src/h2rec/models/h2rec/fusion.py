"""H2Rec's two granularity modules: the Multi-granularity Fusion Network (Eq. 2-3), which turns a
HID query into level weights alpha, and the Multi-granularity Cross Attention (Eq. 4-5), which lets
the HID sequence read each SID level."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from h2rec.models.parts.encoders import attention_mask


class GranularityFusion(nn.Module):
    """alpha = softmax(W2 relu(W1 [e ; b_prior] + b1) + b2 + b_prior)   (Eq. 2-3).

    `b_prior` (one entry per level) is both an MLP input and a residual on the logits, so before
    the MLP learns anything alpha follows the prior. `prior_init="linspace"` starts it at
    [1.0 ... 0.2] (coarse levels first, the reference code's values; the paper gives no init);
    `learnable=False` keeps it fixed as the reference code does. `enabled=False` is the "w/o FN"
    ablation: alpha = 1/L everywhere and the module holds no parameters.
    """

    def __init__(
        self,
        d: int,
        levels: int,
        hidden: int | None = None,
        *,
        enabled: bool = True,
        prior_init: str = "linspace",
        learnable: bool = True,
    ) -> None:
        super().__init__()
        self.levels = levels
        self.enabled = enabled
        if not enabled:
            return
        prior = (
            torch.linspace(1.0, 0.2, levels) if prior_init == "linspace" else torch.zeros(levels)
        )
        if learnable:
            self.b_prior = nn.Parameter(prior)
        else:
            self.register_buffer("b_prior", prior)
        h = hidden or max(1, d // 2)
        self.fc1 = nn.Linear(d + levels, h)
        self.fc2 = nn.Linear(h, levels)
        # Zero output layer: alpha starts exactly at softmax(b_prior) and the MLP grows from there
        # (its gradients are non-zero because fc1's activations are), the early-training
        # behaviour the residual prior is there for.
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def logits(self, query: Tensor) -> Tensor:
        """`query [..., d]` -> unnormalised scores s `[..., L]`.

        W1 [e ; b_prior] + b1 is computed as W1_e e + (W1_p b_prior + b1): the prior is the same
        at every slot, so its part is one small vector instead of a concatenated `[..., d + L]`
        copy of every query (the same value up to float rounding)."""
        d = query.shape[-1]
        weight, prior = self.fc1.weight, self.b_prior
        bias = torch.addmv(self.fc1.bias, weight[:, d:], prior.to(weight.dtype))
        hidden = F.relu(F.linear(query, weight[:, :d], bias))
        return self.fc2(hidden) + prior.to(query.dtype)

    def forward(self, query: Tensor) -> Tensor:
        """`query [..., d]` (HID embeddings) -> alpha `[..., L]`, summing to one."""
        if not self.enabled:
            return query.new_full((*query.shape[:-1], self.levels), 1.0 / self.levels)
        return torch.softmax(self.logits(query).float(), dim=-1).to(query.dtype)


class GranularityCrossAttention(nn.Module):
    """E^f = sum_l alpha_l softmax(Q K_l^T / sqrt(d)) V_l (+ E^hid)   (Eq. 4-5).

    Q = E^hid W^Q and K_l = E_g^l W^K, V_l = E_g^l W^V with ONE set of bias-free d x d projections
    shared by the levels (Eq. 4), single head, scale sqrt(d). A query attends to real keys at or
    before its own slot when `causal` (so no position sees later items), to all real keys
    otherwise (bidirectional backbones). All levels share one query, so the G attentions are two
    batched products: Q [K_1..K_G]^T, then the alpha-scaled weights times [V_1..V_G]. (One fused
    `scaled_dot_product_attention` call with the levels as heads measured 10-20% slower on CPU.)

    `query="sid"` is the reference code's reversal (each SID level queries the HID sequence);
    `residual=False` drops Eq. 5's + E^hid as the reference code does. Both are compatibility
    options, off by default.
    """

    def __init__(
        self, d: int, *, causal: bool = True, query: str = "hid", residual: bool = True
    ) -> None:
        super().__init__()
        self.causal = causal
        self.query_side = query
        self.residual = residual
        self.w_q = nn.Linear(d, d, bias=False)
        self.w_k = nn.Linear(d, d, bias=False)
        self.w_v = nn.Linear(d, d, bias=False)
        self.scale = 1.0 / math.sqrt(d)

    def forward(
        self,
        hid: Tensor,
        levels: Tensor | None,
        alpha: Tensor,
        mask: Tensor,
        keys: Tensor | None = None,
        values: Tensor | None = None,
    ) -> Tensor:
        """`hid [B, L, d]`, `levels [B, L, G, d]` (E_g^1..E_g^G), `alpha [B, L|1, G]`,
        `mask [B, L]` (True = real) -> E^f `[B, L, d]` (zero at padding slots).

        `keys`/`values` `[B, G, L, d]` (level-major): K_l and V_l precomputed by the caller, e.g.
        by projecting the small code table once and gathering (`project_table`), which is G L /
        (codes) times cheaper than projecting every slot of every level; `levels` is then unused
        (may be None). Level-major, the G levels' key slots are one axis of G L without a copy (a
        row stride wider than d is fine for the batched product)."""
        if self.query_side == "sid":
            if levels is None:
                raise ValueError("query='sid' needs the level embeddings `levels`")
            return self._sid_query(hid, levels, alpha, mask)
        if keys is None or values is None:
            if levels is None:
                raise ValueError("pass either `levels` or precomputed `keys` and `values`")
            by_level = levels.transpose(1, 2)
            keys, values = self.w_k(by_level), self.w_v(by_level)
        b, n_levels, length, d = keys.shape
        q = self.w_q(hid) * self.scale  # [B, L, d]; scaling Q is L G times cheaper than Q K^T
        k = keys.reshape(b, n_levels * length, d)  # level-major key slots (a view)
        v = values.reshape(b, n_levels * length, d)
        scores = torch.bmm(q, k.transpose(1, 2)).view(b, length, n_levels, length).float()
        allowed = attention_mask(mask, self.causal)[:, 0]  # [B, L, L]
        # in place: bmm's backward needs its inputs, not its output
        scores = scores.masked_fill_(~allowed[:, :, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # per level, over key slots
        # sum_l alpha_l softmax(Q K_l^T) V_l  ==  [alpha-scaled weights of all levels] @ [V_1..V_G]
        weights = weights * alpha.expand(-1, length, -1).float().unsqueeze(-1)
        fused = torch.bmm(weights.view(b, length, n_levels * length).to(v.dtype), v)
        if self.residual:
            fused = fused + hid
        return fused * mask.unsqueeze(-1).to(fused.dtype)

    def project_table(self, table: Tensor) -> tuple[Tensor, Tensor]:
        """(table W^K, table W^V) for a code-embedding table: K_l and V_l of any slot are rows of
        these (a linear map commutes with the lookup)."""
        return self.w_k(table), self.w_v(table)

    def _sid_query(self, hid: Tensor, levels: Tensor, alpha: Tensor, mask: Tensor) -> Tensor:
        """The reference code's direction: each SID level queries the HID sequence."""
        g_first = levels.permute(0, 2, 1, 3)  # [B, G, L, d]
        n_levels = g_first.shape[1]
        q = self.w_q(g_first)
        k = self.w_k(hid).unsqueeze(1).expand(-1, n_levels, -1, -1)
        v = self.w_v(hid).unsqueeze(1).expand(-1, n_levels, -1, -1)
        allowed = attention_mask(mask, self.causal)  # [B, 1, L, L]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=self.scale)
        fused = torch.einsum("bgld,blg->bld", out, alpha.expand(-1, hid.shape[1], -1))
        if self.residual:
            fused = fused + hid
        return fused * mask.unsqueeze(-1).to(fused.dtype)
