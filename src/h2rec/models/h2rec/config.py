"""H2Rec's configuration: the paper's model by default, ablations and reference-code behaviour as
named switches (all compatibility switches default to the paper)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, model_validator

from h2rec.models.parts.encoders import Backbone
from h2rec.models.registry import ModelConfig


class H2RecConfig(ModelConfig):
    # -- size and backbone (both branches use the same kind of encoder, f_theta1 and f_theta2) --
    hidden_size: int = Field(64, ge=1, validation_alias=AliasChoices("hidden_size", "d"))
    backbone: Backbone = "sasrec"
    n_layers: int = Field(2, ge=1)
    n_heads: int = Field(1, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    max_len: int = Field(50, ge=1)
    inner_size: int | None = Field(None, ge=1)
    scale_embeddings: bool | None = None  # None: x sqrt(d) for sasrec (as SASRec), else off

    # -- data the model is built from (names of artefacts in the dataset folder) --
    sids: str = "rqvae-4x128"  # <dataset>/sids/<name>, or "published"
    text_embeddings: str | None = "st-all-minilm-l6-v2"  # for hid_init=pca (Algorithm 1, line 6)
    hid_init: Literal["pca", "random"] = "pca"  # HID table from PCA of the text embeddings
    code_init: Literal["codebook", "random"] = "codebook"  # code tables from the codebooks

    # -- Multi-granularity Fusion Network (Eq. 2-3) --
    fusion_network: bool = True  # False = ablation "w/o FN": uniform alpha = 1/L
    fusion_hidden: int | None = Field(None, ge=1)  # d_h (None: d // 2)
    prior_init: Literal["linspace", "zeros"] = "linspace"  # b_prior starts at [1.0 ... 0.2]
    prior_learnable: bool = True  # False: the reference code's fixed buffer
    alpha_scope: Literal["position", "sequence"] = "position"
    # position: each slot's alpha comes from that slot's HID embedding (the last real item of the
    #   prefix ending there), so training at every position stays causal; at the final slot it is
    #   exactly Eq. 2 with e_N. sequence: one alpha per sequence from its last real item for all
    #   slots (the paper read literally; leaks item N into earlier positions when training at
    #   every position, so pair it with objective.positions=last).

    # -- Multi-granularity Cross Attention (Eq. 4-5) --
    cross_attention: bool = True  # False = ablation "w/o MCA": E^f = E^hid
    cross_attention_query: Literal["hid", "sid"] = "hid"  # sid: the reference code's reversal
    cross_attention_residual: bool = True  # Eq. 5's + E^hid (the reference code drops it)

    # -- scoring and the SID branch --
    sid_fusion: Literal["alpha", "mean"] = "alpha"  # mean: the reference code's mean-fused SID
    shared_encoder: bool = False  # True: one encoder for both branches (reference code)

    # -- dual-level alignment (Eq. 6-8, 11) --
    beta: float = Field(0.5, ge=0.0)  # weight of L_CA (0 = ablation "w/o L_CA")
    gamma: float = Field(0.3, ge=0.0)  # weight of L_MSG (0 = ablation "w/o L_MSG")
    ca_temperature: float = Field(0.5, gt=0.0)
    msg_temperature: float = Field(0.5, gt=0.0)
    ca_p: int = Field(3, ge=1)  # code part of P(i): items sharing >= p code levels
    ca_code_match: Literal["prefix", "any"] = "prefix"  # the first p levels, or any p levels
    ca_window: int = Field(3, ge=1)  # co-occurrence part of P(i): window w in training sequences
    ca_code_positives: bool = True  # False: drop P_C(i)
    ca_cooccurrence: bool = True  # False: drop P_H(i)
    ca_max_anchors: int = Field(256, ge=2)  # anchors per batch: targets, drawn uniformly (Eq. 7: B)

    @model_validator(mode="after")
    def _check(self) -> H2RecConfig:
        if self.hidden_size % self.n_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by n_heads {self.n_heads}"
            )
        if self.hid_init == "pca" and not self.text_embeddings:
            raise ValueError("hid_init=pca needs text_embeddings (or set hid_init=random)")
        return self

    @property
    def embedding_scaled(self) -> bool:
        return self.backbone == "sasrec" if self.scale_embeddings is None else self.scale_embeddings
