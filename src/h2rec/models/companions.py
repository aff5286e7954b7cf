"""Companion models of H2Rec: the pure-SID control and the simple HID+SID hybrid.

- `sid_only`: an item is ONLY its semantic ID (PG-SID style prefix-n-gram embeddings,
  `PrefixEmbedding`); colliding items are indistinguishable. It measures what SIDs alone buy.
- `hid_sid_concat`: item vector = W [e_hid(i); e_sid(i)], the naive hybrid H2Rec's dual-branch
  design with alignment has to beat.

Both are `ComposedModel`s on a choice of backbone (`sasrec`, `gru4rec`, `bert4rec`) with tied
output embeddings. Backbone hyperparameters left unset take the matching baseline config's default
(e.g. 1 GRU layer for gru4rec, 2 heads and the BERT output head for bert4rec), so a companion
differs from its baseline only in the item representation.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import AliasChoices, Field, model_validator
from torch import Tensor, nn

from h2rec.errors import ConfigError
from h2rec.models.base import ComposedModel
from h2rec.models.baselines import BERT4Rec, BERT4RecConfig, GRU4RecConfig, SASRecConfig
from h2rec.models.inputs import ModelInputs
from h2rec.models.parts.encoders import Backbone, build_encoder
from h2rec.models.parts.items import HashItemEmbedding
from h2rec.models.parts.pca import pca_item_vectors
from h2rec.models.parts.scorers import DotScorer
from h2rec.models.parts.sid import CodeEmbedding, PrefixEmbedding
from h2rec.models.registry import ModelConfig, register_model

_BASELINE_CONFIGS: dict[str, type[ModelConfig]] = {
    "sasrec": SASRecConfig,
    "gru4rec": GRU4RecConfig,
    "bert4rec": BERT4RecConfig,
}
# Used where the baseline config has no such field (GRU4Rec has no heads, activation or head).
_FALLBACKS: dict[str, Any] = {
    "n_heads": 1,
    "activation": "relu",
    "scale_embeddings": False,
    "output_bias": False,
    "output_transform": False,
}
_BACKBONE_KEYS = (*_FALLBACKS, "n_layers")


class CodeSumEmbedding(nn.Module):
    """Item vector = sum over levels of each level's code embedding alone (no prefixes).

    `sid_only` with `prefix: false`: the comparison that shows what prefix-n-grams add (a level-2
    code means the same thing under every level-1 parent here).
    """

    def __init__(self, codes: CodeEmbedding) -> None:
        super().__init__()
        self.codes = codes
        self.n_items = codes.n_items
        self.dim = codes.dim

    def embed(self, ids: Tensor) -> Tensor:
        return self.codes.levels(ids).sum(dim=-2)

    def forward(self, ids: Tensor) -> Tensor:
        return self.embed(ids)

    def weight_for_scoring(self) -> Tensor:
        return self.codes.item_levels().sum(dim=-2)


class ConcatItemEmbedding(nn.Module):
    """e(i) = W [e_hid(i); e_sid(i)] with e_sid = sum of i's per-level code embeddings.

    W is `Linear(2d, d, bias=False)`: the encoder keeps the baseline's width d, and without a bias
    padding still maps to zero. The scoring table is one gather, a sum and a matmul.
    """

    def __init__(self, hid: HashItemEmbedding, sid: CodeEmbedding) -> None:
        super().__init__()
        if hid.dim != sid.dim or hid.n_items != sid.n_items:
            raise ValueError("the HID and SID tables must have the same width and catalogue")
        self.hid = hid
        self.sid = sid
        self.n_items = hid.n_items
        self.dim = hid.dim
        self.proj = nn.Linear(2 * hid.dim, hid.dim, bias=False)

    def embed(self, ids: Tensor) -> Tensor:
        return self.proj(torch.cat([self.hid.embed(ids), self.sid.levels(ids).sum(dim=-2)], -1))

    def forward(self, ids: Tensor) -> Tensor:
        return self.embed(ids)

    def weight_for_scoring(self) -> Tensor:
        both = torch.cat([self.hid.weight_for_scoring(), self.sid.item_levels().sum(dim=-2)], -1)
        return self.proj(both)


class _CompanionConfig(ModelConfig):
    """Shared: the backbone, its hyperparameters (None = the baseline config's default), the SIDs."""

    backbone: Backbone = "sasrec"
    sids: str = Field("rqvae-4x128", min_length=1, description="SID artefact loaded as codes")
    hidden_size: int = Field(64, ge=1, validation_alias=AliasChoices("hidden_size", "d"))
    n_layers: int | None = Field(None, ge=1)
    n_heads: int | None = Field(None, ge=1, description="transformer backbones only")
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    max_len: int = Field(50, ge=1)
    inner_size: int | None = Field(None, ge=1, description="FFN inner size (None: encoder default)")
    scale_embeddings: bool | None = None
    activation: Literal["relu", "gelu"] | None = None
    output_bias: bool | None = None
    output_transform: bool | None = None
    init_std: float = Field(0.02, gt=0.0, description="std of the random item-table init")

    @model_validator(mode="after")
    def _backbone_defaults(self) -> _CompanionConfig:
        fields = _BASELINE_CONFIGS[self.backbone].model_fields
        for key in _BACKBONE_KEYS:
            if getattr(self, key) is None:
                default = fields[key].default if key in fields else _FALLBACKS[key]
                setattr(self, key, default)
        if self.backbone != "gru4rec" and self.hidden_size % int(self.n_heads or 1):
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by n_heads {self.n_heads}"
            )
        return self


class SIDOnlyConfig(_CompanionConfig):
    """Pure-SID control. `prefix=False` sums each level's code alone, to isolate the prefixes."""

    prefix: bool = True


class HIDSIDConcatConfig(_CompanionConfig):
    """Naive hybrid. `hid_init: pca` starts the HID table from PCA'd text vectors (LLM-ESR/H2Rec)."""

    hid_init: Literal["random", "pca"] = "random"
    text_embeddings: str | None = Field(None, description="text vectors for hid_init: pca")

    @model_validator(mode="after")
    def _text_only_for_pca(self) -> HIDSIDConcatConfig:
        if self.hid_init == "pca" and not self.text_embeddings:
            raise ValueError("hid_init 'pca' needs text_embeddings (the text vectors to PCA)")
        if self.hid_init != "pca" and self.text_embeddings:
            # rejected rather than loaded for nothing: a run stamp would claim it was used
            raise ValueError("text_embeddings is only used with hid_init 'pca'")
        return self


class SIDOnly(ComposedModel):
    name = "sid_only"


class HIDSIDConcat(ComposedModel):
    name = "hid_sid_concat"


class _AppendedMask:
    """BERT4Rec backbone: [MASK] = n_items + 1, queried at an appended [MASK] (as `BERT4Rec`)."""

    mask_token_id = BERT4Rec.mask_token_id
    append_mask = BERT4Rec.append_mask
    user_repr = BERT4Rec.user_repr


class SIDOnlyBERT(_AppendedMask, SIDOnly):
    pass


class HIDSIDConcatBERT(_AppendedMask, HIDSIDConcat):
    pass


def _compose(
    cls: type[ComposedModel], n_items: int, cfg: _CompanionConfig, items: nn.Module
) -> ComposedModel:
    return cls(
        n_items,
        cfg.max_len,
        items=items,  # type: ignore[arg-type]
        encoder=build_encoder(
            cfg.backbone,
            cfg.hidden_size,
            n_layers=int(cfg.n_layers or 1),
            n_heads=int(cfg.n_heads or 1),
            dropout=cfg.dropout,
            max_len=cfg.max_len,
            inner_size=cfg.inner_size,
            activation=cfg.activation,
        ),
        scorer=DotScorer(
            n_items,
            cfg.hidden_size,
            bias=bool(cfg.output_bias),
            transform=bool(cfg.output_transform),
        ),
        scale_embeddings=bool(cfg.scale_embeddings),
    )


@register_model("sid_only", config=SIDOnlyConfig)
def build_sid_only(n_items: int, cfg: SIDOnlyConfig, inputs: ModelInputs) -> SIDOnly:
    inputs.require("sid_only", "codes")
    assert inputs.codes is not None
    extra = 1 if cfg.backbone == "bert4rec" else 0
    items: nn.Module
    if cfg.prefix:
        items = PrefixEmbedding(
            inputs.codes, cfg.hidden_size, extra_tokens=extra, init_std=cfg.init_std
        )
    else:
        # random init (no codebooks) so that the prefix structure is the only difference
        codes = CodeEmbedding(
            inputs.codes,
            inputs.codebook_sizes,  # filled from the codes by ModelInputs.check
            cfg.hidden_size,
            target_rms=cfg.init_std,
            extra_tokens=extra,
        )
        items = CodeSumEmbedding(codes)
    cls = SIDOnlyBERT if cfg.backbone == "bert4rec" else SIDOnly
    return _compose(cls, n_items, cfg, items)  # type: ignore[return-value]


@register_model("hid_sid_concat", config=HIDSIDConcatConfig)
def build_hid_sid_concat(
    n_items: int, cfg: HIDSIDConcatConfig, inputs: ModelInputs
) -> HIDSIDConcat:
    inputs.require("hid_sid_concat", "codes")
    assert inputs.codes is not None
    d = cfg.hidden_size
    extra = 1 if cfg.backbone == "bert4rec" else 0
    hid = HashItemEmbedding(n_items, d, extra_tokens=extra, std=cfg.init_std)
    if cfg.hid_init == "pca":
        inputs.require("hid_sid_concat", "text_vectors")
        vectors = pca_item_vectors(inputs.text_vectors, d)  # type: ignore[arg-type]
        rms = float(np.sqrt(np.mean(vectors[1:].astype(np.float64) ** 2)))
        if rms == 0:
            raise ConfigError("model 'hid_sid_concat': the text vectors have no variance to PCA")
        # one global factor, as CodeEmbedding does for codebooks: both halves start at init_std
        hid.load_item_vectors(torch.from_numpy(vectors * (cfg.init_std / rms)))
    sid = CodeEmbedding(
        inputs.codes,
        inputs.codebook_sizes,  # filled from the codes by ModelInputs.check
        d,
        codebooks=inputs.codebooks,
        target_rms=cfg.init_std,
        extra_tokens=extra,
    )
    cls = HIDSIDConcatBERT if cfg.backbone == "bert4rec" else HIDSIDConcat
    return _compose(cls, n_items, cfg, ConcatItemEmbedding(hid, sid))  # type: ignore[return-value]
