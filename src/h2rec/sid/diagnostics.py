"""How good are a set of Semantic IDs? One JSON-ready dict, a rich table, and a usage plot.

Definitions (n items, L levels, K_l codes at level l, n_{l,c} items with code c at level l):

* reconstruction (only when a tokenizer can decode): ``mse`` = mean over items and dimensions of
  (x - x_hat)^2, in the tokenizer's input space (unit vectors for cosine); ``relative_mse`` =
  sum ||x - x_hat||^2 / sum ||x - mean(x)||^2, the share of the data variance left unexplained.
* collision: ``rate`` = 1 - (distinct SIDs) / n (LC-Rec's collision rate), ``largest_group``,
  ``n_colliding_items`` (items whose SID is shared), ``n_collision_groups``.
* per level: ``utilisation`` = (codes used) / K_l; ``perplexity`` = exp(H), H = -sum_c p_c ln p_c
  with p_c = n_{l,c} / n; ``normalised_entropy`` = H / ln K_l.
* ``occupancy`` = n / prod_l K_l — what H2Rec's Table 8 labels "Util." (11,383 / 128^4 =
  0.0042%); a property of the configuration, not of how well codes are used.
* semantic (needs the item embeddings): for each query item i, nn(i) is its nearest other item by
  cosine (faiss inner product on L2-normalised embeddings; i itself is skipped even if a duplicate
  vector ties with it). ``nn_share_level1`` = fraction of queries with c_1(nn(i)) = c_1(i).
  It is compared with two chance levels computed from level-1 code frequencies over all n items:
  ``chance`` = sum_c p_c^2 (two items drawn independently *with* replacement share a code), and
  ``chance_other`` = sum_c n_c (n_c - 1) / (n (n - 1)) (a uniformly random *other* item shares
  it: the exact expectation if neighbours carried no semantic signal). ``lift`` = share / chance.
  With more than `max_queries` items a seeded random subset of queries is used (against all
  items) and ``n_queries`` says so.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from h2rec.io import atomic_write_bytes, atomic_write_json
from h2rec.sid.base import TokenizerError, as_vectors
from h2rec.sid.collisions import collision_stats

if TYPE_CHECKING:
    from rich.console import Console, Group

    from h2rec.data.dataset import Dataset
    from h2rec.sid.base import Tokenizer


def _check_codes(codes: Any, codebook_sizes: Sequence[int] | None) -> tuple[np.ndarray, list[int]]:
    arr = np.asarray(codes)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise TokenizerError(
            f"codes: expected a non-empty 2-D array [n_items, L], got shape {arr.shape}"
        )
    if arr.dtype.kind not in "iu":
        raise TokenizerError(f"codes: expected integer codes, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if (arr < 0).any():
        rows = np.flatnonzero((arr < 0).any(axis=1))
        raise TokenizerError(
            f"codes: {rows.size} row(s) have negative codes (first rows: {rows[:5].tolist()}); "
            "Dataset.codes row 0 is the -1 padding row, so pass Dataset.codes[1:]"
        )
    inferred = (arr.max(axis=0) + 1).tolist()
    if codebook_sizes is None:
        sizes = [int(k) for k in inferred]
    else:
        sizes = [int(k) for k in codebook_sizes]
        if len(sizes) != arr.shape[1]:
            raise TokenizerError(
                f"codebook_sizes has {len(sizes)} entries for {arr.shape[1]} levels"
            )
        for level, (k, m) in enumerate(zip(sizes, inferred, strict=True)):
            if m > k:
                raise TokenizerError(
                    f"codes: level {level + 1} uses code {m - 1} >= codebook size {k}"
                )
    return arr, sizes


def level_stats(codes: np.ndarray, sizes: Sequence[int]) -> list[dict[str, Any]]:
    """Per-level utilisation, perplexity, normalised entropy and raw code counts."""
    out = []
    n = len(codes)
    for level, k in enumerate(sizes):
        counts = np.bincount(codes[:, level], minlength=k)
        p = counts[counts > 0] / n
        h = float(-(p * np.log(p)).sum())
        out.append(
            {
                "level": level + 1,
                "K": int(k),
                "used": int((counts > 0).sum()),
                "utilisation": float((counts > 0).sum() / k),
                "perplexity": math.exp(h),
                "normalised_entropy": h / math.log(k) if k > 1 else 1.0,
                "counts": counts.astype(int).tolist(),
            }
        )
    return out


def occupancy(n_items: int, sizes: Sequence[int]) -> float:
    """n / prod K_l, computed in log space so many big levels cannot overflow."""
    return math.exp(math.log(n_items) - sum(math.log(k) for k in sizes))


def semantic_check(
    embeddings: Any, level1: np.ndarray, *, max_queries: int | None = 20_000, seed: int = 0
) -> dict[str, Any] | None:
    """Nearest-neighbour level-1 agreement against chance (see the module docstring)."""
    level1 = np.asarray(level1, dtype=np.int64)
    n = len(level1)
    emb = as_vectors(embeddings, name="embeddings")
    if len(emb) != n:
        raise TokenizerError(f"embeddings has {len(emb)} rows but codes has {n}")
    if n < 2:
        return None
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    if (norms == 0).any():
        raise TokenizerError("embeddings: zero vectors have no cosine neighbour")
    emb = np.ascontiguousarray(emb / norms, dtype=np.float32)
    queries = np.arange(n)
    if max_queries is not None and n > max_queries:
        queries = np.sort(np.random.default_rng(seed).choice(n, size=max_queries, replace=False))
    _, nbr = faiss.knn(emb[queries], emb, 2, metric=faiss.METRIC_INNER_PRODUCT)
    nn = np.where(nbr[:, 0] == queries, nbr[:, 1], nbr[:, 0])
    share = float((level1[nn] == level1[queries]).mean())
    counts = np.bincount(level1).astype(np.float64)
    chance = float(((counts / n) ** 2).sum())
    chance_other = float((counts * (counts - 1)).sum() / (n * (n - 1)))
    return {
        "nn_share_level1": share,
        "chance": chance,
        "chance_other": chance_other,
        "lift": share / chance if chance > 0 else None,
        "n_queries": len(queries),
    }


def reconstruction_error(x: np.ndarray, x_hat: np.ndarray) -> dict[str, float]:
    x64 = np.asarray(x, dtype=np.float64)
    err = ((x64 - np.asarray(x_hat, dtype=np.float64)) ** 2).sum()
    var = ((x64 - x64.mean(axis=0)) ** 2).sum()
    return {
        "mse": float(err / x64.size),
        "relative_mse": float(err / var) if var > 0 else None,
        "data_variance": float(var / x64.size),
    }


def diagnose_codes(
    codes: Any,
    codebook_sizes: Sequence[int] | None = None,
    *,
    embeddings: Any = None,
    max_queries: int | None = 20_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Diagnostics of any SIDs, e.g. published ones ("bring your own SIDs").

    `codes` int [n, L], one row per item; `codebook_sizes` default to max code + 1 per level
    (published LETTER files are 4 x 256 but a level may not use its top code, so pass them when
    known). `embeddings` [n, d] (same row order) enables the semantic check.
    """
    arr, sizes = _check_codes(codes, codebook_sizes)
    n, levels = arr.shape
    return {
        "n_items": int(n),
        "levels": int(levels),
        "codebook_sizes": sizes,
        "codebook_sizes_inferred": codebook_sizes is None,
        "collision": collision_stats(arr),
        "occupancy": occupancy(n, sizes),
        "per_level": level_stats(arr, sizes),
        "reconstruction": None,
        "semantic": None
        if embeddings is None
        else semantic_check(embeddings, arr[:, 0], max_queries=max_queries, seed=seed),
    }


def diagnose_tokenizer(
    tokenizer: Tokenizer,
    vectors: Any,
    codes: Any | None = None,
    *,
    max_queries: int | None = 20_000,
    seed: int = 0,
) -> dict[str, Any]:
    """`diagnose_codes` plus reconstruction error for a fitted tokenizer.

    `codes` are the SIDs to judge (e.g. after a collision policy, possibly with an extra level;
    default `tokenizer.encode(vectors)`). Reconstruction always uses the tokenizer's own codes,
    since an extra level is not something it can decode. Sizes beyond the tokenizer's levels (an
    extra level) are inferred from the codes.
    """
    x = tokenizer.preprocess(vectors)
    base = tokenizer.encode(vectors)
    arr = base if codes is None else np.asarray(codes)
    sizes = list(tokenizer.codebook_sizes)
    if arr.ndim == 2 and arr.shape[1] > len(sizes):
        sizes += [int(arr[:, j].max()) + 1 for j in range(len(sizes), arr.shape[1])]
    out = diagnose_codes(arr, sizes, embeddings=vectors, max_queries=max_queries, seed=seed)
    out["method"] = tokenizer.method
    out["reconstruction"] = reconstruction_error(x, tokenizer.decode(base))
    return out


def diagnose_dataset(
    ds: Dataset, *, embeddings: Any = None, codebook_sizes: Sequence[int] | None = None
) -> dict[str, Any]:
    """Diagnostics of a prepared dataset's published codes (rows 1..n_items of `ds.codes`)."""
    if ds.codes is None:
        raise TokenizerError(f"dataset {ds.name!r} has no codes")
    out = diagnose_codes(ds.codes[1:], codebook_sizes, embeddings=embeddings)
    out["code_source"] = ds.code_source
    return out


# ---- presentation ------------------------------------------------------------------------------
def _pct(v: float) -> str:
    if v == 0:
        return "0%"
    p = 100.0 * v
    return f"{p:.2f}%" if p >= 0.01 else f"{p:.2g}%"


def render_diagnostics(diag: dict[str, Any], title: str = "Semantic-ID diagnostics") -> Group:
    """Two rich tables: one row per level, then the corpus-wide figures (key / value / detail)."""
    from rich.console import Group
    from rich.table import Table

    levels = Table(title=title)
    for col in ("level", "K", "used", "utilisation", "perplexity", "norm. entropy"):
        levels.add_column(col, justify="right")
    for lv in diag["per_level"]:
        levels.add_row(
            str(lv["level"]),
            str(lv["K"]),
            str(lv["used"]),
            _pct(lv["utilisation"]),
            f"{lv['perplexity']:.1f}",
            f"{lv['normalised_entropy']:.3f}",
        )
    summary = Table(show_header=False)
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    summary.add_column("detail")
    col = diag["collision"]
    summary.add_row("items", f"{diag['n_items']:,}", diag.get("method") or "")
    summary.add_row(
        "collision rate",
        _pct(col["rate"]),
        f"largest group {col['largest_group']}, {col['n_colliding_items']:,} items share a SID",
    )
    summary.add_row("occupancy", _pct(diag["occupancy"]), "items / prod K (Table 8 'Util.')")
    rec = diag.get("reconstruction")
    if rec:
        rel = rec["relative_mse"]
        summary.add_row(
            "recon. MSE", f"{rec['mse']:.4g}", "" if rel is None else f"relative {rel:.3f}"
        )
    sem = diag.get("semantic")
    if sem:
        lift = "" if sem["lift"] is None else f", lift {sem['lift']:.1f}x"
        summary.add_row(
            "NN shares level-1 code",
            _pct(sem["nn_share_level1"]),
            f"chance {_pct(sem['chance'])}{lift} ({sem['n_queries']:,} queries)",
        )
    timing = diag.get("timing")
    if timing:
        summary.add_row("fit time", f"{timing['fit_seconds']:.2f} s", "")
    return Group(levels, summary)


def print_diagnostics(diag: dict[str, Any], console: Console | None = None, **kw: Any) -> None:
    from rich.console import Console

    (console or Console()).print(render_diagnostics(diag, **kw))


def save_diagnostics(diag: dict[str, Any], path: str | Path) -> Path:
    """Write the diagnostics as JSON atomically."""
    atomic_write_json(path, diag)
    return Path(path)


def plot_code_usage(diag_or_codes: Any, path: str | Path, title: str | None = None) -> Path:
    """PNG of per-level code usage: items per code, codes sorted by usage, one line per level.

    A flat line means balanced codes; a steep head and a long zero tail mean a few codes carry
    most items (collapse). Uses the Agg canvas directly (no pyplot state) and writes atomically.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    diag = diag_or_codes if isinstance(diag_or_codes, dict) else diagnose_codes(diag_or_codes)
    fig = Figure(figsize=(7, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for lv in diag["per_level"]:
        counts = np.sort(np.asarray(lv["counts"]))[::-1]
        ax.plot(
            np.arange(1, len(counts) + 1),
            np.maximum(counts, 0.5),
            label=f"level {lv['level']} (used {lv['used']}/{lv['K']}, ppl {lv['perplexity']:.0f})",
            drawstyle="steps-mid",
        )
    ax.set_yscale("log")
    ax.set_xlabel("code rank (by usage)")
    ax.set_ylabel("items per code (unused shown at 0.5)")
    ax.set_title(title or f"Code usage ({diag['n_items']} items)")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
