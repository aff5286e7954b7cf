"""URL4DR: unified semantic and ID item tokens (Lin et al. 2025, "Unified Semantic and ID
Representation Learning for Deep Recommenders", arXiv 2502.16474; code
`Guanyu-Lin/Unified_Semantic_ID`), registered as model "url4dr".

The item embedding is the concatenation of a semantic token and a small ID token,

    e_i = [ RQ(E(x_i)) ; h_i ]        x_i = frozen text vector, E = MLP encoder,
                                      RQ = residual quantisation, h_i = an id_dim-wide ID row

used for the input sequence and, tied, for scoring. The RQ-VAE is trained ONLINE, jointly with the
recommender (no offline tokenizer): every step quantises the items it needs with the current
encoder and codebooks, so an item's semantic ID can change during training.

Residual quantisation with L levels of K codewords (defaults 3 x 256, URL4DR's `run.sh`), with
the paper's hybrid distance (its main claim; `distance: hybrid`):

    r_1 = z = E(x)
    level l < L  (cosine):     c_l = argmax_k cos(r_l, e^l_k),   q_l = e^l_{c_l}  (unit codewords)
    level L      (Euclidean):  c_L = argmin_k ||r_L - e^L_k||²,  q_L = e^L_{c_L}
    r_{l+1} = r_l - sg(q_l);   z_q = z + sg(sum_l q_l - z)          (straight-through estimator)

`distance: cosine` / `euclidean` use one rule for every level. Cosine levels follow
vector-quantize-pytorch's `CosineSimCodebook` (what URL4DR uses): the residual is L2-normalised
before matching and the emitted codeword is a unit vector, so the Euclidean last level is what
restores magnitude.

Codebooks are not trained by gradients but by exponential moving averages, as `ResidualVQ(...,
kmeans_init=True, kmeans_iters=100, threshold_ema_dead_code=2)` in the original:
cluster sizes N_k and sums S_k are EMAs (decay 0.8, the library default URL4DR leaves unchanged)
of the batch's assignment counts and assigned vectors (normalised ones on cosine levels);
e_k = S_k / N~_k with Laplace-smoothed N~ (eps 1e-5), re-normalised on cosine levels. A code whose
N_k falls below `dead_code_threshold` (2) is restarted on a vector drawn from the batch (N_k :=
threshold, S_k := threshold x vector). Codebooks start from k-means (faiss, `kmeans_iters`
iterations; spherical on cosine levels), level by level on the residuals of ALL items under the
freshly initialised encoder.

Loss (URL4DR's `trainers.py`; `default_loss = "bce"`: BCE with one negative per position):

    L = L_BCE + rq_loss_weight x ( mean_tokens sum_dims (D(z_q) - x)² + w x sum_l commit_l )
    commit_l = mean_tokens mean_dims (in_l - sg(q_l))²,  in_l = r_l (Euclidean) or r_l/||r_l||

with rq_loss_weight = 1 and w = `commitment_weight` = 1 (`--w`, whose command-line default is 1).
The RQ terms are averaged over the batch's non-padding INPUT tokens (so frequent items weigh more,
as in the original, which runs the RQ-VAE on the input sequences); they are returned by
`auxiliary_losses` as `loss_recon` and `loss_commit`, already weighted.

Switches that remove parts remove them: `id_dim: 0` is a pure-SID model (no ID table at all),
`rq_loss_weight: 0` drops both RQ losses and the decoder (the codebooks still follow their EMAs,
which are not losses), `reconstruction: false` drops the decoder only (URL4DR's
`--is_reconstruction` off).

`codes()` returns the current semantic IDs `[n_items + 1, L]` (row 0 = -1) and
`collision_rate()` the LC-Rec collision rate 1 - |unique SIDs| / n_items.

Backbones: any of `sasrec` (default; causal), `gru4rec`, `bert4rec` (a learnable [MASK] vector,
id n_items + 1, and BERT4Rec's output head). The transformer defaults are URL4DR's
(`train_sample.py`): 2 layers, 2 heads, dropout 0.5 (embeddings and attention), GELU, FFN width
4 x hidden (S3Rec's intermediate size), max_len 50, no embedding scaling; hidden =
semantic_dim + id_dim = 64 + 8 = 72.

Deviations from the original code, and assumptions where it is silent:

- Backbone: the library's shared SASRec encoder (pre-LN blocks, learnable positions, final LN),
  as every baseline here, instead of S3Rec's post-LN blocks with LayerNorm(item + position).
- Straight-through: z_q = z + sg(sum_l q_l - z) for every distance option. In the default hybrid
  mode this equals the gradient the original's two ResidualVQ stacks produce under plain
  straight-through (the cosine levels' normalisation Jacobians cancel through the last level's
  input); for all-cosine and all-Euclidean stacks the original's gradient is a sum of per-level
  terms instead. vector-quantize-pytorch >= 1.18 defaults to the rotation trick; URL4DR does not
  pin the version, so plain straight-through (the VQ-VAE estimator) is used.
- One EMA update per training step, from the input tokens (padding and [MASK] excluded). The
  original also updates on the positive and negative items (it runs the RQ-VAE in training mode on
  them) and includes padding tokens.
- k-means initialisation runs at build time on all items instead of on the first training batch;
  the encoder is the same (untrained) either way, so this only changes the sample k-means sees.
- The decoder (semantic_dim -> h -> 2h -> text dim, ReLU and LayerNorm between layers, as
  `Decode_MLP`) has no ReLU on its output: the original's final ReLU clips every negative
  text-vector coordinate, which no reconstruction could then match.
- Encoder text dim -> 2h -> h -> semantic_dim with h = `rq_hidden` = 256 (the original's `MLP`);
  all Linear layers of the RQ-VAE and the ID table start at N(0, 0.02²) with zero biases, as the
  original's `init_weights`.
- Commitment terms see the earlier levels' codewords as constants (r_{l+1} = r_l - sg(q_l)); in the
  original the last level's input also carries the cosine levels' straight-through terms.

Behaviour worth knowing (measured on the synthetic test data, 400 items, 3 x 16 codes): with
the original's N(0, 0.02²) init the encoder outputs are tiny (|z| ~ 0.01), so r_2 = z - q_1 is
almost -q_1 and level 2 adds little at first; the first updates then move every z the same way
(mean direction of the z's has norm 0.996 after epoch 1) and the cosine levels collapse (98%
collisions). Training then grows and spreads z (|z| ~ 2.5 after 20 epochs) and the codes recover
(57-67% collisions by epochs 15-20). These are the original's dynamics, kept; `codes()` shows
them.

Efficiency: training quantises only the unique items a call needs (the batch's inputs in
`forward_train`, targets and negatives in `score_items`); full-catalogue scoring (full softmax or
evaluation) encodes all items once. In eval mode without autograd the item table and codes are
cached until a parameter or codebook changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import AliasChoices, Field, model_validator
from torch import Tensor, nn

from h2rec.errors import ConfigError
from h2rec.models.base import SequentialModel
from h2rec.models.inputs import ModelInputs
from h2rec.models.parts.cache import TensorCache, no_grad_eval
from h2rec.models.parts.encoders import Activation, Backbone, build_encoder
from h2rec.models.parts.ids import unique_ids
from h2rec.models.parts.scorers import DotScorer, dot_items
from h2rec.models.parts.take import take_rows
from h2rec.models.registry import ModelConfig, register_model

Distance = Literal["hybrid", "euclidean", "cosine"]


class URL4DRConfig(ModelConfig):
    """URL4DR's item tower (online RQ-VAE + ID token) on a choice of backbone.

    `hidden_size` (alias `d`) is derived: semantic_dim + id_dim. Given alone it sets
    semantic_dim = hidden_size - id_dim; given with semantic_dim the two must agree.
    """

    backbone: Backbone = "sasrec"
    text_embeddings: str = Field(
        "st-all-minilm-l6-v2", min_length=1, description="text vectors the RQ-VAE encodes"
    )
    # -- item tokens --
    semantic_dim: int = Field(64, ge=1, description="width of the quantised semantic token")
    id_dim: int = Field(8, ge=0, description="width of the ID token (0: pure semantic IDs)")
    hidden_size: int | None = Field(None, ge=1, validation_alias=AliasChoices("hidden_size", "d"))
    # -- online RQ-VAE --
    levels: int = Field(3, ge=1)
    codebook_size: int = Field(256, ge=2)
    distance: Distance = "hybrid"
    rq_hidden: int = Field(256, ge=1, description="h: encoder text->2h->h->semantic_dim")
    reconstruction: bool = True
    ema_decay: float = Field(0.8, ge=0.0, lt=1.0)
    dead_code_threshold: float = Field(2.0, ge=0.0, description="0 disables code restarts")
    kmeans_iters: int = Field(100, ge=1)
    rq_loss_weight: float = Field(1.0, ge=0.0)
    commitment_weight: float = Field(1.0, ge=0.0, description="URL4DR's --w")
    init_std: float = Field(0.02, gt=0.0)
    # -- sequence encoder --
    n_layers: int | None = Field(None, ge=1, description="None: 2 (1 for gru4rec)")
    n_heads: int = Field(2, ge=1)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    max_len: int = Field(50, ge=1)
    inner_size: int | None = Field(None, ge=1, description="FFN width (None: 4 x hidden)")
    activation: Activation = "gelu"
    scale_embeddings: bool = False
    output_bias: bool | None = None  # None: on for bert4rec (BERT4Rec's head), else off
    output_transform: bool | None = None

    @model_validator(mode="after")
    def _derive(self) -> URL4DRConfig:
        width = self.semantic_dim + self.id_dim
        if self.hidden_size is not None and self.hidden_size != width:
            if "semantic_dim" in self.model_fields_set:
                raise ValueError(
                    f"hidden_size {self.hidden_size} != semantic_dim {self.semantic_dim} + "
                    f"id_dim {self.id_dim}; set one of them"
                )
            if self.hidden_size <= self.id_dim:
                raise ValueError(f"hidden_size {self.hidden_size} leaves no semantic dimension")
            self.semantic_dim = self.hidden_size - self.id_dim
        self.hidden_size = self.semantic_dim + self.id_dim
        if self.n_layers is None:
            self.n_layers = 1 if self.backbone == "gru4rec" else 2
        bert = self.backbone == "bert4rec"
        if self.output_bias is None:
            self.output_bias = bert
        if self.output_transform is None:
            self.output_transform = bert
        if self.backbone != "gru4rec" and self.hidden_size % self.n_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by n_heads {self.n_heads}"
            )
        return self

    @property
    def width(self) -> int:
        return self.semantic_dim + self.id_dim

    def level_is_cosine(self, level: int) -> bool:
        """Cosine for the first L-1 levels under `hybrid`, for all under `cosine`."""
        if self.distance == "cosine":
            return True
        return self.distance == "hybrid" and level < self.levels - 1


# -- the online RQ-VAE --------------------------------------------------------------------------
def _nearest(e: Tensor, x: Tensor, cosine: bool) -> Tensor:
    """Index of each row's nearest codeword: max dot product with unit codewords (cosine, `x`
    normalised), else min squared L2 (||x||² dropped: constant per row)."""
    if cosine:
        return (x @ e.t()).argmax(dim=-1)
    return ((e * e).sum(-1)[None, :] - 2.0 * x @ e.t()).argmin(dim=-1)


class EMACodebook(nn.Module):
    """One level's K codewords, updated by EMA (buffers, no gradients).

    Buffers: `embed [K, d]` (the codewords), `embed_avg [K, d]` (EMA of assigned-vector sums),
    `cluster_size [K]` (EMA of assignment counts). `cosine`: inputs are L2-normalised before
    matching and codewords are unit vectors.
    """

    def __init__(self, k: int, d: int, cosine: bool) -> None:
        super().__init__()
        self.k = k
        self.cosine = cosine
        self.register_buffer("embed", torch.zeros(k, d))
        self.register_buffer("embed_avg", torch.zeros(k, d))
        self.register_buffer("cluster_size", torch.zeros(k))

    def prepare(self, residual: Tensor) -> Tensor:
        """What this level matches and commits to: the residual, normalised on cosine levels."""
        return F.normalize(residual, dim=-1) if self.cosine else residual

    def nearest(self, x: Tensor) -> Tensor:
        """Code of each row of `x` (already `prepare`d); ties go to the lowest index."""
        return _nearest(self.embed, x, self.cosine)

    @torch.no_grad()
    def kmeans_init(self, x: Tensor, niter: int, seed: int) -> None:
        """Codewords = k-means of the `prepare`d rows `x`; EMA state = their clusters.

        Fewer rows than codes: the rows themselves, then copies of them that start with count
        0 (so the first EMA update restarts them on batch vectors).
        """
        x = x.detach().float().cpu()
        n, d = x.shape
        if n <= self.k:
            embed = x[torch.arange(self.k) % max(n, 1)] if n else torch.zeros(self.k, d)
        else:
            km = faiss.Kmeans(
                d,
                self.k,
                niter=niter,
                seed=seed,
                spherical=self.cosine,
                verbose=False,
                min_points_per_centroid=1,
                max_points_per_centroid=max(256, -(-n // self.k)),
            )
            km.train(np.ascontiguousarray(x.numpy(), dtype=np.float32))
            embed = torch.from_numpy(np.asarray(km.centroids, dtype=np.float32).copy())
        if self.cosine:
            embed = F.normalize(embed, dim=-1)
        self.embed.copy_(embed)
        counts = torch.zeros(self.k)
        if n:
            counts.index_add_(0, _nearest(embed, x, self.cosine), torch.ones(n))
        self.cluster_size.copy_(counts)
        self.embed_avg.copy_(embed * counts[:, None])

    @torch.no_grad()
    def ema_update(
        self, x: Tensor, codes: Tensor, weights: Tensor, decay: float, threshold: float
    ) -> None:
        """One EMA step from `x [m, d]` (`prepare`d, detached) assigned to `codes [m]`, row i
        counting `weights[i]` times (its number of occurrences among the batch's tokens)."""
        x = x.float()
        w = weights.to(x.dtype)
        bins = torch.zeros_like(self.cluster_size).index_add_(0, codes, w)
        sums = torch.zeros_like(self.embed_avg).index_add_(0, codes, x * w[:, None])
        self.cluster_size.lerp_(bins, 1.0 - decay)
        self.embed_avg.lerp_(sums, 1.0 - decay)
        eps = 1e-5
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + eps) / (total + self.k * eps) * total
        embed = self.embed_avg / smoothed[:, None]
        self.embed.copy_(F.normalize(embed, dim=-1) if self.cosine else embed)
        if threshold <= 0:
            return
        dead = self.cluster_size < threshold
        n_dead = int(dead.sum())
        if n_dead == 0 or x.shape[0] == 0:
            return
        # token-weighted draws on the CPU generator (seeded and checkpointed by the trainer)
        pick = torch.multinomial(w.cpu(), n_dead, replacement=n_dead > x.shape[0])
        sampled = x[pick.to(x.device)]
        self.embed[dead] = sampled
        self.embed_avg[dead] = sampled * threshold
        self.cluster_size[dead] = threshold


@dataclass
class Quantised:
    """`zq [m, s]` straight-through quantised vectors, `codes [m, L]`, `commit [m]` (sum over
    levels of the per-row mean squared commitment error), `level_inputs`: per level the
    (`prepare`d, detached) vectors each level matched, for the EMA update."""

    zq: Tensor
    codes: Tensor
    commit: Tensor
    level_inputs: list[Tensor]


def _linear_init(module: nn.Module, std: float) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            nn.init.zeros_(m.bias)


class OnlineRQVAE(nn.Module):
    """MLP encoder, L EMA codebooks (cosine or Euclidean per level) and an optional decoder."""

    def __init__(self, text_dim: int, cfg: URL4DRConfig, decoder: bool) -> None:
        super().__init__()
        h, s = cfg.rq_hidden, cfg.semantic_dim
        self.encoder = nn.Sequential(
            nn.Linear(text_dim, 2 * h), nn.ReLU(), nn.Linear(2 * h, h), nn.ReLU(), nn.Linear(h, s)
        )
        self.decoder: nn.Module | None = (
            nn.Sequential(
                nn.Linear(s, h),
                nn.ReLU(),
                nn.LayerNorm(h),
                nn.Linear(h, 2 * h),
                nn.ReLU(),
                nn.LayerNorm(2 * h),
                nn.Linear(2 * h, text_dim),
            )
            if decoder
            else None
        )
        self.books = nn.ModuleList(
            EMACodebook(cfg.codebook_size, s, cfg.level_is_cosine(level))
            for level in range(cfg.levels)
        )
        _linear_init(self, cfg.init_std)

    def quantise(self, z: Tensor) -> Quantised:
        """Residual quantisation of `z [m, s]` with the current codebooks (no update)."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            residual = z
            total = torch.zeros_like(z)
            commit = z.new_zeros(z.shape[0])
            codes, inputs = [], []
            for book in self.books:
                x = book.prepare(residual)
                code = book.nearest(x.detach())
                q = book.embed[code]
                commit = commit + (x - q).pow(2).mean(dim=-1)
                codes.append(code)
                inputs.append(x.detach())
                residual = residual - q
                total = total + q
            zq = z + (total - z).detach()
        return Quantised(zq, torch.stack(codes, dim=-1), commit, inputs)

    @torch.no_grad()
    def kmeans_init(self, z: Tensor, niter: int, seed: int) -> None:
        """Level by level: each codebook is k-means of its level's residuals of `z`."""
        residual = z.detach().float()
        for level, book in enumerate(self.books):
            x = book.prepare(residual)
            book.kmeans_init(x, niter, seed + level)
            residual = residual - book.embed[book.nearest(x)]

    @torch.no_grad()
    def update(self, q: Quantised, weights: Tensor, decay: float, threshold: float) -> None:
        for level, book in enumerate(self.books):
            book.ema_update(q.level_inputs[level], q.codes[:, level], weights, decay, threshold)


# -- the model ----------------------------------------------------------------------------------
@dataclass
class URL4DRState:
    """What `auxiliary_losses` needs from `forward_train`: the batch's unique input items, their
    token counts, straight-through quantised vectors and per-item commitment errors."""

    items: Tensor
    counts: Tensor
    zq: Tensor
    commit: Tensor


class URL4DR(SequentialModel):
    name = "url4dr"
    default_loss = "bce"  # URL4DR's trainers.py: BCE with one negative per position

    def __init__(self, n_items: int, cfg: URL4DRConfig, text_vectors: np.ndarray) -> None:
        super().__init__(n_items, cfg.max_len)
        self.cfg = cfg
        self.bidirectional = cfg.backbone == "bert4rec"
        text = torch.as_tensor(np.asarray(text_vectors, dtype=np.float32))
        # data, not state: rebuilt from the dataset, so kept out of checkpoints
        self.register_buffer("text", text, persistent=False)
        has_rq_loss = cfg.rq_loss_weight > 0
        self.rq = OnlineRQVAE(text.shape[1], cfg, decoder=cfg.reconstruction and has_rq_loss)
        self.ids: nn.Embedding | None = None
        if cfg.id_dim > 0:
            self.ids = nn.Embedding(n_items + 1, cfg.id_dim, padding_idx=0)
            nn.init.normal_(self.ids.weight, std=cfg.init_std)
            with torch.no_grad():
                self.ids.weight[0].zero_()
        width = cfg.width
        self.mask_vector = (
            nn.Parameter(torch.randn(width) * cfg.init_std) if self.bidirectional else None
        )
        self.encoder = build_encoder(
            cfg.backbone,
            width,
            n_layers=int(cfg.n_layers or 2),
            n_heads=cfg.n_heads,
            dropout=cfg.dropout,
            max_len=cfg.max_len,
            inner_size=cfg.inner_size or 4 * width,
            activation=cfg.activation,
        )
        self.scorer = DotScorer(
            n_items, width, bias=bool(cfg.output_bias), transform=bool(cfg.output_transform)
        )
        self.embedding_scale = float(np.sqrt(width)) if cfg.scale_embeddings else 1.0
        self._cache: TensorCache[tuple[Tensor, Tensor]] = TensorCache()

    # -- BERT4Rec backbone support ----------------------------------------------------------
    @property
    def mask_token_id(self) -> int | None:
        """[MASK] id for the bidirectional (cloze-trained) backbone, else None."""
        return self.n_items + 1 if self.bidirectional else None

    def append_mask(self, seqs: Tensor) -> Tensor:
        """Drop the oldest slot and append [MASK] (BERT4Rec's query for the next item)."""
        mask = torch.full_like(seqs[:, :1], self.n_items + 1)
        return torch.cat([seqs[:, 1:], mask], dim=1)

    def user_repr(self, seqs: Tensor) -> Tensor:
        if self.bidirectional:
            seqs = self.append_mask(seqs)
        return self.hidden(seqs)[:, -1]

    # -- item vectors -----------------------------------------------------------------------
    def encode_items(self, items: Tensor) -> Tensor:
        """`items [m]` (ids 1..n_items) -> encoder outputs z `[m, semantic_dim]`."""
        return self.rq.encoder(F.embedding(items, self.text))  # a lookup, faster than text[items]

    def _item_rows(self, ids: Tensor) -> tuple[Tensor, Tensor, Tensor, Quantised]:
        """(vectors `[*ids.shape, width]`, unique real items, their counts in `ids`, their
        quantisation). Padding is zero, [MASK] its learnable vector."""
        uniq, inv = unique_ids(ids, self.n_items + 2)  # ids <= [MASK] = n_items + 1
        is_item = (uniq >= 1) & (uniq <= self.n_items)
        where = torch.nonzero(is_item, as_tuple=True)[0]
        items = uniq[where]
        counts = torch.bincount(inv.reshape(-1), minlength=uniq.numel())[where]
        q = self.rq.quantise(self.encode_items(items))
        parts = [q.zq]
        if self.ids is not None:
            parts.append(self.ids(items).float())
        vecs = torch.cat(parts, dim=-1)
        rows = vecs.new_zeros(uniq.numel(), self.cfg.width).index_copy(0, where, vecs)
        if self.mask_vector is not None:
            is_mask = torch.nonzero(uniq == self.n_items + 1, as_tuple=True)[0]
            if is_mask.numel():
                rows = rows.index_copy(0, is_mask, self.mask_vector.float()[None, :])
        return take_rows(rows, inv), items, counts, q

    def _full(self) -> tuple[Tensor, Tensor]:
        """(item table `[n_items + 1, width]`, codes `[n_items + 1, L]` with row 0 = -1).

        Cached in eval mode without autograd (evaluation) until a parameter or codebook changes;
        recomputed (with autograd) otherwise."""
        if no_grad_eval(self):
            tensors = [*self.rq.parameters(), *self.rq.buffers(), self.text]
            if self.ids is not None:
                tensors.append(self.ids.weight)
            return self._cache.get(tensors, self._compute_full)
        return self._compute_full()

    def _compute_full(self) -> tuple[Tensor, Tensor]:
        ids = torch.arange(self.n_items + 1, device=self.text.device)
        table, items, _, q = self._item_rows(ids)
        codes = torch.full(
            (self.n_items + 1, self.cfg.levels), -1, dtype=torch.long, device=ids.device
        )
        codes[items] = q.codes
        return table, codes

    def item_weights(self) -> Tensor:
        return self._full()[0]

    def item_bias(self) -> Tensor | None:
        return self.scorer.bias

    def embed(self, ids: Tensor) -> Tensor:
        """Item vectors for ids of any shape (0 = padding -> zeros, n_items + 1 = [MASK])."""
        if not self.training and not torch.is_grad_enabled():
            table = self._full()[0]
            if self.mask_vector is not None:
                table = torch.cat([table, self.mask_vector.float()[None, :]], dim=0)
            return table[ids]
        return self._item_rows(ids)[0]

    @torch.no_grad()
    def codes(self) -> Tensor:
        """The current semantic IDs `[n_items + 1, L]` (row 0 = -1), from the current encoder
        and codebooks (no EMA update)."""
        return self._full()[1].clone()

    def collision_rate(self) -> float:
        """LC-Rec's collision rate of the current codes: 1 - |unique SIDs| / n_items."""
        codes = self.codes()[1:]
        return 1.0 - torch.unique(codes, dim=0).shape[0] / codes.shape[0]

    # -- forward ------------------------------------------------------------------------------
    def _encode(self, vectors: Tensor, seqs: Tensor) -> Tensor:
        if seqs.dim() != 2:
            raise ValueError(f"expected item sequences [B, L], got shape {tuple(seqs.shape)}")
        return self.encoder(vectors * self.embedding_scale, seqs != 0)

    def hidden(self, seqs: Tensor) -> Tensor:
        return self._encode(self.embed(seqs), seqs)

    def forward_train(self, seqs: Tensor) -> tuple[Tensor, URL4DRState]:
        """Quantise the batch's input items once, update the codebooks' EMAs from their tokens
        (training mode only), encode, and keep what the RQ losses need."""
        vectors, items, counts, q = self._item_rows(seqs)
        if self.training:
            self.rq.update(q, counts, self.cfg.ema_decay, self.cfg.dead_code_threshold)
        state = URL4DRState(items=items, counts=counts, zq=q.zq, commit=q.commit)
        return self._encode(vectors, seqs), state

    def auxiliary_losses(
        self, state: URL4DRState, inputs: Tensor, targets: Tensor, users: Tensor | None = None
    ) -> dict[str, Tensor]:
        """rq_loss_weight x (reconstruction + w x commitment), averaged over input tokens."""
        cfg = self.cfg
        if cfg.rq_loss_weight == 0 or state.items.numel() == 0:
            return {}
        weights = state.counts.float() / state.counts.sum()
        out: dict[str, Tensor] = {}
        if cfg.commitment_weight > 0:
            commit = (state.commit * weights).sum()
            out["loss_commit"] = cfg.rq_loss_weight * cfg.commitment_weight * commit
        if self.rq.decoder is not None:
            x_hat = self.rq.decoder(state.zq).float()
            recon = (x_hat - F.embedding(state.items, self.text)).pow(2).sum(dim=-1)
            out["loss_recon"] = cfg.rq_loss_weight * (recon * weights).sum()
        return out

    # -- scoring ------------------------------------------------------------------------------
    def score_all(self, user: Tensor, *, catalogue_only: bool = False) -> Tensor:
        start = 1 if catalogue_only else 0
        bias = self.item_bias()
        return self.scorer.score_all(
            user, self.item_weights()[start:], None if bias is None else bias[start:]
        )

    def full_scoring(self, user: Tensor) -> tuple[Tensor, Tensor, Tensor | None] | None:
        bias = self.item_bias()
        return self.scorer.linear(user, self.item_weights()[1:], None if bias is None else bias[1:])

    def score_items(self, user: Tensor, items: Tensor) -> Tensor:
        """Only the candidates are quantised in training (the original runs the RQ-VAE on the
        positive and negative items); evaluation gathers from the cached table."""
        logits = dot_items(self.scorer.project(user), self.embed(items))
        bias = self.item_bias()
        if bias is not None:
            logits = logits + take_rows(bias, items).float()
        return logits

    def train(self, mode: bool = True) -> URL4DR:
        self._cache.clear()
        return super().train(mode)


@register_model("url4dr", config=URL4DRConfig)
def build_url4dr(n_items: int, cfg: URL4DRConfig, inputs: ModelInputs) -> URL4DR:
    """URL4DR from the dataset's text vectors; codebooks start from k-means of all items."""
    inputs.require("url4dr", "text_vectors")
    assert inputs.text_vectors is not None
    text = np.asarray(inputs.text_vectors, dtype=np.float32)
    if not np.isfinite(text).all():
        raise ConfigError("model 'url4dr': the text vectors contain NaN or inf")
    model = URL4DR(n_items, cfg, text)
    # the k-means seed comes from torch's generator, so the trainer's seed fixes it
    seed = int(torch.randint(0, 2**30, (1,)).item())
    with torch.no_grad():
        z = model.encode_items(torch.arange(1, n_items + 1))
    model.rq.kmeans_init(z, cfg.kmeans_iters, seed)
    return model
