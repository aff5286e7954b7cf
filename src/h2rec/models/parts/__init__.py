"""Model parts: item representations, sequence encoders, scorers."""

from __future__ import annotations

from h2rec.models.parts.encoders import (
    BERT4RecEncoder,
    GRU4RecEncoder,
    MultiHeadAttention,
    SASRecEncoder,
    SequenceEncoder,
    attention_mask,
)
from h2rec.models.parts.items import HashItemEmbedding, ItemRepresentation
from h2rec.models.parts.scorers import DotScorer

__all__ = [
    "BERT4RecEncoder",
    "DotScorer",
    "GRU4RecEncoder",
    "HashItemEmbedding",
    "ItemRepresentation",
    "MultiHeadAttention",
    "SASRecEncoder",
    "SequenceEncoder",
    "attention_mask",
]
