"""Evaluator throughput on Beauty with a random-embedding matmul scorer (what a trained ID model costs).

Prints full-ranking users/s, uni100 users/s, the time for all test users, the one-off cost of
drawing the stored negatives (Beauty, and Yelp when present), and, as a reference run in the
same invocation, a naive per-user loop over 500 users with numpy `argsort` (the LLM-ESR style
`argsort(argsort(-scores))`), with the speed ratio.
Run: `python benchmarks/bench_eval.py [--shared PATH] [--threads N]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from h2rec.config import load_config
from h2rec.data import Dataset, PrepareConfig, prepare
from h2rec.evaluation import Evaluator
from h2rec.evaluation.candidates import draw_negatives, parse_protocol


def matmul_scorer(n_items: int, dim: int = 64, seed: int = 0):
    """Mean of the history's random item embeddings, dotted with every (or each candidate) item."""
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(n_items + 1, dim, generator=gen)
    emb[0] = 0.0

    def user_vectors(hist: torch.Tensor) -> torch.Tensor:
        n = (hist > 0).sum(1, keepdim=True).clamp(min=1)
        return emb[hist].sum(1) / n

    def score(hist: torch.Tensor, cand: torch.Tensor | None) -> torch.Tensor:
        u = user_vectors(hist)
        if cand is None:
            return u @ emb.T
        return torch.einsum("bd,bcd->bc", u, emb[cand])

    return score, emb


def naive_reference(ev: Evaluator, emb: torch.Tensor, n_users: int = 500) -> float:
    """Seconds per user of a per-user Python loop: numpy scores, double argsort, metric."""
    e = emb.numpy()
    hist = ev.examples.histories[:n_users]
    targets = ev.examples.targets[:n_users]
    start = time.perf_counter()
    hits = 0.0
    for h, t in zip(hist, targets, strict=True):
        items = h[h > 0]
        u = e[items].mean(0)
        scores = e @ u
        scores[0] = -np.inf
        rank = np.argsort(np.argsort(-scores))[t]
        hits += rank < 10
    return (time.perf_counter() - start) / len(targets)


def timed_eval(ev: Evaluator, fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        ev.evaluate(fn, model_name="random-matmul")
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def prepared(shared: Path, name: str, work: Path) -> Dataset | None:
    if not (shared / name).is_dir():
        return None
    cfg = load_config(PrepareConfig, f"data/{name}", [f"source.path={shared / name}"])
    return prepare(cfg, work / name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    default = os.environ.get(
        "H2REC_SHARED_DATA", str(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    )
    ap.add_argument("--shared", default=default)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shared = Path(args.shared)
    work = Path(tempfile.mkdtemp(prefix="h2rec-bench-eval-"))
    ds = prepared(shared, "beauty", work)
    if ds is None:
        raise SystemExit(f"Beauty not found under {shared}")
    fn, emb = matmul_scorer(ds.n_items)
    print(
        f"beauty: {ds.n_users:,} users, {ds.n_items:,} items; torch threads {torch.get_num_threads()}"
    )

    full = Evaluator(ds, protocol="full")
    n = full.n_users
    t_full = timed_eval(full, fn)
    t_excl = timed_eval(Evaluator(ds, protocol="full", exclude_history=True), fn)

    t = time.perf_counter()
    uni = Evaluator(ds, protocol="uni100")  # draws and stores the negatives
    t_uni_setup = time.perf_counter() - t
    t = time.perf_counter()
    Evaluator(ds, protocol="uni100")  # reads them back
    t_uni_reload = time.perf_counter() - t
    t_uni = timed_eval(uni, fn)

    per_user_naive = naive_reference(full, emb)
    rate_full = n / t_full
    print(
        f"full ranking         {rate_full:>10,.0f} users/s   all {n:,} test users in {t_full:.2f} s"
    )
    print(f"full, excl. history  {n / t_excl:>10,.0f} users/s   all test users in {t_excl:.2f} s")
    print(f"uni100               {n / t_uni:>10,.0f} users/s   all test users in {t_uni:.2f} s")
    print(
        f"uni100 negatives     drawn+stored in {t_uni_setup:.2f} s (incl. examples/groups), "
        f"evaluator from stored file in {t_uni_reload:.2f} s"
    )
    print(
        f"reference: naive per-user numpy argsort loop (500 users) {1 / per_user_naive:,.0f} users/s "
        f"-> full-ranking evaluator is {rate_full * per_user_naive:.1f}x faster"
    )

    for name in ("beauty", "yelp"):
        d = ds if name == "beauty" else prepared(shared, name, work)
        if d is None:
            continue
        for proto in ("uni100", "pop100"):
            t = time.perf_counter()
            users, _ = draw_negatives(d, "test", parse_protocol(proto), seed=0)
            print(
                f"sampling {proto} on {name}: {len(users):,} users x 100 in "
                f"{time.perf_counter() - t:.2f} s"
            )


if __name__ == "__main__":
    main()
