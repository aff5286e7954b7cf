"""Training objectives: turn a batch into a scalar loss for any `SequentialModel`.

An objective says what batch it needs (`batch_kind`, `num_negatives`); the trainer builds the
batch and calls `objective(model, batch, target_norm=...) -> (loss, logs)`. `logs` holds detached
0-d tensors (call `float()` when logging; keeping tensors avoids a device sync per step).

loss = L_rec x (n_targets / target_norm, when given) + the model's auxiliary losses. The rescaling
turns the mean over a batch's targets into a sum with one constant divisor, so that batch
composition (length buckets) does not change how much a target counts; auxiliary losses (H2Rec's
alignment terms) are per-batch quantities and are not rescaled.

Batches (LongTensors, LEFT-padded, 0 = padding):
- "next_item": `inputs [B, L]`, `targets [B, L]` (target of slot t = the item after inputs[t];
  0 = no target), optional `negatives [B, L, k]` aligned with targets (0 = no negative).
- "sequence": `inputs [B, L]` full sequences (the objective corrupts them itself), optional
  `negatives [B, L, k]` aligned with the input slots when the loss needs negatives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from h2rec.models.base import SequentialModel
from h2rec.models.losses import (
    LossConfig,
    SampledLoss,
    chunked_ce,
    full_ce,
    num_negatives_needed,
)
from h2rec.models.parts.take import take_slots

Logs = dict[str, Tensor]


def _loss_config(loss: LossConfig | Mapping[str, Any] | str | None) -> LossConfig:
    if loss is None:
        return LossConfig()
    if isinstance(loss, LossConfig):
        return loss
    if isinstance(loss, str):
        return LossConfig(name=loss)  # type: ignore[arg-type]
    return LossConfig.model_validate(dict(loss))


def _last_target_slot(valid: Tensor) -> Tensor:
    """Per row, the index of the last True slot, or -1 when the row has none."""
    slots = torch.arange(valid.shape[1], device=valid.device).expand_as(valid)
    return torch.where(valid, slots, torch.full_like(slots, -1)).max(dim=1).values


class _ScoredObjective:
    """Shared scoring of selected positions against targets and negatives (or all items)."""

    def __init__(self, loss: LossConfig | Mapping[str, Any] | str | None) -> None:
        self.loss_cfg = _loss_config(loss)
        self.num_negatives = num_negatives_needed(self.loss_cfg)
        self.log_q: Tensor | None = None

    def set_log_q(self, log_q: Tensor | None) -> None:
        """`[n_items + 1]` log-probabilities of the negative sampler, for logQ correction."""
        self.log_q = log_q

    def _loss(
        self,
        model: SequentialModel,
        user: Tensor,
        targets: Tensor,
        negatives: Tensor | None,
    ) -> Tensor:
        """`user [N, d]`, `targets [N]`, `negatives [N, k]` -> scalar loss."""
        cfg = self.loss_cfg
        if cfg.name == "ce":
            linear = model.full_scoring(user) if cfg.ce_chunk_elements > 0 else None
            if linear is not None:  # the same loss without the [N, n_items] logits
                u, table, bias = linear
                return chunked_ce(u, table, targets - 1, bias, chunk_elements=cfg.ce_chunk_elements)
            return full_ce(
                model.score_all(user, catalogue_only=True), targets, padding_column=False
            )
        if negatives is None:
            raise ValueError(f"loss '{cfg.name}' needs a 'negatives' [B, L, k] tensor in the batch")
        logits = model.score_items(user, torch.cat([targets.unsqueeze(1), negatives], dim=1))
        pos, neg = logits[:, 0], logits[:, 1:]
        neg_valid = (negatives != 0) & (negatives != targets.unsqueeze(1))  # drop padding and hits
        log_q_pos = log_q_neg = None
        if cfg.logq:
            if self.log_q is None:
                raise ValueError(
                    "logq=True needs the sampler's log-probabilities: call set_log_q()"
                )
            log_q = self.log_q.to(user.device)
            log_q_pos, log_q_neg = log_q[targets], log_q[negatives]
        return SampledLoss(cfg, model.n_items)(pos, neg, neg_valid, log_q_pos, log_q_neg)

    def _slot_loss(
        self,
        model: SequentialModel,
        hidden: Tensor,
        rows: Tensor,
        cols: Tensor,
        labels: Tensor,
        negatives: Tensor | None,
    ) -> Tensor:
        """The loss over the selected slots (rows, cols); a zero that keeps the graph if none."""
        if rows.numel() == 0:
            return hidden.sum() * 0.0
        flat = rows * labels.shape[1] + cols
        neg = take_slots(negatives, flat) if negatives is not None else None
        return self._loss(model, take_slots(hidden, flat), take_slots(labels, flat), neg)


class NextItemObjective(_ScoredObjective):
    """Predict the next item at every target position ("all", SASRec/`SASRec_seq`) or only at the
    last one ("last", LLM-ESR's `SASRec` / H2Rec's `DualTrisRecSASRec`).

    Loss over the selected positions is a mean over positions (each loss's own reduction over N).
    """

    batch_kind = "next_item"

    def __init__(
        self,
        loss: LossConfig | Mapping[str, Any] | str | None = None,
        positions: Literal["all", "last"] = "all",
        log_q: Tensor | None = None,
    ) -> None:
        super().__init__(loss)
        if positions not in ("all", "last"):
            raise ValueError(f"positions must be 'all' or 'last', got '{positions}'")
        self.positions = positions
        self.set_log_q(log_q)

    def __call__(
        self,
        model: SequentialModel,
        batch: Mapping[str, Tensor],
        target_norm: float | None = None,
    ) -> tuple[Tensor, Logs]:
        return self.compute(
            model,
            batch["inputs"],
            batch["targets"],
            batch.get("negatives"),
            target_norm,
            users=batch.get("users"),
        )

    def compute(
        self,
        model: SequentialModel,
        inputs: Tensor,
        targets: Tensor,
        negatives: Tensor | None = None,
        target_norm: float | None = None,
        users: Tensor | None = None,
    ) -> tuple[Tensor, Logs]:
        hidden, state = model.forward_train(inputs)
        valid = targets != 0
        if self.positions == "last":
            slot = _last_target_slot(valid)
            rows = torch.nonzero(slot >= 0, as_tuple=True)[0]
            cols = slot[rows]
        else:
            rows, cols = torch.nonzero(valid, as_tuple=True)
        loss = self._slot_loss(model, hidden, rows, cols, targets, negatives)
        if self.positions == "last":
            last = torch.zeros_like(targets)
            last[rows, cols] = targets[rows, cols]
            targets = last
        return _total(model, loss, rows.numel(), target_norm, state, inputs, targets, users)


def _total(
    model: SequentialModel,
    rec: Tensor,
    n: int,
    target_norm: float | None,
    state: object,
    inputs: Tensor,
    targets: Tensor,
    users: Tensor | None = None,
) -> tuple[Tensor, Logs]:
    """L_rec (rescaled when `target_norm` is given) + the model's weighted auxiliary losses."""
    loss = rec * (n / target_norm) if target_norm else rec
    logs: Logs = {"loss_rec": rec.detach(), "n_targets": torch.tensor(n)}
    for name, value in model.auxiliary_losses(state, inputs, targets, users).items():
        loss = loss + value
        logs[name] = value.detach()
    logs["loss"] = loss.detach()
    return loss, logs


class ClozeObjective(_ScoredObjective):
    """BERT4Rec's Cloze task (Sun et al., CIKM'19).

    Every real slot is chosen independently with probability `mask_ratio`; a non-empty row with
    no chosen slot gets one uniformly random real slot, so every non-empty row contributes.
    A chosen slot becomes [MASK] with probability `mask_token_prob` (0.8), a uniformly random
    item with `random_token_prob` (0.1), and stays unchanged otherwise (0.1). Labels are the
    original items at the chosen slots; loss = softmax CE over all items (with the output bias)
    by default, or the configured sampled loss with `negatives` from the batch.

    `last_item_prob` (default 0, i.e. plain BERT4Rec) makes that fraction of rows mask ONLY their
    last item with [MASK] - the train/test-matching extra samples of BERT4Rec's data generator and
    LLM-ESR's doubled training set.

    Randomness: drawn from torch's global CPU generator (then moved to the batch's device), with
    a fixed amount per batch shape, so a seed gives the same masks on CPU and CUDA and only the CPU
    RNG state needs checkpointing.
    """

    batch_kind = "sequence"

    def __init__(
        self,
        mask_ratio: float = 0.2,
        loss: LossConfig | Mapping[str, Any] | str | None = "ce",
        mask_token_prob: float = 0.8,
        random_token_prob: float = 0.1,
        last_item_prob: float = 0.0,
    ) -> None:
        super().__init__(loss)
        if not 0.0 < mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1], got {mask_ratio}")
        if mask_token_prob < 0 or random_token_prob < 0 or mask_token_prob + random_token_prob > 1:
            raise ValueError("mask_token_prob and random_token_prob must be >= 0 and sum to <= 1")
        if not 0.0 <= last_item_prob <= 1.0:
            raise ValueError(f"last_item_prob must be in [0, 1], got {last_item_prob}")
        self.mask_ratio = mask_ratio
        self.mask_token_prob = mask_token_prob
        self.random_token_prob = random_token_prob
        self.last_item_prob = last_item_prob

    def mask(self, inputs: Tensor, n_items: int, mask_token_id: int) -> tuple[Tensor, Tensor]:
        """`inputs [B, L]` -> (corrupted inputs, labels) with labels 0 where nothing is predicted."""
        device = inputs.device
        shape = inputs.shape
        u_choose = torch.rand(shape).to(device)
        u_kind = torch.rand(shape).to(device)
        random_items = torch.randint(1, n_items + 1, shape).to(device)
        real = inputs != 0
        non_empty = real.any(dim=1)

        chosen = real & (u_choose < self.mask_ratio)
        # Rows with no chosen slot: the real slot with the smallest draw is uniform among real slots.
        fallback = torch.where(real, u_choose, torch.full_like(u_choose, 2.0)).argmin(dim=1)
        need = non_empty & ~chosen.any(dim=1)
        chosen[need, fallback[need]] = True

        to_mask = chosen & (u_kind < self.mask_token_prob)
        to_random = (
            chosen
            & (u_kind >= self.mask_token_prob)
            & (u_kind < self.mask_token_prob + self.random_token_prob)
        )
        if self.last_item_prob > 0:
            last_rows = (torch.rand(shape[0]).to(device) < self.last_item_prob) & non_empty
            last_slot = _last_target_slot(real)
            rows = torch.nonzero(last_rows, as_tuple=True)[0]
            chosen[rows] = False
            to_mask[rows] = False
            to_random[rows] = False
            chosen[rows, last_slot[rows]] = True
            to_mask[rows, last_slot[rows]] = True

        labels = torch.where(chosen, inputs, torch.zeros_like(inputs))
        corrupted = torch.where(to_mask, torch.full_like(inputs, mask_token_id), inputs)
        corrupted = torch.where(to_random, random_items, corrupted)
        return corrupted, labels

    def __call__(
        self,
        model: SequentialModel,
        batch: Mapping[str, Tensor],
        target_norm: float | None = None,
    ) -> tuple[Tensor, Logs]:
        return self.compute(
            model, batch["inputs"], batch.get("negatives"), target_norm, users=batch.get("users")
        )

    def compute(
        self,
        model: SequentialModel,
        inputs: Tensor,
        negatives: Tensor | None = None,
        target_norm: float | None = None,
        users: Tensor | None = None,
    ) -> tuple[Tensor, Logs]:
        mask_token_id = getattr(model, "mask_token_id", None)
        if mask_token_id is None:
            raise TypeError(f"model '{model.name}' has no mask_token_id; the Cloze task needs one")
        corrupted, labels = self.mask(inputs, model.n_items, int(mask_token_id))
        hidden, state = model.forward_train(corrupted)
        rows, cols = torch.nonzero(labels != 0, as_tuple=True)
        loss = self._slot_loss(model, hidden, rows, cols, labels, negatives)
        return _total(model, loss, rows.numel(), target_norm, state, corrupted, labels, users)
