"""SID tokenizer throughput: fit time and encode throughput at Beauty scale, against a reference.

Vectors: `--vectors X.npy` (e.g. real MiniLM item embeddings, [n, d]) or, by default, a seeded
Gaussian mixture of Beauty's size (12,101 x 384, 200 clusters; pure isotropic noise would be a
worst case for k-means that real text embeddings never are). Methods: RQ-KMeans 4x128,
PQ 4x128 (nbits 7), VQ 512 and RQ-VAE 4x128 for `--epochs` epochs. The reference, run in the
same invocation on the same vectors, is a naive numpy Lloyd k-means for ONE level (K = 128, same
number of iterations, full distance matrix per iteration): every figure is also given as a ratio
to it, so numbers from a busy or different machine stay comparable. Also timed: building the
p = 3 code-neighbourhood matrix (PrefixIndex) and the Sinkhorn collision policy for the
RQ-KMeans codes.

Run: `python benchmarks/bench_sid.py [--vectors X.npy] [--epochs 3] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from h2rec.sid import (
    PrefixIndex,
    TokenizerConfig,
    apply_collision_policy,
    build_tokenizer,
    diagnose_tokenizer,
)


def mixture(n: int, d: int, clusters: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(clusters, d))
    x = means[rng.integers(0, clusters, n)] + 0.6 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def naive_kmeans(x: np.ndarray, k: int, niter: int, seed: int = 0) -> np.ndarray:
    """Textbook Lloyd iterations in numpy: the reference every ratio is taken against."""
    rng = np.random.default_rng(seed)
    cent = x[rng.choice(len(x), k, replace=False)].copy()
    x2 = (x**2).sum(1)[:, None]
    for _ in range(niter):
        d = x2 - 2.0 * x @ cent.T + (cent**2).sum(1)[None, :]
        lab = d.argmin(1)
        for c in range(k):
            members = x[lab == c]
            if len(members):
                cent[c] = members.mean(0)
    return cent


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--vectors", type=Path, help=".npy [n, d] item embeddings (default: synthetic)")
    ap.add_argument("--n", type=int, default=12_101)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument(
        "--epochs", type=int, default=3, help="RQ-VAE epochs (keep small on a busy box)"
    )
    ap.add_argument("--kmeans-iters", type=int, default=25)
    ap.add_argument("--threads", type=int, default=0, help="torch/faiss threads (0 = leave as is)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    if args.threads:
        import faiss
        import torch

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    x = np.load(args.vectors).astype(np.float32) if args.vectors else mixture(args.n, args.d)
    source = str(args.vectors) if args.vectors else f"synthetic mixture {args.n}x{args.d}"
    console = Console()
    console.print(f"vectors: {source} -> {x.shape}")

    ref_s, _ = timed(lambda: naive_kmeans(x, 128, args.kmeans_iters))
    console.print(
        f"reference: naive numpy k-means, 1 level x 128, {args.kmeans_iters} iters: {ref_s:.2f} s"
    )

    common = {"distance": "cosine", "kmeans_iters": args.kmeans_iters, "seed": 0}
    configs = {
        "RQ-KMeans 4x128": TokenizerConfig(
            method="rqkmeans", levels=4, codebook_size=128, **common
        ),
        "PQ 4x128": TokenizerConfig(method="pq", levels=4, codebook_size=128, **common),
        "VQ 512": TokenizerConfig(method="vq", codebook_size=512, **common),
        f"RQ-VAE 4x128 ({args.epochs} ep)": TokenizerConfig(
            method="rqvae", levels=4, codebook_size=128, epochs=args.epochs, **common
        ),
    }
    rows: list[dict[str, Any]] = []
    rq_codes = rq_tok = None
    for name, cfg in configs.items():
        tok = build_tokenizer(cfg)
        fit_s, _ = timed(lambda tok=tok: tok.fit(x))
        enc_s, codes = timed(lambda tok=tok: tok.encode(x), repeat=3)
        diag = diagnose_tokenizer(tok, x, codes, max_queries=2000)
        if cfg.method == "rqkmeans":
            rq_codes, rq_tok = codes, tok
        rows.append(
            {
                "method": name,
                "fit_s": fit_s,
                "fit_vs_ref": fit_s / ref_s,
                "encode_items_per_s": len(x) / enc_s,
                "encode_s": enc_s,
                "collision_rate": diag["collision"]["rate"],
                "relative_mse": diag["reconstruction"]["relative_mse"],
                "level1_perplexity": diag["per_level"][0]["perplexity"],
            }
        )
    assert rq_codes is not None
    nb_s, nb = timed(lambda: PrefixIndex(rq_codes).neighbours(3), repeat=3)
    sk_s, sk = timed(
        lambda: apply_collision_policy(rq_codes, "sinkhorn", tokenizer=rq_tok, vectors=x)
    )

    table = Table(title=f"SID tokenizers on {x.shape[0]:,} x {x.shape[1]} ({source})")
    for col in (
        "method",
        "fit s",
        "fit / ref",
        "encode items/s",
        "collision",
        "rel. MSE",
        "L1 ppl",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["method"],
            f"{r['fit_s']:.2f}",
            f"{r['fit_vs_ref']:.2f}x",
            f"{r['encode_items_per_s']:,.0f}",
            f"{100 * r['collision_rate']:.1f}%",
            f"{r['relative_mse']:.3f}",
            f"{r['level1_perplexity']:.0f}",
        )
    console.print(table)
    console.print(
        f"PrefixIndex(codes).neighbours(3) on RQ-KMeans codes: {nb_s * 1e3:.1f} ms, nnz {nb.nnz:,} "
        f"(dense would be {x.shape[0] ** 2:,} cells)"
    )
    console.print(
        f"Sinkhorn collision policy on RQ-KMeans codes: {sk_s:.2f} s, collision rate "
        f"{100 * sk.before['rate']:.1f}% -> {100 * sk.after['rate']:.1f}% in {sk.rounds} round(s)"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "vectors": source,
                    "shape": list(x.shape),
                    "reference_kmeans_s": ref_s,
                    "rows": rows,
                    "neighbours_p3_s": nb_s,
                    "neighbours_p3_nnz": int(nb.nnz),
                    "sinkhorn_s": sk_s,
                    "sinkhorn": sk.to_dict(),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
