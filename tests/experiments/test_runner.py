"""Experiment files, the grid, and resumable running on the synthetic dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from h2rec.errors import ConfigError
from h2rec.experiments import cells, load_experiment, run, runner, status
from h2rec.experiments.locks import cell_lock, holder, lock_path
from h2rec.experiments.runner import run_cell
from h2rec.experiments.spec import ExperimentSpec
from h2rec.training import Trainer


def _spec(tmp_path, ds, **extra) -> ExperimentSpec:
    raw = {
        "name": "tiny",
        "base": "train/sasrec-synth",
        "overrides": [
            "epochs=1",
            "model.hidden_size=16",
            "model.n_layers=1",
            "max_len=10",
            "eval.test_protocols=[full]",
        ],
        "datasets": {"synth": {"data": str(ds.path)}},
        "seeds": [1, 2],
        "models": {"SASRec": {}, "MostPop": {"model": {"name": "mostpop"}}},
        "runs_dir": str(tmp_path / "runs" / "{name}"),
        "results_dir": str(tmp_path / "results" / "{name}"),
        **extra,
    }
    return ExperimentSpec.model_validate(raw)


def test_grid_order_overrides_and_sweeps(tmp_path) -> None:
    spec = ExperimentSpec.model_validate(
        {
            "name": "g",
            "base": "train/sasrec-{dataset}",
            "overrides": ["epochs=3", "model.dropout=0.1"],
            "datasets": {"synth": {"data": "d1", "overrides": ["epochs=4"]}},
            "seeds": [7],
            "models": {"A": {"overrides": ["model.dropout=0.3"]}},
            "sweeps": [
                {"model": "A", "key": "model.n_layers", "values": [1, 3], "label": "A L={value}"}
            ],
        }
    )
    cs = cells(spec)
    assert [c.model for c in cs] == ["A", "A L=1", "A L=3"]
    cfg = cs[0].train_config()
    # dataset overrides beat the experiment's, the model's beat both; {dataset} is substituted
    assert (cfg.epochs, cfg.model.params()["dropout"], cfg.data, cfg.seed) == (4, 0.3, "d1", 7)
    assert cs[0].config == "train/sasrec-synth"
    assert cs[2].train_config().model.params()["n_layers"] == 3
    assert spec.models["A L=3"].x == 3.0 and spec.models["A L=3"].group == "model.n_layers"


def test_bad_spec_names_the_field() -> None:
    with pytest.raises(Exception, match="unknown model 'Nope'"):
        ExperimentSpec.model_validate(
            {
                "name": "x",
                "base": "b",
                "datasets": {"d": {"data": "p"}},
                "models": {"A": {}},
                "report": {"target": "Nope"},
            }
        )
    with pytest.raises(ConfigError, match="collide"):
        cells(
            ExperimentSpec.model_validate(
                {
                    "name": "x",
                    "base": "b",
                    "datasets": {"d": {"data": "p"}},
                    "models": {"A b": {}, "a-b": {}},
                }
            )
        )


def test_run_skips_finished_cells_and_detects_stale_ones(
    tmp_path, synth_sid_dataset, monkeypatch
) -> None:
    spec = _spec(tmp_path, synth_sid_dataset)
    calls = []
    real_fit = Trainer.fit

    def counting_fit(self, **kw):  # type: ignore[no-untyped-def]
        calls.append(self.cfg.name)
        return real_fit(self, **kw)

    monkeypatch.setattr(Trainer, "fit", counting_fit)
    run(spec, echo=lambda _: None)
    assert len(calls) == 4
    rec = json.loads((spec.results_path / "synth" / "sasrec-s1.json").read_text())
    assert rec["seed"] == 1 and rec["config"]["epochs"] == 1
    assert 0.0 <= rec["results"]["full"]["overall"]["NDCG@10"] <= 1.0
    assert "tail" in rec["results"]["full"]["groups"]
    # a second run does nothing: every cell is done
    run(spec, echo=lambda _: None)
    assert len(calls) == 4
    assert {s.state for s in status(spec)} == {"done"}
    # a record written before a TrainConfig field existed (here: one dropped from it) stays done
    f = spec.results_path / "synth" / "mostpop-s1.json"
    rec = json.loads(f.read_text())
    del rec["config"]["deterministic"], rec["config_hash"]
    f.write_text(json.dumps(rec))
    assert {s.state for s in status(spec)} == {"done"}
    # ... and so does one evaluated in batches of another size (1024 was the old default):
    # the batch size never changes a rank
    rec["config"]["eval"]["batch_size"] = 1024
    f.write_text(json.dumps(rec))
    assert {s.state for s in status(spec)} == {"done"}
    # changing the grid's shared settings makes the cells stale; they rerun only when asked
    spec2 = _spec(
        tmp_path,
        synth_sid_dataset,
        overrides=[
            "epochs=2",
            "model.hidden_size=16",
            "model.n_layers=1",
            "max_len=10",
            "eval.test_protocols=[full]",
        ],
    )
    assert {s.state for s in status(spec2) if s.cell.model == "SASRec"} == {"stale"}
    run(spec2, echo=lambda _: None, only=lambda c: c.model == "SASRec" and c.seed == 1)
    assert len(calls) == 4
    run(
        spec2,
        echo=lambda _: None,
        rerun_stale=True,
        only=lambda c: c.model == "SASRec" and c.seed == 1,
    )
    assert len(calls) == 5
    assert (
        json.loads((spec.results_path / "synth" / "sasrec-s1.json").read_text())["config"]["epochs"]
        == 2
    )


@pytest.mark.parametrize(
    ("base", "model"),
    [
        ("train/sasrec-synth", {}),  # the base names its loss (CE)
        # the paper bases name no loss: the run folder's config holds the resolved one (MELT's
        # BCE), which must not read as "the config changed" (it did, and every cell with a paper
        # loss of its own restarted from epoch 1 in the next session)
        ("train/paper-yelp", {"model": {"name": "melt"}}),
    ],
)
def test_interrupted_cell_resumes_from_its_checkpoint(
    tmp_path, synth_sid_dataset, monkeypatch, base, model
) -> None:
    spec = _spec(
        tmp_path,
        synth_sid_dataset,
        base=base,
        overrides=[
            "epochs=2",
            "model.hidden_size=16",
            "model.n_layers=1",
            "max_len=10",
            "eval.test_protocols=[full]",
        ],
        models={"M": model},
        seeds=[3],
    )
    (cell,) = cells(spec)
    first = Trainer(cell.train_config())
    first.fit(max_epochs=1)  # "interrupted" after one epoch
    assert first.cfg.objective.loss == ("bce" if model else "ce")
    assert status(spec)[0].state == "partial"
    seen = {}
    real_fit = Trainer.fit

    def spy(self, **kw):  # type: ignore[no-untyped-def]
        seen.update(kw)
        return real_fit(self, **kw)

    monkeypatch.setattr(Trainer, "fit", spy)
    run(spec, echo=lambda _: None)
    assert seen["resume"] is True
    assert json.loads(cell.result_file(spec.results_path).read_text())["epochs_run"] == 2


def test_lanes_split_the_cells(tmp_path, synth_sid_dataset, monkeypatch) -> None:
    spec = _spec(tmp_path, synth_sid_dataset)
    ran: list[str] = []
    monkeypatch.setattr(
        "h2rec.experiments.runner.run_cell",
        lambda s, c, t=None: (
            ran.append(c.key) or {"wall_seconds": 0, "epochs_run": 0, "results": {}}
        ),
    )
    run(spec, lane=(1, 2), echo=lambda _: None)
    assert ran == [c.key for k, c in enumerate(cells(spec)) if k % 2 == 1]


def _hold_lock(path) -> subprocess.Popen[str]:
    """Another process holding `path`'s cell lock until killed (it prints once it holds it)."""
    code = (
        "import sys, time; from pathlib import Path; from h2rec.experiments.locks import cell_lock\n"
        "with cell_lock(Path(sys.argv[1])) as mine:\n"
        "    print('held' if mine else 'busy', flush=True); time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_cell_locked_by_another_process_is_skipped_until_it_dies(
    tmp_path, synth_sid_dataset, monkeypatch
) -> None:
    spec = _spec(tmp_path, synth_sid_dataset)
    first, *rest = cells(spec)
    ran: list[str] = []

    def fake_run_cell(s, c, t=None):  # type: ignore[no-untyped-def]
        ran.append(c.key)
        return {"wall_seconds": 0, "epochs_run": 0, "results": {}}

    monkeypatch.setattr("h2rec.experiments.runner.run_cell", fake_run_cell)
    path = lock_path(spec.runs_path, first.run_name)
    proc = _hold_lock(path)
    try:
        st = {s.cell.key: s for s in status(spec)}[first.key]
        assert st.state == "running" and st.holder is not None
        assert st.holder["pid"] == proc.pid
        with cell_lock(path) as mine:  # this process cannot take it either
            assert mine is False
        run(spec, echo=lambda _: None)
        assert ran == [c.key for c in rest]
    finally:
        proc.kill()
        proc.wait()
    # the kernel released the dead holder's lock: no stale lock to clean up
    assert holder(path) is None
    assert {s.cell.key: s.state for s in status(spec)}[first.key] == "todo"
    ran.clear()
    run(spec, echo=lambda _: None, only=lambda c: c.key == first.key)
    assert ran == [first.key]


def test_a_cell_finished_by_another_lane_meanwhile_is_not_trained_again(
    tmp_path, synth_sid_dataset, monkeypatch
) -> None:
    """The plan is read once; each cell is looked at again after its lock is taken."""
    spec = _spec(tmp_path, synth_sid_dataset, models={"SASRec": {}}, seeds=[1])
    (cell,) = cells(spec)
    real_status = runner.status

    def status_then_other_lane_finishes(s, only=None):  # type: ignore[no-untyped-def]
        out = real_status(s, only)
        run_cell(s, cell)  # another lane finished it after this lane made its plan
        return out

    monkeypatch.setattr(runner, "status", status_then_other_lane_finishes)
    calls = []
    monkeypatch.setattr(runner, "run_cell", lambda *a, **k: calls.append(a))
    out = run(spec, echo=lambda _: None)
    assert calls == [] and out[0].state == "done"


SHIPPED = [
    "experiments/table2",
    "experiments/table3",
    "experiments/table4",
    "experiments/table5",
    "experiments/table6",
    "experiments/table7",
    "experiments/table8",
    "experiments/figure3",
    "experiments/figure4",
    "experiments/llm-esr-teacher",
    "experiments/melt-refresh",
    "experiments/selection-new-targets",
]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_experiment_files_validate(name) -> None:
    from h2rec.models.registry import parse_model_config

    spec = load_experiment(name)
    for cell in cells(spec):
        cfg = cell.train_config()  # every cell resolves to a valid training config
        parse_model_config(cfg.model.name, cfg.model.params())  # naming a registered model


def test_shipped_experiments_agree_on_every_shared_cell() -> None:
    """The paper experiments share one cell store, where a cell is its result file (dataset,
    label, seed). Two files giving one cell different configs would each see the other's result
    as stale and retrain over it (Figure 4's LLM-ESR lacked Table 2's sampled teacher)."""
    from h2rec.experiments.spec import config_hash

    seen: dict[tuple, tuple[str, str]] = {}
    for name in SHIPPED:
        spec = load_experiment(name)
        for cell in cells(spec):
            where = (str(spec.results_path), str(cell.result_file(spec.results_path)))
            h = config_hash(cell.train_config())
            if where in seen:
                first, h0 = seen[where]
                assert h == h0, f"{cell.key}: {name} and {first} give it different configs"
            else:
                seen[where] = (name, h)


def test_selection_check_differs_from_table2_only_in_the_selection_rule() -> None:
    table2 = {(c.dataset, c.model, c.seed): c for c in cells(load_experiment("experiments/table2"))}
    check = cells(load_experiment("experiments/selection-new-targets"))
    assert len(check) == 4
    for cell in check:
        label = cell.model.removesuffix(", new-target selection")
        ours = cell.train_config().model_dump(mode="json")
        theirs = table2[(cell.dataset, label, cell.seed)].train_config().model_dump(mode="json")
        assert ours["eval"].pop("valid_targets") == "new"
        assert theirs["eval"].pop("valid_targets") == "all"
        ours.pop("name"), theirs.pop("name")
        assert ours == theirs, cell.key


def test_llm_esr_teacher_check_shares_table2s_cell() -> None:
    """The check's sampled-teacher cell must BE Table 2's (same key, same config hash), so the
    comparison costs one extra run and compares against exactly what Table 2 reports."""
    from h2rec.experiments.spec import config_hash

    table2 = {c.key: c for c in cells(load_experiment("experiments/table2"))}
    check = {c.model: c for c in cells(load_experiment("experiments/llm-esr-teacher"))}
    shared = check["LLM-ESR"]
    assert config_hash(shared.train_config()) == config_hash(table2[shared.key].train_config())
    full = check["LLM-ESR, 10 neighbours"].train_config().model.params()
    assert shared.train_config().model.params()["sd_neighbours"] == 2
    assert full.get("sd_neighbours") is None


def test_melt_refresh_check_shares_table2s_cell() -> None:
    """As the teacher check: the check's MELT cell is Table 2's; the other differs only in
    refresh_delay."""
    from h2rec.experiments.spec import config_hash

    table2 = {c.key: c for c in cells(load_experiment("experiments/table2"))}
    check = {c.model: c for c in cells(load_experiment("experiments/melt-refresh"))}
    shared = check["MELT"]
    assert config_hash(shared.train_config()) == config_hash(table2[shared.key].train_config())
    delayed = check["MELT, refresh after 1 epoch"].train_config()
    assert delayed.model.params() == {**shared.train_config().model.params(), "refresh_delay": 1}
    assert delayed.epochs == shared.train_config().epochs == 200


def test_projection_adds_medians_and_calibrated_epochs(tmp_path, synth_sid_dataset) -> None:
    from h2rec.experiments.runner import CellStatus, calibrate, projection

    spec = _spec(tmp_path, synth_sid_dataset, seeds=[1, 2, 3])
    cs = {(c.model, c.seed): c for c in cells(spec)}
    sts = [
        CellStatus(cs["SASRec", 1], "done", {"wall_seconds": 100.0, "epochs_run": 4}),
        CellStatus(cs["SASRec", 2], "done", {"wall_seconds": 300.0, "epochs_run": 8}),
        CellStatus(cs["SASRec", 3], "todo"),
        CellStatus(cs["MostPop", 1], "todo"),
        CellStatus(cs["MostPop", 2], "partial"),
    ]
    plan = projection(sts)
    # SASRec s3: median of its finished cells (200 s); MostPop: only the dataset median (200 s each)
    assert (plan["cells_left"], plan["known_s"], plan["rough_s"]) == (3, 200.0, 400.0)
    cal = {("synth", "MostPop"): {"epoch_s": 10.0, "max_epochs": 20.0}}
    plan = projection(sts, cal)
    # calibrated: 10 s/epoch x median epochs of finished cells on the dataset (6), cap 20
    assert (plan["calibrated_s"], plan["calibrated_max_s"], plan["rough_s"]) == (120.0, 400.0, 0.0)
    measured = calibrate(cs["SASRec", 3], steps=2)
    assert measured["epoch_s"] > 0 and measured["max_epochs"] == 1.0
    assert not (spec.runs_path / cs["SASRec", 3].run_name).exists()  # nothing written


def test_until_starts_only_cells_expected_to_finish_in_time(
    tmp_path, synth_sid_dataset, monkeypatch
) -> None:
    from datetime import datetime, timedelta, timezone

    from h2rec.io import atomic_write_json

    spec = _spec(tmp_path, synth_sid_dataset, seeds=[1, 2, 3])
    cs = {(c.model, c.seed): c for c in cells(spec)}
    for seed, wall in ((1, 100.0), (2, 300.0)):  # finished SASRec cells: 100 s and 300 s
        cell = cs["SASRec", seed]
        record = runner.cell_record(cell, cell.train_config(), {}, {}, wall)
        atomic_write_json(cell.result_file(spec.results_path), record)
    # SASRec s3 is expected to take the median of its model's cells, 200 s; MostPop has none,
    # so it counts as the dataset's longest finished cell, 300 s
    assert runner.duration_estimate(spec, cs["SASRec", 3]) == 200.0
    assert runner.duration_estimate(spec, cs["MostPop", 1]) == 300.0
    ran: list[str] = []
    monkeypatch.setattr(
        runner,
        "run_cell",
        lambda s, c, t=None: (
            ran.append(c.key) or {"wall_seconds": 0, "epochs_run": 0, "results": {}}
        ),
    )
    now = datetime.now(timezone.utc)
    said: list[str] = []
    run(spec, until=now + timedelta(seconds=150), echo=said.append)
    assert ran == []
    assert sum("left for later" in line for line in said) == 4
    run(spec, until=now + timedelta(seconds=250), echo=lambda _: None)
    assert ran == [cs["SASRec", 3].key]
    run(spec, echo=lambda _: None)  # no deadline: every unfinished cell (the fake writes none)
    assert sorted(ran[1:]) == sorted(
        [cs["SASRec", 3].key] + [cs["MostPop", s].key for s in (1, 2, 3)]
    )


def test_duration_estimate_scales_a_model_from_another_dataset(tmp_path, synth_sid_dataset) -> None:
    from h2rec.io import atomic_write_json

    spec = _spec(tmp_path, synth_sid_dataset, seeds=[1, 2, 3])
    cs = {(c.model, c.seed): c for c in cells(spec)}

    def finished(cell, wall: float, dataset: str | None = None) -> None:
        record = runner.cell_record(cell, cell.train_config(), {}, {}, wall)
        if dataset is not None:  # the same cell as if trained on another dataset
            record["dataset"] = dataset
        path = spec.results_path / (dataset or cell.dataset) / f"{cell.run_name}.json"
        atomic_write_json(path, record)

    assert runner.duration_estimate(spec, cs["SASRec", 1]) is None  # nothing finished anywhere
    finished(cs["SASRec", 1], 100.0)
    finished(cs["SASRec", 2], 300.0)
    finished(cs["SASRec", 1], 1000.0, dataset="big")
    finished(cs["MostPop", 1], 900.0, dataset="big")
    # MostPop ran only on "big", where SASRec took 1000 s against its 200 s median here: 0.2x
    assert runner.duration_estimate(spec, cs["MostPop", 2]) == pytest.approx(180.0)
    assert runner.duration_estimate(spec, cs["SASRec", 3]) == 200.0  # its own cells here win


@pytest.mark.parametrize(
    ("model", "want"),
    [
        ("{name: melt, hidden_size: 16}", {"loss": "bce", "objective": "next_item"}),
        ("{name: bert4rec, hidden_size: 16}", {"loss": "ce", "objective": "cloze"}),
    ],
)
def test_trained_with_is_what_the_trainer_resolved(tmp_path, synth_sid_dataset, model, want):
    """A cell whose config names no loss trains with its model's own (MELT: BCE) and `auto`
    objectives resolve per model; the record's `config` keeps the unresolved default."""
    from h2rec.config import apply_overrides, read_yaml, validate
    from h2rec.training import TrainConfig

    raw = apply_overrides(
        read_yaml("train/sasrec-synth"),
        [f"data={synth_sid_dataset.path}", f"runs_dir={tmp_path}", f"model={model}"],
    )
    raw["objective"].pop("loss")
    cfg = validate(TrainConfig, raw)
    assert cfg.objective.loss == "ce"  # the config's default, as a cell record stores it
    assert runner.trained_with(Trainer(cfg, synth_sid_dataset)) == want


@pytest.mark.parametrize(
    ("base", "model"),
    [("train/sasrec-synth", {}), ("train/paper-yelp", {"model": {"name": "melt"}})],
)
def test_adopt_records_a_finished_run_of_the_same_config_only(
    tmp_path, synth_sid_dataset, base, model
) -> None:
    """A run trained outside the experiment (another name and folder, `h2rec train`) becomes the
    cell whose config it trained, resolved loss included (MELT's saved config says BCE where the
    cell names no loss); a run of another config is left alone."""
    spec = _spec(
        tmp_path,
        synth_sid_dataset,
        base=base,
        overrides=["epochs=1", "model.hidden_size=16", "model.n_layers=1", "max_len=10"],
        models={"M": model},
        seeds=[3],
    )
    (cell,) = cells(spec)
    elsewhere = tmp_path / "elsewhere"
    same = cell.train_config().model_copy(update={"runs_dir": str(elsewhere), "name": "mine"})
    other = same.model_copy(update={"name": "other", "seed": 4})
    out = Trainer(same).fit()
    Trainer(other).fit()
    assert runner.adopt(spec, [elsewhere / "other"], echo=lambda _: None) == []
    assert status(spec)[0].state == "todo"
    assert runner.adopt(spec, [elsewhere / "other", elsewhere / "mine"], echo=lambda _: None) == [
        cell.key
    ]
    assert status(spec)[0].state == "done"
    record = json.loads(cell.result_file(spec.results_path).read_text())
    assert record["adopted_from"] == str(elsewhere / "mine")
    for protocol, result in out["results"].items():
        assert record["results"][protocol]["overall"] == result.to_dict()["overall"]


def test_compute_total_counts_a_shared_cell_once(tmp_path) -> None:
    """Two experiments sharing a cell store: a cell is its result file, so SASRec's cells, which
    both list, add their seconds once; stale and unfinished cells add nothing."""
    from h2rec.experiments.runner import CELL_FORMAT, compute_total
    from h2rec.io import atomic_write_json

    def spec(name: str, models: dict) -> ExperimentSpec:
        s = _spec(tmp_path, SimpleNamespace(path="nowhere"), name=name, models=models)
        return s.model_copy(update={"results_dir": str(tmp_path / "results")})

    a = spec("a", {"SASRec": {}, "MostPop": {"model": {"name": "mostpop"}}})
    b = spec("b", {"SASRec": {}})
    walls = {("SASRec", 1): (100.0, "cpu"), ("SASRec", 2): (200.0, "cpu")}
    walls[("MostPop", 1)] = (10.0, "cuda")
    for cell in cells(a):
        config = cell.train_config().model_dump(mode="json")
        if (cell.model, cell.seed) == ("MostPop", 2):
            config["epochs"] = 7  # stale: stored under another config
            seconds, device = 1000.0, "cpu"
        else:
            seconds, device = walls[(cell.model, cell.seed)]
        record = {"format": CELL_FORMAT, "config": config, "wall_seconds": seconds}
        atomic_write_json(cell.result_file(a.results_path), {**record, "device": device})

    assert [st.state for st in status(a)] == ["done", "done", "done", "stale"]
    both = compute_total([(a, status(a)), (b, status(b))])
    assert both == {"cells": 3, "seconds": 310.0, "by_device": {"cpu": 300.0, "cuda": 10.0}}
    only_b = compute_total([(b, status(b))])
    assert only_b == {"cells": 2, "seconds": 300.0, "by_device": {"cpu": 300.0}}
