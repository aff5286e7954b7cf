"""Experiment files: a grid of cells (dataset x model x seed) over shared training defaults.

    name: table3
    base: train/h2rec-beauty          # a training config every cell starts from
    overrides: [epochs=100, threads=1]  # shared dotlist overrides
    datasets:
      yelp: {data: artifacts/prepared/yelp, overrides: [...]}
    seeds: [42, 43, 44]
    models:                           # label -> how this model differs from `base`
      H2Rec: {}
      SASRec: {config: train/sasrec-{dataset}-bpr}
      w/o L_CA: {overrides: [model.beta=0]}
    sweeps:                           # extra models: one per value of one key
      - {model: H2Rec, key: model.ca_p, values: [1, 2, 3, 4], label: "p={value}"}
    report: {target: H2Rec, ...}

A cell's training config is: `config` of its model (else `base`, `{dataset}` substituted) ->
the experiment's `overrides` -> its dataset's `data` and `overrides` -> its model's `model`
section (replacing the config's whole `model` mapping when given) and `overrides` -> seed, run
name and runs folder. The order is fixed so a reader can tell which setting wins.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from h2rec.config import StrictModel, apply_overrides, expand_env, read_yaml, validate
from h2rec.errors import ConfigError


class DatasetEntry(StrictModel):
    data: str  # prepared dataset folder
    overrides: list[str] = Field(default_factory=list)


class ModelEntry(StrictModel):
    config: str | None = None  # training config (file or built-in name; `{dataset}` allowed)
    model: dict[str, Any] | None = None  # replaces the config's whole `model` section
    overrides: list[str] = Field(default_factory=list)
    x: float | None = None  # position on a sweep figure's axis (set by `sweeps`)
    group: str | None = None  # the sweep this model came from (figures), or None


class Sweep(StrictModel):
    """One model per value of one config key, e.g. H2Rec at ca_p = 1..4 (Table 4)."""

    model: str  # the model label the sweep starts from
    key: str  # dotlist key, e.g. model.ca_p
    values: list[Any]
    label: str = "{model} {key}={value}"  # label of each generated model
    name: str | None = None  # figure group name (default: the key)


class FigureSpec(StrictModel):
    """`sweep`: metric against a sweep's values (one line per group); `groups`: the metric of
    several models over popularity groups (bars)."""

    kind: str  # "sweep" or "groups"
    name: str  # file stem of the PNG
    sweep: str | None = None  # kind=sweep: the sweep's name (its key when unnamed)
    points: dict[str, float] = Field(default_factory=dict)  # kind=sweep: more models at x, e.g.
    # the default model at its default value {H2Rec: 0.5}
    models: list[str] = Field(default_factory=list)  # kind=groups
    groups: list[str] = Field(default_factory=lambda: ["overall", "tail", "head"])
    metric: str = "NDCG@10"
    protocol: str = "full"
    dataset: str | None = None  # default: every dataset

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in ("sweep", "groups"):
            raise ValueError(f"figure kind must be 'sweep' or 'groups', got '{v}'")
        return v


class ReportSpec(StrictModel):
    target: str | None = None  # the model tested against the strongest baseline (e.g. H2Rec)
    baselines: list[str] | None = None  # candidates for "strongest" (default: all but target)
    protocols: list[str] = Field(default_factory=lambda: ["full"])
    metrics: list[str] = Field(default_factory=lambda: ["HR@10", "NDCG@10"])
    groups: list[str] = Field(default_factory=lambda: ["overall", "tail", "head"])
    select_metric: str = "NDCG@10"  # which metric decides the strongest baseline (overall)
    alpha: float = 0.05  # significance level of the paired t-test
    figures: list[FigureSpec] = Field(default_factory=list)
    # published numbers to print next to ours: protocol -> dataset -> model -> "group metric" -> v
    published: dict[str, dict[str, dict[str, dict[str, float]]]] = Field(default_factory=dict)
    published_source: str | None = None
    extra_columns: list[str] = Field(default_factory=list)  # ["sid"]: SID collision, occupancy


class ExperimentSpec(StrictModel):
    name: str
    description: str = ""
    base: str | None = None
    overrides: list[str] = Field(default_factory=list)
    datasets: dict[str, DatasetEntry]
    seeds: list[int] = Field(default_factory=lambda: [42])
    models: dict[str, ModelEntry]
    sweeps: list[Sweep] = Field(default_factory=list)
    runs_dir: str = "runs/experiments/{name}"
    results_dir: str = "docs/results/experiments/{name}"
    report: ReportSpec = Field(default_factory=ReportSpec)

    @model_validator(mode="after")
    def _expand(self) -> ExperimentSpec:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ValueError(f"name '{self.name}': use letters, digits, '_', '.', '-' only")
        if not self.datasets or not self.models or not self.seeds:
            raise ValueError("datasets, models and seeds must each be non-empty")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds repeat: {self.seeds}")
        for sweep in self.sweeps:
            if sweep.model not in self.models:
                raise ValueError(f"sweep starts from unknown model '{sweep.model}'")
            parent = self.models[sweep.model]
            for value in sweep.values:
                label = sweep.label.format(model=sweep.model, key=sweep.key, value=value)
                if label in self.models:
                    continue  # listed explicitly (or the sweep's default point)
                self.models[label] = ModelEntry(
                    config=parent.config,
                    model=parent.model,
                    overrides=[*parent.overrides, f"{sweep.key}={json.dumps(value)}"],
                    x=float(value) if isinstance(value, (int, float)) else None,
                    group=sweep.name or sweep.key,
                )
        for label in [self.report.target, *(self.report.baselines or [])]:
            if label is not None and label not in self.models:
                raise ValueError(f"report names unknown model '{label}'")
        for fig in self.report.figures:
            for label in [*fig.models, *fig.points]:
                if label not in self.models:
                    raise ValueError(f"figure '{fig.name}' names unknown model '{label}'")
        if any(self.models[m].config is None for m in self.models) and self.base is None:
            raise ValueError("models without `config` need the experiment's `base`")
        return self

    # -- paths ------------------------------------------------------------------------------
    @property
    def runs_path(self) -> Path:
        return Path(self.runs_dir.format(name=self.name))

    @property
    def results_path(self) -> Path:
        return Path(self.results_dir.format(name=self.name))


def slug(label: str) -> str:
    """File-name form of a label: 'H2Rec w/o L_CA' -> 'h2rec-w-o-l_ca'."""
    s = re.sub(r"[^a-z0-9_.=]+", "-", label.lower()).strip("-")
    return s or "model"


class Cell(StrictModel):
    """One training run of the grid."""

    experiment: str
    dataset: str
    model: str  # label
    seed: int
    overrides: list[str]  # the full dotlist applied on top of `config`
    config: str  # the training config it starts from

    @property
    def key(self) -> str:
        return f"{self.dataset}/{slug(self.model)}/s{self.seed}"

    @property
    def run_name(self) -> str:
        """Run folder name inside the experiment's runs_dir (which carries the experiment)."""
        return f"{self.dataset}-{slug(self.model)}-s{self.seed}"

    def result_file(self, results_dir: Path) -> Path:
        return results_dir / self.dataset / f"{slug(self.model)}-s{self.seed}.json"

    def train_config(self) -> Any:
        """The validated `TrainConfig` of this cell."""
        from h2rec.training import TrainConfig

        base = read_yaml(self.config)
        merged = expand_env(apply_overrides(base, self.overrides))
        return validate(TrainConfig, merged, source=f"cell {self.key} ({self.config})")


def load_experiment(path_or_name: str | Path) -> ExperimentSpec:
    """Read an experiment file (a path, or a built-in name such as `experiments/table2`)."""
    raw = read_yaml(path_or_name)
    return validate(ExperimentSpec, raw, source=str(path_or_name))


def cells(spec: ExperimentSpec) -> list[Cell]:
    """Every cell, ordered dataset -> seed -> model, so an interrupted grid has whole seeds."""
    out = []
    for ds_name, ds in spec.datasets.items():
        for seed in spec.seeds:
            for label, entry in spec.models.items():
                config = (entry.config or spec.base or "").replace("{dataset}", ds_name)
                ov = [*spec.overrides, f"data={ds.data}", *ds.overrides]
                if entry.model is not None:
                    ov.append(f"model={json.dumps(entry.model)}")
                ov += [*entry.overrides, f"seed={seed}"]
                cell = Cell(
                    experiment=spec.name,
                    dataset=ds_name,
                    model=label,
                    seed=seed,
                    overrides=ov,
                    config=config,
                )
                cell.overrides += [f"name={cell.run_name}", f"runs_dir={spec.runs_path}"]
                out.append(cell)
    keys = [c.key for c in out]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise ConfigError(f"experiment {spec.name}: model labels collide as file names: {dup}")
    return out


IDENTITY_EXEMPT = ("runs_dir", "name", "threads")  # where a run is stored / how many CPU threads


def config_identity(cfg: Any) -> dict[str, Any]:
    """What a validated training config trains: its explicitly set values only (a field added to
    TrainConfig later, at its default, changes nothing), minus storage place, thread count and
    evaluation batch size."""
    data = cfg.model_dump(mode="json", exclude_defaults=True)
    out = {k: v for k, v in data.items() if k not in IDENTITY_EXEMPT}
    if isinstance(out.get("eval"), dict):  # users per evaluation batch: never changes a rank
        out["eval"] = {k: v for k, v in out["eval"].items() if k != "batch_size"}
        if not out["eval"]:
            del out["eval"]
    return out


def config_hash(cfg: Any) -> str:
    """Hash of `config_identity`: a stored result is reused only while this matches."""
    data = config_identity(cfg)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def record_hash(record: dict[str, Any]) -> str | None:
    """The identity hash of a stored cell's full config, recomputed with today's TrainConfig (so
    records stay valid when fields are added); None if that config no longer validates."""
    from h2rec.training import TrainConfig

    try:
        return config_hash(TrainConfig.model_validate(record.get("config") or {}))
    except Exception:
        return None
