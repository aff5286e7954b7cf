"""CCFRec (Liu, Zheng, Zhao, Wen, KDD'25, "Bridging Textual-Collaborative Gap through Semantic
Codes for Sequential Recommendation"; code `BishopLiu/CCFRec`), registered as `ccfrec`.

An item is its semantic codes READING its frozen text. There is no item-ID embedding at all, so
items with identical codes still differ through their text. Shapes: G code levels, M text tokens,
width d.

    q_i    = [E[c^1_i], ..., E[c^G_i]]            one flat code table, offset per level, row 0 = [MASK]
    T_i    = M key/value tokens of i's frozen text (see "text tokens" below)
    H_i    = QFormer(q_i, T_i)                     `cross_layers` x [self-attn(q) -> cross-attn(q, T)
                                                   -> FFN], post-LN, GELU (CCFRec's CrossAttTransformer)
    x_i    = mean_g H_i,g                          input vector of item i in a sequence
    e_i    = mean_g H_i,g + mean_g q_i,g           OUTPUT (candidate) vector, as the original's
                                                   `get_item_embedding`/`encode_item`
    u_t    = f(x_{i_1..i_t})                       causal sequence encoder (SASRec, 2 layers, 2 heads)
    s(t,j) = cos(u_t, e_j) / tau                   tau = 0.07

Losses: L = L_rec + lambda_mlm L_MCM + lambda_cl L_MSA.

- L_rec is the trainer's objective on `score_all`/`score_items`. `default_loss = "ce"`: FULL
  softmax over the catalogue with the cosine/tau logits above. The paper samples about 24-25k
  uniform negatives per batch (`neg_num`), which is "close to full" on its catalogues. Ours have at
  most about 20k items, so full CE is the exact version of the same loss. The Q-Former runs over
  every item once per training step to build the output table (the original does the same when
  neg_num = 0). The paper's own form is available as `objective.loss=sampled_softmax
  objective.num_negatives=k objective.negatives_shared=true`: k uniform negatives drawn once per
  batch and shared by every position (a negative equal to a position's target, or in its user's
  history with the default `negatives_exclude`, is masked there). `score_items` then encodes
  only the distinct items of (targets + k negatives), once each. The paper tables use k = 1024.
  `objective.logq` would subtract the same log(n_items) from every logit of uniform
  negatives, which leaves the loss unchanged.
- L_MCM (masked code modelling): each code of each real slot is chosen with probability
  `mask_ratio` (0.5). A chosen code becomes [MASK] (80%), a random code (10%) or stays (10%). The
  Q-Former output at a chosen query predicts the original code by CE over
  cos(H, E_code)/tau. `mcm_scope="all"` (default, the original): the candidates are every code
  of every level, and random replacements come from every level too. Masked queries carry no
  level identity (nor do they in the original). `"level"`: both are restricted to the query's
  own level.
- L_MSA (masked sequence alignment): the same code-masked items go through the sequence encoder.
  Then a symmetric in-batch InfoNCE (temperature tau) runs between the last-slot user vectors of
  the original and the masked sequence.

One masked copy serves both auxiliary losses, as in the original. The original and masked items
share one Q-Former call, and the two sequences share one encoder call: the values are the same and
only the dropout draws differ. `lambda_mlm = lambda_cl = 0` skips the masked copy entirely (no
random draw, no extra compute). The mask draws come from torch's global CPU generator, a fixed
amount per batch, so runs are seeded and resumable.

Adaptations and deviations, and why:

1. **Text tokens (single text field).** CCFRec's keys/values are 5 attribute fields (title,
   brand, features, categories, description). Each is a sentence-T5 vector, PCA-whitened to d
   (`PCA(d, whiten=True)`) and frozen. Our datasets embed ONE text per item, and with M = 1 the
   cross-attention degenerates: the softmax over a single key is 1, so every query receives the
   same value vector. The frozen text vector is whitened the same way and turned into M =
   `text_fields` (default 4) tokens:
   - `text_tokens="linear"` (default): T_i,m = A_m w_i. Here w_i is i's text PCA-whitened to d
     (frozen), and the A_m are M learned d x d maps, initialised as random rotations, so each
     token starts as a unit-variance whitened view like CCFRec's fields. Each code query then
     chooses, by attention, among M learned views of the text. This works for any text width, d
     and M.
   - `text_tokens="chunks"`: no learned map. The text is PCA-whitened to M*d components and
     split into M frozen tokens of d (components 1..d, d+1..2d, ...). The tokens stay frozen
     like the original's, but the later tokens hold low-variance components that whitening
     scales up. It needs M*d principal axes (text width and catalogue size).
   Text vectors are data, not parameters: they are rebuilt from the dataset's embeddings and are
   not saved in the state dict.
2. **Codes.** Any SIDs of the dataset (`sids`, default `rqvae-4x128`). CCFRec's own tokenizer is
   PQ with 20 sub-vectors x 256 codes on its 5 whitened fields concatenated. Our `pq` tokenizer
   makes PQ codes from the single text vector (`h2rec tokenize` with `method: pq, levels: 20,
   codebook_size: 256` -> `sids: pq-20x256`). Code embeddings start as N(0, 0.02) as in the
   original; codebooks are not used.
3. **[MASK] token.** Code-table row 0, shared by all levels. In the original it is initialised at
   random and then never updated (`padding_idx=0` blocks its gradient). Here it is learnable, as
   BERT's [MASK]. L_MCM's candidates exclude it, since it is never a label; the original's
   softmax included this constant row.
4. **Sequence encoder.** The library's causal SASRec (`build_encoder`, pre-LN, GELU, FFN 4d as
   CCFRec's 512 at d = 128) replaces RecBole's post-LN transformer with an input LayerNorm. The
   reason: every SID baseline here then shares one backbone, and comparisons isolate the item
   representation. Positions count from the most recent item, the library's convention for
   left-padded sequences; RecBole counts from the oldest. `backbone="gru4rec"` also works.
   Weights are initialised BERT/RecBole-style as in the original (Linear N(0, 0.02), zero bias,
   LayerNorm 1/0); the text maps use the rotations of (1).
5. **Targets.** The original trains on one target per (prefix, target) sample, every prefix of
   every user. The causal encoder trained at every position (`positions: all`, the trainer's
   default) covers the same pairs in one pass. L_MSA uses each sequence's LAST slot, one pair per
   sequence: an InfoNCE over all slots would contrast a user's prefixes with each other. L_MCM
   covers every code of every real slot, as the original does.
6. **Sizes.** d = 64 and max_len = 50 follow the library's shared protocol (the paper uses
   d = 128 and 20 items). Dropout 0.3 and cross-attention dropout 0.3 are the Instruments
   settings. The lambdas are 0.4 / 0.4, inside the README's ranges (lambda_mlm 0.2-0.6,
   lambda_cl 0.4-0.5). The optimiser (AdamW, weight decay 1e-4, lr 1e-3, batch 400 in the
   original) is the training config's choice, not the model's.

Cost: with full CE the output table needs the Q-Former over the whole catalogue at every step, with
gradients. In eval mode, under no_grad, the input and output tables are computed once (float32) and
cached until a parameter changes (the parameters' version counters key the cache). Evaluation
therefore looks sequence items up instead of re-running the Q-Former per slot. In training, each
slot's item goes through the Q-Former separately (per-occurrence dropout, as the original), on real
slots only. Measured per training step (full CE, batch 256, Adam):

- H100, bf16 autocast, 20k items, 10 items per sequence: SASRec (d 64) 8.3 ms. CCFRec at the
  defaults (G 4, M 4, d 64) 43 ms, or 31 ms with both lambdas 0, peak 1.4 GiB. With 50 items per
  sequence: 50 ms, 4.4 GiB. CCFRec's own setting (PQ 20x256, d 128): 66 ms (10 items) and 131 ms
  with 20.7 GiB (50 items). Of those 20.7 GiB, L_MCM (logits [masked codes, 20 x 256]) takes
  5.6 GiB and the masked copy (its Q-Former and encoder passes) 3.5 GiB; with both lambdas 0
  it is 11.7 GiB and 78 ms (SASRec at d 128: 11 ms, 3.1 GiB). Building the eval tables takes
  4.5 ms (G 4) or 11.7 ms (G 20), once per evaluation.
- CPU, the test module's synthetic set (400 items, batch 128, 20 slots, d 32, one thread): about
  630 ms vs SASRec's 60 ms. At this size the per-slot Q-Former passes (original and masked copy)
  dominate. At 20k items on a shared 2-core CPU, CCFRec took about 3.5x SASRec's step: there the
  catalogue pass and SASRec's own 20k-way softmax dominate.
- CPU, one thread, the paper-table config (d 64, G 4, M 4, both lambdas 0.4), batch 256, the
  real length-bucketed batches, full CE and the shared sampled softmax (k = 1024) interleaved in
  one process on a busy 2-core machine. Beauty (12.1k items), one whole epoch (88 steps): 156 s
  vs 57 s (2.7x; median per-step ratio 3.4x). Yelp (20k items), 10 steps: 6.0x. A typical batch
  has 500-2,300 targets, so ~1.4-2.7k distinct items are encoded for the output side instead of
  the catalogue. In the few long batches (width 50, ~10k targets) the per-slot passes dominate
  and the gain is ~1.4x.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import AliasChoices, Field, model_validator
from torch import Tensor, nn

from h2rec.errors import ConfigError
from h2rec.models.base import SequentialModel
from h2rec.models.inputs import ModelInputs
from h2rec.models.parts.cache import TensorCache, no_grad_eval
from h2rec.models.parts.dropout import Dropout
from h2rec.models.parts.encoders import MultiHeadAttention, build_encoder
from h2rec.models.parts.ids import unique_ids
from h2rec.models.parts.pca import pca_item_vectors
from h2rec.models.parts.scorers import dot_all, dot_items
from h2rec.models.parts.take import take_rows
from h2rec.models.registry import ModelConfig, register_model


class CCFRecConfig(ModelConfig):
    """CCFRec's hyperparameters. `lambda_mlm = 0` or `lambda_cl = 0` removes that loss
    entirely."""

    backbone: Literal["sasrec", "gru4rec"] = "sasrec"
    sids: str = Field("rqvae-4x128", min_length=1, description="SID artefact: the item codes")
    text_embeddings: str = Field(
        "st-all-minilm-l6-v2", min_length=1, description="frozen item text vectors (keys/values)"
    )
    hidden_size: int = Field(64, ge=1, validation_alias=AliasChoices("hidden_size", "d"))
    n_layers: int = Field(2, ge=1, description="sequence-encoder layers")
    n_heads: int = Field(2, ge=1, description="heads of the encoder and the Q-Former")
    inner_size: int | None = Field(None, ge=1, description="FFN width (None: 4 * hidden_size)")
    dropout: float = Field(0.3, ge=0.0, lt=1.0, description="sequence-encoder dropout")
    max_len: int = Field(50, ge=1)
    cross_layers: int = Field(2, ge=1, description="Q-Former (cross-attention) layers")
    cross_dropout: float = Field(0.3, ge=0.0, lt=1.0, description="Q-Former dropout")
    text_fields: int = Field(4, ge=1, description="M: text key/value tokens per item")
    text_tokens: Literal["linear", "chunks"] = "linear"
    tau: float = Field(0.07, gt=0.0, description="temperature of every cosine softmax")
    lambda_mlm: float = Field(0.4, ge=0.0, description="weight of L_MCM (masked code modelling)")
    lambda_cl: float = Field(0.4, ge=0.0, description="weight of L_MSA (masked seq. alignment)")
    mask_ratio: float = Field(0.5, gt=0.0, le=1.0, description="share of codes chosen for L_MCM")
    mask_token_prob: float = Field(0.8, ge=0.0, le=1.0)
    random_token_prob: float = Field(0.1, ge=0.0, le=1.0)
    mcm_scope: Literal["all", "level"] = "all"
    init_std: float = Field(0.02, gt=0.0, description="std of the N(0, std²) weight init")

    @model_validator(mode="after")
    def _check(self) -> CCFRecConfig:
        if self.hidden_size % self.n_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by n_heads {self.n_heads}"
            )
        if self.mask_token_prob + self.random_token_prob > 1.0:
            raise ValueError("mask_token_prob + random_token_prob must be <= 1")
        return self


# -- text tokens -------------------------------------------------------------------------------
def whitened_pca(text_vectors: np.ndarray, k: int) -> np.ndarray:
    """`[n_items + 1, k]` float32: the items' first k principal components, each scaled to unit
    variance (sklearn's `PCA(k, whiten=True)`, which CCFRec applies to every text field).

    Fitted on rows 1..n_items (row 0, padding, stays zero). Components that do not exist (fewer
    axes than k) or have no variance stay zero instead of being blown up.
    """
    pcs = pca_item_vectors(text_vectors, k).astype(np.float64)
    std = pcs[1:].std(axis=0, ddof=1) if pcs.shape[0] > 2 else np.zeros(k)
    top = float(std.max()) if std.size else 0.0
    scale = np.zeros_like(std)
    alive = std > 1e-6 * top
    scale[alive] = 1.0 / std[alive]
    return (pcs * scale).astype(np.float32)


def pca_rank(text_vectors: np.ndarray) -> int:
    """How many principal axes the items' text vectors can have: min(width, n_items - 1)."""
    return int(min(text_vectors.shape[1], text_vectors.shape[0] - 2))


class TextTokens(nn.Module):
    """Frozen item text -> M key/value tokens `[*ids.shape, M, d]` (docstring item 1)."""

    def __init__(
        self,
        text_vectors: np.ndarray,
        d: int,
        n_tokens: int,
        mode: Literal["linear", "chunks"] = "linear",
    ) -> None:
        super().__init__()
        self.dim = d
        self.n_tokens = n_tokens
        self.mode = mode
        if mode == "chunks":
            rank = pca_rank(text_vectors)
            if rank < n_tokens * d:
                raise ValueError(
                    f"text_tokens 'chunks' needs text_fields x hidden_size = {n_tokens * d} "
                    f"principal axes, but the text vectors have at most {rank}; lower "
                    "text_fields or use text_tokens 'linear'"
                )
            white = whitened_pca(text_vectors, n_tokens * d)
            self.proj: nn.Linear | None = None
        elif mode == "linear":
            white = whitened_pca(text_vectors, d)
            self.proj = nn.Linear(d, n_tokens * d, bias=False)
            with torch.no_grad():  # M independent random rotations of the whitened vector
                for m in range(n_tokens):
                    nn.init.orthogonal_(self.proj.weight[m * d : (m + 1) * d])
        else:
            raise ValueError(f"unknown text_tokens '{mode}' (expected 'linear' or 'chunks')")
        # data, not a parameter: rebuilt from the dataset's embeddings, never saved or trained
        self.register_buffer("text", torch.from_numpy(white), persistent=False)

    def forward(self, ids: Tensor) -> Tensor:
        x = F.embedding(ids, self.text)  # a lookup, faster than text[ids] on CPU
        if self.proj is not None:
            x = self.proj(x)
        return x.view(*ids.shape, self.n_tokens, self.dim)


# -- code-guided Q-Former --------------------------------------------------------------------------
class QFormerLayer(nn.Module):
    """One layer of CCFRec's CrossAttTransformer, post-LN as in RecBole/BERT:

    q = LN(q + Drop(SelfAttn(q, q))); q = LN(q + Drop(CrossAttn(q, T))); q = LN(q + Drop(FFN(q))).
    The code queries attend to each other and to the text tokens without masks; dropout on the
    attention probabilities and on each sub-layer output.
    """

    def __init__(self, d: int, n_heads: int, dropout: float, inner: int) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d, n_heads, dropout)
        self.self_drop = Dropout(dropout)
        self.self_norm = nn.LayerNorm(d, eps=1e-12)
        self.cross_attn = MultiHeadAttention(d, n_heads, dropout)
        self.cross_drop = Dropout(dropout)
        self.cross_norm = nn.LayerNorm(d, eps=1e-12)
        self.fc1 = nn.Linear(d, inner)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(inner, d)
        self.ffn_drop = Dropout(dropout)
        self.ffn_norm = nn.LayerNorm(d, eps=1e-12)

    def forward(self, q: Tensor, text: Tensor) -> Tensor:
        """`q [N, G, d]`, `text [N, M, d]` -> `[N, G, d]`."""
        q = self.self_norm(q + self.self_drop(self.self_attn(q, q, None)))  # type: ignore[arg-type]
        q = self.cross_norm(q + self.cross_drop(self.cross_attn(q, text, None)))  # type: ignore[arg-type]
        return self.ffn_norm(q + self.ffn_drop(self.fc2(self.act(self.fc1(q)))))


# -- losses ----------------------------------------------------------------------------------------
def masked_code_loss(
    outputs: Tensor,
    code_table: Tensor,
    labels: Tensor,
    tau: float,
    label_level: Tensor | None = None,
    table_level: Tensor | None = None,
) -> Tensor:
    """L_MCM: CE of `outputs [N, d]` (Q-Former outputs at chosen queries) against `code_table
    [C, d]` with logits cos(h, E_c) / tau; `labels [N]` index rows of `code_table`.

    With `label_level [N]` and `table_level [C]`, candidates of other levels are excluded
    (`mcm_scope="level"`). Computed in float32 outside autocast.
    """
    with torch.autocast(device_type=outputs.device.type, enabled=False):
        h = F.normalize(outputs.float(), dim=-1)
        table = F.normalize(code_table.float(), dim=-1)
        logits = h @ table.t() / tau
        if label_level is not None and table_level is not None:
            other = table_level.unsqueeze(0) != label_level.unsqueeze(1)
            logits = logits.masked_fill(other, float("-inf"))
        return F.cross_entropy(logits, labels)


def masked_sequence_alignment(u: Tensor, u_masked: Tensor, tau: float) -> Tensor:
    """L_MSA: symmetric in-batch InfoNCE between `u [B, d]` and `u_masked [B, d]` (row b of each
    is the positive pair; the other rows are negatives), cosine logits / tau, float32."""
    with torch.autocast(device_type=u.device.type, enabled=False):
        a = F.normalize(u.float(), dim=-1)
        b = F.normalize(u_masked.float(), dim=-1)
        logits = a @ b.t() / tau
        labels = torch.arange(a.shape[0], device=a.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


# -- the model -------------------------------------------------------------------------------------
@dataclass
class CCFRecState:
    """What the auxiliary losses reuse from `forward_train`."""

    mask: Tensor  # [B, L] real slots
    u_last: Tensor  # [B, d] user vectors at the last slot (original sequence)
    masked_outputs: Tensor | None = None  # [N, G, d] Q-Former outputs of the code-masked items
    labels: Tensor | None = None  # [N, G] original code rows where chosen, -1 elsewhere
    u_masked: Tensor | None = None  # [B, d] last-slot user vectors of the code-masked sequence


def _scatter(values: Tensor, mask: Tensor) -> Tensor:
    """`values [N, d]` (one per True slot of `mask [B, L]`, row-major) -> `[B, L, d]`, 0 elsewhere."""
    out = values.new_zeros(*mask.shape, values.shape[-1])
    out[mask] = values
    return out


class CCFRec(SequentialModel):
    """See the module docstring. `hidden` returns the raw encoder outputs; the cosine/tau scoring
    happens in `score_all`/`score_items`, and `item_weights()` is the unit-norm output table."""

    name = "ccfrec"
    default_loss = "ce"  # full softmax over cos/tau logits (the paper: ~24k sampled negatives)

    def __init__(
        self,
        n_items: int,
        cfg: CCFRecConfig,
        codes: np.ndarray,
        sizes: list[int],
        text: TextTokens,
    ) -> None:
        super().__init__(n_items, cfg.max_len)
        codes = np.asarray(codes, dtype=np.int64)
        if codes.shape[0] != n_items + 1:
            raise ValueError(f"codes must be [n_items + 1, G], got {codes.shape}")
        self.cfg = cfg
        self.tau = cfg.tau
        d = cfg.hidden_size
        self.dim = d
        self.n_levels = codes.shape[1]
        self.sizes = [int(k) for k in sizes]
        offsets = 1 + np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.n_code_rows = 1 + sum(self.sizes)
        rows = np.zeros_like(codes)  # padding item -> [MASK] rows (never attended to)
        rows[1:] = codes[1:] + offsets[None, :]
        level = np.full(self.n_code_rows, -1, dtype=np.int64)
        for g, (start, k) in enumerate(zip(offsets, self.sizes, strict=True)):
            level[start : start + k] = g
        self.register_buffer("code_rows", torch.from_numpy(rows), persistent=False)
        self.register_buffer("row_level", torch.from_numpy(level), persistent=False)
        self.register_buffer("level_offset", torch.from_numpy(offsets), persistent=False)
        self.register_buffer(
            "level_size", torch.tensor(self.sizes, dtype=torch.long), persistent=False
        )
        self.code_table = nn.Embedding(self.n_code_rows, d)  # row 0 = [MASK]
        self.text = text
        inner = cfg.inner_size or 4 * d
        self.qformer = nn.ModuleList(
            QFormerLayer(d, cfg.n_heads, cfg.cross_dropout, inner) for _ in range(cfg.cross_layers)
        )
        self.encoder = build_encoder(
            cfg.backbone,
            d,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            dropout=cfg.dropout,
            max_len=cfg.max_len,
            inner_size=inner,
            activation="gelu",
        )
        self._init_weights(cfg.init_std)
        self._cache: TensorCache[tuple[Tensor, Tensor]] = TensorCache()

    def _init_weights(self, std: float) -> None:
        """BERT/RecBole init, as the original's `_init_weights` (the text maps keep theirs)."""
        with torch.no_grad():
            nn.init.normal_(self.code_table.weight, std=std)
            for module in (*self.qformer.modules(), *self.encoder.modules()):
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, std=std)
                    if module.bias is not None:
                        module.bias.zero_()
                elif isinstance(module, nn.LayerNorm):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)

    # -- item encoder ------------------------------------------------------------------------
    def encode_items(self, ids: Tensor, rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """`ids [N]` (with code rows `[N, G]`, default the items' own) -> (Q-Former outputs
        `[N, G, d]`, query code embeddings `[N, G, d]`)."""
        rows = self.code_rows[ids] if rows is None else rows
        queries = self.code_table(rows)
        if ids.numel() == 0:  # e.g. a batch of empty histories: nothing to attend over
            return queries, queries
        text = self.text(ids)
        h = queries
        for layer in self.qformer:
            h = layer(h, text)
        return h, queries

    def output_vectors(self, ids: Tensor) -> Tensor:
        """`ids [N]` -> `[N, d]` unit-norm candidate vectors e_i (zero for padding)."""
        h, queries = self.encode_items(ids)
        vec = F.normalize((h.mean(1) + queries.mean(1)).float(), dim=-1)
        return vec * (ids != 0).unsqueeze(-1).to(vec.dtype)

    def _compute_tables(self) -> tuple[Tensor, Tensor]:
        ids = torch.arange(1, self.n_items + 1, device=self.code_rows.device)
        h, queries = self.encode_items(ids)
        # float32 whatever the autocast state: the cache may outlive the autocast region
        inputs = h.mean(1).float()
        outputs = F.normalize(inputs + queries.mean(1).float(), dim=-1)
        return F.pad(inputs, (0, 0, 1, 0)), F.pad(outputs, (0, 0, 1, 0))

    def _use_cache(self) -> bool:
        return no_grad_eval(self)

    def item_tables(self) -> tuple[Tensor, Tensor]:
        """(input table `[n_items + 1, d]` of x_i, unit-norm output table of e_i); row 0 zero.
        Cached in eval mode under no_grad until a parameter changes."""
        if not self._use_cache():
            return self._compute_tables()
        params = (self.code_table.weight, *self.text.parameters(), *self.qformer.parameters())
        return self._cache.get(params, self._compute_tables)

    def train(self, mode: bool = True) -> CCFRec:
        self._cache.clear()
        return super().train(mode)

    # -- sequence side -----------------------------------------------------------------------
    def input_vectors(self, seqs: Tensor) -> Tensor:
        """`[B, L]` -> `[B, L, d]` item vectors x (zeros at padding)."""
        if seqs.dim() != 2:
            raise ValueError(f"expected item sequences [B, L], got shape {tuple(seqs.shape)}")
        if self._use_cache():
            return self.item_tables()[0][seqs]
        mask = seqs != 0
        h, _ = self.encode_items(seqs[mask])
        return _scatter(h.mean(1), mask)

    def hidden(self, seqs: Tensor) -> Tensor:
        return self.encoder(self.input_vectors(seqs), seqs != 0)

    def forward_train(self, seqs: Tensor) -> tuple[Tensor, CCFRecState]:
        if seqs.dim() != 2:
            raise ValueError(f"expected item sequences [B, L], got shape {tuple(seqs.shape)}")
        cfg = self.cfg
        mask = seqs != 0
        if cfg.lambda_mlm == 0 and cfg.lambda_cl == 0:
            hidden = self.hidden(seqs)
            return hidden, CCFRecState(mask=mask, u_last=hidden[:, -1])
        ids = seqs[mask]
        rows = self.code_rows[ids]
        corrupted, labels = self.mask_codes(rows)
        n = ids.numel()
        both, _ = self.encode_items(torch.cat([ids, ids]), torch.cat([rows, corrupted]))
        x = _scatter(both[:n].mean(1), mask)
        u_masked = None
        if cfg.lambda_cl > 0:
            x_masked = _scatter(both[n:].mean(1), mask)
            out = self.encoder(torch.cat([x, x_masked]), torch.cat([mask, mask]))
            hidden, u_masked = out[: seqs.shape[0]], out[seqs.shape[0] :, -1]
        else:
            hidden = self.encoder(x, mask)
        state = CCFRecState(mask=mask, u_last=hidden[:, -1], u_masked=u_masked)
        if cfg.lambda_mlm > 0:
            state.masked_outputs, state.labels = both[n:], labels
        return hidden, state

    def mask_codes(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """`rows [N, G]` (code-table rows of real items) -> (corrupted rows, labels).

        Each code is chosen with probability `mask_ratio`; a chosen code becomes [MASK] (row 0)
        with `mask_token_prob`, a uniformly random code with `random_token_prob` (any level's, or
        its own level's with `mcm_scope="level"`), and stays otherwise. Labels: the original row
        where chosen, -1 elsewhere. Three uniform draws of `rows.shape` on the CPU generator.
        """
        cfg = self.cfg
        device = rows.device
        u_choose = torch.rand(rows.shape).to(device)
        u_kind = torch.rand(rows.shape).to(device)
        u_code = torch.rand(rows.shape).to(device)
        chosen = u_choose < cfg.mask_ratio
        if cfg.mcm_scope == "all":
            total = self.n_code_rows - 1
            random_rows = 1 + (u_code * total).long().clamp(max=total - 1)
        else:
            size = self.level_size.unsqueeze(0)
            random_rows = self.level_offset + torch.minimum((u_code * size).long(), size - 1)
        to_mask = chosen & (u_kind < cfg.mask_token_prob)
        to_random = (
            chosen
            & (u_kind >= cfg.mask_token_prob)
            & (u_kind < cfg.mask_token_prob + cfg.random_token_prob)
        )
        corrupted = torch.where(to_random, random_rows, rows)
        corrupted = corrupted.masked_fill(to_mask, 0)
        labels = torch.where(chosen, rows, torch.full_like(rows, -1))
        return corrupted, labels

    # -- scoring -------------------------------------------------------------------------------
    def item_weights(self) -> Tensor:
        """`[n_items + 1, d]` unit-norm output vectors e_i (row 0 zero)."""
        return self.item_tables()[1]

    def score_all(self, user: Tensor, *, catalogue_only: bool = False) -> Tensor:
        """cos(u, e_j) / tau for every item, float32."""
        start = 1 if catalogue_only else 0
        weights = self.item_weights()[start:]
        return dot_all(F.normalize(user.float(), dim=-1), weights) / self.tau

    def full_scoring(self, user: Tensor) -> tuple[Tensor, Tensor, Tensor | None] | None:
        """cos(u, e_j) / tau = (u / (|u| tau)) . e_j: linear in the normalised, scaled user."""
        return F.normalize(user.float(), dim=-1) / self.tau, self.item_weights()[1:], None

    def score_items(self, user: Tensor, items: Tensor) -> Tensor:
        """`user [N, d]`, `items [N, k]` -> `[N, k]` cos/tau logits, float32.

        Outside the eval cache (training) each DISTINCT id of `items` goes through the Q-Former
        once (`unique_ids`), however often it repeats. When few distinct items serve many rows,
        as with negatives shared by the batch (`objective.negatives_shared`: U = targets + k
        ids), the logits are one `[N, U]` product gathered at `items`, instead of an `[N, k, d]`
        copy of the item vectors.
        """
        u = F.normalize(user.float(), dim=-1)
        if self._use_cache():
            return dot_items(u, take_rows(self.item_weights(), items)) / self.tau
        unique, inverse = unique_ids(items, self.n_items + 2)
        vecs = self.output_vectors(unique)
        if items.dim() == 2 and unique.numel() <= 16 * items.shape[1]:
            return dot_all(u, vecs).gather(1, inverse) / self.tau
        return dot_items(u, take_rows(vecs, inverse)) / self.tau

    # -- auxiliary losses ------------------------------------------------------------------------
    def auxiliary_losses(
        self, state: CCFRecState, inputs: Tensor, targets: Tensor, users: Tensor | None = None
    ) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        cfg = self.cfg
        if cfg.lambda_mlm > 0 and state.masked_outputs is not None and state.labels is not None:
            out["loss_mcm"] = cfg.lambda_mlm * self.mcm_loss(state.masked_outputs, state.labels)
        if cfg.lambda_cl > 0 and state.u_masked is not None:
            real = state.mask[:, -1]
            if int(real.sum()) < 2:
                out["loss_msa"] = state.u_masked.sum() * 0.0
            else:
                out["loss_msa"] = cfg.lambda_cl * masked_sequence_alignment(
                    state.u_last[real], state.u_masked[real], self.tau
                )
        return out

    def mcm_loss(self, outputs: Tensor, labels: Tensor) -> Tensor:
        """L_MCM over the chosen queries of `outputs [N, G, d]` (labels `[N, G]`, -1 = none)."""
        chosen = labels >= 0
        if not bool(chosen.any()):
            return outputs.sum() * 0.0
        target_rows = labels[chosen]
        level = table_level = None
        if self.cfg.mcm_scope == "level":
            level, table_level = self.row_level[target_rows], self.row_level[1:]
        return masked_code_loss(
            outputs[chosen],
            self.code_table.weight[1:],
            target_rows - 1,
            self.tau,
            level,
            table_level,
        )


@register_model("ccfrec", config=CCFRecConfig)
def build_ccfrec(n_items: int, cfg: CCFRecConfig, inputs: ModelInputs) -> CCFRec:
    inputs.require("ccfrec", "codes", "text_vectors")
    assert inputs.codes is not None and inputs.text_vectors is not None
    assert inputs.codebook_sizes is not None  # filled from the codes by ModelInputs.check
    try:
        text = TextTokens(inputs.text_vectors, cfg.hidden_size, cfg.text_fields, cfg.text_tokens)
    except ValueError as exc:
        raise ConfigError(f"model 'ccfrec': {exc}") from exc
    return CCFRec(n_items, cfg, inputs.codes, list(inputs.codebook_sizes), text)
