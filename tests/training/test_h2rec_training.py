"""H2Rec trained end to end on small synthetic data: its SIDs carry the catalogue's taxonomy, so
tail items (few interactions, informative codes) must be ranked better than by SASRec trained with
the same loss (Eq. 10), size and budget — the tail half of the paper's claim, on data where the
codes are informative by construction."""

from __future__ import annotations

import pytest

from h2rec.config import apply_overrides, dump_yaml, read_yaml, validate
from h2rec.training import TrainConfig, Trainer


@pytest.fixture(scope="module")
def synth_ds(synth_sid_dataset):
    return synth_sid_dataset


def _run(tmp_path, ds, name: str, model: str) -> dict:
    cfg = validate(
        TrainConfig,
        apply_overrides(
            read_yaml("train/h2rec-synth"),
            [
                f"name={name}",
                f"data={ds.path}",
                f"runs_dir={tmp_path}",
                f"model={model}",
                "eval.test_protocols=[full]",
                "batch_size=128",
                "max_len=20",
                "epochs=12",
                "eval.patience=12",
                "seed=0",
            ],
        ),
    )
    out = Trainer(cfg, ds).fit()
    return out["results"]["full"]


def test_h2rec_beats_sasrec_on_tail_items(tmp_path, synth_ds) -> None:
    h2 = _run(
        tmp_path,
        synth_ds,
        "h2rec",
        "{name: h2rec, hidden_size: 32, sids: rqk, text_embeddings: tfidf, ca_p: 2}",
    )
    sas = _run(tmp_path, synth_ds, "sasrec", "{name: sasrec, hidden_size: 32}")
    tail_h2 = h2.groups["tail"].metrics["NDCG@10"]
    tail_sas = sas.groups["tail"].metrics["NDCG@10"]
    # Measured: 0.140 vs 0.119 (BPR, 12 epochs, seed 0). Overall and head are NOT asserted: on
    # this small catalogue H2Rec's head is below SASRec's (0.306 vs 0.382), see docs/results.md.
    assert tail_h2 > 1.1 * tail_sas, (tail_h2, tail_sas)


def test_h2rec_defaults_to_the_papers_pairwise_loss(tmp_path, synth_ds) -> None:
    raw = apply_overrides(
        read_yaml("train/h2rec-synth"),
        [
            f"data={synth_ds.path}",
            f"runs_dir={tmp_path}",
            "model={name: h2rec, hidden_size: 8, sids: rqk, text_embeddings: tfidf, ca_p: 2}",
        ],
    )
    raw["objective"].pop("loss")
    trainer = Trainer(validate(TrainConfig, raw), synth_ds)
    assert trainer.cfg.objective.loss == "bpr"
    assert "loss: bpr" in dump_yaml(trainer.cfg)
    raw["model"] = {"name": "sasrec", "hidden_size": 8}
    assert Trainer(validate(TrainConfig, raw), synth_ds).cfg.objective.loss == "ce"
