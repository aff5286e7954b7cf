"""Text-embedding throughput on the Beauty item texts: offline all-MiniLM-L6-v2, no cache.

Prints items/s and peak RSS for the main run (MiniLM, batched, texts sorted by length as the
pipeline does) and, in the same invocation, two references on the same machine state: MiniLM with
batch size 1 on the first `--ref-items` texts (what a naive per-item loop costs) and TF-IDF + SVD
on the same texts (the light backend). Ratios are main / reference.

Run: `python benchmarks/bench_embed.py [--shared PATH] [--limit N] [--threads T]`.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the bundled model needs no network

import torch

from h2rec.config import load_config
from h2rec.data import PrepareConfig, prepare
from h2rec.text import SentenceTransformerEmbedder, TfidfSvdEmbedder, embed_texts


def rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    default = os.environ.get(
        "H2REC_SHARED_DATA", str(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    )
    ap.add_argument("--shared", default=default, help="folder holding beauty/")
    ap.add_argument("--limit", type=int, default=None, help="embed only the first N items")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--ref-items", type=int, default=200, help="items for the batch-size-1 run")
    ap.add_argument(
        "--threads", type=int, default=None, help="torch and BLAS threads (default: libraries')"
    )
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        # OpenBLAS threads spin-wait: on a busy machine more threads than free cores slow the
        # SVD down several-fold, so the BLAS pools (numpy's and scipy's, loaded by scikit-learn)
        # follow the same limit
        import sklearn.decomposition  # noqa: F401
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)

    shared = Path(args.shared)
    cfg = load_config(PrepareConfig, "data/beauty", [f"source.path={shared / 'beauty'}"])
    with tempfile.TemporaryDirectory(prefix="h2rec-bench-embed-") as tmp:
        ds = prepare(cfg, tmp)
    texts = ds.item_text[: args.limit] if args.limit else ds.item_text
    n = len(texts)
    print(
        f"Beauty: {ds.n_items:,} items, embedding {n:,} "
        f"(mean {sum(map(len, texts)) / n:.0f} chars); torch threads {torch.get_num_threads()}, "
        f"device {args.device}; RSS after prepare {rss_mib():.0f} MiB"
    )

    emb = SentenceTransformerEmbedder(batch_size=args.batch_size, device=args.device)
    t = time.perf_counter()
    emb.load()
    load_s = time.perf_counter() - t
    emb.embed(texts[:8])  # warm-up: first-call allocations are not throughput
    _, info = embed_texts(texts, emb, store=None)
    main_ips = info["items_per_s"]
    print(
        f"{'MiniLM bs=' + str(args.batch_size):<22}{main_ips:>10,.0f} items/s  "
        f"{info['embed_seconds']:6.2f} s  (model load {load_s:.1f} s)  peak RSS {rss_mib():.0f} MiB"
    )

    ref_texts = texts[: args.ref_items]
    emb.batch_size = 1
    _, ref = embed_texts(ref_texts, emb, store=None)
    print(
        f"{'MiniLM bs=1':<22}{ref['items_per_s']:>10,.0f} items/s  {ref['embed_seconds']:6.2f} s  "
        f"on {len(ref_texts)} items; main / this = {main_ips / ref['items_per_s']:.1f}x"
    )

    TfidfSvdEmbedder(dim=2).embed(texts[:50])  # warm-up: imports scikit-learn outside the timing
    tf = TfidfSvdEmbedder(dim=256, seed=0)
    t = time.perf_counter()
    vec = tf.embed(texts)  # fit + transform: the whole cost of this backend
    tf_s = time.perf_counter() - t
    print(
        f"{'TF-IDF+SVD (fit)':<22}{n / tf_s:>10,.0f} items/s  {tf_s:6.2f} s  dim {vec.shape[1]}; "
        f"main / this = {main_ips / (n / tf_s):.2f}x"
    )
    print(f"process peak RSS: {rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
