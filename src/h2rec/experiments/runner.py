"""Run an experiment's cells, skipping finished ones and resuming interrupted ones.

Each finished cell leaves ONE small JSON (`<results_dir>/<dataset>/<model>-s<seed>.json`: the
resolved config and its hash, every test protocol's overall and group metrics with their protocol
stamp, epochs and timings). Those files are the experiment's record — small enough to commit —
while run folders (checkpoints) stay in `runs_dir`. A cell counts as finished only while its
stored config hash equals the one the experiment file gives now; an edited experiment marks the
changed cells "stale" and they are run again only when asked (`rerun_stale`).
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from h2rec.errors import ConfigError
from h2rec.experiments.locks import cell_lock, holder, lock_path
from h2rec.experiments.spec import (
    Cell,
    ExperimentSpec,
    cells,
    config_hash,
    config_identity,
    record_hash,
)
from h2rec.io import atomic_write_json

if TYPE_CHECKING:
    from h2rec.training.distributed import World

log = logging.getLogger("h2rec")
CELL_FORMAT = "h2rec-cell/1"


@dataclass
class CellStatus:
    cell: Cell
    state: str  # "done", "stale", "running" (another process holds it), "partial" or "todo"
    record: dict[str, Any] | None = None  # the stored result when done or stale
    holder: dict[str, Any] | None = None  # pid/host/started of the process running it


def read_record(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable cell result ({exc}); delete it to rerun") from exc
    if data.get("format") != CELL_FORMAT:
        raise ConfigError(f"{path}: not an h2rec cell result (format {data.get('format')!r})")
    return data


def status(spec: ExperimentSpec, only: Callable[[Cell], bool] | None = None) -> list[CellStatus]:
    """The state of every cell (optionally filtered), in run order."""
    out = []
    for cell in cells(spec):
        if only is not None and not only(cell):
            continue
        out.append(cell_status(spec, cell))
    return out


def compute_total(
    experiments: Sequence[tuple[ExperimentSpec, Sequence[CellStatus]]],
) -> dict[str, Any]:
    """Finished cells of several experiments and their training wall time, each cell counted once.

    Experiments share cells (Yelp H2Rec seed 42 serves Tables 2-8 and Figure 3), so adding the
    reports' per-experiment totals would count a shared cell once per table; here a cell is its
    result file. Takes each experiment with its `status()` (already read by the caller); returns
    `cells`, `seconds` and `by_device` (seconds per device).
    """
    seen: dict[Path, dict[str, Any]] = {}
    for spec, statuses in experiments:
        for st in statuses:
            if st.state == "done" and st.record is not None:
                seen.setdefault(st.cell.result_file(spec.results_path).resolve(), st.record)
    by_device: dict[str, float] = {}
    for rec in seen.values():
        dev = str(rec.get("device") or "unknown")
        by_device[dev] = by_device.get(dev, 0.0) + float(rec.get("wall_seconds") or 0.0)
    return {"cells": len(seen), "seconds": sum(by_device.values()), "by_device": by_device}


def cell_status(spec: ExperimentSpec, cell: Cell, *, locked_by_us: bool = False) -> CellStatus:
    """One cell's state, read from its result file, its lock (unless this process holds it) and
    its run folder."""
    record = read_record(cell.result_file(spec.results_path))
    if record is not None:
        same = record_hash(record) == config_hash(cell.train_config())
        return CellStatus(cell, "done" if same else "stale", record)
    busy = None if locked_by_us else holder(lock_path(spec.runs_path, cell.run_name))
    if busy is not None:
        return CellStatus(cell, "running", holder=busy)
    if (spec.runs_path / cell.run_name / "checkpoints" / "last").exists():
        return CellStatus(cell, "partial")
    return CellStatus(cell, "todo")


def calibrate(cell: Cell, steps: int = 3, threads: int | None = None) -> dict[str, float]:
    """Measure one cell's cost without training it: the median of `steps` training steps (after
    one warm-up step) times the batches per epoch, plus one validation pass. Nothing is written."""
    import torch

    from h2rec.training import Trainer

    cfg = cell.train_config()
    if threads:
        cfg = cfg.model_copy(update={"threads": threads})
    tr = Trainer(cfg)
    assert tr.optimizer is not None
    norm = tr.targets_per_batch
    tr.model.train()
    it = tr.batches.epoch(0)
    times = []
    for k in range(steps + 1):
        batch = next(it).to(tr.device)
        t0 = time.perf_counter()
        loss, _ = tr.objective(tr.model, batch.as_dict(), target_norm=norm)
        tr.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        tr.optimizer.step()
        if k:
            times.append(time.perf_counter() - t0)
    tr.model.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        tr.evaluate("valid", cfg.eval.valid_protocol)
    valid_s = time.perf_counter() - t0
    epoch_s = statistics.median(times) * len(tr.batches) + valid_s
    return {"epoch_s": epoch_s, "max_epochs": float(cfg.epochs)}


def projection(
    statuses: list[CellStatus], calibrated: dict[tuple[str, str], dict[str, float]] | None = None
) -> dict[str, Any]:
    """Projected wall time of the cells still to run.

    `known_s`: cells whose (dataset, model) has finished cells - their median wall time.
    `calibrated_s` / `calibrated_max_s`: cells measured by `calibrate` - seconds per epoch times
    the median epochs of the finished cells on that dataset (early stopping), and times the
    epoch cap (the bound). `rough_s`: the median of any finished cell on that dataset.
    Otherwise the cell counts in `unknown_cells`.
    """
    done: dict[tuple[str, str], list[float]] = {}
    by_ds: dict[str, list[float]] = {}
    epochs_ds: dict[str, list[float]] = {}
    for st in statuses:
        if st.state == "done" and st.record is not None:
            sec = float(st.record.get("wall_seconds") or 0.0)
            done.setdefault((st.cell.dataset, st.cell.model), []).append(sec)
            by_ds.setdefault(st.cell.dataset, []).append(sec)
            epochs_ds.setdefault(st.cell.dataset, []).append(
                float(st.record.get("epochs_run") or 0)
            )
    out = {"known_s": 0.0, "calibrated_s": 0.0, "calibrated_max_s": 0.0, "rough_s": 0.0}
    unknown = 0
    for st in statuses:
        if st.state == "done":
            continue
        key = (st.cell.dataset, st.cell.model)
        cal = (calibrated or {}).get(key)
        if key in done:
            out["known_s"] += statistics.median(done[key])
        elif cal is not None:
            epochs = statistics.median(epochs_ds.get(st.cell.dataset, [cal["max_epochs"]]))
            out["calibrated_s"] += cal["epoch_s"] * min(epochs, cal["max_epochs"])
            out["calibrated_max_s"] += cal["epoch_s"] * cal["max_epochs"]
        elif st.cell.dataset in by_ds:
            out["rough_s"] += statistics.median(by_ds[st.cell.dataset])
        else:
            unknown += 1
    n_left = sum(st.state != "done" for st in statuses)
    return {"cells_left": n_left, **out, "unknown_cells": unknown}


def finished_walls(spec: ExperimentSpec) -> dict[tuple[str, str], list[float]]:
    """Wall seconds of every finished cell in the experiment's result store (shared by
    experiments, so Table 3's cells inform Table 4's), by (dataset, model class)."""
    walls: dict[tuple[str, str], list[float]] = {}
    for f in spec.results_path.glob("*/*.json"):
        try:
            rec = read_record(f)
        except ConfigError:
            continue
        if rec is None or not rec.get("wall_seconds"):
            continue
        rec_name = (rec.get("config") or {}).get("model", {}).get("name")
        walls.setdefault((str(rec.get("dataset")), str(rec_name)), []).append(
            float(rec["wall_seconds"])
        )
    return walls


def duration_estimate(
    spec: ExperimentSpec, cell: Cell, walls: dict[tuple[str, str], list[float]] | None = None
) -> float | None:
    """Seconds this cell is expected to take, from `walls` (default: `finished_walls(spec)`).

    In order: the median wall time of cells of the same model class (`model.name`) on the same
    dataset; else that model class's median on the other datasets, scaled by how much longer
    this dataset's cells take than theirs (the median ratio over model classes finished on both;
    1 without any); else the LONGEST finished cell on the dataset (an unknown model is assumed
    slow rather than fast); else None."""
    if walls is None:
        walls = finished_walls(spec)
    name = cell.train_config().model.name
    median = {key: statistics.median(v) for key, v in walls.items()}
    if (cell.dataset, name) in median:
        return median[cell.dataset, name]
    scaled = []
    for (ds, model), sec in median.items():
        if model != name:
            continue
        ratios = [
            median[cell.dataset, m] / t
            for (d, m), t in median.items()
            if d == ds and (cell.dataset, m) in median
        ]
        scaled.append(sec * (statistics.median(ratios) if ratios else 1.0))
    if scaled:
        return statistics.median(scaled)
    here = [max(v) for (ds, _), v in walls.items() if ds == cell.dataset]
    return max(here) if here else None


def describe(plan: dict[str, Any]) -> str:
    """One line: the projected hours of a plan."""
    parts = [f"{plan['cells_left']} cells to run"]
    if plan["known_s"]:
        parts.append(f"{plan['known_s'] / 3600:.1f} h (like finished cells)")
    if plan["calibrated_max_s"]:
        parts.append(
            f"{plan['calibrated_s'] / 3600:.1f} h measured per epoch x typical epochs "
            f"(at most {plan['calibrated_max_s'] / 3600:.1f} h at the epoch cap)"
        )
    if plan["rough_s"]:
        parts.append(f"about {plan['rough_s'] / 3600:.1f} h (other models' median)")
    if plan["unknown_cells"]:
        parts.append(f"{plan['unknown_cells']} cells without estimate (--calibrate measures them)")
    return "; ".join(parts)


def cell_record(
    cell: Cell,
    cfg: Any,
    summary: dict[str, Any],
    results: dict[str, dict[str, Any]],
    wall_seconds: float,
) -> dict[str, Any]:
    """The committed JSON of one finished cell; `results`: protocol -> EvalResult.to_dict()."""
    return {
        "format": CELL_FORMAT,
        "experiment": cell.experiment,
        "cell": cell.key,
        "dataset": cell.dataset,
        "model": cell.model,
        "seed": cell.seed,
        "config_hash": config_hash(cfg),
        "config": cfg.model_dump(mode="json"),
        "epochs_run": summary.get("epochs_run"),
        "best_epoch": summary.get("best_epoch"),
        "best_valid": summary.get("best_valid"),
        **({"warmup": summary["warmup"]} if "warmup" in summary else {}),
        "train_seconds": summary.get("train_seconds"),
        "wall_seconds": wall_seconds,
        "device": summary.get("device"),
        "world_size": summary.get("world_size", 1),  # processes that trained it (torchrun)
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "results": {
            protocol: {
                "stamp": res["stamp"],
                "overall": res["overall"],
                "groups": {g: v["metrics"] for g, v in res["groups"].items()},
                "group_users": {g: v["n_users"] for g, v in res["groups"].items()},
            }
            for protocol, res in results.items()
        },
    }


def adopt(
    spec: ExperimentSpec, run_dirs: list[Path], echo: Callable[[str], None] = print
) -> list[str]:
    """Record finished runs trained elsewhere (e.g. by `h2rec train`) as this experiment's cells
    when their saved config equals a cell's (storage place and thread count aside), so no run
    is trained twice. Returns the adopted cell keys."""
    from h2rec.config import validate
    from h2rec.training import TrainConfig
    from h2rec.training.trainer import resolve_loss

    todo = {st.cell.key: st.cell for st in status(spec) if st.state != "done"}
    # a run's saved config holds the loss its trainer resolved (the model's own where the cell
    # names none), so the cell is compared resolved too
    wanted = {key: config_identity(resolve_loss(cell.train_config())) for key, cell in todo.items()}
    adopted = []
    for run_dir in run_dirs:
        summary_file, config_file = run_dir / "summary.json", run_dir / "config.yaml"
        if not (summary_file.is_file() and config_file.is_file()):
            continue
        saved = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        saved_cfg = validate(TrainConfig, saved, source=str(config_file))
        identity = config_identity(saved_cfg)
        for key, want in wanted.items():
            if want != identity or key in adopted:
                continue
            cell = todo[key]
            summary = json.loads(summary_file.read_text(encoding="utf-8"))
            results = {}
            for protocol in saved_cfg.eval.test_protocols:
                f = run_dir / "results" / f"test-{protocol}.json"
                if not f.is_file():
                    break
                results[protocol] = json.loads(f.read_text(encoding="utf-8"))
            else:
                wall = float(summary.get("train_seconds") or 0.0)
                record = cell_record(cell, cell.train_config(), summary, results, wall)
                record["adopted_from"] = str(run_dir)
                atomic_write_json(cell.result_file(spec.results_path), record)
                adopted.append(key)
                echo(f"adopted {run_dir} as {key}")
    return adopted


def trained_with(trainer: Any) -> dict[str, Any]:
    """What a cell's `config` leaves to the model and the trainer, as they resolved it: the loss
    (a model's own paper loss when the config names none) and the objective (`auto` is cloze
    for bidirectional models). The stored `config` stays the cell's own, since it is the cell's
    identity (its hash), so a reader needs this to know what the cell really trained with."""
    from h2rec.models.objectives import ClozeObjective

    return {
        "loss": trainer.cfg.objective.loss,
        "objective": "cloze" if isinstance(trainer.objective, ClozeObjective) else "next_item",
    }


def run_cell(spec: ExperimentSpec, cell: Cell, threads: int | None = None) -> dict[str, Any]:
    """Train (or resume) one cell and write its result JSON atomically; returns the record."""
    from h2rec.training import Trainer

    cfg = cell.train_config()
    if threads:
        cfg = cfg.model_copy(update={"threads": threads})
    run_dir = spec.runs_path / cell.run_name
    # resume only a run of this config (the thread count it started with is kept); a stale one
    # (the experiment changed since) restarts
    saved = run_dir / "config.yaml"
    resume = False
    if (run_dir / "checkpoints" / "last").exists() and saved.is_file():
        from h2rec.training import TrainConfig
        from h2rec.training.trainer import same_experiment

        old_cfg = TrainConfig.model_validate(
            yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
        )
        if same_experiment(old_cfg, cfg):
            cfg = cfg.model_copy(update={"threads": old_cfg.threads})
            resume = True
    if (run_dir / "checkpoints" / "last").exists() and not resume:
        log.warning("%s: its config changed since it started; training it again", run_dir)
    t0 = time.perf_counter()
    trainer = Trainer(cfg)
    out = trainer.fit(resume=resume, overwrite=not resume)
    wall = time.perf_counter() - t0
    if resume:  # add the earlier sessions' training time: wall time of the whole cell
        wall = max(wall, float(out["summary"].get("train_seconds") or 0.0))
    results = {p: r.to_dict() for p, r in out["results"].items()}
    record = cell_record(cell, cfg, out["summary"], results, wall)
    record["trained_with"] = trained_with(trainer)
    from h2rec.training.distributed import current_world

    if current_world().main:  # data-parallel: every rank trained the cell, rank 0 records it
        atomic_write_json(cell.result_file(spec.results_path), record)
    return record


def _join_world(spec: ExperimentSpec) -> World:
    """The `training.distributed.World` that `torchrun` describes, its process group joined now
    (as the trainer would) so that cell decisions can be broadcast; a single process otherwise."""
    from h2rec.training import distributed as ddp

    if not ddp.env_world().distributed:
        return ddp.current_world()
    from h2rec.training.trainer import resolve_device

    world, _ = ddp.setup(resolve_device(cells(spec)[0].train_config().device))
    return world


def run(
    spec: ExperimentSpec,
    *,
    lane: tuple[int, int] = (0, 1),
    threads: int | None = None,
    rerun_stale: bool = False,
    only: Callable[[Cell], bool] | None = None,
    echo: Callable[[str], None] = print,
    until: datetime | None = None,
) -> list[CellStatus]:
    """Run every unfinished cell of this lane (cell k runs in lane k mod n).

    `until` (a timezone-aware time): a cell is started only if its `duration_estimate` ends
    before it; others are left for a later run. On a machine whose processes end at a known time
    (a session), a cell that cannot finish would only lose its work, while a shorter one further
    down the grid can still finish; cells without any estimate are started.

    Each cell is trained under its lock (`locks.cell_lock`): a cell another process is running
    is skipped, and a cell is looked at again once locked, so one that another process finished
    meanwhile is not trained twice. Lanes may therefore overlap.

    Under `torchrun` (WORLD_SIZE > 1) the ranks go through the cells TOGETHER, each cell trained
    data-parallel by all of them: rank 0 reads the cell states, takes the locks and decides, and
    every decision is broadcast, so no rank ever starts a different cell than the others (which
    would pair one cell's collectives with another's). Rank 0 alone prints and writes results."""
    i, n = lane
    if not 0 <= i < n:
        raise ConfigError(f"lane {i}/{n}: need 0 <= i < n")
    from h2rec.training.distributed import broadcast_object

    world = _join_world(spec)
    say = echo if world.main else (lambda _: None)
    statuses = broadcast_object(status(spec, only) if world.main else None, world)
    say(f"{spec.name}: {len(statuses)} cells; " + describe(projection(statuses)))
    walls = None  # the store's finished cells, read once and again after each cell this run ends
    for k, st in enumerate(statuses):
        if k % n != i or st.state == "done" or (st.state == "stale" and not rerun_stale):
            if st.state == "stale" and not rerun_stale and k % n == i:
                say(f"  {st.cell.key}: stale (config changed); pass --rerun-stale to redo it")
            continue
        lock = cell_lock(lock_path(spec.runs_path, st.cell.run_name)) if world.main else None
        with lock if lock is not None else nullcontext(True) as mine:
            now = cell_status(spec, st.cell, locked_by_us=True) if world.main and mine else None
            mine, now = broadcast_object((mine, now), world)
            if not mine:
                say(f"  {st.cell.key}: running in another process; skipped")
                continue
            assert now is not None
            if now.state == "done" or (now.state == "stale" and not rerun_stale):
                statuses[k] = now
                continue
            if until is not None:
                left = (until - datetime.now(timezone.utc)).total_seconds()
                if world.main and walls is None:
                    walls = finished_walls(spec)
                need = duration_estimate(spec, st.cell, walls) if world.main else None
                fits = need is None or need <= left
                if not broadcast_object(fits, world):
                    expected = f"about {need / 60:.0f} min expected" if need else "no estimate"
                    say(
                        f"  {st.cell.key}: left for later ({expected}, "
                        f"{max(left, 0) / 60:.0f} min before --until)"
                    )
                    continue
            say(f"[{k + 1}/{len(statuses)}] {st.cell.key} ({now.state})")
            st.record = run_cell(spec, st.cell, threads)
            walls = None
        st.state = "done"
        ndcg = ", ".join(
            f"{p} {r['overall'].get('NDCG@10', float('nan')):.4f}"
            for p, r in st.record["results"].items()
        )
        say(
            f"  done in {st.record['wall_seconds'] / 60:.1f} min, "
            f"{st.record['epochs_run']} epochs; test NDCG@10 {ndcg}"
        )
    return statuses
