"""Dataset statistics: sizes, sequence lengths, popularity skew and head/tail shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from h2rec.data.dataset import TEST, TRAIN, VALID, Dataset
from h2rec.data.popularity import head_mask


def gini(x: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 = uniform, ->1 = concentrated)."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    cum = np.cumsum(x)
    return float((n + 1 - 2 * (cum / cum[-1]).sum()) / n)


def _dist(x: np.ndarray) -> dict[str, float]:
    q = np.percentile(x, [25, 50, 75, 90])
    return {
        "min": float(x.min()),
        "p25": float(q[0]),
        "median": float(q[1]),
        "mean": float(x.mean()),
        "p75": float(q[2]),
        "p90": float(q[3]),
        "max": float(x.max()),
    }


def compute_stats(ds: Dataset, head_fraction: float = 0.2) -> dict[str, Any]:
    """All statistics as a JSON-ready dict (head = top `head_fraction` of items by training count)."""
    lengths = ds.seq_lengths[1:]
    pop_all = np.bincount(ds.inter_item, minlength=ds.n_items + 1)[1:]
    pop_train = ds.item_popularity("train")
    head = head_mask(pop_train, head_fraction)
    train = ds.inter_split == TRAIN
    head_inter = head[ds.inter_item]

    def target_share(split: int) -> float | None:
        m = ds.inter_split == split
        return float(head_inter[m].mean()) if m.any() else None

    # an interaction is a repeat when the user consumed the same item earlier
    key = ds.inter_user.astype(np.int64) * (ds.n_items + 1) + ds.inter_item
    _, first = np.unique(key, return_index=True)
    repeats = ds.n_interactions - len(first)
    out: dict[str, Any] = {
        "name": ds.name,
        "content_hash": ds.content_hash(),
        "users": ds.n_users,
        "items": ds.n_items,
        "interactions": ds.n_interactions,
        "sparsity": 1.0 - ds.n_interactions / (ds.n_users * ds.n_items),
        "avg_seq_len": float(lengths.mean()),
        "seq_len": _dist(lengths),
        "item_popularity": {**_dist(pop_all), "gini": gini(pop_all)},
        "repeat_interactions": int(repeats),
        "split": {
            "kind": ds.manifest.get("split_info", {}).get("kind"),
            "train": int(train.sum()),
            "valid": int((ds.inter_split == VALID).sum()),
            "test": int((ds.inter_split == TEST).sum()),
        },
        "head_tail": {
            "definition": f"head = top {head_fraction:.0%} of items by training interactions",
            "head_items": int(head.sum()),
            "tail_items": int(ds.n_items - head.sum()),
            "head_min_train_count": int(pop_train[head].min()) if head.any() else 0,
            "head_share_of_train_interactions": float(head_inter[train].mean())
            if train.any()
            else None,
            "head_share_of_valid_targets": target_share(VALID),
            "head_share_of_test_targets": target_share(TEST),
        },
        "timestamps": None,
        "codes": None,
    }
    if ds.inter_time is not None:
        out["timestamps"] = {"min": float(ds.inter_time.min()), "max": float(ds.inter_time.max())}
    if ds.codes is not None:
        codes = ds.codes[1:]
        n_unique = len(np.unique(codes, axis=0))
        out["codes"] = {
            "source": ds.code_source,
            "levels": int(codes.shape[1]),
            "unique_sids": int(n_unique),
            "collision_rate": 1.0 - n_unique / ds.n_items,
        }
    return out


def plot_popularity(ds: Dataset, path: str | Path, head_fraction: float = 0.2) -> Path:
    """PNG of the rank-frequency curve of training popularity, head boundary marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from h2rec.io import atomic_write_bytes

    pop = np.sort(ds.item_popularity("train")[1:])[::-1]
    n_head = int(head_mask(ds.item_popularity("train"), head_fraction).sum())
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ranks = np.arange(1, len(pop) + 1)
    ax.loglog(ranks, np.maximum(pop, 0.8), lw=1.5)
    ax.axvline(
        n_head,
        color="tab:red",
        ls="--",
        lw=1,
        label=f"head/tail boundary (top {head_fraction:.0%})",
    )
    ax.set_xlabel("item rank by training interactions")
    ax.set_ylabel("training interactions")
    ax.set_title(f"{ds.name}: item popularity")
    ax.legend()
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
