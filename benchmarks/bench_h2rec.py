"""H2Rec's cost against SASRec at the same size (issue 5, section 11).

For each model (SASRec, H2Rec with every component, H2Rec without the auxiliary losses) and each
training loss (Eq. 10's BPR with one negative, full-softmax CE) it times training steps on the
same batches and one full-ranking pass over the validation users, each model in its own
subprocess (so peak RSS is per model), and prints the ratios to SASRec measured in the same
invocation. Targets: training step <= 3x SASRec's, full-ranking inference <= 2x.

Needs a prepared dataset with SIDs and text embeddings (default: Beauty, made by
`h2rec prepare -c data/beauty && h2rec embed beauty -c embed/minilm &&
h2rec tokenize beauty -c tokenize/rqvae-4x128`).

Run: python benchmarks/bench_h2rec.py [--data artifacts/prepared/beauty] [--steps 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

H2REC = {
    "name": "h2rec",
    "sids": "rqvae-4x128",
    "text_embeddings": "st-all-minilm-l6-v2",
}
MODELS = {
    "sasrec": {"name": "sasrec"},
    "h2rec": H2REC,
    "h2rec-no-aux": {**H2REC, "beta": 0.0, "gamma": 0.0},
}


def worker(data: str, model: str, loss: str, steps: int, threads: int) -> dict:
    import torch

    from h2rec.config import load_config
    from h2rec.training import TrainConfig, Trainer

    torch.set_num_threads(threads)
    tmp = Path(tempfile.mkdtemp(prefix="h2rec-bench-h2rec-"))
    spec = {**MODELS[model], "hidden_size": 64, "n_layers": 2, "n_heads": 1, "dropout": 0.5}
    cfg = load_config(
        TrainConfig,
        "train/sasrec-beauty-bpr",
        [
            f"data={data}",
            f"runs_dir={tmp}",
            "name=b",
            f"objective.loss={loss}",
            "model=" + json.dumps(spec),
        ],
    )
    tr = Trainer(cfg)
    assert tr.optimizer is not None
    norm = tr.targets_per_batch

    def step(batch) -> None:  # type: ignore[no-untyped-def]
        loss_value, _ = tr.objective(tr.model, batch.as_dict(), target_norm=norm)
        tr.optimizer.zero_grad(set_to_none=True)
        loss_value.backward()
        tr.optimizer.step()

    tr.model.train()
    it = tr.batches.epoch(0)
    for _ in range(3):
        step(next(it))
    n_seq = 0
    t0 = time.perf_counter()
    for _ in range(steps):
        b = next(it)
        step(b)
        n_seq += b.inputs.shape[0]
    train_s = time.perf_counter() - t0
    tr.model.eval()
    t0 = time.perf_counter()
    res = tr.evaluate("valid", "full")
    eval_s = time.perf_counter() - t0
    return {
        "model": model,
        "loss": loss,
        "step_ms": 1000 * train_s / steps,
        "seq_per_s": n_seq / train_s,
        "eval_users_per_s": res.stamp.n_users / eval_s,
        "eval_s": eval_s,
        "params": sum(p.numel() for p in tr.model.parameters()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default="artifacts/prepared/beauty")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--losses", nargs="+", default=["bpr", "ce"])
    ap.add_argument("--worker", nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        model, loss = args.worker
        print(json.dumps(worker(args.data, model, loss, args.steps, args.threads)))
        return
    rows = []
    for loss in args.losses:
        for model in MODELS:
            cmd = [sys.executable, __file__, "--worker", model, loss, "--data", args.data]
            cmd += ["--steps", str(args.steps), "--threads", str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        f"H2Rec vs SASRec (d=64, 2 layers, batch 256, max_len 50) on {args.data}, "
        f"{args.threads} threads, {args.steps} timed steps"
    )
    print(
        f"{'loss':>4} {'model':>13} {'params':>9} {'step ms':>8} {'seq/s':>7} {'x SASRec':>8} | "
        f"{'eval users/s':>12} {'eval s':>7} {'x SASRec':>8} | {'peak RSS MB':>11}"
    )
    for r in rows:
        base = next(b for b in rows if b["loss"] == r["loss"] and b["model"] == "sasrec")
        print(
            f"{r['loss']:>4} {r['model']:>13} {r['params']:>9,} {r['step_ms']:>8.1f} "
            f"{r['seq_per_s']:>7.0f} {r['step_ms'] / base['step_ms']:>7.2f}x | "
            f"{r['eval_users_per_s']:>12.0f} {r['eval_s']:>7.2f} {r['eval_s'] / base['eval_s']:>7.2f}x | "
            f"{r['peak_rss_mb']:>11.0f}"
        )


if __name__ == "__main__":
    main()
