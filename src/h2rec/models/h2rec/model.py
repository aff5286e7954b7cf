"""H2Rec (Section 3 of the paper): a SID branch and a HID branch, each with its own sequence
encoder, joined in the score and aligned by two auxiliary losses.

Per slot t of a left-padded sequence (shapes for batch B, length L, G code levels, width d):

    e^hid_t = E_hid[i_t]                                     HID table, PCA-initialised (Alg. 1 l.6)
    g^l_t   = E^l[c^l_{i_t}]                                  code tables, codebook-initialised (l.7)
    alpha_t = softmax(FN([e^hid_t ; b_prior]) + b_prior)      Eq. 2-3 (fusion network)
    E^sid_t = sum_l alpha_t,l g^l_t                           Eq. 3
    E^f_t   = sum_l alpha_t,l CrossAttn(e^hid -> g^l)_t + e^hid_t        Eq. 4-5, causal
    u^sid   = f_theta1(E^sid),  u^hid = f_theta2(E^f)
    score(j | t) = [e^sid_j ; e^hid_j] . [u^sid_t ; u^hid_t],  e^sid_j = sum_l alpha_t,l E^l[c^l_j]   Eq. 9

At the last slot alpha comes from the HID embedding of the sequence's last REAL item: sequences are
left-padded, so the last slot always holds it (the reference code reads a padding slot there).

Scoring, without a per-user copy of the item table: sum_l alpha_l (E^l[c^l_j] . u^sid) is a dot
product of the user vector q_t = [alpha_t,1 u^sid_t ; ... ; alpha_t,G u^sid_t ; u^hid_t] with the
item row w_j = [E^1[c^1_j] ; ... ; E^G[c^G_j] ; e^hid_j]. `item_weights` is the concatenated
per-level item table W (n_items+1, (G+1)d), so scoring all items is ONE matrix product q W^T (the
full-softmax objectives use exactly that map, `full_scoring`). W is cached in eval mode under
no_grad (Section 3.4.2) and rebuilt when the parameters change.

`hidden` and `user_repr` return the COMPACT user state s_t = [u^sid_t ; u^hid_t ; alpha_t] (width
2d + G), and the scorers expand it to q where they need q (`expand_user`). Why: training selects a
few slots of every [B, L] batch, so building q (width (G+1)d) at every slot first cost more than
the scoring itself; sampled losses score it level by level (`score_items`) and never build q. At
inference `score_all` scores the SID part per codeword (see its docstring): the same values, a
d-wide product with the catalogue instead of a (G+1)d-wide one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from h2rec.models.base import SequentialModel
from h2rec.models.baselines import BERT4Rec
from h2rec.models.h2rec.alignment import code_guided_alignment, masked_granularity_loss
from h2rec.models.h2rec.config import H2RecConfig
from h2rec.models.h2rec.fusion import GranularityCrossAttention, GranularityFusion
from h2rec.models.h2rec.positives import PositiveSets
from h2rec.models.inputs import ModelInputs
from h2rec.models.parts.cache import TensorCache, no_grad_eval
from h2rec.models.parts.encoders import build_encoder, encode_full_and_last, encode_last
from h2rec.models.parts.items import HashItemEmbedding
from h2rec.models.parts.pca import pca_item_vectors
from h2rec.models.parts.scorers import dot_items
from h2rec.models.parts.sid import CodeEmbedding
from h2rec.models.parts.take import take_slots


def _encoder(cfg: H2RecConfig) -> nn.Module:
    """One sequence encoder of the configured backbone (f_theta1 or f_theta2)."""
    return build_encoder(
        cfg.backbone,
        cfg.hidden_size,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        dropout=cfg.dropout,
        max_len=cfg.max_len,
        inner_size=cfg.inner_size,
    )


@dataclass
class H2RecState:
    """What the auxiliary losses reuse from the forward pass."""

    seqs: Tensor  # [B, L] the encoded item ids
    mask: Tensor  # [B, L] real slots
    alpha: Tensor  # [B, L|1, G] fusion weights (those used for E^sid and scoring)
    u_sid: Tensor  # [B, L, d] ([B, d] from `encode(last_only=True)`)
    u_hid: Tensor  # [B, L, d] (likewise)
    u_masked: Tensor | None = None  # [B, d] L_MSG's masked view at the last slot (training only)


class H2Rec(SequentialModel):
    name = "h2rec"
    default_loss = "bpr"  # Eq. 10, used when a training config names no loss

    def __init__(
        self,
        n_items: int,
        cfg: H2RecConfig,
        codes: CodeEmbedding,
        hid: HashItemEmbedding,
        positives: PositiveSets | None,
    ) -> None:
        super().__init__(n_items, cfg.max_len)
        self.cfg = cfg
        d = cfg.hidden_size
        self.d = d
        self.n_levels = codes.n_levels
        self.bidirectional = cfg.backbone == "bert4rec"
        self.codes = codes
        self.hid = hid
        self.fusion = GranularityFusion(
            d,
            self.n_levels,
            cfg.fusion_hidden,
            enabled=cfg.fusion_network,
            prior_init=cfg.prior_init,
            learnable=cfg.prior_learnable,
        )
        self.cross = (
            GranularityCrossAttention(
                d,
                causal=not self.bidirectional,
                query=cfg.cross_attention_query,
                residual=cfg.cross_attention_residual,
            )
            if cfg.cross_attention
            else None
        )
        self.sid_encoder = _encoder(cfg)
        self.hid_encoder = self.sid_encoder if cfg.shared_encoder else _encoder(cfg)
        self.embedding_scale = float(np.sqrt(d)) if cfg.embedding_scaled else 1.0
        self.positives = positives if cfg.beta > 0 else None
        # L_MSG's learnable mask token: one vector replacing a whole granularity (Section 3.3.2)
        self.granularity_mask = nn.Parameter(torch.randn(d) * 0.02) if cfg.gamma > 0 else None
        self._weights_cache: TensorCache[Tensor] = TensorCache()

    # -- BERT4Rec backbone support ----------------------------------------------------------
    @property
    def mask_token_id(self) -> int | None:
        """[MASK] id for a bidirectional (cloze-trained) backbone, else None."""
        return self.n_items + 1 if self.bidirectional else None

    def user_repr(self, seqs: Tensor) -> Tensor:
        if self.bidirectional:  # BERT4Rec: predict at an appended [MASK]
            seqs = BERT4Rec.append_mask(self, seqs)  # type: ignore[arg-type]
        state = self.encode(seqs, last_only=True)  # u_sid, u_hid: [B, d], at the last slot
        return self.user_state(state.u_sid, state.u_hid, state.alpha[:, -1])

    # -- forward ------------------------------------------------------------------------------
    def alpha(self, e_query: Tensor) -> Tensor:
        """Fusion weights from the query HID embeddings `[B, L, d]`: `[B, L, G]` per slot, or
        `[B, 1, G]` from the last slot (the last real item) when alpha_scope=sequence."""
        if self.cfg.alpha_scope == "sequence":
            e_query = e_query[:, -1:]
        return self.fusion(e_query)

    def query_items(self, seqs: Tensor) -> Tensor:
        """The item whose HID embedding queries the fusion network at each slot: the slot's own
        item, except that a [MASK] slot (bidirectional backbone) takes the nearest earlier real
        item, so an appended [MASK] gets e_N's alpha as Eq. 2 says (not one alpha for everyone)."""
        if not self.bidirectional:
            return seqs
        real = (seqs != 0) & (seqs != self.n_items + 1)
        slots = torch.arange(seqs.shape[1], device=seqs.device).expand_as(seqs)
        last = torch.where(real, slots, torch.full_like(slots, -1)).cummax(dim=1).values
        filled = torch.gather(seqs, 1, last.clamp(min=0))
        return torch.where(last >= 0, filled, seqs)

    def _encode_sid(self, e_sid: Tensor, mask: Tensor) -> Tensor:
        return self.sid_encoder(e_sid * self.embedding_scale, mask)

    def forward_train(self, seqs: Tensor) -> tuple[Tensor, H2RecState]:
        state = self.encode(seqs)
        return self.user_state(state.u_sid, state.u_hid, state.alpha), state

    def encode(self, seqs: Tensor, last_only: bool = False) -> H2RecState:
        """Both branches over `seqs [B, L]`: alpha, u_sid and u_hid at every slot.

        `last_only` (scoring): u_sid and u_hid are `[B, d]`, the last slot's, with each encoder's
        final layer run at that slot only (`encode_last`); no L_MSG view is built.
        """
        if seqs.dim() != 2:
            raise ValueError(f"expected item sequences [B, L], got shape {tuple(seqs.shape)}")
        mask = seqs != 0
        e_hid = self.hid.embed(seqs)
        keys = values = levels = None
        if self.cross is not None and self.cfg.cross_attention_query == "hid":
            # One gather for K_l and V_l: project the small code table, then look up rows,
            # level-major ([B, G, L, 2d]), so K and V reach the cross attention as views. The
            # g^l themselves are never materialised: E^sid is a weighted embedding bag.
            k_table, v_table = self.cross.project_table(self.codes.table.weight)
            kv = self.codes.levels_by_level(seqs, torch.cat([k_table, v_table], dim=1))
            keys, values = kv.split(self.d, dim=-1)
        elif self.cross is not None:
            levels = self.codes.levels(seqs)
        queries = self.query_items(seqs)
        alpha = self.alpha(e_hid if queries is seqs else self.hid.embed(queries))
        sid_weights = (
            alpha if self.cfg.sid_fusion == "alpha" else torch.full_like(alpha, 1.0 / self.n_levels)
        )
        e_sid = self.codes.weighted(seqs, sid_weights)  # Eq. 3, [B, L, d]
        u_masked = None
        if last_only:
            u_sid = encode_last(self.sid_encoder, e_sid * self.embedding_scale, mask)
        elif self.training and self.granularity_mask is not None:
            # L_MSG's masked view shares the SID encoder call with the global view (one batch of
            # 2B sequences runs faster than two of B), and only its last slot is computed in the
            # final layer: L_MSG reads nothing else (same result; dropout draws differ).
            e_masked = self.masked_sid_input(e_sid, seqs, sid_weights, mask)
            u_sid, u_masked = encode_full_and_last(
                self.sid_encoder,
                torch.cat([e_sid, e_masked]) * self.embedding_scale,
                torch.cat([mask, mask]),
                seqs.shape[0],
            )
        else:
            u_sid = self._encode_sid(e_sid, mask)
        fused = e_hid
        if self.cross is not None:
            fused = self.cross(e_hid, levels, alpha, mask, keys, values)
        if last_only:
            u_hid = encode_last(self.hid_encoder, fused * self.embedding_scale, mask)
        else:
            u_hid = self.hid_encoder(fused * self.embedding_scale, mask)
        return H2RecState(
            seqs=seqs, mask=mask, alpha=sid_weights, u_sid=u_sid, u_hid=u_hid, u_masked=u_masked
        )

    @staticmethod
    def user_state(u_sid: Tensor, u_hid: Tensor, weights: Tensor) -> Tensor:
        """s = [u_sid ; u_hid ; alpha], `[..., 2d + G]`: what `hidden`/`user_repr` return
        (`weights [..., 1|L, G]` broadcasts over the slots)."""
        weights = weights.expand(*u_sid.shape[:-1], weights.shape[-1])
        # the widest of the three dtypes (under autocast alpha stays float32, not bf16)
        dtype = torch.promote_types(torch.promote_types(u_sid.dtype, u_hid.dtype), weights.dtype)
        return torch.cat([u_sid.to(dtype), u_hid.to(dtype), weights.to(dtype)], dim=-1)

    def split_user(self, user: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(u_sid, u_hid, alpha) of a user state from `user_state`."""
        return user.split([self.d, self.d, self.n_levels], dim=-1)  # type: ignore[return-value]

    def expand_user(self, user: Tensor) -> Tensor:
        """q = [alpha_1 u_sid ; ... ; alpha_G u_sid ; u_hid], `[..., (G + 1) d]`: the user side of
        Eq. 9 as one vector, whose dot product with an `item_weights` row is the score."""
        u_sid, u_hid, alpha = self.split_user(user)
        weighted = alpha.unsqueeze(-1) * u_sid.unsqueeze(-2)  # [..., G, d]
        return torch.cat([weighted.flatten(-2), u_hid], dim=-1)

    def hidden(self, seqs: Tensor) -> Tensor:
        return self.forward_train(seqs)[0]

    def fusion_weights(self, seqs: Tensor) -> Tensor:
        """`[B, G]`: the alpha each user's last real item gives (diagnostics: alpha statistics)."""
        return self.fusion(self.hid.embed(seqs[:, -1]))

    # -- item side ----------------------------------------------------------------------------
    def _item_rows(self, items: Tensor) -> Tensor:
        return torch.cat([self.codes.levels(items).flatten(-2), self.hid.embed(items)], dim=-1)

    def item_weights(self) -> Tensor:
        """`[n_items + 1, (G + 1) d]`: [E^1[c^1_j] ; ... ; E^G[c^G_j] ; e^hid_j] per item."""

        def rows() -> Tensor:
            return self._item_rows(torch.arange(self.n_items + 1, device=self.hid_weight.device))

        if not no_grad_eval(self):
            return rows()
        return self._weights_cache.get((self.hid_weight, self.codes.table.weight), rows)

    @property
    def hid_weight(self) -> Tensor:
        return self.hid.embedding.weight

    def score_all(self, user: Tensor, *, catalogue_only: bool = False) -> Tensor:
        """All items for the user states `user [N, 2d + G]`: `[N, n_items + 1]` float32
        (`[N, n_items]` with `catalogue_only`). Training (or any autograd use) takes the base
        path, ONE product q W^T with q = `expand_user(user)`.

        Inference (eval mode, no autograd) scores the SID part per CODE, not per item: each level
        has only K_l codewords, so E^l[c] . u^sid is first computed for every codeword row
        (`[rows, N]`, a few hundred rows) and scaled by each level's alpha (`[G, rows, N]`), then
        summed per item by an embedding bag over the item's G code rows; only the HID part is a
        d-wide product with the catalogue. That replaces a (G+1)d-wide product by a d-wide one
        plus G gathered adds, about 1.7x faster on CPU for 4 x 128 codes. The result is
        `[n_items, N]` computed and returned transposed (a view): the evaluator's ranking reads
        it at the same speed, while making it contiguous would cost what was saved. Values equal
        the base path up to float rounding.
        """
        if not no_grad_eval(self):
            return super().score_all(self.expand_user(user), catalogue_only=catalogue_only)
        g = self.n_levels
        start = 1 if catalogue_only else 0
        u_sid, u_hid, alpha = (part.float() for part in self.split_user(user))
        table = self.codes.table.weight.float()  # [R, d]: every level's codewords, offset
        rows = self.codes.item_rows[start : self.n_items + 1]  # [n, G] row of each item's codes
        per_row = table @ u_sid.t()  # [R, N]: E[c] . u^sid for every codeword row
        per_code = (alpha.t().unsqueeze(1) * per_row).reshape(g * table.shape[0], -1)
        offsets = torch.arange(g, device=rows.device) * table.shape[0]
        sid = F.embedding_bag(rows + offsets, per_code, mode="sum")  # [n, N]
        hid = self.hid_weight[start : self.n_items + 1].float()
        return sid.addmm_(hid, u_hid.t()).t()  # in place: no [n, N] copy

    def full_scoring(self, user: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Training's view of `score_all` (its autograd path): the linear map q W^T."""
        return self.expand_user(user), self.item_weights()[1:], None

    def score_items(self, user: Tensor, items: Tensor) -> Tensor:
        """`user [N, 2d + G]`, `items [N, k]` -> `[N, k]`: level by level, sum_l alpha_l
        (E^l[c^l_j] . u^sid) + e^hid_j . u^hid, from the gathered rows only (no q, no
        [N, k, (G+1)d] copy)."""
        u_sid, u_hid, alpha = self.split_user(user)
        with torch.autocast(device_type=user.device.type, enabled=False):
            e_sid = self.codes.weighted(items, alpha.float().unsqueeze(1))  # [N, k, d]
        return dot_items(u_sid, e_sid) + dot_items(u_hid, self.hid.embed(items))

    def train(self, mode: bool = True) -> H2Rec:
        self._weights_cache.clear()
        return super().train(mode)

    # -- auxiliary losses -----------------------------------------------------------------------
    def auxiliary_losses(
        self, state: H2RecState, inputs: Tensor, targets: Tensor, users: Tensor | None = None
    ) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        if self.positives is not None:
            out["loss_ca"] = self.cfg.beta * self.alignment_loss(state, targets)
        if self.granularity_mask is not None:
            out["loss_msg"] = self.cfg.gamma * self.granularity_loss(state)
        return out

    def alignment_loss(self, state: H2RecState, targets: Tensor) -> Tensor:
        """L_CA over the batch's target items (anchors), each with the alpha of its position."""
        assert self.positives is not None
        rows, cols = torch.nonzero(targets != 0, as_tuple=True)
        n = rows.numel()
        if n < 2:
            return self.hid_weight.sum() * 0.0
        if n > self.cfg.ca_max_anchors:  # drawn on the CPU generator: checkpointed, seeded
            keep = torch.randperm(n)[: self.cfg.ca_max_anchors].to(rows.device)
            rows, cols = rows[keep], cols[keep]
        flat = rows * targets.shape[1] + cols
        items = take_slots(targets, flat)
        alpha = take_slots(state.alpha.expand(-1, targets.shape[1], -1), flat)  # [M, G]
        e_sid = self.codes.weighted(items, alpha)
        e_hid = self.hid.embed(items)
        positive = self.positives.mask(items, items)
        return code_guided_alignment(e_sid, e_hid, positive, self.cfg.ca_temperature)

    def masked_sid_input(
        self, e_sid: Tensor, seqs: Tensor, weights: Tensor, mask: Tensor
    ) -> Tensor:
        """L_MSG's masked view of E^sid: per sequence one level m, drawn uniformly on the CPU
        generator (seeded, checkpointed), is replaced by the learnable mask token at every real
        slot. Built as E^sid + w_m (token - g^m), with g^m looked up for level m alone, rather
        than by re-fusing a masked copy of all G levels (the same value, G times less work)."""
        assert self.granularity_mask is not None
        b, length = seqs.shape
        m = torch.randint(0, self.n_levels, (b,)).to(seqs.device)
        pick = m.view(b, 1, 1).expand(b, length, 1)
        g_m = self.codes.table(self.codes.code_rows(seqs).gather(2, pick).squeeze(2))  # [B, L, d]
        w = weights.expand(-1, length, -1)
        w_m = w.gather(2, pick).squeeze(2) * mask.to(w.dtype)
        return e_sid + w_m.unsqueeze(-1) * (self.granularity_mask.to(e_sid.dtype) - g_m)

    def granularity_loss(self, state: H2RecState) -> Tensor:
        """L_MSG: the SID encoder's last-slot outputs of the global and the granularity-masked
        view form the positive pair; other users in the batch are the negatives."""
        assert self.granularity_mask is not None
        real_rows = state.mask[:, -1]
        u_masked = state.u_masked
        if u_masked is None:  # forward_train ran in eval mode: make the masked view now
            e_sid = self.codes.weighted(state.seqs, state.alpha)
            masked = self.masked_sid_input(e_sid, state.seqs, state.alpha, state.mask)
            u_masked = self._encode_sid(masked, state.mask)[:, -1]
        if int(real_rows.sum()) < 2:
            return self.granularity_mask.sum() * 0.0
        return masked_granularity_loss(
            state.u_sid[:, -1][real_rows], u_masked[real_rows], self.cfg.msg_temperature
        )


def build_h2rec_model(n_items: int, cfg: H2RecConfig, inputs: ModelInputs) -> H2Rec:
    """Assemble H2Rec from the dataset's SIDs, codebooks, text vectors and training sequences."""
    from h2rec.errors import ConfigError

    inputs.require("h2rec", "codes")
    assert inputs.codes is not None and inputs.codebook_sizes is not None
    d = cfg.hidden_size
    extra = 1 if cfg.backbone == "bert4rec" else 0
    hid = HashItemEmbedding(n_items, d, extra_tokens=extra)
    if cfg.hid_init == "pca":
        inputs.require("h2rec (hid_init=pca)", "text_vectors")
        assert inputs.text_vectors is not None
        hid.load_item_vectors(torch.from_numpy(pca_item_vectors(inputs.text_vectors, d)))
    rms = float(hid.weight_for_scoring()[1:].detach().pow(2).mean().sqrt())
    if cfg.code_init == "codebook" and inputs.codebooks is None:
        raise ConfigError(
            f"model.code_init=codebook but the SIDs '{inputs.names.get('sids', '?')}' have no "
            "codebooks (published codes); set model.code_init=random"
        )
    codes = CodeEmbedding(
        inputs.codes,
        inputs.codebook_sizes,
        d,
        codebooks=inputs.codebooks if cfg.code_init == "codebook" else None,
        target_rms=rms,
        extra_tokens=extra,
    )
    positives = None
    if cfg.beta > 0:
        inputs.require("h2rec (beta > 0)", "train_offsets", "train_items")
        if cfg.ca_code_positives and cfg.ca_p > inputs.codes.shape[1]:
            raise ConfigError(
                f"model.ca_p={cfg.ca_p} exceeds the {inputs.codes.shape[1]} code levels of SIDs "
                f"'{inputs.names.get('sids', '?')}'; set model.ca_p <= {inputs.codes.shape[1]}"
            )
        positives = PositiveSets(
            inputs.codes,
            inputs.train_offsets,
            inputs.train_items,
            n_items,
            p=cfg.ca_p,
            window=cfg.ca_window,
            code_match=cfg.ca_code_match,
            use_codes=cfg.ca_code_positives,
            use_cooccurrence=cfg.ca_cooccurrence,
        )
    return H2Rec(n_items, cfg, codes, hid, positives)
