"""Rich rendering of library results; no computation beyond formatting."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 100 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def stats_table(s: dict[str, Any]) -> Table:
    t = Table(title=f"dataset {s['name']}  (content {s['content_hash'][:12]})", show_header=True)
    t.add_column("statistic", style="bold")
    t.add_column("value", justify="right")
    t.add_row("users", _fmt(s["users"]))
    t.add_row("items", _fmt(s["items"]))
    t.add_row("interactions", _fmt(s["interactions"]))
    t.add_row("sparsity", f"{s['sparsity']:.4%}")
    t.add_row("avg sequence length", f"{s['avg_seq_len']:.2f}")
    sl = s["seq_len"]
    t.add_row(
        "sequence length min/median/p90/max",
        f"{sl['min']:.0f} / {sl['median']:.0f} / {sl['p90']:.0f} / {sl['max']:.0f}",
    )
    ip = s["item_popularity"]
    t.add_row(
        "item popularity min/median/mean/max",
        f"{ip['min']:.0f} / {ip['median']:.0f} / {ip['mean']:.1f} / {ip['max']:.0f}",
    )
    t.add_row("item popularity Gini", f"{ip['gini']:.3f}")
    t.add_row("repeat interactions", _fmt(s["repeat_interactions"]))
    sp = s["split"]
    t.add_row(
        f"split ({sp['kind']}) train/valid/test",
        f"{sp['train']:,} / {sp['valid']:,} / {sp['test']:,}",
    )
    ht = s["head_tail"]
    t.add_row("head items / tail items", f"{ht['head_items']:,} / {ht['tail_items']:,}")
    t.add_row("head = top 20%: min training count", _fmt(ht["head_min_train_count"]))
    t.add_row("head share of training interactions", _pct(ht["head_share_of_train_interactions"]))
    t.add_row("head share of validation targets", _pct(ht["head_share_of_valid_targets"]))
    t.add_row("head share of test targets", _pct(ht["head_share_of_test_targets"]))
    if s.get("codes"):
        c = s["codes"]
        t.add_row(
            "semantic IDs",
            f"{c['levels']} levels, {c['unique_sids']:,} unique, collision rate {c['collision_rate']:.2%}",
        )
    return t


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"
