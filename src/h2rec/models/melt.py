"""MELT (Kim, Hyun, Yun & Park, SIGIR'23): Mutual Enhancement of Long-Tailed user and item.

A hash-ID SASRec (or GRU4Rec) plus two learned d x d linear maps that carry knowledge from the
head of the user and item distributions to the tail. Reference code: `rlqja1107/MELT`
(`models/MELT_SASRec.py`, `embedder.py`); "the code" below means that repository.

- Head/tail (Pareto rule, from TRAINING sequences only). A user is head when its training
  sequence is longer than T_U = the (1 - pareto) quantile of the training lengths (default: the
  top 20%). An item is head when its training frequency exceeds T_I = the `item_quantile`
  quantile of the frequencies of the items seen in training (default 0.78, the code's
  `pareto_rule - 0.02`). tau_u and tau_i default to T_U and T_I, as in the code.
- User branch, L_u. For each head user in the batch, f(S) encodes its training sequence (last
  `max_len` items, as the code's `user_context`) and f(S_few) a random recent suffix of R items,
  R uniform in {1, ..., ceil(tau_u) - 1}. W_U learns to map f(S_few) onto f(S). Nothing is
  detached, as in the code: f(S), f(S_few) and W_U all receive gradient.
- Item branch, L_i. Each step samples head items uniformly without replacement (by default as
  many as the code's head-item loader yields per step: ceil(batch x #head items / #training
  users), i.e. each head item about once per epoch). Item i gets n ~ U{1, ..., floor(min(|C_i|,
  tau_i))} of its context subsequences C_i, drawn without replacement; they are encoded,
  enriched by the user branch (f + W_U f), averaged, and W_I maps the mean onto the item's own
  embedding e_i (not detached: L_i also trains the item table, as in the code).
- Curriculum weights, with e the epoch (0-based) and e_max the training config's epochs:
  w_u = |sin(pi/2 e/e_max + pi / (2 (L_max - tau_u - 1)) (|S_u| - tau_u - 1))|, L_max = max_len
  and |S_u| the max_len-truncated training length; w_i = |sin(pi/2 e/e_max + pi/100
  (min(n_i, tau_i + 50) - tau_i - 1))|, n_i the item's training frequency (the code caps it at
  `i_L_max = item_threshold + 50`).
- Loss: L = L_BCE (one negative, every position; `default_loss = "bce"`) + lambda_u L_u +
  lambda_i L_i, with L_u = mean over head users and dimensions of w_u (W_U f(S_few) - f(S))^2
  and L_i = mean over head items and dimensions of w_i (W_I mean_s(f(s) + W_U f(s)) - e_i)^2:
  the squared distance divided by d, as the code's `.mean()` (the lambda defaults 0.1 and 0.3,
  inside the paper's 0.1-0.4 grids, are tuned for that scale). The code's item loss is
  `(w_i * diff) ** 2`, i.e. weights w_i^2; this follows the paper's w_i.
- Inference. A TAIL user's representation is f + W_U f; head users keep f. At the start of
  every epoch (`start_epoch`) every tail item with at least one training context is overwritten
  in place by W_I(mean over ALL its contexts of f), the code's `update_tail_item_representation`.

Context subsequences (`item_context`). The code's C_i (`save_user_item_context`) holds, for every
training occurrence of i at position t of a user's sequence s_1..s_T, the subsequence s_1..s_t
ENDING WITH i (its last `max_len` items) and, for users with more than one training item, the
remainder s_t..s_T time-reversed so that it also ends with i (its first `max_len` items).
`item_context: code` (default) reproduces that. `item_context: history` keeps only what the user
did strictly BEFORE i (s_1..s_{t-1}; an occurrence at t = 1 has no context), the reading in which
f(context) is the model's own next-item query for i. The curriculum's n_i is the frequency in
both modes (the code's `n_item_context`).

Where this implementation deviates, and why:
- One run, no separate pretraining. MELT fine-tunes a converged SASRec (200 epochs, then 180 MELT
  epochs). `warmup_epochs: k` trains plain SASRec for the first k epochs (no L_u/L_i, no tail
  refresh, no tail-user transfer; e then counts from k and e_max = epochs - k), the two-stage
  schedule in one resumable run. The default 0 starts MELT from scratch.
  `warmup_until_converged: true` is the code's schedule: the warm-up (at most k epochs) ends
  once validation has not improved for `eval.patience` epochs, and MELT starts from the warm-up's
  best weights with a fresh optimizer (the code loads its best SASRec checkpoint and builds a new
  Adam); e counts from the warm-up's end. A fixed k cuts SASRec off wherever it is (on Beauty
  20 epochs left it 15% below its best), so Table 2 uses this.
- Head users are those of the training batch, not a separate loader; every head user is still
  visited once per epoch (with its batch). Head items are drawn per step from the torch CPU
  generator rather than from a per-epoch shuffled loader (the model does not see the epoch's
  batches), at the same rate by default.
- The tail refresh encodes all tail contexts with the pre-refresh parameters and writes all rows
  at once; the code writes 256 items at a time, so later chunks see rows already overwritten (an
  order effect with no purpose). Like both of the code's implementations (SASRec and FMLP), the
  refresh averages plain f although W_I is trained on f + W_U f; `enrich_tail_update: true`
  uses f + W_U f at refresh time too.
- The head/tail USER decision at inference. The evaluator passes a history, not a user id, so a
  history is tail when it holds <= T_U items: the training rule applied to what is given. At
  test time the history has one item (the validation target) more than the training sequence,
  and histories longer than `max_len` arrive truncated (head whenever T_U < max_len). The code
  decides by the user's training length.
- The few-item length: the code's `np.random.randint(1, user_thres)` truncates a fractional
  threshold (7.6 -> lengths 1..6); here R covers all integers strictly below tau_u (1..7). A
  guard keeps L_max - tau_u - 1 >= 1 in w_u.
- Backbones: sasrec (default) and gru4rec, both causal, so f(S) is the output at the last slot.
  BERT4Rec is not offered: cloze training gives no per-prefix f(S) without an appended [MASK],
  so the branches would need another definition.

Scale caveat (observed, not a deviation; the code does the same). The first refresh happens
before W_I has trained at all: W_I starts at xavier scale (outputs of norm ~ sqrt(d) from
LayerNorm'd f) while trained item embeddings have norms ~0.1-0.3, so the refreshes write
oversized vectors into the tail rows until W_I has shrunk, which takes many Adam steps (the code
has them: ~400 steps x 180 epochs on Amazon). From a converged warm-up, validation NDCG@10 fell
from 0.0283 to 0.0003 after the first MELT epoch on Beauty (training loss 0.40 -> 18.3) and
from 0.0306 to 0.0004 on Yelp, and MELT never regained its start (Beauty 0.0270, Yelp 0.0166). On the small synthetic test data (12 steps an epoch) the tail items
sink below the head ones and full-ranking NDCG@10 stays far below SASRec's (it climbs with more
steps); compare MELT only on schedules of the code's length, from a converged warm-up.
`refresh_delay: k` (a deviation, off by default) lets W_I train for k MELT epochs on the head
items before the first refresh writes the tail rows; on Beauty one epoch only moved the collapse
one epoch later (`experiments/melt-refresh`).

Switches really remove components: lambda_u = 0 builds no W_U (no L_u, no enrichment in the item
branch, no tail-user transfer); lambda_i = 0 builds no W_I (no L_i, no tail-item refresh).

Randomness: suffix lengths, head items, context counts and contexts come from torch's global CPU
generator, which checkpoints save and restore; the refresh is deterministic (eval mode, no
sampling), a function of the parameters and the epoch. So a resumed run equals an uninterrupted
one.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from pydantic import AliasChoices, Field, model_validator
from torch import Tensor, nn

from h2rec.errors import ConfigError
from h2rec.models.base import ComposedModel
from h2rec.models.inputs import ModelInputs
from h2rec.models.parts.encoders import build_encoder
from h2rec.models.parts.items import HashItemEmbedding
from h2rec.models.parts.scorers import DotScorer
from h2rec.models.registry import ModelConfig, register_model

ContextMode = Literal["code", "history"]


class MELTConfig(ModelConfig):
    """MELT on a hash-ID backbone; branch weights and thresholds default to the reference code."""

    backbone: Literal["sasrec", "gru4rec"] = "sasrec"
    hidden_size: int = Field(64, ge=1, validation_alias=AliasChoices("hidden_size", "d"))
    n_layers: int = Field(2, ge=1)
    n_heads: int = Field(1, ge=1, description="sasrec only")
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    max_len: int = Field(50, ge=1)
    inner_size: int | None = Field(None, ge=1, description="FFN inner size (None: d, as SASRec)")
    scale_embeddings: bool | None = None  # None: x sqrt(d) for sasrec (as SASRec), off for gru4rec
    item_init: Literal["normal", "xavier"] = "normal"

    lambda_u: float = Field(0.1, ge=0.0, description="weight of L_u; 0 removes the user branch")
    lambda_i: float = Field(0.3, ge=0.0, description="weight of L_i; 0 removes the item branch")
    pareto: float = Field(0.2, gt=0.0, lt=1.0, description="share of head users (top by length)")
    item_quantile: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="head items: frequency above this quantile "
        "(None: 1 - pareto - 0.02, the reference code's pareto_rule - 0.02)",
    )
    tau_u: float | None = Field(
        None, gt=0.0, description="user-branch length bound (None: the head-user threshold T_U)"
    )
    tau_i: float | None = Field(
        None, gt=0.0, description="item-branch context bound (None: the head-item threshold T_I)"
    )
    item_batch: int | None = Field(
        None,
        ge=1,
        description="head items per step for L_i (None: the reference code's rate, "
        "ceil(batch size x #head items / #training users), each head item once per epoch)",
    )
    item_context: ContextMode = "code"
    enrich_tail_update: bool = False  # True: the refresh averages f + W_U f, not f
    refresh_delay: int = Field(
        0,
        ge=0,
        description="MELT epochs before the first tail-item refresh (0: the reference code, "
        "which refreshes before its first epoch, with W_I untrained)",
    )
    warmup_epochs: int = Field(
        0,
        ge=0,
        description="plain-SASRec epochs before MELT starts (with warmup_until_converged: "
        "the most it may take)",
    )
    warmup_until_converged: bool = Field(
        False,
        description="end the warm-up when validation has not improved for eval.patience "
        "epochs and start MELT from its best epoch with a fresh optimizer (the reference "
        "code's converged, pretrained SASRec)",
    )

    @model_validator(mode="after")
    def _check(self) -> MELTConfig:
        if self.backbone == "sasrec" and self.hidden_size % self.n_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by n_heads {self.n_heads}"
            )
        if self.warmup_until_converged and self.warmup_epochs == 0:
            raise ValueError(
                "warmup_until_converged needs warmup_epochs >= 1 (the warm-up's longest length)"
            )
        if not 0.0 < self.head_item_quantile < 1.0:
            raise ValueError(
                f"the head-item quantile 1 - pareto - 0.02 = {self.head_item_quantile} is not in "
                "(0, 1); set item_quantile"
            )
        return self

    @property
    def head_item_quantile(self) -> float:
        """`item_quantile`, or the code's `pareto_rule - 0.02` (0.78 for the top 20%)."""
        if self.item_quantile is not None:
            return self.item_quantile
        return 1.0 - self.pareto - 0.02


# -- curriculum weights ---------------------------------------------------------------------------
def user_curriculum_weight(progress: float, length: Tensor, tau_u: float, max_len: int) -> Tensor:
    """w_u = |sin(pi/2 progress + pi / (2 (L_max - tau_u - 1)) (|S_u| - tau_u - 1))|.

    `progress` = e / e_max; `length` = |S_u| (max_len-truncated). Long sequences get their largest
    weight early and short ones late (the curriculum goes from easy to hard users)."""
    span = max(max_len - tau_u - 1.0, 1.0)
    phase = math.pi / 2 * progress + math.pi / (2 * span) * (length.double() - tau_u - 1.0)
    return phase.sin().abs().float()


def item_curriculum_weight(progress: float, freq: Tensor, tau_i: float) -> Tensor:
    """w_i = |sin(pi/2 progress + pi/100 (min(n_i, tau_i + 50) - tau_i - 1))| (n_i = frequency)."""
    n = torch.minimum(freq.double(), torch.tensor(tau_i + 50.0, dtype=torch.float64))
    phase = math.pi / 2 * progress + math.pi / 100 * (n - tau_i - 1.0)
    return phase.sin().abs().float()


# -- training-split structures ---------------------------------------------------------------------
def _windows(items: np.ndarray, idx: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """`items[idx]` where lo <= idx < hi (row-wise bounds), 0 elsewhere."""
    valid = (idx >= lo[:, None]) & (idx < hi[:, None])
    return np.where(valid, items[np.clip(idx, 0, max(len(items) - 1, 0))], 0)


class ItemContexts:
    """Item -> its context subsequences, as a CSR over TRAINING positions (numpy, built once).

    A context is (global training position p, reversed?): `code` mode has, for every occurrence
    of item i at p, the window ending at p and (users with > 1 training item) the time-reversed
    window starting at p; `history` mode has the window ending at p - 1 (occurrences that are not
    a user's first item). Context ids are grouped by item: those of item i are
    `ptr[i] .. ptr[i + 1] - 1`.
    """

    def __init__(
        self,
        offsets: np.ndarray,
        items: np.ndarray,
        n_items: int,
        max_len: int,
        mode: ContextMode = "code",
    ) -> None:
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.items = np.asarray(items, dtype=np.int64)
        self.max_len, self.mode = max_len, mode
        lengths = np.diff(self.offsets)
        n_pos = len(self.items)
        self.pos_user = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        j = np.arange(n_pos, dtype=np.int64) - self.offsets[self.pos_user]
        user_len = lengths[self.pos_user]
        positions = np.arange(n_pos, dtype=np.int64)
        if mode == "code":
            multi = user_len > 1
            pos = np.concatenate([positions, positions[multi]])
            rev = np.concatenate([np.zeros(n_pos, bool), np.ones(int(multi.sum()), bool)])
            ctx_len = np.concatenate([j + 1, (user_len - j)[multi]])
        elif mode == "history":
            keep = j >= 1
            pos, rev, ctx_len = positions[keep], np.zeros(int(keep.sum()), bool), j[keep]
        else:
            raise ValueError(f"unknown item_context '{mode}' (expected 'code' or 'history')")
        # grouped by item; within an item by position, the forward window before the reversed one
        order = np.lexsort((rev, pos, self.items[pos]))
        self.pos, self.rev = pos[order], rev[order]
        self.length = np.minimum(ctx_len[order], max_len)
        self.ptr = np.zeros(n_items + 2, dtype=np.int64)
        np.cumsum(np.bincount(self.items[self.pos], minlength=n_items + 1), out=self.ptr[1:])

    def count(self, items: np.ndarray) -> np.ndarray:
        """|C_i| per item."""
        return self.ptr[items + 1] - self.ptr[items]

    def windows(self, ctx: np.ndarray, width: int | None = None) -> np.ndarray:
        """`[len(ctx), width]` left-padded item windows (width: the longest context, capped)."""
        if width is None:
            width = int(self.length[ctx].max(initial=1))
        p, rev = self.pos[ctx], self.rev[ctx]
        user = self.pos_user[p]
        slot = np.arange(width, dtype=np.int64)[None, :]
        last = p if self.mode == "code" else p - 1
        forward = last[:, None] - (width - 1) + slot
        backward = p[:, None] + (width - 1) - slot  # slot width-1 holds the item itself
        idx = np.where(rev[:, None], backward, forward)
        return _windows(self.items, idx, self.offsets[user], self.offsets[user + 1])


# -- the model ------------------------------------------------------------------------------------
class MELT(ComposedModel):
    """SASRec/GRU4Rec + MELT's user branch (W_U) and item branch (W_I); see the module docstring."""

    name = "melt"
    default_loss = "bce"  # SASRec's BCE with one negative per position (the reference code)
    refresh_chunk = 1024  # contexts per encoder call in the tail refresh (memory, not results)

    def __init__(
        self,
        n_items: int,
        cfg: MELTConfig,
        offsets: np.ndarray,
        train_items: np.ndarray,
    ) -> None:
        d = cfg.hidden_size
        scale = (
            cfg.scale_embeddings if cfg.scale_embeddings is not None else cfg.backbone == "sasrec"
        )
        super().__init__(
            n_items,
            cfg.max_len,
            items=HashItemEmbedding(n_items, d, extra_tokens=0, init=cfg.item_init),
            encoder=build_encoder(
                cfg.backbone,
                d,
                n_layers=cfg.n_layers,
                n_heads=cfg.n_heads,
                dropout=cfg.dropout,
                max_len=cfg.max_len,
                inner_size=cfg.inner_size,
            ),
            scorer=DotScorer(n_items, d),
            scale_embeddings=scale,
        )
        self.cfg = cfg
        self.W_U = self._linear(d) if cfg.lambda_u > 0 else None
        self.W_I = self._linear(d) if cfg.lambda_i > 0 else None
        # 1 once MELT is on (after warmup): gates the tail-user transfer, saved with the weights so
        # a best checkpoint from a warmup epoch scores as the plain SASRec it was.
        self.register_buffer("active", torch.tensor(float(cfg.warmup_epochs == 0)))
        self._on = cfg.warmup_epochs == 0  # the same, host-side, for the training losses
        # the epoch MELT starts at; -1 while a converging warm-up has not ended (saved with the
        # weights: checkpoints resume in the right stage)
        start = -1 if cfg.warmup_until_converged else cfg.warmup_epochs
        self.register_buffer("melt_start", torch.tensor(start, dtype=torch.int64))
        self._progress = 0.0  # e / e_max, set by start_epoch

        offsets = np.asarray(offsets, dtype=np.int64)
        train_items = np.asarray(train_items, dtype=np.int64)
        self.offsets, self.train_items = offsets, train_items
        lengths = np.diff(offsets)
        self.user_len = lengths
        self._n_train_users = int((lengths >= 2).sum())  # users with a training target
        seen = lengths[lengths > 0]
        if seen.size == 0:
            raise ConfigError("model 'melt' needs at least one training interaction")
        self.user_threshold = float(np.quantile(seen, 1.0 - cfg.pareto))
        freq = np.bincount(train_items, minlength=n_items + 1).astype(np.int64)
        freq[0] = 0
        self.item_freq = freq
        self.item_threshold = float(np.quantile(freq[freq > 0], cfg.head_item_quantile))
        self.tau_u = cfg.tau_u if cfg.tau_u is not None else self.user_threshold
        self.tau_i = cfg.tau_i if cfg.tau_i is not None else self.item_threshold
        ids = np.arange(1, n_items + 1)
        self.head_items = ids[freq[1:] > self.item_threshold]
        self.tail_items = ids[freq[1:] <= self.item_threshold]
        self.contexts = ItemContexts(offsets, train_items, n_items, cfg.max_len, cfg.item_context)
        # items the item branch can use: head items with at least one context
        self._branch_items = self.head_items[self.contexts.count(self.head_items) > 0]
        self._refresh_plan()

    @staticmethod
    def _linear(d: int) -> nn.Linear:
        layer = nn.Linear(d, d)
        nn.init.xavier_normal_(layer.weight)  # the reference code's init (bias: torch default)
        return layer

    def _refresh_plan(self) -> None:
        """The tail refresh's contexts, sorted by length so each chunk is only as wide as needed."""
        tail = self.tail_items[self.contexts.count(self.tail_items) > 0]
        counts = self.contexts.count(tail)
        seg = np.repeat(np.arange(len(tail), dtype=np.int64), counts)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        ctx = (
            self.contexts.ptr[tail][seg] + np.arange(int(counts.sum()), dtype=np.int64) - first[seg]
        )
        order = np.argsort(self.contexts.length[ctx], kind="stable")
        self.refresh_items = tail
        self._refresh_ctx, self._refresh_seg = ctx[order], seg[order]
        self._refresh_counts = counts

    # -- inference -------------------------------------------------------------------------------
    def transfer(self, f: Tensor, n_items_seen: Tensor) -> Tensor:
        """f + W_U f for tail histories (<= tau_U items), f otherwise (and before MELT starts)."""
        if self.W_U is None:
            return f
        gate = (n_items_seen <= self.user_threshold).to(f.dtype) * self.active.to(f.dtype)
        return f + gate.unsqueeze(-1) * self.W_U(f)

    def user_repr(self, seqs: Tensor) -> Tensor:
        return self.transfer(self.hidden(seqs)[:, -1], (seqs != 0).sum(dim=1))

    def encode_last(self, seqs: Tensor) -> Tensor:
        """f(S): the raw representation at the last slot (no transfer), for the branches."""
        return self.hidden(seqs)[:, -1]

    # -- epochs: curriculum and the tail refresh -------------------------------------------------
    @property
    def selection_start_epoch(self) -> int:
        """The warm-up epochs train plain SASRec, not MELT: model selection and early stopping's
        patience start after them."""
        return 0 if self.cfg.warmup_until_converged else self.cfg.warmup_epochs

    @property
    def converging_warmup(self) -> int:
        return self.cfg.warmup_epochs if self.cfg.warmup_until_converged else 0

    def end_warmup(self, epoch: int) -> None:
        self.melt_start.fill_(epoch)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        start = int(self.melt_start)
        on = 0 <= start <= epoch
        self._on = on
        self.active.fill_(float(on))
        self._progress = (epoch - start) / max(1, epochs - start) if on else 0.0
        if on and self.W_I is not None and epoch - start >= self.cfg.refresh_delay:
            self.refresh_tail_items()

    @torch.no_grad()
    def tail_item_estimates(self) -> Tensor:
        """W_I(mean of the contexts' f) for every refreshable tail item, `[n, d]` (eval mode)."""
        assert self.W_I is not None
        was_training = self.training
        self.eval()
        try:
            device = self.items.embedding.weight.device
            d = self.items.dim
            sums = torch.zeros(len(self.refresh_items), d, device=device)
            for lo in range(0, len(self._refresh_ctx), self.refresh_chunk):
                ctx = self._refresh_ctx[lo : lo + self.refresh_chunk]
                seqs = torch.from_numpy(self.contexts.windows(ctx)).to(device)
                f = self.encode_last(seqs).float()
                if self.cfg.enrich_tail_update and self.W_U is not None:
                    f = f + self.W_U(f)
                seg = torch.from_numpy(self._refresh_seg[lo : lo + self.refresh_chunk]).to(device)
                sums.index_add_(0, seg, f)
            counts = torch.from_numpy(self._refresh_counts).to(device=device, dtype=sums.dtype)
            return self.W_I(sums / counts.unsqueeze(-1))
        finally:
            self.train(was_training)

    @torch.no_grad()
    def refresh_tail_items(self) -> None:
        """Overwrite the tail items' embeddings in place (MELT's update_tail_item_representation)."""
        if self.W_I is None or len(self.refresh_items) == 0:
            return
        table = self.items.embedding.weight
        rows = torch.from_numpy(self.refresh_items).to(table.device)
        table.index_copy_(0, rows, self.tail_item_estimates().to(table.dtype))

    # -- auxiliary losses -----------------------------------------------------------------------
    def auxiliary_losses(
        self, state: object, inputs: Tensor, targets: Tensor, users: Tensor | None = None
    ) -> dict[str, Tensor]:
        if not self._on:  # warmup: plain SASRec
            return {}
        out: dict[str, Tensor] = {}
        if self.W_U is not None:
            out["loss_u"] = self.cfg.lambda_u * self.user_loss(inputs, users)
        if self.W_I is not None:
            out["loss_i"] = self.cfg.lambda_i * self.item_loss(inputs.device, inputs.shape[0])
        return out

    def head_user_sequences(self, inputs: Tensor, users: Tensor | None) -> tuple[Tensor, Tensor]:
        """(S `[H, L]`, |S_u| `[H]`) for the batch's head users.

        With user ids: the last `max_len` items of each head user's TRAINING sequence (as the
        reference code's user_context). Without (a bare objective call): the given input rows,
        head when they hold more than tau_U items."""
        device = inputs.device
        if users is not None:
            u = users.detach().cpu().numpy().astype(np.int64)
            u = u[self.user_len[u] > self.user_threshold]
            width = int(min(self.max_len, self.user_len[u].max(initial=1)))
            end = self.offsets[u + 1]
            idx = end[:, None] - width + np.arange(width)[None, :]
            seqs = _windows(self.train_items, idx, self.offsets[u], end)
            return torch.from_numpy(seqs).to(device), torch.from_numpy(
                np.minimum(self.user_len[u], self.max_len)
            ).to(device)
        n = (inputs != 0).sum(dim=1)
        head = n > self.user_threshold
        return inputs[head], n[head]

    def user_loss(self, inputs: Tensor, users: Tensor | None = None) -> Tensor:
        """L_u over the batch's head users; suffix lengths drawn from the torch CPU generator."""
        seqs, lengths = self.head_user_sequences(inputs, users)
        if seqs.shape[0] == 0:
            return torch.zeros((), device=inputs.device)
        high = max(1, math.ceil(self.tau_u) - 1)  # lengths strictly below tau_u
        few_len = torch.randint(1, high + 1, (seqs.shape[0],))
        return self.user_branch_loss(seqs, few_len, lengths)

    def user_branch_loss(self, seqs: Tensor, few_len: Tensor, lengths: Tensor) -> Tensor:
        """mean_{u, k} w_u (W_U f(S_few) - f(S))_k^2 with S_few = the last `few_len` items of S.

        `few_len` is a CPU tensor; S_few is encoded only as wide as its longest suffix (encoders
        number positions from the right, so this equals encoding the padded full width)."""
        assert self.W_U is not None
        width = min(int(few_len.max()), seqs.shape[1])
        slot = torch.arange(width)
        keep = (slot[None, :] >= width - few_len[:, None]).to(seqs.device)
        few = torch.where(keep, seqs[:, -width:], 0)
        f_full = self.encode_last(seqs).float()
        f_few = self.encode_last(few).float()
        w = user_curriculum_weight(self._progress, lengths, self.tau_u, self.max_len)
        err = (self.W_U(f_few).float() - f_full) ** 2
        return (w.to(err.device).unsqueeze(-1) * err).mean()

    def sample_item_contexts(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(head items [k'], context ids [N], segment of each context [N]) from the CPU generator.

        k' = min(k, #head items) items without replacement; item j gets n_j ~ U{1..floor(min(|C_j|,
        tau_i))} distinct contexts, drawn by Floyd's algorithm (uniform without replacement, memory
        O(k n) however many contexts a popular item has)."""
        pool = self._branch_items
        pick = torch.randperm(len(pool))[: min(k, len(pool))].numpy()
        heads = pool[pick]
        size = torch.from_numpy(self.contexts.count(heads))
        tau = torch.tensor(self.tau_i, dtype=torch.float64)
        cap = torch.clamp(torch.floor(torch.minimum(size.double(), tau)), min=1)
        n = 1 + torch.floor(torch.rand(len(heads), dtype=torch.float64) * cap).long()
        n = torch.minimum(n, size)
        n_max = int(n.max()) if len(heads) else 0
        picked = torch.full((len(heads), n_max), -1, dtype=torch.long)
        for step in range(n_max):
            t = size - n + step  # Floyd: population prefix [0, t] at this step
            r = torch.floor(torch.rand(len(heads), dtype=torch.float64) * (t + 1)).long()
            dup = (picked[:, :step] == r[:, None]).any(dim=1)
            choice = torch.where(dup, t, r)
            picked[:, step] = torch.where(step < n, choice, -1)
        valid = picked >= 0
        seg = torch.nonzero(valid, as_tuple=True)[0].numpy()
        ctx = self.contexts.ptr[heads][seg] + picked[valid].numpy()
        return heads, ctx, seg

    def items_per_step(self, batch_size: int) -> int:
        """`item_batch`, or the reference code's rate: its head-item loader has as many batches as
        the training loader, so each step sees batch_size x #head items / #training users."""
        if self.cfg.item_batch is not None:
            return self.cfg.item_batch
        rate = batch_size * len(self._branch_items) / max(1, self._n_train_users)
        return max(1, math.ceil(rate))

    def item_loss(self, device: torch.device | str, batch_size: int) -> Tensor:
        """L_i over `items_per_step(batch_size)` head items sampled this step."""
        if len(self._branch_items) == 0:
            return torch.zeros((), device=device)
        heads, ctx, seg = self.sample_item_contexts(self.items_per_step(batch_size))
        return self.item_branch_loss(heads, ctx, seg, device)

    def item_branch_loss(
        self, heads: np.ndarray, ctx: np.ndarray, seg: np.ndarray, device: torch.device | str
    ) -> Tensor:
        """mean_{i, k} w_i (W_I(mean_s (f(s) + W_U f(s))) - e_i)_k^2 over the given contexts."""
        assert self.W_I is not None
        seqs = torch.from_numpy(self.contexts.windows(ctx)).to(device)
        f = self.encode_last(seqs).float()
        if self.W_U is not None:  # knowledge transfer from the user branch
            f = f + self.W_U(f).float()
        segment = torch.from_numpy(seg).to(device)
        sums = torch.zeros(len(heads), f.shape[-1], device=device).index_add(0, segment, f)
        counts = torch.bincount(segment, minlength=len(heads)).to(sums.dtype)
        mean = sums / counts.unsqueeze(-1)
        items = torch.from_numpy(heads).to(device)
        target = self.items.embed(items).float()
        freq = torch.from_numpy(self.item_freq[heads])
        w = item_curriculum_weight(self._progress, freq, self.tau_i).to(device)
        err = (self.W_I(mean).float() - target) ** 2
        return (w.unsqueeze(-1) * err).mean()


@register_model("melt", config=MELTConfig)
def build_melt(n_items: int, cfg: MELTConfig, inputs: ModelInputs) -> MELT:
    inputs.require("melt", "train_offsets", "train_items")
    assert inputs.train_offsets is not None and inputs.train_items is not None
    return MELT(n_items, cfg, inputs.train_offsets, inputs.train_items)
