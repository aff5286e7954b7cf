"""The interface every model offers to the trainer, the objectives and the evaluator.

Conventions: item ids 1..n_items, 0 = padding; sequences are LongTensor `[B, L]` LEFT-padded
(real items at the end); L <= max_len. The evaluator sees only `score(seqs, candidates)`; the
objectives use `hidden`, `score_all` and `score_items`. Nothing here switches train/eval mode or
disables autograd: callers do (`model.eval()` + `torch.no_grad()` to evaluate).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from h2rec.models.parts.encoders import encode_last
from h2rec.models.parts.items import ItemRepresentation
from h2rec.models.parts.scorers import DotScorer, dot_all, dot_items
from h2rec.models.parts.take import take_rows


class SequentialModel(nn.Module):
    """Base class: a sequence of item ids -> scores over the catalogue.

    Subclasses implement `hidden`, `item_weights` (and `item_bias`, `user_repr` where they differ)
    and, if the user vector is transformed before the dot product, `score_all`/`score_items`.
    """

    name: str = "base"
    trainable: bool = True
    """False for models with nothing to optimise (MostPop); the trainer then skips training."""

    def __init__(self, n_items: int, max_len: int) -> None:
        super().__init__()
        self.n_items = n_items
        self.max_len = max_len

    # -- representations -------------------------------------------------------------------
    def hidden(self, seqs: Tensor) -> Tensor:
        """`[B, L]` -> `[B, L, d]`: the encoder output at every slot (padding slots are zero)."""
        raise NotImplementedError

    def user_repr(self, seqs: Tensor) -> Tensor:
        """`[B, L]` -> `[B, d]`: the vector that predicts the item AFTER the sequence (last slot)."""
        return self.hidden(seqs)[:, -1]

    # -- training hooks --------------------------------------------------------------------
    def forward_train(self, seqs: Tensor) -> tuple[Tensor, Any]:
        """`hidden(seqs)` plus whatever `auxiliary_losses` needs from the same forward pass."""
        return self.hidden(seqs), None

    def auxiliary_losses(
        self, state: Any, inputs: Tensor, targets: Tensor, users: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Extra training losses, ALREADY multiplied by their weights (e.g. H2Rec's beta * L_CA).

        `state` is what `forward_train` returned; `targets [B, L]` are the labels the objective
        trains on (0 = none); `users [B]` the batch's internal user ids (for models with per-user
        side data, e.g. LLM-ESR's similar users). Models without auxiliary losses return {}.
        """
        return {}

    @property
    def selection_start_epoch(self) -> int:
        """Epochs that are not candidates for model selection: validation after epoch k <= this
        neither becomes the best checkpoint nor counts towards early stopping's patience. 0 for
        a model trained as itself from the start; a model whose first epochs train something
        else (MELT's plain-SASRec warm-up) returns their number, so the model it reports is
        always the one it is named after."""
        return 0

    @property
    def converging_warmup(self) -> int:
        """0, or the most epochs of a warm-up that ends when it has converged. A model whose
        first stage is another, pretrained model (MELT fine-tunes a converged SASRec) returns
        k > 0: the trainer then trains that stage until validation has not improved for
        `eval.patience` epochs (at most k epochs), restores its best weights, calls
        `end_warmup(epoch)`, restarts the optimizer (as fine-tuning a saved model would) and
        selects only among the epochs after it."""
        return 0

    def end_warmup(self, epoch: int) -> None:
        """The converging warm-up ended after `epoch` epochs (its best weights are loaded): the
        model starts its own stage with the next epoch. Saved state (buffers) must record it, so
        checkpoints and the best weights know which stage they belong to."""
        raise NotImplementedError(f"{type(self).__name__} has no converging warm-up")

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called by the trainer before training epoch `epoch` (0-based) of `epochs`, in train
        mode: for curricula and between-epoch updates (e.g. MELT's tail-item refresh). It must be
        a function of the parameters and `epoch` only, so a resumed run replays it exactly."""

    def item_weights(self) -> Tensor:
        """`[n_items + 1, d]` output item table (row 0 = padding, never recommended)."""
        raise NotImplementedError

    def item_bias(self) -> Tensor | None:
        """`[n_items + 1]` per-item output bias, or None."""
        return None

    # -- scoring ---------------------------------------------------------------------------
    def score_all(self, user: Tensor, *, catalogue_only: bool = False) -> Tensor:
        """`user [N, d]` -> `[N, n_items + 1]` float32 logits (computed in float32 even under
        autocast, see `parts.scorers`); column 0 is NOT masked here.

        `catalogue_only` drops the padding column at the source (`[N, n_items]`, column j = item
        j + 1): full-softmax training then never copies a sliced `[N, n_items + 1]` matrix.
        """
        start = 1 if catalogue_only else 0
        logits = dot_all(user, self.item_weights()[start:])
        bias = self.item_bias()
        if bias is not None:
            logits = logits + bias[start:].float()
        return logits

    def full_scoring(self, user: Tensor) -> tuple[Tensor, Tensor, Tensor | None] | None:
        """`score_all(user, catalogue_only=True)` as ONE linear map, or None if it is not one.

        Returns (u `[N, d']`, table `[n_items, d']`, bias `[n_items]` or None) with
        logits = u tableᵀ + bias, so full-softmax CE can run in row chunks (`losses.chunked_ce`)
        without the `[N, n_items]` logits. A subclass that overrides `score_all` gets None (the
        objective then builds the logits) unless it also overrides this hook: a wrong linear
        map here would silently train a different model than the one evaluated.
        """
        if _overrides(self, "score_all", SequentialModel):
            return None
        bias = self.item_bias()
        return user, self.item_weights()[1:], None if bias is None else bias[1:]

    def score_items(self, user: Tensor, items: Tensor) -> Tensor:
        """`user [N, d]`, `items [N, k]` -> `[N, k]` float32 logits."""
        logits = dot_items(user, take_rows(self.item_weights(), items))
        bias = self.item_bias()
        if bias is not None:
            logits = logits + take_rows(bias, items).float()
        return logits

    def score(self, seqs: Tensor, candidates: Tensor | None = None) -> Tensor:
        """The evaluator's score_fn.

        `candidates=None`: `[B, n_items + 1]` with column 0 (padding) = -inf.
        `candidates [B, C]`: `[B, C]`, equal to gathering those ids from the full scores
        (a candidate id 0 scores -inf too). Always float32.
        """
        user = self.user_repr(seqs)
        if candidates is None:
            logits = self.score_all(user)
            pad = torch.zeros(1, dtype=torch.long, device=logits.device)
            if logits.requires_grad:  # keep autograd's graph out of in-place territory
                return logits.index_fill(1, pad, -math.inf)
            # Evaluation (no_grad): fill in place, not a second [B, n_items + 1] matrix.
            # `score_all` returns a new tensor (a product, never a stored table or a view of one).
            return logits.index_fill_(1, pad, -math.inf)
        logits = self.score_items(user, candidates)
        return logits.masked_fill(candidates == 0, -math.inf)


class ComposedModel(SequentialModel):
    """item representation -> (optional sqrt(d) scaling) -> sequence encoder -> dot scorer.

    The baselines are instances of this class with different parts; a new model usually needs
    only a new part (e.g. an SID item representation) and a registered factory.
    """

    def __init__(
        self,
        n_items: int,
        max_len: int,
        items: ItemRepresentation,
        encoder: nn.Module,
        scorer: DotScorer,
        scale_embeddings: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(n_items, max_len)
        if not isinstance(items, nn.Module):
            raise TypeError("the item representation must be an nn.Module")
        self.items = items
        self.encoder = encoder
        self.scorer = scorer
        self.scale_embeddings = scale_embeddings
        self.embedding_scale = math.sqrt(items.dim) if scale_embeddings else 1.0
        if name is not None:
            self.name = name

    def input_embeddings(self, seqs: Tensor) -> Tensor:
        emb = self.items.embed(seqs)
        return emb * self.embedding_scale if self.scale_embeddings else emb

    def hidden(self, seqs: Tensor) -> Tensor:
        if seqs.dim() != 2:
            raise ValueError(f"expected item sequences [B, L], got shape {tuple(seqs.shape)}")
        return self.encoder(self.input_embeddings(seqs), seqs != 0)

    def user_repr(self, seqs: Tensor) -> Tensor:
        """`hidden(seqs)[:, -1]`, with the encoder's last layer run at the last slot only
        (`parts.encoders.encode_last`); a subclass that redefines `hidden` keeps its own path."""
        if _overrides(self, "hidden", ComposedModel):
            return super().user_repr(seqs)
        if seqs.dim() != 2:
            raise ValueError(f"expected item sequences [B, L], got shape {tuple(seqs.shape)}")
        return encode_last(self.encoder, self.input_embeddings(seqs), seqs != 0)

    def item_weights(self) -> Tensor:
        return self.items.weight_for_scoring()

    def item_bias(self) -> Tensor | None:
        return self.scorer.bias

    def score_all(self, user: Tensor, *, catalogue_only: bool = False) -> Tensor:
        start = 1 if catalogue_only else 0
        bias = self.item_bias()
        return self.scorer.score_all(
            user, self.item_weights()[start:], None if bias is None else bias[start:]
        )

    def full_scoring(self, user: Tensor) -> tuple[Tensor, Tensor, Tensor | None] | None:
        if _overrides(self, "score_all", ComposedModel):
            return None
        bias = self.item_bias()
        return self.scorer.linear(user, self.item_weights()[1:], None if bias is None else bias[1:])

    def score_items(self, user: Tensor, items: Tensor) -> Tensor:
        return self.scorer.score_items(user, self.item_weights(), self.item_bias(), items)


def _overrides(model: nn.Module, method: str, owner: type) -> bool:
    """Whether `model`'s class redefines `method` below `owner` (whose version the caller knows)."""
    return getattr(type(model), method) is not getattr(owner, method)
