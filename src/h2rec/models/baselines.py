"""HID baselines as compositions of parts: SASRec, BERT4Rec, GRU4Rec, and MostPop.

Each model has a pydantic config (extra keys forbidden; `d` is accepted for `hidden_size`) and a
factory registered by name. Defaults follow the original papers where they agree with the
LLM-ESR/H2Rec protocol, otherwise the brief's shared defaults (d = 64, dropout 0.2, max_len 50).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import AliasChoices, Field, model_validator
from torch import Tensor

from h2rec.errors import ConfigError
from h2rec.models.base import ComposedModel, SequentialModel
from h2rec.models.inputs import ModelInputs
from h2rec.models.parts.encoders import BERT4RecEncoder, GRU4RecEncoder, SASRecEncoder
from h2rec.models.parts.items import HashItemEmbedding
from h2rec.models.parts.scorers import DotScorer
from h2rec.models.registry import ModelConfig, register_model

_HIDDEN = Field(64, ge=1, validation_alias=AliasChoices("hidden_size", "d"))


class _TransformerConfig(ModelConfig):
    hidden_size: int = _HIDDEN
    n_layers: int = Field(2, ge=1)
    n_heads: int = Field(1, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    max_len: int = Field(50, ge=1)
    inner_size: int | None = Field(None, ge=1, description="FFN inner size (None: model default)")
    item_init: Literal["normal", "xavier"] = "normal"

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> _TransformerConfig:
        if self.hidden_size % self.n_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by n_heads {self.n_heads}"
            )
        return self


class SASRecConfig(_TransformerConfig):
    """SASRec. `causal=False` reproduces LLM-ESR's unmasked backbone (compatibility only)."""

    causal: bool = True
    scale_embeddings: bool = True  # item embedding x sqrt(d), as the original SASRec
    activation: Literal["relu", "gelu"] = "relu"


class BERT4RecConfig(_TransformerConfig):
    """BERT4Rec: bidirectional; output bias and BERT's transform head on by default."""

    n_heads: int = Field(2, ge=1)
    scale_embeddings: bool = False
    activation: Literal["relu", "gelu"] = "gelu"
    output_bias: bool = True
    output_transform: bool = True


class GRU4RecConfig(ModelConfig):
    """GRU4Rec with tied output embeddings; `max_len` only bounds the input the data side builds."""

    hidden_size: int = _HIDDEN
    n_layers: int = Field(1, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    max_len: int = Field(50, ge=1)
    scale_embeddings: bool = False
    gru_bias: bool = True  # LLM-ESR's GRU4Rec uses bias=False
    item_init: Literal["normal", "xavier"] = "normal"


class MostPopConfig(ModelConfig):
    """MostPop has no hyperparameters; `max_len` only tells the data side how much history to pass."""

    max_len: int = Field(50, ge=1)


class SASRec(ComposedModel):
    name = "sasrec"


class GRU4Rec(ComposedModel):
    name = "gru4rec"


class BERT4Rec(ComposedModel):
    """BERT4Rec; `mask_token_id = n_items + 1` (an extra embedding row, never scored)."""

    name = "bert4rec"

    @property
    def mask_token_id(self) -> int:
        return self.n_items + 1

    def append_mask(self, seqs: Tensor) -> Tensor:
        """Drop the oldest slot and append [MASK] at the end (the slot to predict)."""
        mask = torch.full_like(seqs[:, :1], self.mask_token_id)
        return torch.cat([seqs[:, 1:], mask], dim=1)

    def user_repr(self, seqs: Tensor) -> Tensor:
        """The output at an appended [MASK]: BERT4Rec's test-time query for the next item."""
        return ComposedModel.user_repr(self, self.append_mask(seqs))


class MostPop(SequentialModel):
    """Recommends by training popularity, identically for every user.

    Written as a 1-d dot-product model (user vector = 1, item vector = popularity) so that every
    scoring path (`score`, `score_all`, `score_items`) works unchanged. No parameters:
    `trainable = False` tells the trainer to skip optimisation.
    """

    name = "mostpop"
    trainable = False

    def __init__(self, n_items: int, popularity: np.ndarray, max_len: int = 50) -> None:
        super().__init__(n_items, max_len)
        pop = torch.as_tensor(np.asarray(popularity, dtype=np.float64), dtype=torch.float32)
        if pop.shape != (n_items + 1,):
            raise ValueError(f"popularity must have length {n_items + 1}, got {tuple(pop.shape)}")
        pop = pop.clone()
        pop[0] = 0.0
        self.register_buffer("popularity", pop)

    def hidden(self, seqs: Tensor) -> Tensor:
        # A constant "user" everywhere (padding slots included): MostPop is never trained.
        return torch.ones(*seqs.shape, 1, dtype=self.popularity.dtype, device=seqs.device)

    def user_repr(self, seqs: Tensor) -> Tensor:
        return torch.ones(seqs.shape[0], 1, dtype=self.popularity.dtype, device=seqs.device)

    def item_weights(self) -> Tensor:
        return self.popularity.unsqueeze(1)


@register_model("sasrec", config=SASRecConfig)
def build_sasrec(n_items: int, cfg: SASRecConfig, inputs: ModelInputs) -> SASRec:
    d = cfg.hidden_size
    return SASRec(
        n_items,
        cfg.max_len,
        items=HashItemEmbedding(n_items, d, extra_tokens=0, init=cfg.item_init),
        encoder=SASRecEncoder(
            d,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            dropout=cfg.dropout,
            max_len=cfg.max_len,
            causal=cfg.causal,
            inner_size=cfg.inner_size,
            activation=cfg.activation,
        ),
        scorer=DotScorer(n_items, d),
        scale_embeddings=cfg.scale_embeddings,
    )


@register_model("bert4rec", config=BERT4RecConfig)
def build_bert4rec(n_items: int, cfg: BERT4RecConfig, inputs: ModelInputs) -> BERT4Rec:
    d = cfg.hidden_size
    return BERT4Rec(
        n_items,
        cfg.max_len,
        items=HashItemEmbedding(n_items, d, extra_tokens=1, init=cfg.item_init),
        encoder=BERT4RecEncoder(
            d,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            dropout=cfg.dropout,
            max_len=cfg.max_len,
            inner_size=cfg.inner_size,
            activation=cfg.activation,
        ),
        scorer=DotScorer(n_items, d, bias=cfg.output_bias, transform=cfg.output_transform),
        scale_embeddings=cfg.scale_embeddings,
    )


@register_model("gru4rec", config=GRU4RecConfig)
def build_gru4rec(n_items: int, cfg: GRU4RecConfig, inputs: ModelInputs) -> GRU4Rec:
    d = cfg.hidden_size
    return GRU4Rec(
        n_items,
        cfg.max_len,
        items=HashItemEmbedding(n_items, d, extra_tokens=0, init=cfg.item_init),
        encoder=GRU4RecEncoder(d, n_layers=cfg.n_layers, dropout=cfg.dropout, bias=cfg.gru_bias),
        scorer=DotScorer(n_items, d),
        scale_embeddings=cfg.scale_embeddings,
    )


@register_model("mostpop", config=MostPopConfig)
def build_mostpop(n_items: int, cfg: MostPopConfig, inputs: ModelInputs) -> MostPop:
    if inputs.popularity is None:
        raise ConfigError("model 'mostpop' needs popularity= (training counts, length n_items + 1)")
    return MostPop(n_items, inputs.popularity, max_len=cfg.max_len)
