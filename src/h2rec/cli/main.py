"""`h2rec` command line: `prepare`, `stats`, `synth`, `embed`, `tokenize`, `train`, `evaluate`,
`experiment run/status/report`, `tune` and the main job `pipeline`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from h2rec import __version__
from h2rec.errors import H2RecError
from h2rec.progress import set_progress

app = typer.Typer(
    name="h2rec",
    help="Sequential recommendation with Semantic IDs + Hash IDs (H2Rec), baselines and head/tail evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Piped output (CI logs, files) gets a wide console so result tables are not truncated.
console = Console() if sys.stdout.isatty() else Console(width=200)
err_console = Console(stderr=True)

DatasetArg = Annotated[
    str, typer.Argument(help="prepared dataset folder, or a name under artifacts/prepared")
]
Overrides = Annotated[
    list[str] | None, typer.Argument(help="config overrides as key=value (dotted keys)")
]


def _version(value: bool) -> None:
    if value:
        console.print(f"h2rec {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="no progress bars, warnings only")
    ] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
        force=True,
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader reports CPU features at INFO
    set_progress(not quiet and sys.stderr.isatty())


def _run(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Call into the library; user errors become one red line and exit code 2."""
    try:
        return fn(*args, **kwargs)
    except H2RecError as exc:
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(2) from None


@app.command()
def synth(
    overrides: Overrides = None,
    config: Annotated[
        str, typer.Option("--config", "-c", help="YAML file or built-in name")
    ] = "synth/default",
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")] = Path(
        "artifacts/raw/synth"
    ),
    name: Annotated[str, typer.Option(help="file name stem")] = "synth",
) -> None:
    """Generate the synthetic catalogue (RecBole atomic files with item text)."""
    from h2rec.config import load_config
    from h2rec.data.synth import SynthConfig, generate, write_recbole

    cfg = _run(load_config, SynthConfig, config, overrides or [])
    data = _run(generate, cfg)
    paths = _run(write_recbole, data, out, name)
    console.print(
        f"wrote {data.interactions.height:,} interactions, {data.items.height:,} items, "
        f"{data.interactions['user_id'].n_unique():,} users -> {out}"
    )
    for p in paths.values():
        console.print(f"  {p}")


@app.command()
def prepare(
    overrides: Overrides = None,
    config: Annotated[
        str | None,
        typer.Option("--config", "-c", help="YAML file or built-in name (data/beauty, ...)"),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="prepared dataset folder")] = None,
    force: Annotated[bool, typer.Option(help="rebuild even if the cache is up to date")] = False,
) -> None:
    """Read a dataset in any supported format, preprocess, split and cache it."""
    from h2rec.cli.render import stats_table
    from h2rec.config import load_config
    from h2rec.data import PrepareConfig, compute_stats
    from h2rec.data import prepare as prepare_dataset

    cfg = _run(load_config, PrepareConfig, config, overrides or [])
    ds = _run(prepare_dataset, cfg, out, force=force)
    console.print(f"prepared [bold]{cfg.name}[/] -> {out or cfg.output_dir()}")
    for step in ds.manifest.get("preprocessing_trail", []):
        console.print(
            f"  {step['stage']}: {step['users']:,} users, {step['items']:,} items, {step['interactions']:,} interactions"
        )
    console.print(stats_table(compute_stats(ds)))


def _dataset_dir(dataset: str) -> Path:
    p = Path(dataset)
    return p if p.exists() else Path("artifacts/prepared") / dataset


@app.command()
def stats(
    dataset: DatasetArg,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the statistics as JSON")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="write a PNG of the popularity curve")
    ] = None,
    head_fraction: Annotated[float, typer.Option(help="head = this top fraction of items")] = 0.2,
) -> None:
    """Print users, items, sparsity, length/popularity distributions and head/tail shares."""
    from h2rec.cli.render import stats_table
    from h2rec.data import compute_stats, load_dataset
    from h2rec.data.stats import plot_popularity
    from h2rec.io import atomic_write_json

    ds = _run(load_dataset, _dataset_dir(dataset))
    s = compute_stats(ds, head_fraction=head_fraction)
    console.print(stats_table(s))
    if json_out is not None:
        atomic_write_json(json_out, s)
        console.print(f"statistics -> {json_out}")
    if plot is not None:
        plot_popularity(ds, plot, head_fraction)
        console.print(f"popularity curve -> {plot}")


@app.command()
def embed(
    dataset: DatasetArg,
    overrides: Overrides = None,
    config: Annotated[
        str,
        typer.Option(
            "--config", "-c", help="YAML file or built-in name (embed/minilm, embed/tfidf)"
        ),
    ] = "embed/minilm",
    name: Annotated[
        str | None,
        typer.Option(help="file name under <dataset>/embeddings/ (default: from the model)"),
    ] = None,
) -> None:
    """Embed every item's text; vectors go to <dataset>/embeddings/ (cached per text)."""
    from h2rec.config import load_config
    from h2rec.data import load_dataset
    from h2rec.text import EmbedConfig, embed_items, save_item_embeddings

    cfg = _run(load_config, EmbedConfig, config, overrides or [])
    ds = _run(load_dataset, _dataset_dir(dataset))
    result = _run(embed_items, ds, cfg)
    path = _run(save_item_embeddings, result, ds, name)
    info = result.info
    console.print(
        f"{ds.name}: {result.n_items:,} items -> {result.dim}-d vectors ({result.key})\n"
        f"  embedded now {info.get('n_embedded', 0):,}, from cache {info.get('n_from_cache', 0):,}, "
        f"{info.get('items_per_s', float('nan')):,.0f} items/s, {info.get('seconds', 0):.1f} s\n"
        f"  -> {path}"
    )


@app.command()
def tokenize(
    dataset: DatasetArg,
    overrides: Overrides = None,
    config: Annotated[
        str,
        typer.Option(
            "--config", "-c", help="YAML file or built-in name (tokenize/rqvae-4x128, ...)"
        ),
    ] = "tokenize/rqvae-4x128",
    embeddings: Annotated[
        str | None,
        typer.Option(help="embeddings name under <dataset>/embeddings/ (default: the only one)"),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="SIDs name under <dataset>/sids/ (default: e.g. rqvae-4x128)")
    ] = None,
    published: Annotated[
        bool, typer.Option(help="diagnose the dataset's own published codes instead of fitting")
    ] = False,
) -> None:
    """Quantise item embeddings into Semantic IDs (or diagnose published ones) and print diagnostics."""
    from h2rec.config import load_config
    from h2rec.data import load_dataset
    from h2rec.sid import TokenizerConfig, diagnose_published, render_diagnostics, tokenize_dataset

    ds = _run(load_dataset, _dataset_dir(dataset))
    if published:
        path, diag = _run(diagnose_published, ds, embeddings=embeddings)
        title = f"{ds.name}: published SIDs ({ds.code_source})"
    else:
        cfg = _run(load_config, TokenizerConfig, config, overrides or [])
        path, diag = _run(tokenize_dataset, ds, cfg, embeddings=embeddings, name=name)
        title = f"{ds.name}: {path.name}"
    console.print(render_diagnostics(diag, title=title))
    console.print(f"-> {path}")


@app.command()
def train(
    config: Annotated[
        str,
        typer.Argument(
            help="training config: YAML file or built-in name (train/sasrec-synth, ...)"
        ),
    ],
    overrides: Overrides = None,
    resume: Annotated[bool, typer.Option(help="continue the run from its last checkpoint")] = False,
    overwrite: Annotated[
        bool, typer.Option(help="discard an existing run of the same name")
    ] = False,
) -> None:
    """Train a model; writes a run folder (config, checkpoints, metrics, results).

    Under torchrun (`torchrun --nproc_per_node=N -m h2rec.cli.main train ...`) every process
    trains data-parallel; rank 0 writes the run folder and prints the results.
    """
    from h2rec.config import load_config
    from h2rec.evaluation import render_results
    from h2rec.training import TrainConfig, Trainer
    from h2rec.training import distributed as ddp

    world = ddp.env_world()
    if not world.main:  # one process reports; the others only warn
        logging.getLogger().setLevel(logging.WARNING)
        set_progress(False)
    cfg = _run(load_config, TrainConfig, config, overrides or [])
    try:
        trainer = _run(Trainer, cfg)
        out = _run(trainer.fit, resume=resume, overwrite=overwrite)
    finally:
        ddp.cleanup()
    if not world.main:
        return
    s = out["summary"]
    console.print(
        f"run {s['run']}: {s['epochs_run']} epochs, best epoch {s['best_epoch']}, "
        f"{s['train_seconds']:.0f} s training on {s['device']}"
    )
    for res in out["results"].values():  # one table per protocol: never mix sampled and full
        for table in render_results([res]):
            console.print(table)


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="a run folder written by h2rec train")],
    protocol: Annotated[
        str, typer.Option(help="comma-separated: full, uniN, popN")
    ] = "full,uni100",
    split: Annotated[str, typer.Option(help="valid or test")] = "test",
    tie: Annotated[str | None, typer.Option(help="pessimistic, optimistic, mean or random")] = None,
    exclude_history: Annotated[
        bool | None, typer.Option(help="full ranking: drop the user's own items")
    ] = None,
    exposure: Annotated[
        str,
        typer.Option(
            help="comma-separated k (e.g. 10,50): also report which items the top-k lists "
            "expose (head share, average popularity, coverage, Gini)"
        ),
    ] = "",
    revisits: Annotated[
        bool,
        typer.Option(
            "--revisits",
            help="also split each protocol's metrics into revisit targets (already in the "
            "user's history) and new targets",
        ),
    ] = False,
) -> None:
    """Re-evaluate a trained run's best weights under one or more protocols.

    Under torchrun every process ranks a share of the users and all get the gathered ranks (the
    same as one process computes); rank 0 alone writes the results and prints them.
    """
    from h2rec.evaluation import render_results
    from h2rec.training import distributed as ddp
    from h2rec.training import load_run

    world = ddp.env_world()
    if not world.main:
        logging.getLogger().setLevel(logging.WARNING)
        set_progress(False)
    results = []
    split_tables: list[Any] = []
    try:
        cfg, trainer = _run(load_run, run_dir)
        updates = {
            k: v
            for k, v in {"tie": tie, "exclude_history": exclude_history}.items()
            if v is not None
        }
        if updates:
            trainer.cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update=updates)})
        for p in [x.strip() for x in protocol.split(",") if x.strip()]:
            res = _run(trainer.evaluate, split, p)
            suffix = "".join(f"-{k}={v}" for k, v in sorted(updates.items()))
            if world.main:
                res.save(Path(run_dir) / "results" / f"{split}-{p}{suffix}.json")
                if revisits:
                    split_tables.append(
                        _revisits(trainer.evaluator(split, p), res, run_dir, f"{split}-{p}{suffix}")
                    )
            results.append(res)
        try:
            ks = [int(x) for x in exposure.split(",") if x.strip()]
        except ValueError:
            raise typer.BadParameter(f"--exposure: {exposure!r} is not a list of k") from None
        shown = _run(_exposure, trainer, split, ks, Path(run_dir)) if ks and world.main else None
    finally:
        ddp.cleanup()
    if not world.main:
        return
    for res in results:
        for table in render_results([res]):
            console.print(table)
    for table in split_tables:
        console.print(table)
    if shown is not None:
        console.print(shown)


def _revisits(ev: Any, res: Any, run_dir: Path, name: str) -> Any:
    """One result's metrics split into revisit and new targets, saved beside it; a table."""
    from rich.table import Table

    from h2rec.evaluation.revisits import breakdown_json, revisit_breakdown
    from h2rec.io import atomic_write_json

    out = revisit_breakdown(res.ranks, ev.revisits(), ev.groups, ks=ev.ks)
    atomic_write_json(Path(run_dir) / "results" / f"{name}-revisits.json", breakdown_json(out))
    table = Table(title=f"{name}: revisit targets (already in the history) and new targets")
    table.add_column("group")
    table.add_column("users", justify="right")
    table.add_column("revisits", justify="right")
    metric = f"NDCG@{10 if 10 in ev.ks else ev.ks[0]}"
    for part in ("all", "revisits", "new"):
        table.add_column(f"{part} {metric}", justify="right")
    for group, row in out.items():
        table.add_row(
            group,
            f"{row['n_users']:,.0f}",
            f"{row['revisit_share']:.1%}",
            *(f"{row[f'{part} {metric}']:.4f}" for part in ("all", "revisits", "new")),
        )
    return table


def _exposure(trainer: Any, split: str, ks: list[int], run_dir: Path) -> Any:
    """The top-k exposure figures of a loaded run, saved beside its results; a table to print."""
    from rich.table import Table

    from h2rec.io import atomic_write_json

    ev = trainer.evaluator(split, "full")
    figures = ev.exposure(trainer.score_fn, ks)
    suffix = "-exclude_history" if ev.exclude_history else ""
    atomic_write_json(run_dir / "results" / f"{split}-exposure{suffix}.json", figures)
    table = Table(title=f"{split}: what the top-k lists expose (full catalogue)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:.4f}" if value < 100 else f"{value:,.1f}")
    return table


@app.command()
def pipeline(
    overrides: Overrides = None,
    config: Annotated[
        str, typer.Option("--config", "-c", help="YAML file or built-in name")
    ] = "pipeline/default",
    force: Annotated[bool, typer.Option(help="rebuild every stage")] = False,
) -> None:
    """The main job on the embedded default: synthetic data -> prepare -> stats -> embed -> tokenize -> train -> evaluate."""
    from h2rec.cli.render import stats_table
    from h2rec.config import load_config
    from h2rec.pipeline import PipelineConfig, run_pipeline

    cfg = _run(load_config, PipelineConfig, config, overrides or [])
    result = _run(run_pipeline, cfg, force=force)
    console.print(f"raw synthetic data -> {result['raw']}")
    console.print(f"prepared dataset   -> {result['prepared']}")
    console.print(stats_table(result["stats"]))
    console.print(f"popularity curve   -> {result['popularity_png']}")
    if result.get("embeddings"):
        e = result["embeddings"]
        console.print(
            f"item embeddings    -> {e['name']} ({e['key']}, {e['dim']}-d, "
            f"{e.get('n_embedded', 0):,} embedded, {e.get('n_from_cache', 0):,} from cache)"
        )
    if result.get("sids"):
        from h2rec.sid import render_diagnostics

        console.print(
            render_diagnostics(
                result["sids"]["diagnostics"], title=f"semantic IDs -> {result['sids']['path']}"
            )
        )
    if result.get("train"):
        from h2rec.evaluation import render_results

        s = result["train"]["summary"]
        console.print(
            f"trained {s['model']} -> {s['run']} ({s['epochs_run']} epochs, best {s['best_epoch']}, "
            f"{s['train_seconds']:.0f} s)"
        )
        for res in result["train"]["results"].values():
            for table in render_results([res]):
                console.print(table)


experiment_app = typer.Typer(
    help="Declarative experiments: run a grid of cells resumably, report tables and figures.",
    no_args_is_help=True,
)
app.add_typer(experiment_app, name="experiment")

ExperimentArg = Annotated[
    str, typer.Argument(help="experiment YAML file or built-in name (experiments/table2, ...)")
]


def _cell_filter(datasets: list[str] | None, models: list[str] | None, seeds: list[int] | None):  # type: ignore[no-untyped-def]
    if not (datasets or models or seeds):
        return None
    return lambda c: (
        (not datasets or c.dataset in datasets)
        and (not models or c.model in models)
        and (not seeds or c.seed in seeds)
    )


@experiment_app.command("run")
def experiment_run(
    experiment: ExperimentArg,
    lane: Annotated[str, typer.Option(help="i/n: run every n-th cell starting at i")] = "0/1",
    threads: Annotated[int | None, typer.Option(help="torch CPU threads per cell")] = None,
    rerun_stale: Annotated[
        bool, typer.Option(help="rerun cells whose config changed since they finished")
    ] = False,
    dataset: Annotated[list[str] | None, typer.Option(help="only these datasets")] = None,
    model: Annotated[list[str] | None, typer.Option(help="only these model labels")] = None,
    seed: Annotated[list[int] | None, typer.Option(help="only these seeds")] = None,
    dry_run: Annotated[bool, typer.Option(help="print the plan and projection only")] = False,
    until: Annotated[
        str | None,
        typer.Option(
            help="ISO time (e.g. 2026-12-06T10:50, local unless it names a zone): start only "
            "cells whose expected duration (finished cells of the same model) ends before it"
        ),
    ] = None,
    calibrate: Annotated[
        bool,
        typer.Option(help="dry run that times a few steps of each unmeasured model (no training)"),
    ] = False,
) -> None:
    """Run an experiment's unfinished cells; finished ones are skipped, interrupted ones resume."""
    from h2rec.experiments import load_experiment, run, runner, status

    spec = _run(load_experiment, experiment)
    only = _cell_filter(dataset, model, seed)
    if dry_run or calibrate:
        sts = _run(status, spec, only)
        for st in sts:
            console.print(f"{st.state:>8}  {st.cell.key}")
        measured: dict[tuple[str, str], dict[str, float]] = {}
        if calibrate:
            for st in sts:
                key = (st.cell.dataset, st.cell.model)
                if st.state != "done" and key not in measured:
                    measured[key] = _run(runner.calibrate, st.cell, threads=threads)
                    console.print(
                        f"calibrated {key[0]} / {key[1]}: {measured[key]['epoch_s']:.0f} s per epoch"
                    )
        console.print(runner.describe(runner.projection(sts, measured)))
        return
    i, _, n = lane.partition("/")
    try:
        lane_t = (int(i), int(n or 1))
    except ValueError:
        err_console.print(f"[bold red]error:[/] --lane must be i/n, got {lane!r}")
        raise typer.Exit(2) from None
    deadline = None
    if until is not None:
        from datetime import datetime

        try:
            deadline = datetime.fromisoformat(until)
        except ValueError:
            err_console.print(f"[bold red]error:[/] --until must be an ISO time, got {until!r}")
            raise typer.Exit(2) from None
        if deadline.tzinfo is None:
            deadline = deadline.astimezone()  # local time
    from h2rec.training import distributed as ddp

    if not ddp.env_world().main:  # under torchrun one process reports; the others only warn
        logging.getLogger().setLevel(logging.WARNING)
        set_progress(False)
    try:
        _run(
            run,
            spec,
            lane=lane_t,
            threads=threads,
            rerun_stale=rerun_stale,
            only=only,
            echo=console.print,
            until=deadline,
        )
    finally:
        ddp.cleanup()


@experiment_app.command("status")
def experiment_status(
    experiments: Annotated[
        list[str],
        typer.Argument(help="experiment YAML files or built-in names (experiments/table2, ...)"),
    ],
) -> None:
    """Which cells are done, stale, running (in another process), partial (checkpoint) or
    still to run; then the finished cells' compute, a cell shared by experiments counted once."""
    from h2rec.experiments import load_experiment, status
    from h2rec.experiments.runner import compute_total

    specs = [_run(load_experiment, name) for name in experiments]
    read = [(spec, _run(status, spec)) for spec in specs]
    for name, (_, statuses) in zip(experiments, read, strict=True):
        if len(specs) > 1:
            console.print(f"[bold]{name}[/bold]")
        counts: dict[str, int] = {}
        for st in statuses:
            counts[st.state] = counts.get(st.state, 0) + 1
            who = ""
            if st.holder:
                who = f"  (pid {st.holder.get('pid')} on {st.holder.get('host')} since "
                who += f"{st.holder.get('started')})"
            console.print(f"{st.state:>8}  {st.cell.key}{who}")
        console.print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    total = _run(compute_total, read)
    devices = ", ".join(f"{s / 3600:.1f} h on {d}" for d, s in sorted(total["by_device"].items()))
    console.print(
        f"{total['cells']} finished cells (each counted once): "
        f"{total['seconds'] / 3600:.1f} h of training" + (f" ({devices})" if devices else "")
    )


@experiment_app.command("adopt")
def experiment_adopt(
    experiment: ExperimentArg,
    run_dirs: Annotated[list[Path], typer.Argument(help="finished run folders (h2rec train)")],
) -> None:
    """Record finished runs whose saved config equals a cell's as that cell (no retraining)."""
    from h2rec.experiments import load_experiment
    from h2rec.experiments.runner import adopt

    spec = _run(load_experiment, experiment)
    keys = _run(adopt, spec, run_dirs, echo=console.print)
    console.print(f"{len(keys)} cells adopted")


@experiment_app.command("report")
def experiment_report(
    experiment: ExperimentArg,
    out: Annotated[Path | None, typer.Option(help="folder for report.md, CSVs and PNGs")] = None,
    write: Annotated[
        Path | None,
        typer.Option(help="also replace this experiment's marked block in a Markdown file"),
    ] = None,
) -> None:
    """Aggregate finished cells: mean ± std over seeds, best/second marks, paired t-tests against
    the strongest baseline, Markdown + CSV tables and PNG figures."""
    from h2rec.experiments import load_experiment, report, status, write_block

    spec = _run(load_experiment, experiment)
    md = _run(report, spec, _run(status, spec), out)
    console.print(md, markup=False, highlight=False)
    if write is not None:
        write_block(write, spec.name, md)
        console.print(f"-> {write}")


@app.command()
def tune(
    config: Annotated[str, typer.Argument(help="search YAML file or built-in name (tune/...)")],
    overrides: Overrides = None,
    trials: Annotated[
        int | None, typer.Option(help="number of trials (default: the file's)")
    ] = None,
) -> None:
    """Optuna search over a config space, selecting on the VALIDATION metric only; resumable."""
    from h2rec.config import load_config
    from h2rec.experiments.tuning import TuneConfig
    from h2rec.experiments.tuning import tune as run_tune

    cfg = _run(load_config, TuneConfig, config, overrides or [])
    result = _run(run_tune, cfg, n_trials=trials, echo=console.print)
    console.print(
        f"best trial {result['best_trial']}: valid {cfg.metric} {result['best_value']:.4f} with "
        f"{result['best_params']} -> {result['out']}"
    )


if __name__ == "__main__":  # pragma: no cover
    app()
