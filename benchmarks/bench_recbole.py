"""h2rec against RecBole 1.2.1, side by side, on the same data, split and hyperparameters.

SASRec with full-softmax cross-entropy on the prepared Beauty split (hidden 64, FFN inner 256,
2 layers, 2 heads, dropout 0.5, max length 50, batch 256, Adam lr 1e-3, full-ranking evaluation,
validation metric NDCG@10, patience 20, seed 42, 2 threads). Each library runs in its own
subprocess, started from this small parent before any data is loaded, so each child's peak RSS is
its own. In one invocation it measures, per library:

- time to quality: the wall time of training + validation (checkpointing included, one-off setup
  excluded and reported separately) until the validation-selected model's TEST NDCG@10 (full
  ranking, all test users) first reaches 0.040. After each epoch whose validation improves, the
  new best model is evaluated on test; those test passes are timed apart and not counted.
- seconds per epoch (median of training; validation separately) and training sequences per epoch
  (h2rec: one per user, every position a target; RecBole: every prefix padded to 50).
- full-ranking evaluation of every test user with the selected weights (best of 2) and users/s.
- peak RSS (`ru_maxrss` of each child).

and prints the ratios beside the targets of issue 7: time to quality <= 1/5 of RecBole's,
full-ranking evaluation >= 7x faster and under 3 s, peak RSS <= 0.65x. Results go to
benchmarks/results/recbole-<date>[-quick].json (written atomically).

RecBole is installed into its own virtual environment, benchmarks/.venv-recbole (created on the
first run; never a project dependency), with the pins in RECBOLE_PINS: RecBole 1.2.1 needs
numpy<2 and setuptools<81 (ray imports pkg_resources), torch is the project's 2.13.0 (the local
CPU wheel through constraints.txt). The driver (benchmarks/recbole_driver.py) switches off the
autograd anomaly detection that importing RecBole's models turns on, and loads RecBole's
checkpoints with torch.load(weights_only=False).

The prepared split is exported to RecBole atomic files with a synthetic timestamp = the position
in the user's sequence, so RecBole's leave-one-out (`split: {LS: valid_and_test}, order: TO`)
reproduces it exactly; the driver checks every user's validation and test target and history
against h2rec's split before training.

Run (a full run takes more than an hour of a 2-core machine; nothing else should be running):
    python benchmarks/bench_recbole.py [--data artifacts/prepared/beauty] [--threads 2]
        [--recbole-budget-minutes 60] [--h2rec-budget-minutes 20] [--skip-recbole|--skip-h2rec]
    python benchmarks/bench_recbole.py --quick      # plumbing check: 1 epoch each, 5 min budget
Prepare the data first: h2rec prepare -c data/beauty
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from h2rec.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "benchmarks" / ".venv-recbole"
DRIVER = ROOT / "benchmarks" / "recbole_driver.py"
# pandas<3: RecBole 1.2.1 predates pandas 3 (the set that was tested resolved to pandas 2.3.3).
RECBOLE_PINS = [
    "recbole==1.2.1",
    "numpy==1.26.4",
    "ray==2.6.3",
    "setuptools<81",
    "pandas<3",
    "torch==2.13.0",
]
NDCG_TARGET = 0.040
TARGETS = {
    "time_to_quality_ratio_max": 0.2,  # h2rec / RecBole
    "eval_speedup_min": 7.0,  # RecBole seconds / h2rec seconds
    "eval_seconds_max": 3.0,  # h2rec, all test users
    "rss_ratio_max": 0.65,  # h2rec / RecBole
}
# RecBole 1.2.1 on this machine kind (../shared/notes/performance.md), for context only.
RECBOLE_ANCHOR = {
    "train_sequences": 131413,
    "epoch_s": 164.6,
    "valid_s": 21.8,
    "peak_rss_gb": 2.34,
    "best_valid_epoch": 11,
    "test_ndcg10_at_best_valid": 0.0403,
}
SASREC = {  # both libraries; RecBole's names in recbole_driver.py
    "hidden_size": 64,
    "inner_size": 256,
    "n_layers": 2,
    "n_heads": 2,
    "dropout": 0.5,
    "max_len": 50,
    "batch_size": 256,
    "lr": 1e-3,
    "loss": "CE (full softmax)",
    "valid_metric": "NDCG@10 (full ranking)",
}


# ---- the RecBole environment ----------------------------------------------------------------
def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_recbole_venv() -> float:
    """Create benchmarks/.venv-recbole with the pins unless it already has exactly them."""
    marker = VENV / "h2rec-bench-pins.txt"
    wanted = "\n".join(RECBOLE_PINS) + "\n"
    if venv_python().is_file() and marker.is_file() and marker.read_text() == wanted:
        return 0.0
    t0 = time.perf_counter()
    print(
        f"installing RecBole into {VENV.relative_to(ROOT)} ({' '.join(RECBOLE_PINS)})", flush=True
    )
    if not venv_python().is_file():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    cmd = [str(venv_python()), "-m", "pip", "install", "-q"]
    constraints = ROOT / "constraints.txt"
    if constraints.is_file():  # torch==2.13.0: the local CPU wheel, not the CUDA build
        cmd += ["-c", str(constraints)]
    subprocess.run([*cmd, *RECBOLE_PINS], check=True)
    marker.write_text(wanted)
    return time.perf_counter() - t0


# ---- child: export the prepared split as RecBole atomic files ---------------------------------
def export_worker(data: str, work: Path) -> dict[str, Any]:
    import numpy as np

    from h2rec.data import load_dataset
    from h2rec.data.dataset import TEST, TRAIN, VALID

    ds = load_dataset(data)
    off, items, split = ds.offsets, ds.inter_item, ds.inter_split
    out_dir = work / "data" / "beauty"
    out_dir.mkdir(parents=True, exist_ok=True)
    inter_lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    expected = []
    for u in range(1, ds.n_users + 1):
        lo, hi = int(off[u]), int(off[u + 1])
        seq, sp = items[lo:hi], split[lo:hi]
        n = hi - lo
        # RecBole's leave-one-out takes the last two interactions of each user: the stored split
        # must be exactly that for the export to reproduce it.
        want = np.full(n, TRAIN, dtype=sp.dtype)
        if n >= 3:
            want[-2], want[-1] = VALID, TEST
        if not np.array_equal(sp, want) or n < 3:
            raise SystemExit(
                f"user {u}: the stored split is not leave-one-out with >= 3 interactions; "
                "RecBole's LS split cannot reproduce it"
            )
        inter_lines += [f"{u}\t{int(i)}\t{t}" for t, i in enumerate(seq)]
        expected.append(f"{u}\t{int(seq[-2])}\t{int(seq[-1])}\t{' '.join(map(str, seq[:-1]))}")
    (out_dir / "beauty.inter").write_text("\n".join(inter_lines) + "\n")
    (work / "expected.tsv").write_text("\n".join(expected) + "\n")
    return {
        "dataset": ds.name,
        "content_hash": ds.content_hash(),
        **ds.counts(),
        "test_users": int((split == TEST).sum()),
    }


# ---- child: h2rec ---------------------------------------------------------------------------
def h2rec_worker(spec: dict[str, Any]) -> dict[str, Any]:
    t_start = time.perf_counter()
    import torch

    import h2rec
    from h2rec.config import load_config
    from h2rec.data import load_dataset
    from h2rec.training import TrainConfig, Trainer
    from h2rec.training.checkpoint import load_weights

    torch.set_num_threads(spec["threads"])
    t_import = time.perf_counter() - t_start

    t0 = time.perf_counter()
    ds = load_dataset(spec["data"])
    t_data = time.perf_counter() - t0
    settings = [
        f"threads={spec['threads']}",
        f"seed={spec['seed']}",
        f"model.hidden_size={SASREC['hidden_size']}",
        f"model.inner_size={SASREC['inner_size']}",
        f"model.n_layers={SASREC['n_layers']}",
        f"model.n_heads={SASREC['n_heads']}",
        f"model.dropout={SASREC['dropout']}",
        f"max_len={SASREC['max_len']}",
        f"batch_size={SASREC['batch_size']}",
        f"optim.lr={SASREC['lr']}",
        "objective.loss=ce",
        "eval.valid_protocol=full",
        "eval.metric=NDCG@10",
        f"eval.patience={spec['patience']}",
        *spec["overrides"],
    ]
    run = [f"data={spec['data']}", f"runs_dir={spec['work']}/h2rec-runs", "name=bench"]
    t0 = time.perf_counter()
    cfg = load_config(TrainConfig, "train/sasrec-beauty-ce", [*run, *settings])
    tr = Trainer(cfg, ds)
    t_model = time.perf_counter() - t0

    # Trainer.fit's own loop (training, validation, best-weights file, resumable checkpoint per
    # epoch); after each epoch whose validation improved, the new best model is tested apart.
    metrics = tr.run_dir / "metrics.jsonl"
    budget, target = spec["budget_seconds"], spec["target"]
    epochs: list[dict[str, Any]] = []
    best_test: dict[str, Any] | None = None
    elapsed = 0.0
    reached_at: float | None = None
    reached_epoch: int | None = None
    stop_reason = "epochs"
    t_epoch = time.perf_counter()

    def on_epoch(state: dict[str, Any]) -> bool:
        nonlocal best_test, t_epoch, elapsed, reached_at, reached_epoch, stop_reason
        wall_s = time.perf_counter() - t_epoch
        elapsed += wall_s
        m = json.loads(metrics.read_text().splitlines()[-1])
        improved = state["best_epoch"] == state["epoch"]
        row = {
            "epoch": state["epoch"],
            "loss": m["loss"],
            "train_s": m["train_seconds"],
            "valid_s": m.get("valid_seconds"),
            "wall_s": wall_s,
            "cum_wall_s": elapsed,
            "valid_ndcg10": m["valid"]["NDCG@10"],
            "valid_hr10": m["valid"]["HR@10"],
            "improved": improved,
        }
        if improved:  # the current weights are the validation-selected model (not timed)
            t2 = time.perf_counter()
            res = tr.evaluate("test", "full")
            best_test = {
                "epoch": state["epoch"],
                "ndcg10": res.overall["NDCG@10"],
                "hr10": res.overall["HR@10"],
                "seconds": time.perf_counter() - t2,
            }
        row["best_test"] = best_test
        epochs.append(row)
        print(
            f"[h2rec] epoch {row['epoch']}  train {row['train_s']:.1f}s  valid {row['valid_s']:.1f}s"
            f"  valid NDCG@10 {row['valid_ndcg10']:.4f}  test NDCG@10 of best "
            f"{best_test['ndcg10'] if best_test else float('nan'):.4f}",
            file=sys.stderr,
            flush=True,
        )
        stop = False
        if reached_at is None and best_test is not None and best_test["ndcg10"] >= target:
            reached_at, reached_epoch = elapsed, state["epoch"]
            if spec["stop_at_target"]:
                stop_reason, stop = "target reached", True
        if not stop and state["stopped"]:
            stop_reason = "early stopping"
        elif not stop and state["epoch"] >= spec["max_epochs"]:
            stop_reason, stop = "epochs", True
        elif not stop and elapsed + statistics.median(e["wall_s"] for e in epochs) > budget:
            stop_reason, stop = "budget", True
        t_epoch = time.perf_counter()  # the next epoch starts now: the test pass is not counted
        return stop

    tr.fit(overwrite=True, on_epoch=on_epoch)

    eval_times: list[float] = []
    final = None
    n_test = None
    best = tr.run_dir / "best.safetensors"
    if best.is_file():
        load_weights(best, tr.model)
        for _ in range(spec["eval_repeats"]):
            t0 = time.perf_counter()
            final = tr.evaluate("test", "full")
            eval_times.append(time.perf_counter() - t0)
        n_test = final.stamp.n_users
    else:
        n_test = tr.evaluator("test", "full").n_users
    return {
        "library": "h2rec",
        "version": h2rec.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "config": "train/sasrec-beauty-ce",
        "overrides": settings,
        "setup_s": {
            "imports": t_import,
            "dataset": t_data,
            "model": t_model,
            "total": t_import + t_data + t_model,
        },
        "train_sequences": len(tr.seqs.users),
        "test_users": n_test,
        "epochs": epochs,
        "stop_reason": stop_reason,
        "time_to_quality_s": reached_at,
        "reached_epoch": reached_epoch,
        "eval_test_full": {
            "seconds": eval_times,
            "best_s": min(eval_times) if eval_times else None,
            "users": n_test,
            "users_per_s": n_test / min(eval_times) if eval_times else None,
        },
        "final_test": None
        if final is None
        else {"ndcg10": final.overall["NDCG@10"], "hr10": final.overall["HR@10"]},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# ---- the parent -----------------------------------------------------------------------------
def run_child(cmd: list[str], out: Path, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run a child that writes its result to `out`; its output streams to ours."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not out.is_file():
        return {"error": f"exit status {proc.returncode}", "process_wall_s": wall}
    result = json.loads(out.read_text())
    result["process_wall_s"] = wall
    return result


def summarise(r: dict[str, Any] | None) -> dict[str, Any] | None:
    if not r or "error" in r:
        return None
    eps = r["epochs"]
    return {
        "epochs": len(eps),
        "epoch_train_s": statistics.median(e["train_s"] for e in eps) if eps else None,
        "epoch_valid_s": statistics.median(e["valid_s"] for e in eps) if eps else None,
        "elapsed_s": eps[-1]["cum_wall_s"] if eps else 0.0,
        "best_valid_ndcg10": max((e["valid_ndcg10"] for e in eps), default=None),
    }


def ratios(h: dict[str, Any] | None, r: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not h or not r or "error" in h or "error" in r:
        return out
    sh, sr = summarise(h), summarise(r)
    assert sh is not None and sr is not None
    th, trb = h["time_to_quality_s"], r["time_to_quality_s"]
    if th is not None and trb is not None:
        out["time_to_quality"] = {"value": th / trb, "bound": "="}
    elif th is not None and sr["elapsed_s"] > 0:  # RecBole had not reached it when it stopped
        out["time_to_quality"] = {"value": th / sr["elapsed_s"], "bound": "<"}
    elif trb is not None and sh["elapsed_s"] > 0:
        out["time_to_quality"] = {"value": sh["elapsed_s"] / trb, "bound": ">"}
    eh, er = h["eval_test_full"]["best_s"], r["eval_test_full"]["best_s"]
    if eh and er:
        out["eval_speedup"] = er / eh
    out["rss"] = h["peak_rss_mb"] / r["peak_rss_mb"]
    if sh["epoch_train_s"] and sr["epoch_train_s"]:
        out["epoch_speedup"] = sr["epoch_train_s"] / sh["epoch_train_s"]
    return out


def fmt(v: Any, spec: str = ".1f") -> str:
    if v is None:
        return "-"
    return format(v, spec) if isinstance(v, (int, float)) else str(v)


def ttq_text(r: dict[str, Any] | None) -> str:
    if not r or "error" in r:
        return "-"
    if r["time_to_quality_s"] is not None:
        return f"{r['time_to_quality_s']:.1f} (ep {r['reached_epoch']})"
    s = summarise(r)
    assert s is not None
    return f"not reached ({r['stop_reason']}, {s['elapsed_s']:.0f} s)"


def print_table(res: dict[str, Any]) -> None:
    h, r = res["h2rec"], res["recbole"]
    sh, sr = summarise(h), summarise(r)
    q = res["ratios"]
    ok = res["targets_met"]

    def g(d: dict[str, Any] | None, *keys: str) -> Any:
        for k in keys:
            if not isinstance(d, dict):
                return None
            d = d.get(k)
        return d

    def mark(name: str) -> str:
        if name not in ok:
            return ""
        return {True: "  met", False: "  NOT met", None: "  undetermined"}[ok[name]]

    tq = q.get("time_to_quality")
    tq_s = "-" if tq is None else f"{'' if tq['bound'] == '=' else tq['bound']}{tq['value']:.3f}"
    rows = [
        ("setup s (imports, data, model)", fmt(g(h, "setup_s", "total")), fmt(g(r, "setup_s", "total")), "", ""),
        ("training sequences / epoch", fmt(g(h, "train_sequences"), ","), fmt(g(r, "train_sequences"), ","), "", ""),
        ("epochs run", fmt(g(sh, "epochs"), "d"), fmt(g(sr, "epochs"), "d"), "", ""),
        ("epoch training s (median)", fmt(g(sh, "epoch_train_s")), fmt(g(sr, "epoch_train_s")), fmt(q.get("epoch_speedup"), ".2f") + "x faster" if q.get("epoch_speedup") else "-", ""),
        ("validation pass s (median)", fmt(g(sh, "epoch_valid_s")), fmt(g(sr, "epoch_valid_s")), "", ""),
        ("best valid NDCG@10", fmt(g(sh, "best_valid_ndcg10"), ".4f"), fmt(g(sr, "best_valid_ndcg10"), ".4f"), "", ""),
        (f"time to test NDCG@10 >= {NDCG_TARGET:.3f} s", ttq_text(h), ttq_text(r), tq_s, f"<= {TARGETS['time_to_quality_ratio_max']}" + mark("time_to_quality")),
        ("test NDCG@10 of selected model", fmt(g(h, "final_test", "ndcg10"), ".4f"), fmt(g(r, "final_test", "ndcg10"), ".4f"), "", ""),
        ("full-ranking test eval s (best of 2)", fmt(g(h, "eval_test_full", "best_s"), ".2f"), fmt(g(r, "eval_test_full", "best_s"), ".2f"), fmt(q.get("eval_speedup"), ".1f") + "x faster" if q.get("eval_speedup") else "-", f">= {TARGETS['eval_speedup_min']:.0f}x{mark('eval_speedup')}; h2rec < {TARGETS['eval_seconds_max']:.0f} s{mark('eval_seconds')}"),
        ("  users/s", fmt(g(h, "eval_test_full", "users_per_s"), ",.0f"), fmt(g(r, "eval_test_full", "users_per_s"), ",.0f"), "", ""),
        ("peak RSS MB", fmt(g(h, "peak_rss_mb"), ",.0f"), fmt(g(r, "peak_rss_mb"), ",.0f"), fmt(q.get("rss"), ".2f") + "x" if q.get("rss") else "-", f"<= {TARGETS['rss_ratio_max']}x" + mark("rss")),
    ]  # fmt: skip
    head = ("", "h2rec", "RecBole 1.2.1", "ratio", "target")
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(5)]
    line = "  ".join(f"{{:<{widths[0]}}}" if i == 0 else f"{{:>{widths[i]}}}" for i in range(4))
    print(line.format(*head[:4]) + "  " + head[4])
    for row in rows:
        print(line.format(*row[:4]) + "  " + row[4])


def targets_met(res: dict[str, Any]) -> dict[str, bool | None]:
    """True/False per target; None where a bound cannot decide (a library did not reach NDCG)."""
    q, h = res["ratios"], res["h2rec"]
    met: dict[str, bool | None] = {}
    tq = q.get("time_to_quality")
    if tq is not None:
        within = tq["value"] <= TARGETS["time_to_quality_ratio_max"]
        # "<": RecBole had not reached it (true ratio smaller); ">": h2rec had not (larger).
        decided = tq["bound"] == "=" or (tq["bound"] == "<") == within
        met["time_to_quality"] = within if decided else None
    if "eval_speedup" in q:
        met["eval_speedup"] = q["eval_speedup"] >= TARGETS["eval_speedup_min"]
    if h and "error" not in h and h["eval_test_full"]["best_s"] is not None:
        met["eval_seconds"] = h["eval_test_full"]["best_s"] < TARGETS["eval_seconds_max"]
    if "rss" in q:
        met["rss"] = q["rss"] <= TARGETS["rss_ratio_max"]
    return met


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default="artifacts/prepared/beauty", help="prepared dataset")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--quick", action="store_true", help="1 epoch each, 5 min budget (plumbing)")
    ap.add_argument("--skip-recbole", action="store_true")
    ap.add_argument("--skip-h2rec", action="store_true")
    ap.add_argument("--budget-minutes", type=float, default=None, help="both libraries' cap")
    ap.add_argument("--recbole-budget-minutes", type=float, default=60.0)
    ap.add_argument("--h2rec-budget-minutes", type=float, default=20.0)
    ap.add_argument("--max-epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=20, help="early stopping, both libraries")
    ap.add_argument(
        "--continue-after-target", action="store_true", help="train on until budget or stop"
    )
    ap.add_argument("--h2rec-set", action="append", default=[], metavar="K=V", help="override")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/...)")
    ap.add_argument("--work-dir", default=None, help="scratch folder (default: a temp folder)")
    ap.add_argument("--keep-work", action="store_true", help="keep the temp scratch folder")
    ap.add_argument("--export-worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--h2rec-worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.export_worker:  # child
        spec = json.loads(Path(args.export_worker).read_text())
        out = export_worker(spec["data"], Path(spec["work"]))
        Path(spec["out"]).write_text(json.dumps(out))
        return 0
    if args.h2rec_worker:  # child
        spec = json.loads(Path(args.h2rec_worker).read_text())
        Path(spec["out"]).write_text(json.dumps(h2rec_worker(spec), indent=2))
        return 0

    data = (ROOT / args.data).resolve() if not Path(args.data).is_absolute() else Path(args.data)
    if not (data / "manifest.json").is_file():
        print(f"{data}: no prepared dataset; run `h2rec prepare -c data/beauty`", file=sys.stderr)
        return 2
    if args.quick:
        max_epochs, budgets = 1, {"h2rec": 5.0, "recbole": 5.0}
    else:
        max_epochs = args.max_epochs
        budgets = {"h2rec": args.h2rec_budget_minutes, "recbole": args.recbole_budget_minutes}
    if args.budget_minutes is not None:
        budgets = dict.fromkeys(budgets, args.budget_minutes)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="h2rec-bench-recbole-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **dict.fromkeys(["OMP_NUM_THREADS", "MKL_NUM_THREADS"], str(args.threads))}
    parent_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    res: dict[str, Any] = {
        "benchmark": "bench_recbole",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "git_commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "git_dirty": bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=ROOT,
                capture_output=True,
                text=True,
            ).stdout.strip()
        ),
        "data": str(data),
        "threads": args.threads,
        "seed": args.seed,
        "hyperparameters": SASREC,
        "target_ndcg10": NDCG_TARGET,
        "budgets_minutes": budgets,
        "max_epochs": max_epochs,
        "targets": TARGETS,
        "recbole_anchor": RECBOLE_ANCHOR,
        "recbole_pins": RECBOLE_PINS,
        "parent_rss_mb_before_children": parent_rss_mb,
        "work_dir": str(work),
        "h2rec": None,
        "recbole": None,
    }
    print(f"scratch folder: {work}", flush=True)

    if not args.skip_recbole:
        res["recbole_install_s"] = ensure_recbole_venv()

    t0 = time.perf_counter()
    export_spec = {"data": str(data), "work": str(work), "out": str(work / "export.json")}
    (work / "export-spec.json").write_text(json.dumps(export_spec))
    subprocess.run(
        [sys.executable, __file__, "--export-worker", str(work / "export-spec.json")],
        cwd=ROOT,
        env=env,
        check=True,
    )
    res["export"] = json.loads((work / "export.json").read_text())
    res["export"]["seconds"] = time.perf_counter() - t0
    print(
        f"exported {res['export']['interactions']:,} interactions of "
        f"{res['export']['users']:,} users to RecBole atomic files "
        f"({res['export']['seconds']:.1f} s)",
        flush=True,
    )

    common = {
        "work": str(work),
        "data": str(data),
        "threads": args.threads,
        "seed": args.seed,
        "max_epochs": max_epochs,
        "patience": args.patience,
        "target": NDCG_TARGET,
        "stop_at_target": not args.continue_after_target,
        "eval_repeats": 2,
        "max_len": SASREC["max_len"],
        "epochs": 200,
    }
    if not args.skip_h2rec:
        spec = {
            **common,
            "budget_seconds": budgets["h2rec"] * 60,
            "overrides": args.h2rec_set,
            "out": str(work / "h2rec.json"),
        }
        (work / "h2rec-spec.json").write_text(json.dumps(spec))
        print(f"h2rec: up to {max_epochs} epochs, {budgets['h2rec']:g} min budget", flush=True)
        res["h2rec"] = run_child(
            [sys.executable, __file__, "--h2rec-worker", str(work / "h2rec-spec.json")],
            Path(spec["out"]),
            env,
            ROOT,
        )
    if not args.skip_recbole:
        spec = {
            **common,
            "budget_seconds": budgets["recbole"] * 60,
            "out": str(work / "recbole.json"),
        }
        (work / "recbole-spec.json").write_text(json.dumps(spec))
        print(f"RecBole: up to {max_epochs} epochs, {budgets['recbole']:g} min budget", flush=True)
        res["recbole"] = run_child(
            [str(venv_python()), str(DRIVER), str(work / "recbole-spec.json")],
            Path(spec["out"]),
            env,
            work,  # RecBole writes log/ and log_tensorboard/ into its working folder
        )

    # The same users on both sides.
    counts = {"export": res["export"]["test_users"]}
    for lib in ("h2rec", "recbole"):
        if res[lib] and "error" not in res[lib]:
            counts[lib] = res[lib]["test_users"]
    res["test_users"] = counts
    res["test_users_match"] = len(set(counts.values())) == 1
    res["ratios"] = ratios(res["h2rec"], res["recbole"])
    res["targets_met"] = targets_met(res)

    stamp = dt.date.today().isoformat() + ("-quick" if args.quick else "")
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"recbole-{stamp}.json"
    atomic_write_json(out, res)

    print()
    print(
        f"SASRec CE on {res['export']['dataset']} (hidden 64, inner 256, 2 layers, 2 heads, "
        f"dropout 0.5, len 50, batch 256, Adam 1e-3), {args.threads} threads"
        + ("  [QUICK: plumbing only, 1 epoch each]" if args.quick else "")
    )
    users = ", ".join(f"{k} {v:,}" for k, v in counts.items())
    print(
        f"test users: {users} -> {'match' if res['test_users_match'] else 'MISMATCH'}"
        + (
            f"; RecBole split check: {'identical targets and histories' if res['recbole']['split_check']['ok'] else 'DIFFERENT'}"
            if res["recbole"] and "error" not in res["recbole"]
            else ""
        )
    )
    print_table(res)
    a = RECBOLE_ANCHOR
    print(
        f"RecBole anchor (performance.md, not re-run): {a['train_sequences']:,} sequences, "
        f"epoch {a['epoch_s']} s, validation {a['valid_s']} s, peak RSS {a['peak_rss_gb']} GB, "
        f"test NDCG@10 {a['test_ndcg10_at_best_valid']} at best validation (epoch {a['best_valid_epoch']})"
    )
    for lib in ("h2rec", "recbole"):
        if res[lib] and "error" in res[lib]:
            print(f"{lib} FAILED: {res[lib]['error']}")
    print(f"results: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    if args.work_dir is None and not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    failed = any(res[lib] and "error" in res[lib] for lib in ("h2rec", "recbole"))
    return 1 if failed or not res["test_users_match"] else 0


if __name__ == "__main__":
    sys.exit(main())
