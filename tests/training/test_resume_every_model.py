"""Every model of the paper tables, in its Table 2 form, resumes bit for bit.

Cells longer than a session (CCFRec on Yelp: about 3.8 h) are trained over several sessions from
their epoch checkpoints, so a model that draws from a random stream the checkpoint does not hold
(teacher neighbours, code masks, cloze masks, dropout, the negatives) would silently train a
different run after each restart. The reference is the same run without the interruption."""

from __future__ import annotations

import json

import numpy as np
import pytest

from h2rec.config import apply_overrides, read_yaml, validate
from h2rec.training import TrainConfig, Trainer

# label -> (model, extra overrides): Table 2's settings (experiments/table2.yaml), sized down
MODELS = {
    "bert4rec": (
        "{name: bert4rec, hidden_size: 16, n_layers: 1, n_heads: 2, dropout: 0.2}",
        ["objective.kind=cloze", "objective.loss=ce", "objective.mask_ratio=0.6"],
    ),
    "gru4rec": ("{name: gru4rec, hidden_size: 16}", ["objective.loss=bce"]),
    "melt": ("{name: melt, hidden_size: 16, n_layers: 1, dropout: 0.5}", []),
    "llm_esr": (
        "{name: llm_esr, hidden_size: 16, n_layers: 1, dropout: 0.5, sd_neighbours: 2,"
        " text_embeddings: tfidf}",
        [],
    ),
    "sid_only": ("{name: sid_only, hidden_size: 16, n_layers: 1, sids: rqk}", []),
    "hid_sid_concat": ("{name: hid_sid_concat, hidden_size: 16, n_layers: 1, sids: rqk}", []),
    "ccfrec": (
        "{name: ccfrec, hidden_size: 16, n_layers: 1, n_heads: 2, dropout: 0.3, sids: rqk,"
        " text_embeddings: tfidf}",
        [
            "optim.optimizer=adamw",
            "optim.weight_decay=0.0001",
            "objective.loss=sampled_softmax",
            "objective.num_negatives=64",
            "objective.negatives_shared=true",
        ],
    ),
    "url4dr": (
        "{name: url4dr, semantic_dim: 12, id_dim: 4, codebook_size: 16, n_layers: 1,"
        " n_heads: 2, dropout: 0.5, text_embeddings: tfidf}",
        [],
    ),
    # every H2Rec random draw (anchors, masked level, dropout) comes from checkpointed RNG
    "h2rec": ("{name: h2rec, hidden_size: 8, sids: rqk, text_embeddings: tfidf, ca_p: 2}", []),
    "pcr_ca": (
        "{name: pcr_ca, hidden_size: 16, n_layers: 1, dropout: 0.5, codebook_size: 16,"
        " text_embeddings: tfidf}",
        [],
    ),
}


def _cfg(tmp_path, ds, name: str, model: str, extra: list[str]) -> TrainConfig:
    raw = apply_overrides(
        read_yaml("train/paper-yelp"),  # names no loss: each model trains with its own
        [
            f"name={name}",
            f"data={ds.path}",
            f"runs_dir={tmp_path}",
            f"model={model}",
            "eval.test_protocols=[full]",
            "batch_size=256",
            "max_len=20",
            "epochs=2",
            "eval.patience=5",
            "seed=3",
            *extra,
        ],
    )
    return validate(TrainConfig, raw)


def _computed(row: dict) -> dict:
    """A metrics.jsonl row without its timings (seconds, throughput)."""
    return {k: v for k, v in row.items() if not k.endswith(("_seconds", "_per_s"))}


@pytest.mark.parametrize("label", list(MODELS))
def test_interrupted_run_resumes_exactly(tmp_path, synth_sid_dataset, label) -> None:
    model, extra = MODELS[label]
    straight = Trainer(_cfg(tmp_path, synth_sid_dataset, "straight", model, extra)).fit()
    cfg = _cfg(tmp_path, synth_sid_dataset, "resumed", model, extra)
    assert Trainer(cfg).fit(max_epochs=1)["interrupted"]
    # a fresh trainer, as in the next session's process, whose global RNGs start elsewhere
    np.random.seed(12345)
    resumed = Trainer(cfg).fit(resume=True)
    rows = [
        [json.loads(line) for line in (tmp_path / n / "metrics.jsonl").read_text().splitlines()]
        for n in ("straight", "resumed")
    ]
    assert [r["epoch"] for r in rows[1]] == [1, 2]
    if label == "h2rec":  # its two alignment losses are logged, so compared below
        assert {"loss_ca", "loss_msg"} <= rows[0][0].keys()
    for a, b in zip(*rows, strict=True):  # losses (each part), lr, validation: all equal
        assert _computed(a) == _computed(b)
    assert straight["summary"]["test"] == resumed["summary"]["test"]
    ranks = [
        np.load(tmp_path / n / "results" / "test-full.ranks.npy") for n in ("straight", "resumed")
    ]
    np.testing.assert_array_equal(*ranks)
