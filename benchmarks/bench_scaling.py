"""Scaling curves (issue 7, section 3): time and memory of SASRec and H2Rec against data size.

Grid: catalogues of 10k, 100k and 1M items x 100k, 1M and 10M interactions, made by the
project's own synthetic generator (`h2rec.data.synth`, Zipf-Mandelbrot popularity and
taxonomy-driven sequences; 1M items x 10M interactions takes about 40 s and 2.4 GB). A cell with
fewer than 5 interactions per item is skipped: the generator gives every item at least one
interaction from users of at least 5, so 1M items cannot be spread over 100k or 1M interactions.

Each cell goes through the real stages, every one in its own subprocess started from this small
parent (so each `ru_maxrss` is that stage's own):

* data: `generate` -> `write_recbole` -> `prepare` (the `data/synth` config with k-core off, so
  the catalogue keeps its size) -> item vectors -> `tokenize_dataset` (RQ-KMeans 4x128, faiss)
  -> the stored uni100 candidate file of the test split (`load_or_draw_negatives`). Item vectors
  are synthetic (64-d: subcategory centroid + product-type centroid + noise, L2-normalised)
  instead of MiniLM, which would take hours for 1M texts on a 2-core CPU; they are saved with
  `save_item_embeddings`, so SIDs, H2Rec's PCA init and every stamp check run as usual.
* one subprocess per model: `load_dataset` -> `Trainer` (model, batches, H2Rec's positive sets)
  -> training steps exactly as `Trainer._train_epoch` runs them -> full-ranking evaluation of the
  test users through the trainer's `Evaluator` and `score_fn` -> uni100 evaluation from the
  stored candidates.

Models: `sasrec` and `h2rec` (every H2Rec component at its default: fusion network, cross
attention, L_CA with code and co-occurrence positives, L_MSG), both trained with H2Rec's loss
(Eq. 10's BPR, one negative), d = 64, 2 layers, batch 256, max length 50. `sasrec-ce` (full
softmax, the `train/sasrec-synth` loss) can be added with `--models`; its logits are
[targets in a batch, n_items], so the memory guard skips it on large catalogues.

What is measured, and how it is extrapolated (both the measured and the extrapolated figures
are printed and stored):

* training: `--steps` steps after `--warmup` untimed ones, batch building included; an epoch
  is extrapolated by padded positions (sum over the epoch's batches of rows x width, which is
  what a step costs), and also given by steps. When the epoch has at most warmup + steps
  batches, the whole epoch is timed instead (the warm-up then runs on epoch 1's batches).
  Each step's time is split into batch building, forward+backward, and clip + optimiser step.
* evaluation: all test users when there are at most `--eval-users`, else a seeded random
  sample of that many users, in the evaluator's own batches (sorted by history length), timed
  with the evaluator's batch ranking and extrapolated by users; one-off costs (the first
  chunk, which builds H2Rec's cached scoring table, and the [users, 1 + N] candidate matrix
  the evaluator concatenates on every ranking call) are counted once. The evaluation batch is the
  project's 1024 users, capped so one batch's score matrix holds at most `--eval-score-budget`
  floats (1M items: 268 users; the cap and the batch used are recorded per cell).
* H2Rec's positive sets: build time (inside `Trainer`), co-occurrence pairs, set sizes and the
  bytes they hold (torch buffers and numpy arrays separately).
* candidate file: bytes of the stored uni100 file and bytes per test user.
* peak RSS: `ru_maxrss` of each subprocess, and its high-water mark after each phase.

Before each subprocess the peak memory is projected from a rough linear model (printed); a
stage projected above `--max-gb` is skipped and recorded as such. Results are written after
every stage (atomically) to `--out`; a re-run skips what is already there, so an interrupted
grid resumes. The log-log slope of time and memory against interactions is fitted per model and
catalogue size (about 1 = linear), and of time against catalogue size at a fixed number of
interactions.

Run: python benchmarks/bench_scaling.py [--quick] [--threads 1] [--models sasrec h2rec]
     [--out benchmarks/results/scaling-DATE.json] [--plot FILE.png] [--keep-data]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from h2rec.io import atomic_write_bytes, atomic_write_json

ITEMS = (10_000, 100_000, 1_000_000)
INTERACTIONS = (100_000, 1_000_000, 10_000_000)
QUICK_ITEMS = (1_000, 3_000)
QUICK_INTERACTIONS = (10_000, 30_000)
MIN_PER_ITEM = 5  # interactions per item below which a cell is not generated

EMBEDDINGS = "synthetic-64"  # name of the synthetic item vectors in <dataset>/embeddings
EMB_DIM = 64
SIDS = "rqkmeans-4x128"  # name of the SIDs in <dataset>/sids (config tokenize/rqkmeans-4x128)
TRAIN_CONFIG = "train/h2rec-synth"  # objective BPR (Eq. 10), 1 negative, batch 256, max_len 50
MODELS: dict[str, dict[str, Any]] = {
    "sasrec": {"model": {"name": "sasrec"}, "overrides": []},
    "h2rec": {
        "model": {"name": "h2rec", "sids": SIDS, "text_embeddings": EMBEDDINGS},
        "overrides": [],
    },
    "sasrec-ce": {"model": {"name": "sasrec"}, "overrides": ["objective.loss=ce"]},
}
DEFAULT_MODELS = ("sasrec", "h2rec")
PROJECT_EVAL_BATCH = 256  # EvalSection.batch_size default (h2rec.training.config)


def rss_mb() -> float:
    """High-water mark of this process's resident memory, MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cell_key(items: int, interactions: int) -> str:
    return f"{items}x{interactions}"


def eval_batch(n_items: int, budget: int) -> int:
    """The project's evaluation batch, capped so one batch's scores hold <= budget floats."""
    return max(1, min(PROJECT_EVAL_BATCH, budget // (n_items + 1)))


# ---- memory projection ------------------------------------------------------------------------
def projected_gb(stage: str, items: int, inter: int, batch: int) -> float:
    """A rough upper estimate of a stage's peak RSS, GB (checked against this benchmark's runs).

    data: generator (user x 50 histories, polars frames of string ids), prepare (object arrays
    of ids, item texts), vectors, SIDs and the candidate draw. Models: what stays for the whole
    run (interaction arrays and training keys; the item table, its gradient and two Adam
    moments, 4 x d floats per item; H2Rec also its positive sets, about 3 directed
    co-occurrence keys per interaction held in three int64 arrays, and its cached (L + 1) d
    scoring table), plus the larger of the two evaluations, which do not overlap: full ranking
    (one batch of scores and its comparison mask; the examples' [users, 50] int64 temporaries)
    or uni100 (the stored [users, 100] negatives, int64 in files drawn before int32 storage).
    """
    users = inter / 10.8
    if stage == "data":
        return 0.5 + inter * 400e-9 + items * 2.5e-6
    common = 0.8 + inter * 100e-9 + items * 4 * EMB_DIM * 4e-9
    if stage == "h2rec":
        common += 0.3 + inter * 3 * 8 * 3e-9 + items * 5 * EMB_DIM * 4e-9
    if stage == "sasrec-ce":  # logits, softmax and gradient of the widest batch's targets
        common += 256 * 50 * items * 4 * 3e-9
    full = batch * (items + 1) * 9e-9 + users * 50 * 8 * 3e-9
    uni100 = users * 101 * 8 * 3e-9
    return common + max(full, uni100)


# ---- data stage (subprocess) ------------------------------------------------------------------
def synthetic_vectors(ds: Any, dim: int, seed: int = 0) -> Any:
    """[n_items + 1, dim] float32, row 0 zeros: subcategory centroid + 0.6 x product-type centroid
    + 0.5 x noise, L2-normalised, so item vectors (and the SIDs made from them) follow the same
    taxonomy as co-consumption, as real text embeddings do."""
    import numpy as np

    rng = np.random.default_rng(seed)
    _, sub = np.unique(ds.items["subcategory"].to_numpy(), return_inverse=True)
    _, ptype = np.unique(ds.items["product_type"].to_numpy(), return_inverse=True)
    n = ds.n_items
    sub_c = rng.standard_normal((int(sub.max()) + 1, dim), dtype=np.float32)
    pt_c = rng.standard_normal((int(ptype.max()) + 1, dim), dtype=np.float32)
    x = sub_c[sub.reshape(-1)]
    x += 0.6 * pt_c[ptype.reshape(-1)]
    x += 0.5 * rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    out = np.zeros((n + 1, dim), dtype=np.float32)
    out[1:] = x
    return out


def data_worker(items: int, inter: int, work: Path, threads: int) -> dict[str, Any]:
    import faiss
    import numpy as np

    from h2rec.config import load_config
    from h2rec.data import PrepareConfig, prepare
    from h2rec.data.synth import SynthConfig, _seq_lengths, generate, write_recbole
    from h2rec.evaluation.candidates import load_or_draw_negatives
    from h2rec.sid import PrefixIndex, TokenizerConfig, tokenize_dataset
    from h2rec.text import ItemEmbeddings, save_item_embeddings
    from h2rec.text.base import texts_sha256

    faiss.omp_set_num_threads(threads)
    out: dict[str, Any] = {"rss_after_mb": {}}
    seconds: dict[str, float] = {}

    def phase(name: str, t0: float) -> None:
        seconds[name] = time.perf_counter() - t0
        out["rss_after_mb"][name] = rss_mb()

    # Users: the generator's mean sequence length (after its cap at 50) from a probe draw.
    probe = SynthConfig(n_users=200_000, n_items=1_000)
    mean_len = float(_seq_lengths(probe, np.random.default_rng(0)).mean())
    n_users = max(1, round(inter / mean_len))
    cfg = SynthConfig(seed=0, n_users=n_users, n_items=items)
    t0 = time.perf_counter()
    synth = generate(cfg)
    phase("generate", t0)
    raw_dir, prep_dir = work / "raw", work / "prepared"
    t0 = time.perf_counter()
    paths = write_recbole(synth, raw_dir, name="synth")
    phase("write_recbole", t0)
    out["raw_bytes"] = sum(p.stat().st_size for p in paths.values())
    del synth
    t0 = time.perf_counter()
    pcfg = load_config(
        PrepareConfig,
        "data/synth",
        [
            f"source.path={raw_dir}",
            f"output={prep_dir}",
            "preprocess.user_core=0",
            "preprocess.item_core=0",
        ],
    )
    ds = prepare(pcfg, force=True)
    phase("prepare", t0)
    shutil.rmtree(raw_dir, ignore_errors=True)
    out["counts"] = ds.counts()
    out["prepared_bytes"] = sum(f.stat().st_size for f in prep_dir.glob("*.parquet"))

    t0 = time.perf_counter()
    vectors = synthetic_vectors(ds, EMB_DIM)
    emb = ItemEmbeddings(
        vectors=vectors,
        key=f"synthetic-clusters-{EMB_DIM}",
        name=EMBEDDINGS,
        texts_sha256=texts_sha256(ds.item_text),
        info={"kind": "synthetic: subcategory + product-type centroids + noise"},
    )
    save_item_embeddings(emb, ds)
    phase("item_vectors", t0)

    t0 = time.perf_counter()
    tok_cfg = load_config(TokenizerConfig, "tokenize/rqkmeans-4x128")
    sid_path, diag = tokenize_dataset(ds, tok_cfg, embeddings=EMBEDDINGS, name=SIDS)
    phase("tokenize", t0)
    out["tokenize_timing"] = diag["timing"]
    out["sid_collision_rate"] = diag["collision"]["rate"]
    codes = np.load(sid_path / "codes.npy")[1:]
    sizes = PrefixIndex(codes).group_sizes(3)
    out["code_neighbourhood_p3"] = {
        "groups": len(sizes),
        "pairs": int((sizes.astype(np.float64) ** 2).sum()) - len(codes),  # i != j, ordered
        "largest_group": int(sizes.max()),
        "density": float(((sizes.astype(np.float64) ** 2).sum() - len(codes)) / len(codes) ** 2),
    }

    t0 = time.perf_counter()
    neg = load_or_draw_negatives(ds, "test", "uni100", 0)
    phase("candidates_uni100", t0)
    assert neg.path is not None
    size = neg.path.stat().st_size
    out["candidates_uni100"] = {
        "users": len(neg.users),
        "bytes": size,
        "bytes_per_user": size / max(1, len(neg.users)),
        "dtype": str(neg.negatives.dtype),
    }
    out["seconds"] = seconds
    out["mean_seq_len_target"] = mean_len
    out["n_users_requested"] = n_users
    out["peak_rss_mb"] = rss_mb()
    return out


# ---- model stage (subprocess) -----------------------------------------------------------------
def model_worker(
    model: str,
    prep: Path,
    runs: Path,
    threads: int,
    steps: int,
    warmup: int,
    eval_users: int,
    batch_eval: int,
) -> dict[str, Any]:
    import numpy as np
    import torch

    from h2rec.config import load_config
    from h2rec.data import load_dataset
    from h2rec.training import TrainConfig, Trainer

    torch.set_num_threads(threads)
    out: dict[str, Any] = {"rss_after_mb": {}}

    def mark(name: str) -> None:
        out["rss_after_mb"][name] = rss_mb()

    t0 = time.perf_counter()
    ds = load_dataset(prep)
    out["load_s"] = time.perf_counter() - t0
    mark("load")

    spec = MODELS[model]
    overrides = [
        f"data={prep}",
        f"runs_dir={runs}",
        f"name={model}",
        f"threads={threads}",
        f"eval.batch_size={batch_eval}",
        "model=" + json.dumps(spec["model"]),
        *spec["overrides"],
    ]
    cfg = load_config(TrainConfig, TRAIN_CONFIG, overrides)
    t0 = time.perf_counter()
    tr = Trainer(cfg, ds)
    out["trainer_build_s"] = time.perf_counter() - t0
    out["params"] = sum(p.numel() for p in tr.model.parameters())
    out["loss"] = tr.cfg.objective.loss
    mark("trainer")

    positives = getattr(tr.model, "positives", None)
    if positives is not None:
        stats = positives.stats()
        held = positives.memory_bytes()
        out["positives"] = {
            "build_s": positives.build_seconds,
            "cooc_pairs": stats["n_cooc_pairs"],
            "code_mean": stats["code_mean"],
            "cooc_mean": stats["cooc_mean"],
            "total_mean": stats["total_mean"],
            "total_max": stats["total_max"],
            "buffer_bytes": held["buffers"],
            "numpy_bytes": held["numpy"],
            "held_bytes": held["held"],
        }

    # ---- training: the steps of Trainer._train_epoch, timed in three parts ----
    assert tr.optimizer is not None
    opt, clip = tr.optimizer, tr.cfg.optim.grad_clip
    norm = tr.targets_per_batch if tr.cfg.loss_norm == "constant" else None
    batches = tr.batches.batches_of(0)
    offsets, cap = tr.seqs.offsets, tr.cfg.max_len + 1

    def slots(users: np.ndarray) -> int:  # padded positions of a batch (its cost)
        longest = int(np.diff(offsets)[users].max(initial=1))
        return len(users) * (min(cap, longest + 1) - 1)

    epoch_slots = sum(slots(b) for b in batches)
    whole = len(batches) <= warmup + steps

    def run(it: Any, n: int) -> dict[str, float]:
        t = {"batch": 0.0, "fwd_bwd": 0.0, "opt": 0.0, "steps": 0, "targets": 0}
        for _ in range(n):
            t0 = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                break
            batch = batch.to(tr.device)
            t1 = time.perf_counter()
            loss, _ = tr.objective(tr.model, batch.as_dict(), target_norm=norm)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t2 = time.perf_counter()
            if clip:
                torch.nn.utils.clip_grad_norm_(tr.model.parameters(), clip)
            opt.step()
            t3 = time.perf_counter()
            t["batch"] += t1 - t0
            t["fwd_bwd"] += t2 - t1
            t["opt"] += t3 - t2
            t["steps"] += 1
            t["targets"] += batch.n_targets
        return t

    tr.model.train()
    tr.model.start_epoch(0, tr.cfg.epochs)
    if whole:
        run(tr.batches.epoch(1), warmup)
        t = run(tr.batches.epoch(0), len(batches))
        measured_slots = epoch_slots
    else:
        it = tr.batches.epoch(0)
        run(it, warmup)
        t = run(it, steps)
        measured_slots = sum(slots(b) for b in batches[warmup : warmup + steps])
    measured = t["batch"] + t["fwd_bwd"] + t["opt"]
    out["train"] = {
        "steps_per_epoch": len(batches),
        "measured_steps": int(t["steps"]),
        "measured_whole_epoch": whole,
        "measured_s": measured,
        "split_s": {k: t[k] for k in ("batch", "fwd_bwd", "opt")},
        "step_ms": 1000 * measured / max(1, t["steps"]),
        "epoch_s": measured * epoch_slots / measured_slots,
        "epoch_s_by_steps": measured * len(batches) / max(1, t["steps"]),
        "sequences_per_epoch": len(tr.seqs.users),
    }
    mark("train")

    # ---- evaluation: the trainer's evaluator and score function ----
    tr.model.eval()
    t0 = time.perf_counter()
    ev = tr.evaluator("test", "full")
    out["eval_setup_s"] = time.perf_counter() - t0
    n_users = ev.n_users

    def timed_eval(protocol: str) -> dict[str, Any]:
        """All users through `Trainer.evaluate`, or the same seeded sample of users for every
        protocol, ranked by the evaluator in its own batch size and order (by history length)."""
        evaluator = tr.evaluator("test", protocol)
        if n_users <= eval_users:
            res = tr.evaluate("test", protocol)
            return {"users": n_users, "measured_users": n_users, "measured_s": res.seconds,
                    "s": res.seconds, "ndcg10": res.overall["NDCG@10"]}  # fmt: skip
        rows = np.random.default_rng(0).choice(n_users, size=eval_users, replace=False)
        rows = rows[np.argsort(evaluator.examples.history_lengths[rows], kind="stable")]
        size = evaluator.rows_per_batch
        # One-off costs are counted once, not per user: the first batch carries the cached
        # scoring table (H2Rec), so it is timed apart and the other batches are extrapolated.
        t1 = time.perf_counter()
        evaluator.rank_rows(tr.score_fn, rows[:size])
        t2 = time.perf_counter()
        evaluator.rank_rows(tr.score_fn, rows[size:])
        t3 = time.perf_counter()
        first, rest = t2 - t1, t3 - t2
        n_first = min(size, len(rows))
        if len(rows) > n_first:
            s = first + rest / (eval_users - n_first) * (n_users - n_first)
        else:
            s = first / n_first * n_users
        return {"users": n_users, "measured_users": eval_users, "measured_s": first + rest,
                "first_chunk_s": first, "s": s}  # fmt: skip

    out["eval_full"] = {**timed_eval("full"), "batch": batch_eval}
    mark("eval_full")
    t0 = time.perf_counter()
    tr.evaluator("test", "uni100")
    out["eval_uni100_setup_s"] = time.perf_counter() - t0
    out["eval_uni100"] = timed_eval("uni100")
    mark("eval_uni100")
    out["peak_rss_mb"] = rss_mb()
    return out


# ---- parent -------------------------------------------------------------------------------------
def run_worker(args: argparse.Namespace, extra: list[str], log: Path) -> dict[str, Any]:
    """Run this file as a worker subprocess; its last stdout line is the JSON result."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    cmd = [sys.executable, __file__, "--threads", str(args.threads), *extra]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with open(log, "a") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log.read_text().splitlines()[-15:]
        return {"error": f"exit {proc.returncode}", "stderr_tail": tail, "wall_s": wall}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall_s"] = wall
    res["loadavg_1min"] = [load0, os.getloadavg()[0]]
    return res


def grid(args: argparse.Namespace) -> tuple[list[tuple[int, int]], list[dict[str, Any]]]:
    items = args.items or (QUICK_ITEMS if args.quick else ITEMS)
    inters = args.interactions or (QUICK_INTERACTIONS if args.quick else INTERACTIONS)
    cells, skipped = [], []
    for n in sorted(inters):
        for i in sorted(items):
            if n < MIN_PER_ITEM * i:
                skipped.append(
                    {"items": i, "interactions": n, "reason": f"< {MIN_PER_ITEM} per item"}
                )
            else:
                cells.append((i, n))
    return cells, skipped


def done(entry: dict[str, Any] | None) -> bool:
    return entry is not None and "error" not in entry and "skipped" not in entry


def main_parent(args: argparse.Namespace) -> None:
    today = date.today().isoformat()
    out = Path(
        args.out or f"benchmarks/results/scaling-{today}{'-quick' if args.quick else ''}.json"
    )
    work_root = Path(args.work_dir)
    work_root.mkdir(parents=True, exist_ok=True)
    log = work_root / "workers.log"
    results: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    settings = {
        "threads": args.threads,
        "steps": args.steps,
        "warmup": args.warmup,
        "eval_users": args.eval_users,
        "eval_score_budget": args.eval_score_budget,
        "train_config": TRAIN_CONFIG,
        "embeddings": f"{EMBEDDINGS} (synthetic, {EMB_DIM}-d)",
        "sids": SIDS,
        "min_interactions_per_item": MIN_PER_ITEM,
    }
    if results.get("settings") not in (None, settings):
        print(f"note: {out} was made with other settings {results['settings']}; resuming anyway")
    results.setdefault("benchmark", "bench_scaling")
    results.setdefault("created", time.strftime("%Y-%m-%d %H:%M:%S"))
    results["settings"] = results.get("settings") or settings
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    cells, skipped = grid(args)
    known = {(s["items"], s["interactions"]) for s in results.get("skipped_cells", [])}
    results["skipped_cells"] = results.get("skipped_cells", []) + [
        s for s in skipped if (s["items"], s["interactions"]) not in known
    ]
    results.setdefault("cells", {})
    for s in skipped:
        print(f"skip {s['items']:>9,} items x {s['interactions']:>11,} interactions: {s['reason']}")

    for items, inter in cells:
        key = cell_key(items, inter)
        cell = results["cells"].setdefault(
            key, {"items": items, "interactions_target": inter, "models": {}}
        )
        pending = [m for m in args.models if not done(cell["models"].get(m))]
        work = work_root / key
        prep = work / "prepared"
        batch = eval_batch(items, args.eval_score_budget)
        if not pending and done(cell.get("data")):
            continue
        if not done(cell.get("data")) or (pending and not (prep / "manifest.json").is_file()):
            gb = projected_gb("data", items, inter, batch)
            print(f"[{key}] data stage (projected peak {gb:.1f} GB) ...", flush=True)
            if gb > args.max_gb:
                cell["data"] = {"skipped": f"projected {gb:.1f} GB > {args.max_gb} GB"}
                atomic_write_json(out, results)
                continue
            extra = ["--worker", "data", "--cell", str(items), str(inter), "--work-dir", str(work)]
            cell["data"] = {**run_worker(args, extra, log), "projected_gb": gb}
            results["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
            atomic_write_json(out, results)
            print_data(key, cell["data"])
            if not done(cell["data"]):
                continue
        for model in pending:
            gb = projected_gb(model, items, inter, batch)
            print(f"[{key}] {model} (projected peak {gb:.1f} GB) ...", flush=True)
            if gb > args.max_gb:
                cell["models"][model] = {"skipped": f"projected {gb:.1f} GB > {args.max_gb} GB"}
                atomic_write_json(out, results)
                continue
            extra = ["--worker", model, "--work-dir", str(work), "--eval-batch", str(batch)]
            extra += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
            extra += ["--eval-users", str(args.eval_users)]
            res = run_worker(args, extra, log)
            cell["models"][model] = {**res, "projected_gb": gb}
            results["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
            atomic_write_json(out, results)
            print_model(key, model, res)
        if not args.keep_data and all(done(cell["models"].get(m)) for m in args.models):
            shutil.rmtree(work, ignore_errors=True)
    report(results, args.models)
    atomic_write_json(out, results)
    if args.plot is not False:
        png = Path(args.plot) if args.plot else out.with_suffix(".png")
        plot(results, args.models, png)
        print(f"plot: {png}")
    print(f"results: {out}")


def print_data(key: str, d: dict[str, Any]) -> None:
    if "error" in d:
        print(f"[{key}] data stage FAILED: {d['error']}\n  " + "\n  ".join(d["stderr_tail"]))
        return
    s, c = d["seconds"], d["counts"]
    cand = d["candidates_uni100"]
    print(
        f"[{key}] {c['users']:,} users, {c['items']:,} items, {c['interactions']:,} interactions; "
        + ", ".join(f"{k} {v:.1f}s" for k, v in s.items())
        + f"; uni100 file {cand['bytes'] / 1e6:.1f} MB ({cand['bytes_per_user']:.0f} B/user); "
        f"peak RSS {d['peak_rss_mb']:,.0f} MB"
    )


def print_model(key: str, model: str, r: dict[str, Any]) -> None:
    if "error" in r:
        print(f"[{key}] {model} FAILED: {r['error']}\n  " + "\n  ".join(r["stderr_tail"]))
        return
    t, e = r["train"], r["eval_full"]
    how = "whole epoch" if t["measured_whole_epoch"] else f"{t['measured_steps']} steps"
    line = (
        f"[{key}] {model}: train {how} {t['measured_s']:.1f}s -> epoch {t['epoch_s']:.1f}s "
        f"({t['steps_per_epoch']} steps; by steps {t['epoch_s_by_steps']:.1f}s; split "
        + "/".join(f"{v:.1f}" for v in t["split_s"].values())
        + f"s batch/fwd+bwd/opt); full eval {e['measured_users']:,} users {e['measured_s']:.1f}s"
        f" -> {e['users']:,} users {e['s']:.1f}s (batch {e['batch']}); "
        f"peak RSS {r['peak_rss_mb']:,.0f} MB"
    )
    if "positives" in r:
        p = r["positives"]
        line += (
            f"; positives {p['build_s']:.1f}s, {p['cooc_pairs']:,} pairs, "
            f"{(p['buffer_bytes'] + p['numpy_bytes']) / 1e6:.0f} MB"
        )
    print(line, flush=True)


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(y) on log(x); None with fewer than two distinct x."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len({p[0] for p in pts}) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


METRICS = {
    "train epoch s": lambda r: r["train"]["epoch_s"],
    "full eval s": lambda r: r["eval_full"]["s"],
    "uni100 eval s": lambda r: r["eval_uni100"]["s"],
    "peak RSS MB": lambda r: r["peak_rss_mb"],
}


def rows_of(results: dict[str, Any], model: str) -> list[tuple[int, int, dict[str, Any]]]:
    rows = []
    for cell in results.get("cells", {}).values():
        r, d = cell["models"].get(model), cell.get("data")
        if done(r) and done(d):
            rows.append((cell["items"], d["counts"]["interactions"], r))
    return sorted(rows, key=lambda x: (x[0], x[1]))


def report(results: dict[str, Any], models: list[str]) -> None:
    print("\nper cell (training epoch and full evaluation extrapolated as described above)")
    hdr = (
        f"{'model':>9} {'items':>9} {'interactions':>12} {'epoch s':>8} {'step ms':>7} "
        f"{'full eval s':>11} {'uni100 s':>8} {'peak MB':>8} {'pos. build s':>12}"
    )
    print(hdr)
    for model in models:
        for items, inter, r in rows_of(results, model):
            pos = r.get("positives", {}).get("build_s")
            print(
                f"{model:>9} {items:>9,} {inter:>12,} {r['train']['epoch_s']:>8.1f} "
                f"{r['train']['step_ms']:>7.0f} {r['eval_full']['s']:>11.1f} "
                f"{r['eval_uni100']['s']:>8.1f} {r['peak_rss_mb']:>8,.0f} "
                + (f"{pos:>12.2f}" if pos is not None else f"{'-':>12}")
            )
    slopes: dict[str, Any] = {}

    def fit(key: str, label: str, points: list[tuple[int, dict[str, Any]]]) -> None:
        """Slopes of every metric over (x, model result) points; stored and printed if any."""
        vals = {
            name: slope([x for x, _ in points], [f(r) for _, r in points])
            for name, f in METRICS.items()
        }
        if any(v is not None for v in vals.values()):
            slopes[key] = vals
            print(
                f"  {label} ({len(points)} points): "
                + ", ".join(f"{k} {v:.2f}" for k, v in vals.items() if v is not None)
            )

    print("\nlog-log slopes vs interactions at a fixed catalogue (1 = linear)")
    for model in models:
        rows = rows_of(results, model)
        for items in sorted({r[0] for r in rows}):
            fit(
                f"{model} items={items}",
                f"{model:>9} items {items:>9,}",
                [(inter, r) for it, inter, r in rows if it == items],
            )
    print("log-log slopes vs catalogue size at fixed interactions (<= 1: not quadratic in items)")
    cells = results.get("cells", {}).values()
    for model in models:
        for target in sorted({c["interactions_target"] for c in cells}):
            fit(
                f"{model} interactions={target}",
                f"{model:>9} interactions {target:>11,}",
                [
                    (c["items"], c["models"][model])
                    for c in cells
                    if c["interactions_target"] == target
                    and done(c["models"].get(model))
                    and done(c.get("data"))
                ],
            )
    results["slopes"] = slopes


def plot(results: dict[str, Any], models: list[str], png: Path) -> None:
    """Log-log time and memory against interactions, one line per model and catalogue size."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [("train epoch s", "training s / epoch"), ("full eval s", "full-ranking eval s"),
              ("peak RSS MB", "peak RSS (MB)")]  # fmt: skip
    fig = Figure(figsize=(14, 4.4), dpi=110)
    FigureCanvasAgg(fig)
    styles = {"sasrec": "-", "h2rec": "--", "sasrec-ce": ":"}
    for k, (metric, label) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        xs_all: list[float] = []
        ys_all: list[float] = []
        for model in models:
            rows = rows_of(results, model)
            for color, items in enumerate(sorted({r[0] for r in rows})):
                sub = [r for r in rows if r[0] == items]
                xs = [r[1] for r in sub]
                ys = [METRICS[metric](r[2]) for r in sub]
                xs_all += xs
                ys_all += ys
                ax.plot(xs, ys, styles.get(model, "-"), marker="o", color=f"C{color}",
                        label=f"{model}, {items:,} items")  # fmt: skip
        if xs_all:  # through the geometric centre of the panel's points
            xc = math.exp(sum(map(math.log, xs_all)) / len(xs_all))
            yc = math.exp(sum(map(math.log, ys_all)) / len(ys_all))
            x0, x1 = min(xs_all), max(xs_all)
            ax.plot([x0, x1], [yc * x0 / xc, yc * x1 / xc], color="0.6", lw=1, label="slope 1")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("interactions")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7)
    threads = results.get("settings", {}).get("threads")
    fig.suptitle(f"h2rec scaling on synthetic catalogues ({threads} thread(s))")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(png, buf.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="tiny grid for a plumbing check")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=list(MODELS))
    ap.add_argument("--items", type=int, nargs="+", default=None, help="catalogue sizes")
    ap.add_argument("--interactions", type=int, nargs="+", default=None)
    ap.add_argument("--steps", type=int, default=None, help="timed training steps (default 30)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--eval-users", type=int, default=None, help="evaluated users (default 4096)")
    ap.add_argument("--eval-score-budget", type=int, default=2**28, help="floats per eval batch")
    ap.add_argument("--max-gb", type=float, default=10.0, help="skip stages projected above")
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--plot", nargs="?", const=None, default=False, help="PNG (default: --out .png)"
    )
    ap.add_argument("--work-dir", default="artifacts/bench-scaling")
    ap.add_argument("--keep-data", action="store_true", help="keep each cell's prepared data")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cell", type=int, nargs=2, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--eval-batch", type=int, default=PROJECT_EVAL_BATCH, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.steps = args.steps if args.steps is not None else (5 if args.quick else 30)
    args.eval_users = (
        args.eval_users if args.eval_users is not None else (512 if args.quick else 4096)
    )
    if args.worker == "data":
        items, inter = args.cell
        res = data_worker(items, inter, Path(args.work_dir), args.threads)
    elif args.worker is not None:
        work = Path(args.work_dir)
        res = model_worker(
            args.worker,
            work / "prepared",
            work / "runs",
            args.threads,
            args.steps,
            args.warmup,
            args.eval_users,
            args.eval_batch,
        )
    else:
        main_parent(args)
        return
    print(json.dumps(res))


if __name__ == "__main__":
    main()
