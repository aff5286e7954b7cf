"""Which items each trained model recommends: a Markdown table of top-k exposure next to the
models' full-ranking accuracy, for the discussion in docs/results.md.

Loads each run folder's best weights (nothing is trained), ranks the whole catalogue for every
test user (`Evaluator.exposure`, the same evaluation settings the run was trained with) and
writes `results/test-exposure.json` in the run folder, as `h2rec evaluate RUN --exposure K` does.

    python scripts/exposure_table.py runs/experiments/paper/beauty-*-s42 [--k 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from h2rec.io import atomic_write_json
from h2rec.training import load_run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders with best.safetensors")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    k = args.k
    rows = []
    reference = None
    for run in args.runs:
        if not (run / "best.safetensors").is_file() or not (run / "summary.json").is_file():
            print(f"skipped {run}: not a finished run", file=sys.stderr)
            continue
        _, trainer = load_run(run)
        ev = trainer.evaluator("test", "full")
        figures = ev.exposure(trainer.score_fn, (k,))
        atomic_write_json(run / "results" / "test-exposure.json", figures)
        full = json.loads((run / "results" / "test-full.json").read_text())
        groups = full["groups"]
        reference = figures["target_head_share"]
        rows.append(
            f"| {run.name} | {full['overall']['NDCG@10']:.4f} | {groups['head']['metrics']['NDCG@10']:.4f} | "
            f"{groups['tail']['metrics']['NDCG@10']:.4f} | {figures[f'head_share@{k}']:.3f} | "
            f"{figures[f'arp@{k}']:,.0f} | {figures[f'coverage@{k}']:.3f} | "
            f"{figures[f'gini@{k}']:.3f} |"
        )
        print(f"done {run}", file=sys.stderr)
    print(f"| run | NDCG@10 | head | tail | head share@{k} | ARP@{k} | coverage@{k} | Gini@{k} |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if reference is not None:
        print(f"\nHead items among the test targets: {reference:.3f}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
