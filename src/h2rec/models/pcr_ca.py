"""PCR-CA (Tan et al., 2025, arXiv 2508.18166, Microsoft Store): Parallel Codebook
Representations with Contrastive Alignment, re-implemented for sequential recommendation.

PCR-CA is the strongest hybrid baseline of the H2Rec paper (Table 2, Fig. 4, Table 7 on GRU4Rec
and BERT4Rec). No code is public; this module follows the paper's abstract and the public summary
of its method section, and every detail those leave open is marked ASSUMED below.

What the paper states
    - A frozen text encoder gives each item a continuous vector (256-d there).
    - A Parallel-Codebook auto-encoder (PC-AE), trained END TO END with the CTR model: a 2-layer
      MLP to a 16-d latent, LayerNorm, several codebooks applied IN PARALLEL (not residually as in
      RQ-VAE), a decoder, and a VQ loss (codebook + commitment) plus a reconstruction loss.
    - Contrastive alignment of semantic and collaborative signals at the item level (code-based
      embedding vs ID embedding of the same item) and at the user level (ID-sequence vs
      semantic-sequence user vectors).
    - A dual-attention fusion of ID-based and semantic features; CTR (BCE) training.

This implementation, per slot t of a left-padded sequence (batch B, length L, width d):

    x_i   = (t_i - mean) / rms                         text vector, centred, unit RMS (one factor)
    z_i   = LN(W2 relu(W1 x_i))                        latent, `latent_dim` = 16
    z_i^m = chunk m of z_i (PQ split, M = 4 chunks of 4), or all of z_i (`shared_latent`)
    c_i^m = argmin_k ||z_i^m - C^m_k||^2,  q_i^m = C^m[c_i^m]          M parallel codebooks of K
    e^sem_i = P [q_i^1 ; ... ; q_i^M]  (straight-through: forward q, gradient to z)
    e^id_i  = E_id[i]                                  hash-ID table
    h^id = Enc_id(e^id_{1..L}),  h^sem = Enc_sem(e^sem_{1..L})        two encoders, one backbone
    a^id = Attn(h^id -> h^sem),  a^sem = Attn(h^sem -> h^id)            dual attention
    u^v  = h^v + sigmoid(G_v [h^v ; a^v]) * a^v                          gated fusion, v in {id, sem}
    score(j | t) = [u^id_t ; u^sem_t] . [e^id_j ; e^sem_j]               late fusion, one matmul

    L = BCE (1 negative, every position)
        + w_rec  MSE(Dec([q^1..q^M]_st), x)                         reconstruction
        + w_vq   (||sg[z] - q||^2 + beta ||z - sg[q]||^2)            codebook + commitment
        + w_item InfoNCE_sym(e^sem_i, e^id_i; batch items)            item-level alignment
        + w_user InfoNCE_sym(h^id_last, h^sem_last; batch users)      user-level alignment

ASSUMED (the paper is silent or the detail was not retrievable)
    - Codebooks: M = 4 x K = 128, a product-quantisation split of the 16-d latent into 4-d chunks
      (`shared_latent: true` makes every codebook quantise the whole latent instead; they then see
      the same input and tend to learn redundant partitions). Squared Euclidean distance.
    - AE widths: encoder text_dim -> `ae_hidden` (256) -> 16, ReLU; decoder the mirror image from
      the concatenated quantised chunks. LayerNorm with affine parameters.
    - Text vectors are centred and divided by ONE global RMS before the AE (the geometry is kept;
      the MSE then has a scale that does not depend on the embedding model, so w_rec = 1 means the
      same thing for MiniLM, ada or TF-IDF vectors).
    - Codebook init without k-means: each codebook starts from the (random-encoder) latent chunks
      of K distinct random items, so every code starts on the data. Dead codes (used by no item)
      are re-drawn from random items' current latent chunks before every epoch
      (`dead_code_reset`, the "random restart" of Jukebox/SoundStream); the draw uses a generator
      seeded by the epoch, so `start_epoch` is a function of the parameters and the epoch only (a
      resumed run replays it). Adam's moments of re-drawn rows are left as they are.
    - The item's semantic embedding is a bias-free linear projection P of the concatenated
      quantised code vectors to d (`semantic_embedding: quantized`), so the recommendation loss
      reaches the codebook geometry through P and the encoder through the straight-through
      estimator ("end to end"). `semantic_embedding: code_table` instead sums one learnable d-dim
      embedding per (codebook, code), the usual way discrete codes enter a CTR model; the AE is
      then trained by its own losses only. P is initialised so that e^sem starts at RMS `init_std`
      like the ID table (the LayerNormed latent has unit scale).
    - AE losses (reconstruction, VQ) are averaged over the distinct real items of the batch's
      input sequences (each once per batch), elementwise means; the VQ term is averaged over the
      codebooks. beta = 0.25 (VQ-VAE's value).
    - ID table: random N(0, 0.02^2) by default (`id_init: random`): PCR-CA is an industrial ID
      model with no stated text initialisation. `id_init: pca` starts it from PCA of the text
      vectors (LLM-ESR/H2Rec style), rescaled to RMS `init_std`.
    - Dual attention: per position, each view's encoder output queries the other view's outputs
      (multi-head, the backbone's head count, causal for SASRec/GRU4Rec, bidirectional for
      BERT4Rec); a sigmoid gate of [own ; attended] (bias 0, so 0.5 at init) scales the attended
      part, which is added to the view's own output (`fusion: sum` drops the gate, `fusion: none`
      the whole module). The fused vectors feed LLM-ESR's late fusion [u^id ; u^sem]. The paper
      names "dual-attention fusion" without equations; this is the reading that keeps both views
      for the late-fusion score.
    - Contrastive alignment: cosine-similarity InfoNCE, tau = 0.1, the mean of both directions.
      Item level: the distinct real items of the batch's inputs (at most `cl_max_items`, drawn
      uniformly on torch's CPU generator), e^sem against e^id of the same item, other batch items
      as negatives (items with colliding codes included). User level: the two encoders' outputs
      at the last slot BEFORE the dual attention (after it, each view already contains the other,
      which would make the alignment trivial), other users in the batch as negatives.
    - Loss weights w_rec, w_vq, w_item, w_user = 1, 1, 0.1, 0.1. Setting a weight to 0 removes
      its component: no loss term, and for w_rec no decoder at all.
    - Backbone: both encoders are the configured backbone with that baseline's defaults (2 layers
      for SASRec/BERT4Rec, 1 for GRU4Rec; 1 head, 2 for BERT4Rec; x sqrt(d) input scaling for
      SASRec only). On BERT4Rec, [MASK] = n_items + 1 has its own ID row and a learnable semantic
      vector, the model is trained with the Cloze task (BCE with sampled negatives by default) and
      predicts at an appended [MASK], as `BERT4Rec` does. The score is a plain dot product (no
      BERT output head or bias) so that it stays the late-fusion score on every backbone.
    - Loss: BCE with one negative at every position (`default_loss = "bce"`), the CTR loss of the
      paper; the H2Rec paper trains every baseline under its own loss.

Codes: `item_codes()` returns the learned codes `[n_items + 1, M]` (row 0 = -1) and `code_stats()`
their collision statistics, so collision rates can be reported next to the tokenizers' ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import AliasChoices, Field, model_validator
from torch import Tensor, nn

from h2rec.errors import ConfigError
from h2rec.models.base import SequentialModel
from h2rec.models.baselines import BERT4RecConfig, GRU4RecConfig, SASRecConfig
from h2rec.models.inputs import ModelInputs
from h2rec.models.parts.cache import TensorCache, no_grad_eval
from h2rec.models.parts.encoders import (
    Backbone,
    MultiHeadAttention,
    attention_mask,
    build_encoder,
)
from h2rec.models.parts.ids import unique_ids
from h2rec.models.parts.items import HashItemEmbedding
from h2rec.models.parts.pca import pca_item_vectors
from h2rec.models.parts.scorers import dot_items
from h2rec.models.parts.take import take_rows
from h2rec.models.registry import ModelConfig, register_model

_BASELINE_CONFIGS: dict[str, type[ModelConfig]] = {
    "sasrec": SASRecConfig,
    "gru4rec": GRU4RecConfig,
    "bert4rec": BERT4RecConfig,
}


class PCRCAConfig(ModelConfig):
    """PCR-CA; backbone fields left None take the matching baseline config's default."""

    # -- backbone (both sequence encoders) --
    backbone: Backbone = "sasrec"
    hidden_size: int = Field(64, ge=1, validation_alias=AliasChoices("hidden_size", "d"))
    n_layers: int | None = Field(None, ge=1)
    n_heads: int | None = Field(None, ge=1, description="encoders and dual attention")
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    max_len: int = Field(50, ge=1)
    inner_size: int | None = Field(None, ge=1, description="FFN inner size (None: encoder default)")
    scale_embeddings: bool | None = None
    init_std: float = Field(0.02, gt=0.0, description="RMS of the initial ID and semantic vectors")

    # -- data and the ID side --
    text_embeddings: str = Field("st-all-minilm-l6-v2", min_length=1)
    # Named id_init (not hid_init): the text vectors are needed whatever the ID init is.
    id_init: Literal["random", "pca"] = "random"

    # -- Parallel-Codebook auto-encoder --
    latent_dim: int = Field(16, ge=1)
    ae_hidden: int = Field(256, ge=1)
    n_codebooks: int = Field(4, ge=1)
    codebook_size: int = Field(128, ge=2)
    shared_latent: bool = False  # True: every codebook quantises the whole latent (no PQ split)
    semantic_embedding: Literal["quantized", "code_table"] = "quantized"
    dead_code_reset: bool = True

    # -- fusion --
    fusion: Literal["gate", "sum", "none"] = "gate"

    # -- auxiliary losses (weight 0 removes the component) --
    recon_weight: float = Field(1.0, ge=0.0)
    vq_weight: float = Field(1.0, ge=0.0)
    commitment: float = Field(0.25, ge=0.0, description="beta of the commitment term")
    item_cl_weight: float = Field(0.1, ge=0.0)
    user_cl_weight: float = Field(0.1, ge=0.0)
    item_cl_temperature: float = Field(0.1, gt=0.0)
    user_cl_temperature: float = Field(0.1, gt=0.0)
    cl_max_items: int = Field(1024, ge=2, description="items per batch in the item-level InfoNCE")

    @model_validator(mode="after")
    def _check(self) -> PCRCAConfig:
        fields = _BASELINE_CONFIGS[self.backbone].model_fields
        if self.n_layers is None:
            self.n_layers = int(fields["n_layers"].default)
        if self.n_heads is None:
            self.n_heads = int(fields["n_heads"].default) if "n_heads" in fields else 1
        if self.scale_embeddings is None:
            self.scale_embeddings = bool(fields["scale_embeddings"].default)
        if self.hidden_size % self.n_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by n_heads {self.n_heads}"
            )
        if not self.shared_latent and self.latent_dim % self.n_codebooks:
            raise ValueError(
                f"latent_dim {self.latent_dim} must be divisible by n_codebooks "
                f"{self.n_codebooks} (PQ split); or set shared_latent: true"
            )
        return self

    @property
    def code_dim(self) -> int:
        return self.latent_dim if self.shared_latent else self.latent_dim // self.n_codebooks


# -- Parallel-Codebook auto-encoder ------------------------------------------------------------
@dataclass
class Quantized:
    """The PC-AE's output for N items: latent chunks, codes and quantised vectors."""

    chunks: Tensor  # [N, M, c] z^m (float32)
    codes: Tensor  # [N, M] int64
    q: Tensor  # [N, M, c] C^m[c^m] (gradient to the codebooks)
    q_st: Tensor  # [N, M, c] straight-through: value q, gradient to the chunks

    def select(self, keep: Tensor) -> Quantized:
        return Quantized(self.chunks[keep], self.codes[keep], self.q[keep], self.q_st[keep])


class ParallelCodebookAE(nn.Module):
    """MLP encoder -> LayerNorm'd latent -> M parallel codebooks (STE) -> MLP decoder.

    `decoder=False` builds no decoder (reconstruction weight 0). Distances, codes and quantised
    vectors are computed in float32 outside autocast: under bf16 near-ties would flip codes.
    """

    def __init__(
        self,
        text_dim: int,
        hidden: int,
        latent_dim: int,
        n_codebooks: int,
        codebook_size: int,
        shared_latent: bool,
        decoder: bool = True,
    ) -> None:
        super().__init__()
        self.n_codebooks = n_codebooks
        self.codebook_size = codebook_size
        self.shared_latent = shared_latent
        self.latent_dim = latent_dim
        self.code_dim = latent_dim if shared_latent else latent_dim // n_codebooks
        if self.code_dim * (1 if shared_latent else n_codebooks) != latent_dim:
            raise ValueError(f"latent_dim {latent_dim} is not divisible by {n_codebooks} codebooks")
        self.encoder = nn.Sequential(
            nn.Linear(text_dim, hidden), nn.ReLU(), nn.Linear(hidden, latent_dim)
        )
        self.norm = nn.LayerNorm(latent_dim)
        self.codebooks = nn.Parameter(torch.randn(n_codebooks, codebook_size, self.code_dim))
        self.decoder = (
            nn.Sequential(
                nn.Linear(n_codebooks * self.code_dim, hidden),
                nn.ReLU(),
                nn.Linear(hidden, text_dim),
            )
            if decoder
            else None
        )

    def encode(self, x: Tensor) -> Tensor:
        """`x [N, text_dim]` -> latent z `[N, latent_dim]`."""
        return self.norm(self.encoder(x))

    def split(self, z: Tensor) -> Tensor:
        """`z [N, latent]` -> the codebooks' inputs `[N, M, c]` (chunks, or z repeated)."""
        if self.shared_latent:
            return z.unsqueeze(1).expand(-1, self.n_codebooks, -1)
        return z.view(z.shape[0], self.n_codebooks, self.code_dim)

    def nearest(self, chunks: Tensor) -> Tensor:
        """`[N, M, c]` -> codes `[N, M]`: per codebook, the nearest codeword (squared L2)."""
        with torch.no_grad(), torch.autocast(device_type=chunks.device.type, enabled=False):
            x = chunks.float()
            books = self.codebooks.float()
            dist = (
                x.pow(2).sum(-1, keepdim=True)
                - 2.0 * torch.einsum("nmc,mkc->nmk", x, books)
                + books.pow(2).sum(-1).unsqueeze(0)
            )
            return dist.argmin(dim=-1)

    def quantize(self, z: Tensor) -> Quantized:
        chunks = self.split(z.float())
        codes = self.nearest(chunks)
        q = self.codebooks[torch.arange(self.n_codebooks, device=codes.device), codes].float()
        return Quantized(chunks, codes, q, chunks + (q - chunks).detach())

    def forward(self, x: Tensor) -> Quantized:
        return self.quantize(self.encode(x))

    def decode(self, q_st: Tensor) -> Tensor:
        """`[N, M, c]` -> reconstruction `[N, text_dim]`."""
        if self.decoder is None:
            raise RuntimeError("this auto-encoder was built without a decoder (recon weight 0)")
        return self.decoder(q_st.flatten(1))

    @torch.no_grad()
    def init_codebooks(self, x: Tensor, generator: torch.Generator | None = None) -> None:
        """Every codebook from the latent chunks of K random distinct items (with replacement
        only when there are fewer than K items)."""
        chunks = self.split(self.encode(x).float())
        n, k = chunks.shape[0], self.codebook_size
        for m in range(self.n_codebooks):
            if n >= k:
                pick = torch.randperm(n, generator=generator)[:k]
            else:
                pick = torch.randint(0, n, (k,), generator=generator)
            self.codebooks[m].copy_(chunks[pick.to(chunks.device), m])

    @torch.no_grad()
    def reset_dead_codes(self, x: Tensor, generator: torch.Generator | None = None) -> int:
        """Re-draw every codeword no item of `x` maps to from random items' latent chunks;
        returns how many were re-drawn."""
        chunks = self.split(self.encode(x).float())
        codes = self.nearest(chunks)
        n, total = chunks.shape[0], 0
        for m in range(self.n_codebooks):
            used = torch.bincount(codes[:, m], minlength=self.codebook_size) > 0
            dead = torch.nonzero(~used, as_tuple=True)[0]
            if dead.numel() == 0:
                continue
            pick = torch.randint(0, n, (dead.numel(),), generator=generator).to(chunks.device)
            self.codebooks[m, dead] = chunks[pick, m].to(self.codebooks.dtype)
            total += int(dead.numel())
        return total


# -- dual-attention fusion --------------------------------------------------------------------
class DualAttentionFusion(nn.Module):
    """u^v = h^v + g_v * Attn(h^v -> h^other), g_v = sigmoid(G_v [h^v ; a^v]) (or 1: `gate=False`).

    Each view's sequence output queries the other's (multi-head; causal when the backbone is),
    so an ID position can read what the semantic encoder saw and vice versa. Padding slots are
    zero on output.
    """

    def __init__(self, d: int, n_heads: int, dropout: float, causal: bool, gate: bool) -> None:
        super().__init__()
        self.causal = causal
        self.id_reads_sem = MultiHeadAttention(d, n_heads, dropout)
        self.sem_reads_id = MultiHeadAttention(d, n_heads, dropout)
        self.gate_id = nn.Linear(2 * d, d) if gate else None
        self.gate_sem = nn.Linear(2 * d, d) if gate else None
        for g in (self.gate_id, self.gate_sem):
            if g is not None:
                nn.init.zeros_(g.bias)  # gates start near 0.5

    @staticmethod
    def _mix(h: Tensor, a: Tensor, gate: nn.Linear | None) -> Tensor:
        if gate is None:
            return h + a
        return h + torch.sigmoid(gate(torch.cat([h, a], dim=-1))) * a

    def forward(self, h_id: Tensor, h_sem: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        allowed = attention_mask(mask, self.causal)
        a_id = self.id_reads_sem(h_id, h_sem, allowed)
        a_sem = self.sem_reads_id(h_sem, h_id, allowed)
        keep = mask.unsqueeze(-1).to(h_id.dtype)
        u_id = self._mix(h_id, a_id, self.gate_id) * keep
        u_sem = self._mix(h_sem, a_sem, self.gate_sem) * keep
        return u_id, u_sem


def symmetric_info_nce(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """Mean of InfoNCE(a -> b) and InfoNCE(b -> a): row i of `a` and `b` is a positive pair, the
    other rows are negatives; cosine similarity / temperature, in float32."""
    a = F.normalize(a.float(), dim=-1)
    b = F.normalize(b.float(), dim=-1)
    logits = a @ b.t() / temperature
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


# -- the model ----------------------------------------------------------------------------------
@dataclass
class SemanticBatch:
    """The distinct real items of a batch with their PC-AE output and semantic embeddings."""

    items: Tensor  # [U] item ids
    quantized: Quantized  # the PC-AE's output for `items`
    e_sem: Tensor  # [U, d]


@dataclass
class PCRCAState:
    """What the auxiliary losses reuse from the forward pass."""

    mask: Tensor  # [B, L] non-padding slots
    h_id_last: Tensor  # [B, d] ID encoder output at the last slot (before fusion)
    h_sem_last: Tensor  # [B, d] semantic encoder output at the last slot (before fusion)
    items: SemanticBatch  # the distinct real items of the inputs


class PCRCA(SequentialModel):
    """Two towers (ID sequence, PC-AE code sequence) with dual-attention fusion, scored by late
    fusion: `hidden` is [u_id ; u_sem] (width 2d) and `item_weights` [e_id ; e_sem], so scoring
    the catalogue is one matrix product and every objective and the evaluator work unchanged."""

    name = "pcr_ca"
    default_loss = "bce"  # CTR model: BCE with one sampled negative at every position

    def __init__(
        self, n_items: int, cfg: PCRCAConfig, text: Tensor, ids: HashItemEmbedding
    ) -> None:
        super().__init__(n_items, cfg.max_len)
        self.cfg = cfg
        d = self.d = cfg.hidden_size
        self.bidirectional = cfg.backbone == "bert4rec"
        self.register_buffer("text", text, persistent=False)  # normalised text vectors (data)
        self.ids = ids
        self.ae = ParallelCodebookAE(
            text.shape[1],
            cfg.ae_hidden,
            cfg.latent_dim,
            cfg.n_codebooks,
            cfg.codebook_size,
            cfg.shared_latent,
            decoder=cfg.recon_weight > 0,
        )
        m, c, k = cfg.n_codebooks, cfg.code_dim, cfg.codebook_size
        self.sem_proj: nn.Linear | None = None
        self.code_table: nn.Embedding | None = None
        if cfg.semantic_embedding == "quantized":
            self.sem_proj = nn.Linear(m * c, d, bias=False)
            # the LayerNormed latent has unit scale: this starts e_sem at RMS init_std
            nn.init.normal_(self.sem_proj.weight, std=cfg.init_std / math.sqrt(m * c))
        else:
            self.code_table = nn.Embedding(m * k, d)
            nn.init.normal_(self.code_table.weight, std=cfg.init_std / math.sqrt(m))
            self.register_buffer("code_offsets", torch.arange(m) * k, persistent=False)
        self.sem_mask = nn.Parameter(torch.randn(d) * cfg.init_std) if self.bidirectional else None
        self.id_encoder = self._encoder()
        self.sem_encoder = self._encoder()
        self.fusion = (
            DualAttentionFusion(
                d,
                int(cfg.n_heads or 1),
                cfg.dropout,
                causal=not self.bidirectional,
                gate=cfg.fusion == "gate",
            )
            if cfg.fusion != "none"
            else None
        )
        self.embedding_scale = math.sqrt(d) if cfg.scale_embeddings else 1.0
        self._weights_cache: TensorCache[Tensor] = TensorCache()

    def _encoder(self) -> nn.Module:
        cfg = self.cfg
        return build_encoder(
            cfg.backbone,
            cfg.hidden_size,
            n_layers=int(cfg.n_layers or 1),
            n_heads=int(cfg.n_heads or 1),
            dropout=cfg.dropout,
            max_len=cfg.max_len,
            inner_size=cfg.inner_size,
        )

    # -- BERT4Rec backbone support ----------------------------------------------------------
    @property
    def mask_token_id(self) -> int | None:
        """[MASK] id for a bidirectional (cloze-trained) backbone, else None."""
        return self.n_items + 1 if self.bidirectional else None

    def user_repr(self, seqs: Tensor) -> Tensor:
        if self.bidirectional:  # drop the oldest slot, predict at an appended [MASK]
            mask = torch.full_like(seqs[:, :1], self.n_items + 1)
            seqs = torch.cat([seqs[:, 1:], mask], dim=1)
        return self.forward_train(seqs)[0][:, -1]

    # -- item side ----------------------------------------------------------------------------
    def item_semantics(self, items: Tensor) -> tuple[Tensor, Quantized]:
        """`items [U]` real ids -> (e_sem `[U, d]`, the PC-AE output)."""
        quantized = self.ae(F.embedding(items, self.text))  # a lookup, faster than text[items]
        if self.sem_proj is not None:
            e_sem = self.sem_proj(quantized.q_st.flatten(1).to(self.sem_proj.weight.dtype))
        else:
            assert self.code_table is not None
            e_sem = self.code_table(quantized.codes + self.code_offsets).sum(dim=1)
        return e_sem, quantized

    def semantic(self, ids: Tensor) -> tuple[Tensor, SemanticBatch]:
        """`ids` of any shape -> (e_sem `[*ids.shape, d]`: padding 0, [MASK] its own vector; the
        distinct real items with their PC-AE output and semantic embeddings).

        The PC-AE runs once per distinct id, not once per occurrence."""
        uniq, inverse = unique_ids(ids.reshape(-1), self.n_items + 2)  # ids <= [MASK] = n_items + 1
        real = (uniq > 0) & (uniq <= self.n_items)
        e_u, quantized = self.item_semantics(uniq.clamp(1, self.n_items))
        batch = SemanticBatch(uniq[real], quantized.select(real), e_u[real])
        e_u = e_u * real.unsqueeze(-1).to(e_u.dtype)
        if self.sem_mask is not None:
            is_mask = (uniq == self.n_items + 1).unsqueeze(-1)
            e_u = torch.where(is_mask, self.sem_mask.to(e_u.dtype), e_u)
        return take_rows(e_u, inverse).view(*ids.shape, self.d), batch

    def _item_table(self) -> Tensor:
        items = torch.arange(1, self.n_items + 1, device=self.text.device)
        e_sem, _ = self.item_semantics(items)
        sem = torch.cat([e_sem.new_zeros(1, self.d), e_sem])
        return torch.cat(
            [self.ids.weight_for_scoring(), sem.to(self.ids.embedding.weight.dtype)], 1
        )

    def item_weights(self) -> Tensor:
        """`[n_items + 1, 2d]`: [e^id_j ; e^sem_j]; cached in eval mode under no_grad."""
        if not no_grad_eval(self):
            return self._item_table()
        return self._weights_cache.get(self.parameters(), self._item_table)

    def score_items(self, user: Tensor, items: Tensor) -> Tensor:
        """`user [N, 2d]`, `items [N, k]` -> `[N, k]`; in training only the needed items go
        through the PC-AE (once per distinct item)."""
        if no_grad_eval(self):
            return dot_items(user, take_rows(self.item_weights(), items))
        e_sem, _ = self.semantic(items)
        return dot_items(user[..., : self.d], self.ids.embed(items)) + dot_items(
            user[..., self.d :], e_sem
        )

    def train(self, mode: bool = True) -> PCRCA:
        self._weights_cache.clear()
        return super().train(mode)

    # -- sequence side ------------------------------------------------------------------------
    def encode(self, seqs: Tensor) -> tuple[Tensor, Tensor, PCRCAState]:
        """(u_id, u_sem, state) over `seqs [B, L]`: the fused per-slot user vectors of both views."""
        if seqs.dim() != 2:
            raise ValueError(f"expected item sequences [B, L], got shape {tuple(seqs.shape)}")
        mask = seqs != 0
        e_id = self.ids.embed(seqs)
        e_sem, batch = self.semantic(seqs)
        h_id = self.id_encoder(e_id * self.embedding_scale, mask)
        h_sem = self.sem_encoder(e_sem.to(e_id.dtype) * self.embedding_scale, mask)
        if self.fusion is not None:
            u_id, u_sem = self.fusion(h_id, h_sem, mask)
        else:
            u_id, u_sem = h_id, h_sem
        state = PCRCAState(mask=mask, h_id_last=h_id[:, -1], h_sem_last=h_sem[:, -1], items=batch)
        return u_id, u_sem, state

    def forward_train(self, seqs: Tensor) -> tuple[Tensor, PCRCAState]:
        u_id, u_sem, state = self.encode(seqs)
        return torch.cat([u_id, u_sem], dim=-1), state

    def hidden(self, seqs: Tensor) -> Tensor:
        return self.forward_train(seqs)[0]

    # -- auxiliary losses ---------------------------------------------------------------------
    def auxiliary_losses(
        self, state: PCRCAState, inputs: Tensor, targets: Tensor, users: Tensor | None = None
    ) -> dict[str, Tensor]:
        cfg = self.cfg
        out: dict[str, Tensor] = {}
        qz = state.items.quantized
        empty = qz.codes.shape[0] == 0
        if cfg.recon_weight > 0:
            if empty:
                out["loss_recon"] = self.ae.codebooks.sum() * 0.0
            else:
                recon = self.ae.decode(qz.q_st.to(self.text.dtype))
                target = F.embedding(state.items.items, self.text)
                out["loss_recon"] = cfg.recon_weight * F.mse_loss(recon.float(), target.float())
        if cfg.vq_weight > 0:
            if empty:
                out["loss_vq"] = self.ae.codebooks.sum() * 0.0
            else:
                out["loss_vq"] = cfg.vq_weight * self.vq_loss(qz)
        if cfg.item_cl_weight > 0:
            out["loss_item_cl"] = cfg.item_cl_weight * self.item_alignment_loss(state)
        if cfg.user_cl_weight > 0:
            out["loss_user_cl"] = cfg.user_cl_weight * self.user_alignment_loss(state)
        return out

    def vq_loss(self, qz: Quantized) -> Tensor:
        """||sg[z] - q||^2 (moves the codebooks) + beta ||z - sg[q]||^2 (commits the encoder)."""
        codebook = F.mse_loss(qz.q, qz.chunks.detach())
        commitment = F.mse_loss(qz.chunks, qz.q.detach())
        return codebook + self.cfg.commitment * commitment

    def item_alignment_loss(self, state: PCRCAState) -> Tensor:
        """InfoNCE between e^sem and e^id of the batch's distinct items (both directions)."""
        items, e_sem = state.items.items, state.items.e_sem
        n = items.numel()
        if n < 2:
            return self.ids.embedding.weight.sum() * 0.0
        if n > self.cfg.cl_max_items:  # drawn on the CPU generator: seeded, checkpointed
            keep = torch.randperm(n)[: self.cfg.cl_max_items].to(items.device)
            items, e_sem = items[keep], e_sem[keep]
        return symmetric_info_nce(e_sem, self.ids.embed(items), self.cfg.item_cl_temperature)

    def user_alignment_loss(self, state: PCRCAState) -> Tensor:
        """InfoNCE between the ID and the semantic encoder's last-slot outputs (both directions)."""
        rows = state.mask[:, -1]
        if int(rows.sum()) < 2:
            return state.h_id_last.sum() * 0.0
        return symmetric_info_nce(
            state.h_id_last[rows], state.h_sem_last[rows], self.cfg.user_cl_temperature
        )

    # -- epochs and codes -----------------------------------------------------------------------
    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Re-draw dead codewords from random items (generator seeded by the epoch)."""
        if self.cfg.dead_code_reset:
            generator = torch.Generator().manual_seed(int(epoch))
            self.ae.reset_dead_codes(self.text[1:], generator)

    @torch.no_grad()
    def item_codes(self) -> Tensor:
        """`[n_items + 1, M]` int64: every item's learned code per codebook (row 0 = -1)."""
        codes = self.ae.nearest(self.ae.split(self.ae.encode(self.text[1:]).float()))
        return torch.cat([codes.new_full((1, codes.shape[1]), -1), codes])

    def code_stats(self) -> dict[str, Any]:
        """Collision statistics of the learned codes (rate = 1 - distinct codes / items)."""
        from h2rec.sid.collisions import collision_stats

        return collision_stats(self.item_codes()[1:].cpu().numpy())


def normalize_text(text_vectors: np.ndarray) -> Tensor:
    """`[n_items + 1, t]` -> float32 tensor: items centred and divided by one global RMS (row 0
    stays zero), so the reconstruction MSE has the same scale for any text encoder."""
    vectors = np.asarray(text_vectors, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] < 2:
        raise ConfigError(f"pcr_ca: expected text vectors [n_items + 1, d], got {vectors.shape}")
    items = vectors[1:] - vectors[1:].mean(axis=0)
    rms = float(np.sqrt(np.mean(items**2)))
    if not np.isfinite(rms) or rms == 0.0:
        raise ConfigError("model 'pcr_ca': the text vectors have no variance")
    out = np.zeros_like(vectors, dtype=np.float32)
    out[1:] = items / rms
    return torch.from_numpy(out)


@register_model("pcr_ca", config=PCRCAConfig)
def build_pcr_ca(n_items: int, cfg: PCRCAConfig, inputs: ModelInputs) -> PCRCA:
    inputs.require("pcr_ca", "text_vectors")
    assert inputs.text_vectors is not None
    d = cfg.hidden_size
    ids = HashItemEmbedding(
        n_items, d, extra_tokens=1 if cfg.backbone == "bert4rec" else 0, std=cfg.init_std
    )
    if cfg.id_init == "pca":
        vectors = pca_item_vectors(inputs.text_vectors, d)
        rms = float(np.sqrt(np.mean(vectors[1:].astype(np.float64) ** 2)))
        if rms == 0:
            raise ConfigError("model 'pcr_ca': the text vectors have no variance to PCA")
        ids.load_item_vectors(torch.from_numpy(vectors * (cfg.init_std / rms)))
    model = PCRCA(n_items, cfg, normalize_text(inputs.text_vectors), ids)
    model.ae.init_codebooks(model.text[1:])  # torch's global generator: seeded by the trainer
    return model
