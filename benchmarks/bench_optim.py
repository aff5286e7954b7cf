"""The optimiser update on an item table: Adam's for-loop (the reference) vs foreach vs fused.

Why: every step of every model updates the WHOLE item table densely (docs/performance.md), so at
large catalogues the update is a large share of a step. For each table size `[n + 1, d]` the three
implementations are timed interleaved in one process (round r runs one step of each, on fresh
random gradients), so a burst of other work hits them alike; times are medians over rounds and
the ratio is against the for-loop. Peak RSS is the process's, after all sizes.

Run: python benchmarks/bench_optim.py [--sizes 10000 100000 1000000] [--dim 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

IMPLEMENTATIONS = {
    "for-loop": {"foreach": False},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"Adam (betas 0.9/0.98) on an item table [n + 1, {args.dim}], {args.threads} threads, "
        f"median of {args.rounds - 2} interleaved steps"
    )
    print(f"{'items':>10} {'implementation':>15} {'ms/step':>9} {'M rows/s':>9} {'x for-loop':>11}")
    for n in args.sizes:
        params = {}
        for name, kwargs in IMPLEMENTATIONS.items():
            weight = torch.nn.Parameter(torch.randn(n + 1, args.dim) * 0.02)
            opt = torch.optim.Adam([weight], lr=1e-3, betas=(0.9, 0.98), **kwargs)  # type: ignore[arg-type]
            params[name] = (weight, opt)
        times: dict[str, list[float]] = {name: [] for name in params}
        for _ in range(args.rounds):
            for name, (weight, opt) in params.items():
                weight.grad = torch.randn_like(weight) * 0.01
                start = time.perf_counter()
                opt.step()
                times[name].append(time.perf_counter() - start)
        ref = statistics.median(times["for-loop"][2:])
        for name, values in times.items():
            t = statistics.median(values[2:])
            print(
                f"{n:>10,} {name:>15} {t * 1e3:>9.2f} {(n + 1) / t / 1e6:>9.1f} {ref / t:>10.1f}x"
            )
        del params
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss_mb:,.0f} MB")


if __name__ == "__main__":
    main()
