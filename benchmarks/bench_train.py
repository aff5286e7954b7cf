"""SASRec on Beauty: training throughput, full-ranking evaluation throughput and peak RSS.

For max length 50 and 200 (each in its own subprocess so peak RSS is per setting) it prints
sequences/s and target positions/s of h2rec's every-position training, users/s of full-ranking
evaluation, and peak RSS; and, in the same invocation, a reference run of the same model trained
the way RecBole does (every prefix of every sequence as its own example, padded to the maximum
length, last position only), as time per epoch. The RecBole anchor measured on this machine
(../shared/notes/performance.md) is printed beside them for context; it is not re-run here.

Run: python benchmarks/bench_train.py [--shared PATH] [--steps 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# RecBole 1.2.1 SASRec (CE, hidden 64, 2 layers, max len 50, batch 256) on this machine kind.
RECBOLE_ANCHOR = {
    "epoch_s": 164.6,
    "train_seq_per_s": 798.0,
    "valid_users_per_s": 1028.0,
    "rss_gb": 2.34,
}


def worker(shared: Path, max_len: int, steps: int, threads: int) -> dict:
    import numpy as np
    import torch

    from h2rec.config import load_config
    from h2rec.data import PrepareConfig, prepare
    from h2rec.training import TrainConfig, Trainer

    torch.set_num_threads(threads)
    tmp = Path(tempfile.mkdtemp(prefix="h2rec-bench-train-"))
    pcfg = load_config(PrepareConfig, "data/beauty", [f"source.path={shared / 'beauty'}"])
    ds = prepare(pcfg, tmp / "beauty")
    cfg = load_config(
        TrainConfig, "train/sasrec-beauty-ce", [f"max_len={max_len}", f"runs_dir={tmp}", "name=b"]
    )
    tr = Trainer(cfg, ds)
    assert tr.optimizer is not None

    def step(batch) -> None:  # type: ignore[no-untyped-def]
        loss, _ = tr.objective(tr.model, batch.as_dict())
        tr.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        tr.optimizer.step()

    tr.model.train()
    it = tr.batches.epoch(0)
    for _ in range(3):
        step(next(it))
    n_seq = n_tgt = 0
    t0 = time.perf_counter()
    for _ in range(steps):
        b = next(it)
        step(b)
        n_seq += b.inputs.shape[0]
        n_tgt += b.n_targets
    dt = time.perf_counter() - t0
    ours = {"seq_per_s": n_seq / dt, "targets_per_s": n_tgt / dt}
    ours["epoch_s"] = len(tr.seqs.users) / ours["seq_per_s"]

    # Reference: RecBole-style augmented prefixes (one example per target, padded to max_len).
    seqs = tr.seqs
    lengths = np.diff(seqs.offsets)[seqs.users]
    n_prefixes = int((lengths - 1).sum())
    rng = np.random.default_rng(0)
    ref_seq = 0
    t0 = time.perf_counter()
    for _ in range(steps):
        users = rng.choice(seqs.users, size=cfg.batch_size)
        ends = np.array(
            [rng.integers(2, lengths_u + 1) for lengths_u in np.diff(seqs.offsets)[users]]
        )
        idx = seqs.offsets[users][:, None] + ends[:, None] - (max_len + 1) + np.arange(max_len + 1)
        valid = idx >= seqs.offsets[users][:, None]
        win = np.where(valid, seqs.items[np.clip(idx, 0, len(seqs.items) - 1)], 0)
        inputs, targets = win[:, :-1], np.zeros_like(win[:, 1:])
        targets[:, -1] = win[:, -1]
        batch = {"inputs": torch.from_numpy(inputs), "targets": torch.from_numpy(targets)}
        loss, _ = tr.objective(tr.model, batch)
        tr.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        tr.optimizer.step()
        ref_seq += cfg.batch_size
    ref_dt = time.perf_counter() - t0
    ref = {
        "seq_per_s": ref_seq / ref_dt,
        "n_prefixes": n_prefixes,
        "epoch_s": n_prefixes / (ref_seq / ref_dt),
    }

    tr.model.eval()
    t0 = time.perf_counter()
    res = tr.evaluate("valid", "full")
    ev_dt = time.perf_counter() - t0
    return {
        "max_len": max_len,
        "ours": ours,
        "reference_prefix_training": ref,
        "eval_full_users_per_s": res.stamp.n_users / ev_dt,
        "eval_full_seconds": ev_dt,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": threads,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default = os.environ.get(
        "H2REC_SHARED_DATA", str(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    )
    ap.add_argument("--shared", default=default)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(Path(args.shared), args.worker, args.steps, args.threads)))
        return
    rows = []
    for max_len in (50, 200):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                str(max_len),
                "--shared",
                args.shared,
                "--steps",
                str(args.steps),
                "--threads",
                str(args.threads),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    a = RECBOLE_ANCHOR
    print(
        f"SASRec (CE, d=64, 2 layers, batch 256) on Beauty, {args.threads} threads, {args.steps} timed steps"
    )
    print(
        f"{'max_len':>7} {'seq/s':>8} {'targets/s':>10} {'epoch s':>8} | {'ref epoch s':>11} {'speed-up':>8}"
        f" | {'eval users/s':>12} {'eval s':>7} | {'peak RSS MB':>11}"
    )
    for r in rows:
        o, ref = r["ours"], r["reference_prefix_training"]
        print(
            f"{r['max_len']:>7} {o['seq_per_s']:>8.0f} {o['targets_per_s']:>10.0f} {o['epoch_s']:>8.1f} | "
            f"{ref['epoch_s']:>11.1f} {ref['epoch_s'] / o['epoch_s']:>7.1f}x | "
            f"{r['eval_full_users_per_s']:>12.0f} {r['eval_full_seconds']:>7.1f} | {r['peak_rss_mb']:>11.0f}"
        )
    r50 = rows[0]
    print(
        f"vs the RecBole anchor (performance.md, max_len 50, not re-run): epoch "
        f"{a['epoch_s']:.1f} s -> {r50['ours']['epoch_s']:.1f} s ({a['epoch_s'] / r50['ours']['epoch_s']:.1f}x); "
        f"full-ranking eval {a['valid_users_per_s']:.0f} -> {r50['eval_full_users_per_s']:.0f} users/s "
        f"({r50['eval_full_users_per_s'] / a['valid_users_per_s']:.1f}x); peak RSS {a['rss_gb'] * 1024:.0f} -> "
        f"{r50['peak_rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
