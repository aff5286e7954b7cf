"""Sequence encoders: `forward(emb [B, L, d], mask [B, L] True = real item) -> hidden [B, L, d]`.

Encoders know nothing about item ids, so any item representation (HID, SID, fused) can feed them;
the model scales embeddings (or not) before calling them. Sequences are LEFT-padded: real items
sit at the end and the last slot is the most recent item.

Positions (transformers): the slot of an item in the conceptual `max_len`-long left-padded array,
i.e. `max_len - L + slot` for an input of length L <= max_len. For L == max_len this is exactly
the slot index used by the original SASRec; for shorter inputs it makes the output independent of
how much leading padding a batch was trimmed to, so the most recent item always gets position
`max_len - 1`.

Padding never leaks into real positions: attention masks padding keys, GRU4Rec runs on
right-aligned real items only. Fully padded rows produce finite (zero) outputs.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from h2rec.models.parts.dropout import Dropout
from h2rec.models.parts.dropout import dropout as apply_dropout

Activation = Literal["relu", "gelu"]


class SequenceEncoder(Protocol):
    """Anything mapping `(emb [B, L, d], mask [B, L] bool) -> hidden [B, L, d]`."""

    def __call__(self, emb: Tensor, mask: Tensor) -> Tensor: ...


def _activation(name: Activation) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "gelu":
        return nn.GELU()
    raise ValueError(f"unknown activation '{name}' (expected 'relu' or 'gelu')")


def attention_mask(mask: Tensor, causal: bool) -> Tensor:
    """Boolean `[B, 1, L, L]` mask, True = query may attend to key.

    A query attends to real keys (and, if `causal`, only to keys at or before it). The diagonal is
    always allowed, so a padding query (e.g. in a fully padded row) still has one key and the
    softmax never sees an all -inf row (no NaN); real queries are unaffected because their own slot
    is a real key anyway, and padding outputs are zeroed by the caller.
    """
    length = mask.shape[1]
    allowed = mask[:, None, None, :].expand(-1, 1, length, -1)
    eye = torch.eye(length, dtype=torch.bool, device=mask.device)
    if causal:
        allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
    return allowed | eye


def check_length(length: int, max_len: int) -> None:
    if length > max_len:
        raise ValueError(f"sequence length {length} exceeds the encoder's max_len {max_len}")


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query and key/value inputs, via scaled_dot_product_attention."""

    def __init__(self, d: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if d % n_heads != 0:
            raise ValueError(f"hidden size {d} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, query: Tensor, kv: Tensor, allowed: Tensor) -> Tensor:
        b, length, d = query.shape
        h = self.n_heads

        def split(x: Tensor) -> Tensor:
            return x.view(b, -1, h, d // h).transpose(1, 2)

        q, k, v = split(self.q_proj(query)), split(self.k_proj(kv)), split(self.v_proj(kv))
        if self.training and self.dropout > 0.0 and not query.is_cuda:
            out = attend_with_dropout(q, k, v, allowed, self.dropout)
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
            )
        return self.out_proj(out.transpose(1, 2).reshape(b, length, d))


def attend_with_dropout(
    q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None, p: float
) -> Tensor:
    """softmax(q k^T / sqrt(d_h), masked) with dropout p on the weights, times v: what
    `scaled_dot_product_attention` computes on CPU with dropout (its math path), but with the
    cheap dropout mask of `parts.dropout` instead of its per-element `bernoulli_`."""
    scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = apply_dropout(torch.softmax(scores, dim=-1), p, True)
    return torch.matmul(weights, v)


class PointWiseFeedForward(nn.Module):
    """SASRec's point-wise FFN (Conv1d k=1 == Linear) with its internal residual connection."""

    def __init__(self, d: int, inner: int, dropout: float, activation: Activation) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, inner)
        self.act = _activation(activation)
        self.fc2 = nn.Linear(inner, d)
        self.drop1 = Dropout(dropout)
        self.drop2 = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop2(self.fc2(self.act(self.drop1(self.fc1(x)))))


class SASRecBlock(nn.Module):
    """One SASRec block, pre-LN on the attention query as in Kang & McAuley's code.

    q = LN(x); x = q + MHA(q, x, x); x = FFN(LN(x)) + LN(x). The residual is taken from the
    normalised query (the original TF code, pmixer's port and LLM-ESR all do this).
    """

    def __init__(
        self, d: int, n_heads: int, dropout: float, inner: int, activation: Activation
    ) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(d, eps=1e-8)
        self.attn = MultiHeadAttention(d, n_heads, dropout)
        self.ffn_norm = nn.LayerNorm(d, eps=1e-8)
        self.ffn = PointWiseFeedForward(d, inner, dropout, activation)

    def forward(self, x: Tensor, allowed: Tensor, keep: Tensor) -> Tensor:
        q = self.attn_norm(x)
        x = q + self.attn(q, x, allowed)
        x = self.ffn(self.ffn_norm(x))
        return x * keep

    def forward_last(self, x: Tensor, allowed: Tensor, keep: Tensor) -> Tensor:
        """The block's output at the last slot only, `[B, 1, d]` (`allowed [B, 1, 1, L]`,
        `keep [B, 1, 1]`): every slot is still a key and value, but the query side (projection,
        attention row, FFN) runs for one slot instead of L."""
        q = self.attn_norm(x[:, -1:])
        out = q + self.attn(q, x, allowed)
        return self.ffn(self.ffn_norm(out)) * keep


class _StackedEncoder(nn.Module):
    """What the transformer encoders share: embeddings in (`_inputs`), blocks, an output map
    (`_output`), and the partial passes that run the final block at the last slot only
    (`forward_last`, `forward_partial`; see `encode_last` and `encode_full_and_last`)."""

    blocks: nn.ModuleList

    def _inputs(self, emb: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(first block's input, attention mask, keep) for `emb [B, L, d]`."""
        raise NotImplementedError

    def _output(self, x: Tensor, keep: Tensor) -> Tensor:
        """The encoder's output from the final block's (identity unless overridden)."""
        return x

    def forward(self, emb: Tensor, mask: Tensor) -> Tensor:
        x, allowed, keep = self._inputs(emb, mask)
        for block in self.blocks:
            x = block(x, allowed, keep)
        return self._output(x, keep)

    def _below_final(self, emb: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(input of the final block, attention mask, keep): every block but the last, run."""
        x, allowed, keep = self._inputs(emb, mask)
        for block in self.blocks[:-1]:
            x = block(x, allowed, keep)
        return x, allowed, keep

    def forward_partial(self, emb: Tensor, mask: Tensor, n_full: int) -> tuple[Tensor, Tensor]:
        """See `encode_full_and_last`: rows `[:n_full]` at every slot, the others at the last."""
        x, allowed, keep = self._below_final(emb, mask)
        full = self.blocks[-1](x[:n_full], allowed[:n_full], keep[:n_full])
        return self._output(full, keep[:n_full]), self._last(
            x[n_full:], allowed[n_full:], keep[n_full:]
        )

    def forward_last(self, emb: Tensor, mask: Tensor) -> Tensor:
        """See `encode_last`: `[B, d]`, the output at the last slot only."""
        return self._last(*self._below_final(emb, mask))

    def _last(self, x: Tensor, allowed: Tensor, keep: Tensor) -> Tensor:
        """The final block (and output map) at the last slot only, `[B, d]`."""
        last = self.blocks[-1].forward_last(x, allowed[:, :, -1:], keep[:, -1:])
        return self._output(last, keep[:, -1:])[:, 0]


class SASRecEncoder(_StackedEncoder):
    """SASRec (Kang & McAuley, ICDM'18): learnable positions + pre-LN self-attention blocks.

    `causal=True` (default) is the original model: position t sees items <= t only, which is what
    next-item training at every position requires. `causal=False` is a COMPATIBILITY option that
    reproduces LLM-ESR's `SASRecBackbone` (and H2Rec's reference code), where the causal mask is
    commented out: with every-position training the input at t+1 is the target at t, so training
    leaks the target. Use it only to reproduce those numbers, and report it as a protocol difference.
    """

    def __init__(
        self,
        d: int,
        n_layers: int = 2,
        n_heads: int = 1,
        dropout: float = 0.2,
        max_len: int = 50,
        causal: bool = True,
        inner_size: int | None = None,
        activation: Activation = "relu",
    ) -> None:
        super().__init__()
        self.d = d
        self.max_len = max_len
        self.causal = causal
        self.position = nn.Embedding(max_len, d)
        nn.init.normal_(self.position.weight, std=0.02)
        self.emb_dropout = Dropout(dropout)
        self.blocks = nn.ModuleList(
            SASRecBlock(d, n_heads, dropout, inner_size or d, activation) for _ in range(n_layers)
        )
        self.final_norm = nn.LayerNorm(d, eps=1e-8)

    def _inputs(self, emb: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(first block's input, attention mask, keep) for `emb [B, L, d]`."""
        length = emb.shape[1]
        check_length(length, self.max_len)
        positions = torch.arange(self.max_len - length, self.max_len, device=emb.device)
        keep = mask.unsqueeze(-1).to(emb.dtype)
        x = self.emb_dropout(emb + self.position(positions)) * keep
        return x, attention_mask(mask, self.causal), keep

    def _output(self, x: Tensor, keep: Tensor) -> Tensor:
        return self.final_norm(x) * keep


class BERTBlock(nn.Module):
    """Post-LN transformer layer as in BERT: x = LN(x + Attn(x)); x = LN(x + FFN(x)), GELU."""

    def __init__(
        self, d: int, n_heads: int, dropout: float, inner: int, activation: Activation
    ) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(d, n_heads, dropout)
        self.attn_drop = Dropout(dropout)
        self.attn_norm = nn.LayerNorm(d, eps=1e-12)
        self.fc1 = nn.Linear(d, inner)
        self.act = _activation(activation)
        self.fc2 = nn.Linear(inner, d)
        self.ffn_drop = Dropout(dropout)
        self.ffn_norm = nn.LayerNorm(d, eps=1e-12)

    def forward(self, x: Tensor, allowed: Tensor, keep: Tensor) -> Tensor:
        x = self.attn_norm(x + self.attn_drop(self.attn(x, x, allowed)))
        x = self.ffn_norm(x + self.ffn_drop(self.fc2(self.act(self.fc1(x)))))
        return x * keep

    def forward_last(self, x: Tensor, allowed: Tensor, keep: Tensor) -> Tensor:
        """The layer's output at the last slot only (see `SASRecBlock.forward_last`)."""
        q = x[:, -1:]
        out = self.attn_norm(q + self.attn_drop(self.attn(q, x, allowed)))
        out = self.ffn_norm(out + self.ffn_drop(self.fc2(self.act(self.fc1(out)))))
        return out * keep


class BERT4RecEncoder(_StackedEncoder):
    """BERT4Rec (Sun et al., CIKM'19): bidirectional post-LN transformer with learnable positions.

    Embeddings: LN(emb + pos) then dropout, as BERT's embedding post-processor. FFN inner size
    defaults to 4d (BERT4Rec: hidden 64, intermediate 256).
    """

    def __init__(
        self,
        d: int,
        n_layers: int = 2,
        n_heads: int = 2,
        dropout: float = 0.2,
        max_len: int = 50,
        inner_size: int | None = None,
        activation: Activation = "gelu",
    ) -> None:
        super().__init__()
        self.d = d
        self.max_len = max_len
        self.position = nn.Embedding(max_len, d)
        nn.init.normal_(self.position.weight, std=0.02)
        self.emb_norm = nn.LayerNorm(d, eps=1e-12)
        self.emb_dropout = Dropout(dropout)
        self.blocks = nn.ModuleList(
            BERTBlock(d, n_heads, dropout, inner_size or 4 * d, activation) for _ in range(n_layers)
        )

    def _inputs(self, emb: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(first layer's input, attention mask, keep) for `emb [B, L, d]`."""
        length = emb.shape[1]
        check_length(length, self.max_len)
        positions = torch.arange(self.max_len - length, self.max_len, device=emb.device)
        keep = mask.unsqueeze(-1).to(emb.dtype)
        x = self.emb_dropout(self.emb_norm(emb + self.position(positions))) * keep
        return x, attention_mask(mask, causal=False), keep


def _shift_rows(x: Tensor, shift: Tensor) -> Tensor:
    """out[b, t] = x[b, (t + shift[b]) mod L]: per-row roll along dim 1 (any trailing dims)."""
    length = x.shape[1]
    index = (torch.arange(length, device=x.device)[None, :] + shift[:, None]) % length
    index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return torch.gather(x, 1, index)


class GRU4RecEncoder(nn.Module):
    """GRU4Rec (Hidasi et al.): a GRU over the real items of each sequence.

    Left padding must not enter the recurrent state, so each row is rolled to RIGHT padding (real
    items first), the GRU runs over the whole tensor, and outputs are rolled back to the
    left-padded slots. A GRU is causal, so outputs at real slots never see the trailing padding:
    this equals running the GRU on each unpadded sequence, without pack_padded_sequence's
    host-device sync. Dropout on the input embeddings and on the outputs (and between layers).
    """

    def __init__(self, d: int, n_layers: int = 1, dropout: float = 0.2, bias: bool = True) -> None:
        super().__init__()
        self.d = d
        self.emb_dropout = Dropout(dropout)
        self.gru = nn.GRU(
            d,
            d,
            num_layers=n_layers,
            batch_first=True,
            bias=bias,
            dropout=dropout if n_layers > 1 else 0.0,
        )
        self.out_dropout = Dropout(dropout)

    def forward(self, emb: Tensor, mask: Tensor) -> Tensor:
        length = emb.shape[1]
        n_pad = length - mask.sum(dim=1)
        keep = mask.unsqueeze(-1).to(emb.dtype)
        x = self.emb_dropout(emb) * keep
        right = _shift_rows(x, n_pad)  # real items now at slots 0..len-1
        out, _ = self.gru(right)
        out = _shift_rows(out, -n_pad)  # back to left-padded slots
        return self.out_dropout(out) * keep.to(out.dtype)


def encode_full_and_last(
    encoder: nn.Module, emb: Tensor, mask: Tensor, n_full: int
) -> tuple[Tensor, Tensor]:
    """One encoder call for two kinds of rows: `emb [B, L, d]` rows `[:n_full]` are encoded at
    every slot (`[n_full, L, d]`), the remaining rows only at the last slot (`[B - n_full, d]`).

    Why: a contrastive view that needs only the final user vector (H2Rec's L_MSG) still has to run
    every layer below the last over all slots, but in the LAST transformer layer only the final
    slot's query, attention row and FFN matter — a third of that layer's work is the key/value
    projections, the rest is skipped. The result equals `encoder(emb, mask)[n_full:, -1]` exactly
    (same parameters, same masks); with dropout on, only which random draws are made differs.
    Encoders without a `forward_partial` (GRU4Rec, whose last state needs the whole recurrence
    anyway) are run in full and sliced.
    """
    partial = getattr(encoder, "forward_partial", None)
    if partial is not None:
        return partial(emb, mask, n_full)
    out = encoder(emb, mask)
    return out[:n_full], out[n_full:, -1]


def encode_last(encoder: nn.Module, emb: Tensor, mask: Tensor) -> Tensor:
    """`encoder(emb, mask)[:, -1]`, `[B, d]`, computing the last layer at the last slot only.

    Why: scoring a user needs only the vector after the last item, so in the final transformer
    layer only that slot's query, attention row and FFN matter (every slot stays a key and value).
    On Beauty this takes a fifth off full-ranking evaluation. Equal to the full pass up to float
    rounding; encoders without a `forward_last` (GRU4Rec) run in full and are sliced.
    """
    last = getattr(encoder, "forward_last", None)
    if last is not None:
        return last(emb, mask)
    return encoder(emb, mask)[:, -1]


Backbone = Literal["sasrec", "gru4rec", "bert4rec"]


def build_encoder(
    backbone: Backbone,
    d: int,
    *,
    n_layers: int = 2,
    n_heads: int = 1,
    dropout: float = 0.2,
    max_len: int = 50,
    inner_size: int | None = None,
    activation: Activation | None = None,
) -> nn.Module:
    """An encoder by backbone name, for models whose backbone is a config choice (H2Rec and its
    companions); `activation=None` keeps the encoder's own default (ReLU SASRec, GELU BERT4Rec)."""
    if backbone == "gru4rec":
        return GRU4RecEncoder(d, n_layers=n_layers, dropout=dropout)
    common: dict[str, Any] = {
        "n_layers": n_layers,
        "n_heads": n_heads,
        "dropout": dropout,
        "max_len": max_len,
        "inner_size": inner_size,
    }
    if activation is not None:
        common["activation"] = activation
    if backbone == "bert4rec":
        return BERT4RecEncoder(d, **common)
    if backbone == "sasrec":
        return SASRecEncoder(d, **common)
    raise ValueError(f"unknown backbone '{backbone}' (expected sasrec, gru4rec or bert4rec)")


__all__ = [
    "BERT4RecEncoder",
    "Backbone",
    "GRU4RecEncoder",
    "MultiHeadAttention",
    "SASRecEncoder",
    "SequenceEncoder",
    "attention_mask",
    "build_encoder",
    "encode_full_and_last",
]
