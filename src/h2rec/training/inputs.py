"""Load the data a model config names (SIDs, text vectors) plus popularity and training sequences.

A model config may carry `sids: <name>` (codes under `<dataset>/sids/<name>`, or `published`) and
`text_embeddings: <name>` (vectors under `<dataset>/embeddings/<name>`); both are checked against
the dataset's content hash by their loaders, so a model never trains on stale artefacts. Only
TRAINING-split interactions are passed on, so nothing a model builds from them (e.g. H2Rec's
co-occurrence positives) can see validation or test items.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from h2rec.data import Dataset
from h2rec.errors import ConfigError
from h2rec.models.inputs import ModelInputs
from h2rec.models.registry import parse_model_config
from h2rec.training.batching import TrainSequences

log = logging.getLogger("h2rec")


def training_csr(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(offsets [n_users + 2], items): each user's training items in time order."""
    seqs = TrainSequences(ds)
    return seqs.offsets, seqs.items


def load_model_inputs(
    ds: Dataset,
    model_name: str,
    model_params: dict[str, Any],
    train: TrainSequences | None = None,
) -> ModelInputs:
    """ModelInputs for model `model_name` with config `model_params` (validated here, so a
    default `sids`/`text_embeddings` of the model's config counts as named). `train`: the
    training sequences when the caller already has them (the trainer), else built here."""
    cfg = parse_model_config(model_name, model_params)
    train = train if train is not None else TrainSequences(ds)
    offsets, items = train.offsets, train.items
    inputs = ModelInputs(
        popularity=ds.item_popularity("train"), train_offsets=offsets, train_items=items
    )
    sids_name = getattr(cfg, "sids", None)
    if sids_name:
        from h2rec.sid import TokenizerError
        from h2rec.sid.artifacts import load_sids

        try:
            sids = load_sids(ds, str(sids_name))
        except TokenizerError as exc:
            raise ConfigError(f"model.sids: {exc}") from exc
        inputs.codes = np.asarray(sids.codes, dtype=np.int64)
        inputs.names["sids"] = sids.name
        if sids.path is not None and (sids.path / "tokenizer").is_dir():
            tok = sids.tokenizer()
            inputs.codebooks = tok.codebooks()
            sizes = list(tok.codebook_sizes)
            extra = inputs.codes.shape[1] - len(sizes)  # an appended collision level
            if extra > 0:
                sizes += [int(m) + 1 for m in inputs.codes[1:, len(sizes) :].max(axis=0)]
            inputs.codebook_sizes = sizes
    emb_name = getattr(cfg, "text_embeddings", None)
    if getattr(cfg, "hid_init", "pca") != "pca":  # named but unused: do not load (or require) it
        emb_name = None
    if emb_name:
        from h2rec.text import EmbeddingError, load_item_embeddings

        try:
            emb = load_item_embeddings(ds, str(emb_name))
        except EmbeddingError as exc:
            raise ConfigError(f"model.text_embeddings: {exc}") from exc
        inputs.text_vectors = emb.vectors
        inputs.names["text_embeddings"] = emb.name
    return inputs
