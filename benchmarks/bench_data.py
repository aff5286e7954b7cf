"""Data-layer throughput: prepare and cache-load times and peak memory, on real and synthetic data.

Each figure is printed with a ratio against a reference run in the same invocation: the plain
`json.load` of the raw LC-Rec interaction file plus building per-user Python lists (what most
research scripts do on every start). Run: `python benchmarks/bench_data.py [--shared PATH]`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from h2rec.config import load_config
from h2rec.data import PrepareConfig, load_dataset, prepare
from h2rec.data.synth import SynthConfig, generate, write_recbole


def timed(fn: Callable[[], Any], repeat: int = 5) -> tuple[float, float, Any]:
    """Median seconds over `repeat` runs, peak Python-heap MiB (tracemalloc; excludes Arrow buffers)."""
    times = []
    result = None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    times.sort()
    return times[len(times) // 2], peak / 2**20, result


def reference_raw_json(path: Path) -> Callable[[], Any]:
    def run() -> dict[str, list[int]]:
        with open(path) as fh:
            data = json.load(fh)
        return {u: list(seq) for u, seq in data.items()}

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    default = os.environ.get(
        "H2REC_SHARED_DATA", str(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    )
    ap.add_argument("--shared", default=default)
    args = ap.parse_args()
    shared = Path(args.shared)
    work = Path(tempfile.mkdtemp(prefix="h2rec-bench-"))
    rows = []

    cases: list[tuple[str, PrepareConfig, Path | None]] = []
    for name in ("beauty", "yelp"):
        if (shared / name).is_dir():
            cfg = load_config(PrepareConfig, f"data/{name}", [f"source.path={shared / name}"])
            cases.append((name, cfg, shared / name / f"{name.capitalize()}.inter.json"))
    synth_dir = work / "raw"
    write_recbole(generate(SynthConfig(n_users=20_000, n_items=8_000)), synth_dir)
    synth_cfg = load_config(
        PrepareConfig,
        "data/synth",
        [f"source.path={synth_dir}", "preprocess.user_core=0", "preprocess.item_core=0"],
    )
    cases.append(("synth-20k-users", synth_cfg, None))

    for name, cfg, raw_json in cases:
        out = work / name
        t_prep, m_prep, ds = timed(lambda cfg=cfg, out=out: prepare(cfg, out, force=True), repeat=3)
        t_load, m_load, _ = timed(lambda out=out: load_dataset(out))
        ref = ""
        if raw_json is not None:
            t_ref, _, _ = timed(reference_raw_json(raw_json))
            ref = f"{t_load / t_ref:6.2f}x of raw json.load ({t_ref * 1e3:.0f} ms)"
        rows.append(
            (
                name,
                ds.n_interactions,
                t_prep,
                ds.n_interactions / t_prep,
                m_prep,
                t_load,
                m_load,
                ref,
            )
        )

    print(
        f"{'dataset':<18}{'inter':>9}{'prepare s':>11}{'inter/s':>11}{'py MiB':>10}"
        f"{'load ms':>9}{'py MiB':>10}  load vs reference"
    )
    for name, n, tp, thr, mp, tl, ml, ref in rows:
        print(
            f"{name:<18}{n:>9,}{tp:>11.2f}{thr:>11,.0f}{mp:>10.1f}{tl * 1e3:>9.1f}{ml:>10.1f}  {ref}"
        )
    print(f"process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
