"""How much of each run's full-ranking accuracy comes from revisits (targets already in the
user's history), overall and for head and tail targets: a Markdown table for docs/results.md.

Reads each run folder's saved test ranks (`results/test-full.json` and its ranks file; nothing
is trained or scored), rebuilds the run's test evaluator for the revisit mask and the head/tail
groups (`Evaluator.revisits`, `evaluation.revisit_breakdown`) and writes
`results/test-full-revisits.json` in the run folder.

    python scripts/revisit_table.py runs/experiments/paper/yelp-*-s42 [--k 10]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from h2rec.config import load_config
from h2rec.data import load_dataset
from h2rec.evaluation import EvalResult, Evaluator, revisit_breakdown
from h2rec.evaluation.revisits import breakdown_json
from h2rec.io import atomic_write_json
from h2rec.training import TrainConfig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders with results/test-full.json")
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args(argv)
    k, m = args.k, f"NDCG@{args.k}"
    evaluators: dict[tuple, Evaluator] = {}
    rows, shares = [], {}
    for run in args.runs:
        result_file = run / "results" / "test-full.json"
        if not result_file.is_file():
            print(f"skipped {run}: no results/test-full.json", file=sys.stderr)
            continue
        cfg = load_config(TrainConfig, run / "config.yaml")
        result = EvalResult.load(result_file)
        e = cfg.eval
        key = (cfg.data, cfg.max_len, e.exclude_history)
        if key not in evaluators:  # the groups and mask depend on the data, not the model
            evaluators[key] = Evaluator(
                load_dataset(cfg.data),
                split="test",
                protocol="full",
                ks=(k,),
                tie=e.tie,
                exclude_history=e.exclude_history,
                max_len=cfg.max_len,
            )
        ev = evaluators[key]
        if not np.array_equal(result.users, ev.users):
            raise SystemExit(f"{result_file}: its users are not the evaluator's ({cfg.data})")
        revisit = ev.revisits()
        groups = {g: ev.groups[g] for g in ("tail", "head")}
        out = revisit_breakdown(result.ranks, revisit, groups, ks=(k,))
        atomic_write_json(run / "results" / "test-full-revisits.json", breakdown_json(out))
        shares[str(cfg.data)] = {g: out[g]["revisit_share"] for g in out}
        o, t, h = out["overall"], out["tail"], out["head"]
        rows.append(
            f"| {run.name} | {o['all ' + m]:.4f} | {o['new ' + m]:.4f} | {o['revisits ' + m]:.4f} "
            f"| {o[f'hits@{k} that are revisits']:.2f} | {t['all ' + m]:.4f} | {t['new ' + m]:.4f} "
            f"| {h['all ' + m]:.4f} | {h['new ' + m]:.4f} |"
        )
        print(f"done {run}", file=sys.stderr)
    print(
        f"| run | {m} | on new targets | on revisits | hits@{k} that are revisits | tail "
        "| tail, new targets | head | head, new targets |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    for data, s in shares.items():
        print(
            f"\n{data}: revisit targets are {s['overall']:.1%} of all, {s['tail']:.1%} of tail "
            f"and {s['head']:.1%} of head targets."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
