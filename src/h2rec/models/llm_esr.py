"""LLM-ESR (Liu et al., NeurIPS'24): LLM-enhanced sequential recommendation for long-tail users
and items, registered as model "llm_esr". Reference code: `liuqidong07/LLM-ESR` (`models/
DualLLMSRS.py`, `models/LLMESR.py`, `generators/data.py`, `data/*.ipynb`).

Dual-view modelling (long-tail items). For a left-padded sequence (width d, text width D):

    e^se_i  = Adapter(x_i) = W2 (W1 x_i + b1) + b2      x_i: the item's FROZEN text vector
    e^co_i  = E_co[i]                                    trainable, initialised with PCA-d of x
    E^co'   = CrossAttn(Q = E^se, KV = E^co)             LLM-ESR's `llm2id`, feeds the co view
    E^se'   = CrossAttn(Q = E^co, KV = E^se)             LLM-ESR's `id2llm`, feeds the se view
    u_t     = [f(E^co')_t ; f(E^se')_t]                  ONE shared sequence encoder f
    score(j | t) = [e^co_j ; e^se_j] . u_t               one matrix product over the catalogue

Retrieval-augmented self-distillation (long-tail users). Each user's text vector is the mean of
the text vectors of their TRAINING items; the `sim_users` (N = 10) most cosine-similar other users
are found once, at build time, with faiss (exact inner product on L2-normalised vectors, queries in
blocks). Per step, for the batch's users:

    teacher_u = mean_{v in N(u)} stopgrad(u_last(S_v)),   S_v = v's training items minus the last
    L_sd      = MSE(u_last(S_u), teacher_u),               loss = L_rec + alpha * L_sd  (alpha 0.1)

`S_v` is exactly the input v's own next-item training example has (LLM-ESR `_get_user_seq`:
`inter[:-1]` of the training sequence, last `max_len` items), so validation and test items never
enter: the model only ever receives the training-split CSR (`ModelInputs.train_*`).

Cost of the distillation (measured): the teacher is N extra forward passes (no backward) per
training sequence, run as no-grad batches of the step's UNIQUE neighbours, bucketed by length so
short histories are not padded to the longest one. On CPU (1 thread, busy machine) with Beauty's
catalogue and users (12,101 items, 384-d MiniLM, d = 64, 2 layers, B = 256 length-bucketed
sequences): 0.25 s per step without distillation, 1.23 s with all N = 10 (about 5x), 0.54 s with
`sd_neighbours: 2`; the neighbour search for Beauty's 22k users takes about 5 s (1 thread). On the
synthetic test set the full teacher triples the epoch time. Since then the teacher (and scoring)
runs the encoder's final layer at the last slot only (`encode(..., last_only=True)`): a Beauty
step took 0.78x as long (median of 16 interleaved steps, 1 thread). The adapter is then applied
as one composed D -> d map (`adapt`). Now, interleaved with SASRec on the paper-table config
(Beauty, 1 thread, medians of 12 steps): SASRec 16 ms; LLM-ESR 57 ms without distillation
(95 ms before the composed adapter), 146 ms with `sd_neighbours: 2`, 300 ms with all 10.
Default: all N, as the paper (cheap on GPU); `sd_neighbours: k` averages k of the N neighbours
drawn uniformly per user and step for CPU runs on the full datasets: an unbiased estimate of the
same teacher, so (the teacher being gradient-free) the student's expected gradient is unchanged.
The CPU paper tables use k = 2, checked against k = N by `experiments/llm-esr-teacher`.

Deviations from the reference code, and assumptions where the paper is silent:
- Text vectors: the library's sentence embeddings (e.g. 384-d MiniLM) replace ada-002 (1536-d).
  The adapter keeps LLM-ESR's shape rule, Linear(D -> D/2) -> Linear(D/2 -> d) with no
  nonlinearity in between, so 384 -> 192 -> d (`adapter_hidden` overrides D/2).
- The user's text embedding: LLM-ESR embeds a prompt listing the titles of the user's training
  history with the LLM; here it is the mean of those items' text vectors (no LLM is available
  offline). Neighbour ranking then follows its notebook: cosine, self excluded, top-N.
- Causality: LLM-ESR's SASRec backbone and cross-attention have NO causal mask, so every-position
  training lets position t see its own target. Here both are causal for causal backbones
  (sasrec, gru4rec); `causal: false` reproduces the reference behaviour (a protocol leak, for
  reproduction only). BERT4Rec is bidirectional by design and uses a [MASK] token (id n_items+1:
  an extra ID-table row, and the adapter applied to a zero text vector, as LLM-ESR's zero row).
- Positions: LLM-ESR adds its position embedding (and dropout) BEFORE the cross-attention and
  runs a position-free backbone; here the library's encoders own their position embeddings, so
  positions and embedding dropout are added after the cross-attention (inside f). The
  cross-attention therefore mixes by content (plus the causal order).
- Backbone details are the library's encoders (SASRec pre-LN, BERT4Rec post-LN with a 4d FFN,
  GRU4Rec with bias); LLM-ESR's "Bert" backbone is its pre-LN SASRec block without a mask and
  its GRU has no bias. Embeddings are scaled by sqrt(d) for sasrec and bert4rec (LLM-ESR does so
  for both), not for gru4rec.
- Init: adapter and cross-attention weights xavier-normal, biases PyTorch default (LLM-ESR's
  `_init_weights`); the ID table is the unscaled PCA projection (sklearn `PCA(64)`, as
  `pca.ipynb`); the encoders keep the library's init.
- Defaults: dropout 0.5 (LLM-ESR's `main.py` default, used by all its scripts); max_len 50 (the
  library's protocol; LLM-ESR uses 200); 1 attention head in f; 2 heads in the cross-attention.
  LLM-ESR trains its GRU4Rec variant at the last position only (`objective.positions: last`
  reproduces that) and BERT4Rec with mask_prob 0.6 (`objective.mask_ratio`).
- The teacher runs in the model's current mode (dropout on during training), as LLM-ESR's
  `log2feats` call does. The optional item-level contrastive regulariser (`item_reg`) and the
  contrastive `user_sim_func cl` are off in all LLM-ESR scripts and are not implemented.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import faiss
import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import AliasChoices, Field, model_validator
from torch import Tensor, nn

from h2rec.errors import ConfigError
from h2rec.models.base import SequentialModel
from h2rec.models.baselines import BERT4Rec
from h2rec.models.inputs import ModelInputs
from h2rec.models.parts.cache import TensorCache
from h2rec.models.parts.encoders import (
    Backbone,
    SASRecEncoder,
    attention_mask,
    build_encoder,
    encode_last,
)
from h2rec.models.parts.ids import unique_ids
from h2rec.models.parts.items import HashItemEmbedding
from h2rec.models.parts.pca import pca_item_vectors
from h2rec.models.parts.scorers import dot_items
from h2rec.models.parts.take import take_rows
from h2rec.models.registry import ModelConfig, register_model


class LLMESRConfig(ModelConfig):
    """LLM-ESR's hyperparameters; `alpha: 0` and `cross_attention: false` are its ablations."""

    backbone: Backbone = "sasrec"
    hidden_size: int = Field(64, ge=1, validation_alias=AliasChoices("hidden_size", "d"))
    n_layers: int | None = Field(None, ge=1, description="None: 2 (transformers), 1 (GRU)")
    n_heads: int = Field(1, ge=1, description="heads of the shared encoder (transformers)")
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    max_len: int = Field(50, ge=1)
    inner_size: int | None = Field(None, ge=1, description="FFN inner size (None: encoder default)")
    scale_embeddings: bool | None = None  # None: x sqrt(d) for sasrec and bert4rec, not gru4rec
    causal: bool = True  # False: LLM-ESR's unmasked SASRec + cross-attention (leaks; repro only)

    # -- semantic and collaborative views --
    text_embeddings: str = Field("st-all-minilm-l6-v2", min_length=1)
    adapter_hidden: int | None = Field(None, ge=1, description="None: text width // 2")
    id_init: Literal["pca", "random"] = "pca"  # collaborative table from PCA of the text vectors
    cross_attention: bool = True
    cross_heads: int = Field(2, ge=1)

    # -- retrieval-augmented self-distillation --
    sim_users: int = Field(10, ge=1, description="N similar users retrieved per user")
    alpha: float = Field(0.1, ge=0.0, description="weight of L_sd (0: no distillation)")
    sd_neighbours: int | None = Field(
        None, ge=1, description="average k of the N neighbours per step (None: all N)"
    )

    @model_validator(mode="after")
    def _check(self) -> LLMESRConfig:
        if self.backbone != "gru4rec" and self.hidden_size % self.n_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by n_heads {self.n_heads}"
            )
        if self.cross_attention and self.hidden_size % self.cross_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by cross_heads "
                f"{self.cross_heads}"
            )
        if self.sd_neighbours is not None and self.sd_neighbours > self.sim_users:
            raise ValueError(
                f"sd_neighbours {self.sd_neighbours} exceeds sim_users {self.sim_users}"
            )
        return self

    @property
    def layers(self) -> int:
        return self.n_layers or (1 if self.backbone == "gru4rec" else 2)

    @property
    def embedding_scaled(self) -> bool:
        if self.scale_embeddings is None:
            return self.backbone != "gru4rec"
        return self.scale_embeddings


class CrossViewAttention(nn.Module):
    """LLM-ESR's `Multi_CrossAttention`: queries from one view, keys/values from the other.

    Bias-free Q/K/V projections, softmax(Q K^T / sqrt(d_head)) per head, an output Linear with
    bias, no residual and no dropout (as the reference). Padding keys are masked; with `causal`
    a query also ignores later slots. Padding slots output zero.
    """

    def __init__(self, d: int, n_heads: int, causal: bool) -> None:
        super().__init__()
        if d % n_heads:
            raise ValueError(f"hidden size {d} is not divisible by {n_heads} heads")
        self.n_heads = n_heads
        self.causal = causal
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d, bias=False)
        self.out = nn.Linear(d, d)
        for layer in (self.q, self.k, self.v, self.out):
            nn.init.xavier_normal_(layer.weight)

    def forward(self, query: Tensor, kv: Tensor, mask: Tensor) -> Tensor:
        """`query`, `kv` `[B, L, d]`, `mask [B, L]` (True = real slot) -> `[B, L, d]`."""
        b, length, d = query.shape
        h = self.n_heads

        def split(x: Tensor) -> Tensor:
            return x.view(b, length, h, d // h).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            split(self.q(query)),
            split(self.k(kv)),
            split(self.v(kv)),
            attn_mask=attention_mask(mask, self.causal),
        )
        out = self.out(out.transpose(1, 2).reshape(b, length, d))
        return out * mask.unsqueeze(-1).to(out.dtype)


# -- retrieval (build time, numpy + faiss) ------------------------------------------------------
def user_text_vectors(
    offsets: np.ndarray, items: np.ndarray, text_vectors: np.ndarray
) -> np.ndarray:
    """`[n_users + 1, D]` float32: mean text vector of each user's training items (zero rows for
    users without any). One sparse-dense product, not a Python loop."""
    offsets = np.asarray(offsets, dtype=np.int64)
    n_rows = len(offsets) - 1
    counts = np.diff(offsets)
    weights = np.repeat(1.0 / np.maximum(counts, 1), counts)
    pick = sp.csr_matrix(
        (weights, np.asarray(items, dtype=np.int64), offsets),
        shape=(n_rows, text_vectors.shape[0]),
    )
    return np.asarray(pick @ np.asarray(text_vectors, dtype=np.float64), dtype=np.float32)


def similar_users(
    user_vectors: np.ndarray,
    queries: np.ndarray,
    candidates: np.ndarray,
    n: int,
    block: int = 8192,
) -> np.ndarray:
    """`[len(queries), n]` int64: each query user's n most cosine-similar candidate users, best
    first, the query itself excluded (0 pads rows with fewer than n candidates).

    Exact search (faiss IndexFlatIP on L2-normalised vectors), queries in blocks so memory stays
    bounded. The query is dropped wherever it appears; if it is not among the n + 1 hits (e.g.
    duplicates of its vector outrank it, or it is no candidate) the (n + 1)-th hit is dropped.
    """
    vectors = np.ascontiguousarray(user_vectors, dtype=np.float32).copy()
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors /= np.where(norms > 0, norms, 1.0)
    queries = np.asarray(queries, dtype=np.int64)
    candidates = np.asarray(candidates, dtype=np.int64)
    out = np.zeros((len(queries), n), dtype=np.int64)
    if len(queries) == 0 or len(candidates) == 0:
        return out
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors[candidates])
    k = min(n + 1, len(candidates))
    for start in range(0, len(queries), block):
        q = queries[start : start + block]
        _, hits = index.search(vectors[q], k)
        ids = np.where(hits >= 0, candidates[np.maximum(hits, 0)], 0)
        if k < n + 1:  # fewer candidates than n + 1: pad so every row has n + 1 columns
            ids = np.concatenate([ids, np.zeros((len(q), n + 1 - k), dtype=np.int64)], axis=1)
        drop = ids == q[:, None]
        first = drop.argmax(axis=1)
        has_self = drop.any(axis=1)
        drop[:] = False
        drop[np.arange(len(q)), np.where(has_self, first, n)] = True
        out[start : start + block] = ids[~drop].reshape(len(q), n)
    return out


def teacher_windows(offsets: np.ndarray, items: np.ndarray, width: int) -> np.ndarray:
    """`[n_users + 1, width]` int64: each user's training items without the last one (the input
    of the user's own last next-item example), last `width` of them, left-padded with 0."""
    offsets = np.asarray(offsets, dtype=np.int64)
    start, end = offsets[:-1], np.maximum(offsets[1:] - 1, offsets[:-1])
    idx = end[:, None] - width + np.arange(width)[None, :]
    valid = idx >= start[:, None]
    safe = np.clip(idx, 0, max(len(items) - 1, 0))
    return np.where(valid, np.asarray(items, dtype=np.int64)[safe] if len(items) else 0, 0)


# -- model -------------------------------------------------------------------------------------
@dataclass
class LLMESRState:
    """What the distillation loss reuses from the training forward pass."""

    hidden: Tensor  # [B, L, 2d] user vectors at every slot
    semantic: Tensor  # [rows, d] this step's adapter(text) table


class LLMESR(SequentialModel):
    name = "llm_esr"
    default_loss = "bce"  # LLM-ESR: seq-to-seq BCE with one negative at every position
    TEACHER_CHUNK: int | None = None
    """Neighbour sequences per teacher forward (length-bucketed). None: 128 on CPU, where padding
    dominates (measured best of 64/128/512), 1024 on accelerators, where launches do."""

    def __init__(
        self,
        n_items: int,
        cfg: LLMESRConfig,
        text_vectors: np.ndarray,
        ids: HashItemEmbedding,
        neighbours: np.ndarray | None = None,
        windows: np.ndarray | None = None,
    ) -> None:
        super().__init__(n_items, cfg.max_len)
        self.cfg = cfg
        d = self.d = cfg.hidden_size
        self.bidirectional = cfg.backbone == "bert4rec"
        extra = 1 if self.bidirectional else 0
        text = np.zeros((n_items + 1 + extra, text_vectors.shape[1]), dtype=np.float32)
        text[1 : n_items + 1] = text_vectors[1:]  # row 0 (padding) and [MASK] stay zero
        # Frozen data, rebuilt from the artefact: never optimised, never checkpointed.
        self.register_buffer("text", torch.from_numpy(text), persistent=False)
        keep = torch.ones(text.shape[0], 1)
        keep[0] = 0.0
        self.register_buffer("_not_padding", keep, persistent=False)
        hidden = cfg.adapter_hidden or max(1, text_vectors.shape[1] // 2)
        self.adapter = nn.Sequential(nn.Linear(text.shape[1], hidden), nn.Linear(hidden, d))
        for layer in self.adapter:
            nn.init.xavier_normal_(layer.weight)
        self.ids = ids
        causal = cfg.causal and not self.bidirectional
        self.cross_co: CrossViewAttention | None = None  # Q = semantic, KV = collaborative
        self.cross_se: CrossViewAttention | None = None  # Q = collaborative, KV = semantic
        if cfg.cross_attention:
            self.cross_co = CrossViewAttention(d, cfg.cross_heads, causal)
            self.cross_se = CrossViewAttention(d, cfg.cross_heads, causal)
        self.encoder = _encoder(cfg)
        self.embedding_scale = math.sqrt(d) if cfg.embedding_scaled else 1.0
        self.distill = cfg.alpha > 0
        if self.distill:
            if neighbours is None or windows is None:
                raise ValueError("alpha > 0 needs the neighbour table and teacher windows")
            self.register_buffer("neighbours", torch.from_numpy(neighbours), persistent=False)
            self.register_buffer("windows", torch.from_numpy(windows), persistent=False)
            self.register_buffer(
                "window_lengths", torch.from_numpy((windows != 0).sum(1)), persistent=False
            )
        self._forward_calls = 0
        self._table_cache: TensorCache[Tensor] = TensorCache()

    # -- BERT4Rec backbone support ----------------------------------------------------------
    @property
    def mask_token_id(self) -> int | None:
        """[MASK] id for the bidirectional (cloze-trained) backbone, else None."""
        return self.n_items + 1 if self.bidirectional else None

    def user_repr(self, seqs: Tensor) -> Tensor:
        if self.bidirectional:  # predict at an appended [MASK], as BERT4Rec
            seqs = BERT4Rec.append_mask(self, seqs)  # type: ignore[arg-type]
        if torch.is_grad_enabled():
            self._forward_calls += 1  # as forward_train: a fresh table for a new graph
        return self.encode(seqs, self.semantic_table(), last_only=True)

    # -- item side ----------------------------------------------------------------------------
    def semantic_table(self) -> Tensor:
        """`[n_items + 1 (+1), d]`: Adapter(text) of every row, padding row zero.

        One adapter pass over the catalogue serves a whole step (inputs, targets, negatives,
        teacher). Cached while the adapter is unchanged; with autograd on only within one
        `forward_train` (the cached tensor carries that step's graph)."""
        grad = torch.is_grad_enabled()
        device = self.text.device.type
        extra = (grad, self._forward_calls if grad else -1, torch.is_autocast_enabled(device))
        return self._table_cache.get(
            self.adapter.parameters(),
            lambda: self.adapt(self.text) * self._not_padding,
            extra=extra,
        )

    def adapt(self, text: Tensor) -> Tensor:
        """Adapter(text) = W2 (W1 x + b1) + b2, computed as (W2 W1) x + (W2 b1 + b2).

        The adapter has no nonlinearity between its layers, so the two maps compose into one
        d x D matrix before touching the catalogue: per step that is one D -> d product over
        the rows instead of D -> D/2 -> d, and the backward needs no D/2-wide intermediate or
        gradient with respect to the (frozen) text. The same function and the same parameter
        gradients (chain rule through the product), up to float rounding; about 3.5x fewer
        FLOPs at D = 384, d = 64."""
        first, second = self.adapter[0], self.adapter[1]
        weight = second.weight @ first.weight
        bias = torch.addmv(second.bias, second.weight, first.bias)
        return F.linear(text, weight, bias)

    def item_weights(self) -> Tensor:
        """`[n_items + 1, 2d]`: [e^co_j ; e^se_j] (LLM-ESR scores with the unscaled tables)."""
        n = self.n_items + 1
        co = self.ids.weight_for_scoring()
        se = self.semantic_table()[:n]
        return torch.cat([co, se.to(co.dtype)], dim=-1)

    def score_items(self, user: Tensor, items: Tensor) -> Tensor:
        """`user [N, 2d]`, `items [N, k]` -> `[N, k]`, gathering only the needed rows."""
        d = self.d
        co = dot_items(user[..., :d], self.ids.embed(items))
        return co + dot_items(user[..., d:], take_rows(self.semantic_table(), items))

    # -- forward ------------------------------------------------------------------------------
    def encode(self, seqs: Tensor, semantic: Tensor, last_only: bool = False) -> Tensor:
        """`seqs [B, L]` -> u `[B, L, 2d]` = [f(E^co') ; f(E^se')], both views through ONE
        encoder call on a 2B batch (same weights; faster than two calls of B).

        `last_only` (scoring, the distillation teacher): `[B, 2d]`, the last slot's, with the
        encoder's final layer run at that slot only (`encode_last`; equal to the full pass's last
        slot, and with dropout on equal in distribution)."""
        if seqs.dim() != 2:
            raise ValueError(f"expected item sequences [B, L], got shape {tuple(seqs.shape)}")
        mask = seqs != 0
        e_co = self.ids.embed(seqs) * self.embedding_scale
        e_se = take_rows(semantic, seqs).to(e_co.dtype) * self.embedding_scale
        if self.cross_co is not None and self.cross_se is not None:
            e_co, e_se = self.cross_co(e_se, e_co, mask), self.cross_se(e_co, e_se, mask)
        views, masks = torch.cat([e_co, e_se]), torch.cat([mask, mask])
        both = encode_last(self.encoder, views, masks) if last_only else self.encoder(views, masks)
        b = seqs.shape[0]
        return torch.cat([both[:b], both[b:]], dim=-1)

    def forward_train(self, seqs: Tensor) -> tuple[Tensor, LLMESRState]:
        if torch.is_grad_enabled():
            self._forward_calls += 1  # a new step: the semantic table is rebuilt once
        semantic = self.semantic_table()
        hidden = self.encode(seqs, semantic)
        return hidden, LLMESRState(hidden=hidden, semantic=semantic)

    def hidden(self, seqs: Tensor) -> Tensor:
        return self.forward_train(seqs)[0]

    def train(self, mode: bool = True) -> LLMESR:
        self._table_cache.clear()
        return super().train(mode)

    # -- retrieval-augmented self-distillation ---------------------------------------------
    def auxiliary_losses(
        self, state: LLMESRState, inputs: Tensor, targets: Tensor, users: Tensor | None = None
    ) -> dict[str, Tensor]:
        if not self.distill:
            return {}
        if users is None:
            raise ValueError(
                "llm_esr's self-distillation needs the batch's user ids (`users`); "
                "set alpha=0 to train without it"
            )
        return {"loss_sd": self.cfg.alpha * self.distillation_loss(state, users)}

    def sample_neighbours(self, users: Tensor) -> Tensor:
        """`[B, k]` neighbour ids (0 = none) for the batch: all N, or k of them drawn uniformly
        without replacement among each user's real neighbours (CPU generator: seeded and
        checkpointed with the run)."""
        nbrs = self.neighbours[users]
        k = self.cfg.sd_neighbours
        if k is None or k >= nbrs.shape[1]:
            return nbrs
        keys = torch.rand(nbrs.shape).to(nbrs.device) + (nbrs == 0).to(torch.float32) * 2.0
        return nbrs.gather(1, keys.argsort(dim=1)[:, :k])

    def teacher(self, users: Tensor, semantic: Tensor) -> tuple[Tensor, Tensor]:
        """(teacher `[B, 2d]`, has_teacher `[B]`): the mean last-slot user vector over each
        user's neighbours' training sequences, without gradients."""
        nbrs = self.sample_neighbours(users)
        unique, inverse = unique_ids(nbrs, self.windows.shape[0])  # 0 (none) sorts first
        lengths, order = self.window_lengths[unique].sort()
        vectors = torch.zeros(len(unique), 2 * self.d, device=nbrs.device)
        with torch.no_grad():
            # Length buckets: each chunk is trimmed to its own longest window (outputs do not
            # depend on leading padding), so short neighbours cost little. One host sync.
            chunk = self.TEACHER_CHUNK or (128 if nbrs.device.type == "cpu" else 1024)
            widths = [*lengths[chunk - 1 :: chunk].tolist(), int(lengths[-1])]
            for i, start in enumerate(range(0, len(unique), chunk)):
                rows = order[start : start + chunk]
                width = max(1, int(widths[i]))
                seqs = self.windows[unique[rows]][:, -width:]
                vectors[rows] = self.encode(seqs, semantic.detach(), last_only=True).float()
        picked = vectors[inverse]  # [B, k, 2d]
        real = (nbrs != 0).to(picked.dtype)
        count = real.sum(dim=1)
        mean = (picked * real.unsqueeze(-1)).sum(dim=1) / count.clamp(min=1).unsqueeze(-1)
        return mean, count > 0

    def distillation_loss(self, state: LLMESRState, users: Tensor) -> Tensor:
        """L_sd = MSE(u_last, teacher) over the batch's users that have neighbours."""
        student = state.hidden[:, -1].float()
        target, has = self.teacher(users.to(self.neighbours.device), state.semantic)
        if not bool(has.any()):
            return student.sum() * 0.0
        return F.mse_loss(student[has], target[has])


def _encoder(cfg: LLMESRConfig) -> nn.Module:
    """The shared sequence encoder f. SASRec is built directly so `causal` reaches it."""
    if cfg.backbone == "sasrec":
        return SASRecEncoder(
            cfg.hidden_size,
            n_layers=cfg.layers,
            n_heads=cfg.n_heads,
            dropout=cfg.dropout,
            max_len=cfg.max_len,
            causal=cfg.causal,
            inner_size=cfg.inner_size,
        )
    return build_encoder(
        cfg.backbone,
        cfg.hidden_size,
        n_layers=cfg.layers,
        n_heads=cfg.n_heads,
        dropout=cfg.dropout,
        max_len=cfg.max_len,
        inner_size=cfg.inner_size,
    )


@register_model("llm_esr", config=LLMESRConfig)
def build_llm_esr(n_items: int, cfg: LLMESRConfig, inputs: ModelInputs) -> LLMESR:
    """LLM-ESR from the dataset's text vectors (both views) and training sequences (neighbours)."""
    inputs.require("llm_esr", "text_vectors")
    assert inputs.text_vectors is not None
    text = np.asarray(inputs.text_vectors, dtype=np.float32)
    extra = 1 if cfg.backbone == "bert4rec" else 0
    ids = HashItemEmbedding(n_items, cfg.hidden_size, extra_tokens=extra)
    if cfg.id_init == "pca":
        vectors = pca_item_vectors(text, cfg.hidden_size)
        if not np.any(vectors[1:]):
            raise ConfigError("model 'llm_esr': the text vectors have no variance to PCA")
        ids.load_item_vectors(torch.from_numpy(vectors))
    neighbours = windows = None
    if cfg.alpha > 0:
        inputs.require("llm_esr (alpha > 0)", "train_offsets", "train_items")
        assert inputs.train_offsets is not None and inputs.train_items is not None
        offsets = np.asarray(inputs.train_offsets, dtype=np.int64)
        items = np.asarray(inputs.train_items, dtype=np.int64)
        counts = np.diff(offsets)
        n_rows = len(offsets) - 1
        # Queries: users that train (>= 2 items: an input and a target). Candidates: the same
        # users, whose teacher sequence (training items minus the last) is non-empty.
        trainers = np.flatnonzero(counts >= 2)
        found = similar_users(
            user_text_vectors(offsets, items, text), trainers, trainers, cfg.sim_users
        )
        neighbours = np.zeros((n_rows, cfg.sim_users), dtype=np.int64)
        neighbours[trainers] = found
        windows = teacher_windows(offsets, items, cfg.max_len)
    return LLMESR(n_items, cfg, text, ids, neighbours, windows)


__all__ = [
    "LLMESR",
    "CrossViewAttention",
    "LLMESRConfig",
    "LLMESRState",
    "build_llm_esr",
    "similar_users",
    "teacher_windows",
    "user_text_vectors",
]
