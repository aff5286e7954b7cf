"""Models as compositions of parts (item representation -> sequence encoder -> scorer),
registered by name, plus losses and training objectives.

    model = build_model("sasrec", n_items, hidden_size=64, max_len=50)
    objective = NextItemObjective(LossConfig(name="bce", num_negatives=1))
    loss, logs = objective(model, {"inputs": x, "targets": y, "negatives": neg})
    scores = model.score(seqs)              # [B, n_items + 1], column 0 = -inf
"""

from __future__ import annotations

from h2rec.models.base import ComposedModel, SequentialModel
from h2rec.models.baselines import (
    BERT4Rec,
    BERT4RecConfig,
    GRU4Rec,
    GRU4RecConfig,
    MostPop,
    MostPopConfig,
    SASRec,
    SASRecConfig,
)
from h2rec.models.losses import (
    LossConfig,
    SampledLoss,
    bce,
    bpr,
    full_ce,
    gbce,
    gbce_beta,
    num_negatives_needed,
    sampled_softmax,
)
from h2rec.models.objectives import ClozeObjective, NextItemObjective
from h2rec.models.registry import (
    ModelConfig,
    build_model,
    list_models,
    model_class,
    model_config_class,
    parse_model_config,
    register_model,
)

__all__ = [
    "BERT4Rec",
    "BERT4RecConfig",
    "ClozeObjective",
    "ComposedModel",
    "GRU4Rec",
    "GRU4RecConfig",
    "LossConfig",
    "ModelConfig",
    "MostPop",
    "MostPopConfig",
    "NextItemObjective",
    "SASRec",
    "SASRecConfig",
    "SampledLoss",
    "SequentialModel",
    "bce",
    "bpr",
    "build_model",
    "full_ce",
    "gbce",
    "gbce_beta",
    "list_models",
    "model_class",
    "model_config_class",
    "num_negatives_needed",
    "parse_model_config",
    "register_model",
    "sampled_softmax",
]
