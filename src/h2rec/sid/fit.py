"""One call from item embeddings to Semantic IDs: fit, encode, collision policy, diagnostics."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from h2rec.sid.base import Tokenizer, as_vectors
from h2rec.sid.collisions import apply_collision_policy
from h2rec.sid.config import TokenizerConfig
from h2rec.sid.diagnostics import diagnose_tokenizer
from h2rec.sid.factory import build_tokenizer


def fit_tokenizer(
    vectors: Any,
    cfg: TokenizerConfig | dict[str, Any] | None = None,
    *,
    max_queries: int | None = 20_000,
    **overrides: Any,
) -> tuple[Tokenizer, np.ndarray, dict[str, Any]]:
    """Fit a tokenizer on `vectors` [n, d] and return (tokenizer, codes [n, L'], diagnostics).

    L' = L, or L + 1 with `collision="extra-level"`. The diagnostics dict (JSON-ready) carries
    the resolved config, the collision policy's before/after figures and wall-clock timings
    (`timing.fit_seconds`, `timing.encode_seconds`, `timing.collision_seconds`).
    """
    x = as_vectors(vectors)
    tok = build_tokenizer(cfg, **overrides)
    c = tok.cfg
    t0 = time.perf_counter()
    tok.fit(x)
    t1 = time.perf_counter()
    base = tok.encode(x)
    t2 = time.perf_counter()
    res = apply_collision_policy(
        base,
        c.collision,
        tokenizer=tok,
        vectors=x,
        epsilon=c.sinkhorn_epsilon,
        iters=c.sinkhorn_iters,
        max_rounds=c.sinkhorn_rounds,
    )
    t3 = time.perf_counter()
    diag = diagnose_tokenizer(tok, x, res.codes, max_queries=max_queries, seed=c.seed)
    diag["config"] = c.model_dump(mode="json")
    diag["collision_policy"] = res.to_dict()
    diag["timing"] = {
        "fit_seconds": t1 - t0,
        "encode_seconds": t2 - t1,
        "collision_seconds": t3 - t2,
        "diagnostics_seconds": time.perf_counter() - t3,
    }
    return tok, res.codes, diag
