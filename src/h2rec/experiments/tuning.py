"""Optuna search over a training config space, selecting on VALIDATION only.

Each trial is an ordinary training run (its own run folder under `out_dir/runs`) whose objective
is the best validation value of `metric` (the same early-stopping metric the trainer uses), so
the test split never influences the choice: trials skip test evaluation altogether. The study
lives in an SQLite file in `out_dir`, so an interrupted search resumes where it stopped (an
unfinished trial is marked failed and a new one takes its place). The best configuration is
written as a ready-to-train YAML (`best.yaml`) plus `trials.csv` and `best.json`.

    name: sasrec-beauty
    base: train/sasrec-beauty-bpr
    overrides: [epochs=30]
    metric: NDCG@10
    n_trials: 20
    space:
      optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      model.dropout: {type: float, low: 0.1, high: 0.6}
      objective.loss: {type: categorical, choices: [bce, bpr]}
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from h2rec.config import StrictModel, apply_overrides, dump_yaml, expand_env, read_yaml, validate
from h2rec.errors import ConfigError
from h2rec.io import atomic_write_json, atomic_write_text

log = logging.getLogger("h2rec")


class Param(StrictModel):
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> Param:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs non-empty `choices`")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError("float/int parameters need `low` <= `high`")
        return self


class TuneConfig(StrictModel):
    name: str
    base: str  # training config the trials start from
    overrides: list[str] = Field(default_factory=list)
    metric: str = "NDCG@10"  # validation metric (the trainer's eval.metric is set to it)
    direction: Literal["maximize", "minimize"] = "maximize"
    n_trials: int = Field(20, ge=1)
    seed: int = 0  # the sampler's seed (trials keep the training seed of `base`)
    sampler: Literal["tpe", "random"] = "tpe"
    space: dict[str, Param]
    out_dir: str = "runs/tune/{name}"

    @model_validator(mode="after")
    def _nonempty(self) -> TuneConfig:
        if not self.space:
            raise ValueError("`space` must name at least one parameter")
        return self

    @property
    def out_path(self) -> Path:
        return Path(self.out_dir.format(name=self.name))


def _suggest(trial: Any, key: str, p: Param) -> Any:
    if p.type == "categorical":
        return trial.suggest_categorical(key, p.choices)
    if p.type == "int":
        return trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)  # type: ignore[arg-type]
    return trial.suggest_float(key, p.low, p.high, step=p.step, log=p.log)  # type: ignore[arg-type]


def trial_config(cfg: TuneConfig, params: dict[str, Any], number: int) -> Any:
    """The validated TrainConfig of one trial: base -> overrides -> sampled params."""
    from h2rec.training import TrainConfig

    ov = [
        *cfg.overrides,
        *(f"{k}={json.dumps(v)}" for k, v in params.items()),
        f"eval.metric={cfg.metric}",
        "eval.test_protocols=[]",  # selection on validation only: never look at test
        f"name=trial-{number:04d}",
        f"runs_dir={cfg.out_path / 'runs'}",
    ]
    merged = expand_env(apply_overrides(read_yaml(cfg.base), ov))
    return validate(TrainConfig, merged, source=f"tune {cfg.name} trial {number}")


def tune(
    cfg: TuneConfig, n_trials: int | None = None, echo: Callable[[str], None] = print
) -> dict[str, Any]:
    try:
        import optuna
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise ConfigError("h2rec tune needs optuna: pip install 'h2rec[tune]'") from exc
    from h2rec.training import Trainer

    out = cfg.out_path
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (
        optuna.samplers.TPESampler(seed=cfg.seed)
        if cfg.sampler == "tpe"
        else optuna.samplers.RandomSampler(seed=cfg.seed)
    )
    study = optuna.create_study(
        study_name=cfg.name,
        storage=f"sqlite:///{(out / 'study.db').resolve()}",
        load_if_exists=True,
        direction=cfg.direction,
        sampler=sampler,
    )
    for t in study.trials:  # a trial cut off by an interrupted session: record it as failed
        if t.state == optuna.trial.TrialState.RUNNING:
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)

    def objective(trial: Any) -> float:
        params = {k: _suggest(trial, k, p) for k, p in cfg.space.items()}
        tcfg = trial_config(cfg, params, trial.number)
        summary = Trainer(tcfg).fit(overwrite=True)["summary"]
        value = summary["best_valid"][cfg.metric]
        trial.set_user_attr("epochs_run", summary["epochs_run"])
        trial.set_user_attr("train_seconds", summary["train_seconds"])
        echo(f"trial {trial.number}: valid {cfg.metric} {value:.4f} with {params}")
        return float(value)

    done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    todo = max(0, (n_trials or cfg.n_trials) - done)
    if todo:
        study.optimize(objective, n_trials=todo)
    best = study.best_trial
    buf = io.StringIO()
    keys = list(cfg.space)
    writer = csv.writer(buf)
    writer.writerow(["trial", "state", f"valid_{cfg.metric}", *keys, "epochs_run", "train_seconds"])
    for t in study.trials:
        writer.writerow(
            [
                t.number,
                t.state.name,
                t.value,
                *(t.params.get(k) for k in keys),
                t.user_attrs.get("epochs_run"),
                t.user_attrs.get("train_seconds"),
            ]
        )
    atomic_write_text(out / "trials.csv", buf.getvalue())
    # the winner as a normal training config: the base's test protocols back, its own name
    best_cfg = trial_config(cfg, best.params, best.number)
    base_tests = read_yaml(cfg.base).get("eval", {}).get("test_protocols", ["full", "uni100"])
    best_cfg = best_cfg.model_copy(
        update={
            "name": f"{cfg.name}-best",
            "runs_dir": "runs",
            "eval": best_cfg.eval.model_copy(update={"test_protocols": base_tests}),
        }
    )
    atomic_write_text(out / "best.yaml", dump_yaml(best_cfg))
    result = {
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
        "n_trials": len(study.trials),
        "out": str(out),
    }
    atomic_write_json(out / "best.json", result)
    return result
