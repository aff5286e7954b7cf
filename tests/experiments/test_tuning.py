"""Optuna search: selection on validation only, resumable, best config reloadable."""

from __future__ import annotations

import csv
import json

import pytest

from h2rec.config import load_config
from h2rec.experiments.tuning import TuneConfig, trial_config, tune
from h2rec.training import TrainConfig

pytest.importorskip("optuna")


def _cfg(tmp_path, ds, n_trials: int = 2) -> TuneConfig:
    return TuneConfig.model_validate(
        {
            "name": "t",
            "base": "train/sasrec-synth",
            "overrides": [
                f"data={ds.path}",
                "epochs=1",
                "model.hidden_size=16",
                "model.n_layers=1",
                "max_len=10",
            ],
            "n_trials": n_trials,
            "sampler": "random",
            "space": {
                "optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                "objective.loss": {"type": "categorical", "choices": ["bce", "ce"]},
            },
            "out_dir": str(tmp_path / "tune" / "{name}"),
        }
    )


def test_trials_never_evaluate_on_test(tmp_path, synth_sid_dataset) -> None:
    cfg = _cfg(tmp_path, synth_sid_dataset)
    t = trial_config(cfg, {"optim.lr": 0.003, "objective.loss": "bce"}, 5)
    assert t.eval.test_protocols == []
    assert (t.optim.lr, t.objective.loss, t.name) == (0.003, "bce", "trial-0005")


def test_search_resumes_and_writes_the_best_config(tmp_path, synth_sid_dataset) -> None:
    cfg = _cfg(tmp_path, synth_sid_dataset)
    out = tune(cfg, echo=lambda _: None)
    with open(cfg.out_path / "trials.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE"]
    values = [float(r["valid_NDCG@10"]) for r in rows]
    assert out["best_value"] == max(values)  # maximise the validation metric
    for r in rows:  # the objective is the trial's own best validation value, nothing else
        summary = json.loads(
            (cfg.out_path / "runs" / f"trial-{int(r['trial']):04d}" / "summary.json").read_text()
        )
        assert summary["best_valid"]["NDCG@10"] == pytest.approx(float(r["valid_NDCG@10"]))
        assert summary["test"] == {}
    # asking again for 2 trials runs none; asking for 3 runs one more
    assert tune(cfg, echo=lambda _: None)["n_trials"] == 2
    assert tune(cfg, n_trials=3, echo=lambda _: None)["n_trials"] == 3
    best = load_config(TrainConfig, cfg.out_path / "best.yaml")
    assert best.optim.lr == pytest.approx(out["best_params"]["optim.lr"])
    assert best.eval.test_protocols == ["full", "uni100"]
