"""Result tables: one rich Table per protocol, every caption carrying the protocol stamp.

Sampled (uniN/popN) and full-ranking numbers differ several-fold and can reorder models, so
`render_results` refuses to print them side by side unless ``allow_mixed=True``, and then says
so loudly.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from h2rec.errors import H2RecError
from h2rec.evaluation.evaluator import EvalResult


class MixedProtocolError(H2RecError, ValueError):
    """Sampled and full-ranking results were about to be reported together."""


class MixedProtocolWarning(UserWarning):
    """Sampled and full-ranking results are reported together (allow_mixed=True)."""


def _fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.4f}"


def _group_rows(result: EvalResult) -> list[tuple[str, int, dict[str, float]]]:
    """overall, head, tail, count buckets, quantiles, short, long (the evaluator's order)."""
    rows = [("overall", result.stamp.n_users, result.overall)]
    rows += [(name, g.n_users, g.metrics) for name, g in result.groups.items()]
    return rows


def _caption(results: Sequence[EvalResult]) -> str:
    stamp = results[0].stamp
    lens = sorted({r.stamp.max_len for r in results})
    max_len = str(lens[0]) if len(lens) == 1 else "/".join(map(str, lens)) + " (differs by model)"
    return f"{stamp.describe()} | max_len {max_len}"


def build_table(results: Sequence[EvalResult]) -> Table:
    """One table for results that share a protocol key (raises otherwise)."""
    if not results:
        raise ValueError("no results to tabulate")
    keys = {r.stamp.protocol_key() for r in results}
    if len(keys) != 1:
        raise MixedProtocolError(
            "these results were produced under different protocols and cannot share a table: "
            + "; ".join(sorted({r.stamp.describe() for r in results}))
        )
    names: list[str] = []
    for r in results:
        names += [m for m in r.overall if m not in names]
    stamp = results[0].stamp
    table = Table(
        title=f"{stamp.dataset} / {stamp.split} / {stamp.protocol}",
        caption=_caption(results),
        caption_justify="left",
    )
    table.add_column("model", no_wrap=True)
    table.add_column("group", no_wrap=True, min_width=9)
    table.add_column("n_users", justify="right", no_wrap=True, min_width=7)
    for m in names:
        table.add_column(m, justify="right", no_wrap=True, min_width=max(len(m), 6))
    for i, r in enumerate(results):
        if i:
            table.add_section()
        for j, (group, n_users, metrics) in enumerate(_group_rows(r)):
            label = r.stamp.model_name if j == 0 else ""
            table.add_row(label, group, str(n_users), *(_fmt(metrics.get(m)) for m in names))
    return table


def group_by_protocol(results: Sequence[EvalResult]) -> list[list[EvalResult]]:
    """Results split by protocol key, in order of first appearance."""
    out: dict[tuple[Any, ...], list[EvalResult]] = {}
    for r in results:
        out.setdefault(r.stamp.protocol_key(), []).append(r)
    return list(out.values())


def render_results(
    results: Sequence[EvalResult],
    *,
    allow_mixed: bool = False,
    console: Console | None = None,
) -> list[Table | Panel]:
    """One table per protocol (a red warning panel first when mixing is allowed), returned.

    Raises MixedProtocolError when both sampled and full-ranking results are given, unless
    ``allow_mixed``; then the warning panel leads the output and a MixedProtocolWarning is
    issued. With ``console`` the renderables are also printed there.
    """
    results = list(results)
    out: list[Table | Panel] = []
    if len({r.stamp.sampled for r in results}) > 1:
        protocols = sorted({r.stamp.protocol for r in results})
        message = (
            f"sampled and full-ranking results together ({', '.join(protocols)}): their numbers "
            "are NOT comparable (sampled metrics are several times higher and can reorder models)"
        )
        if not allow_mixed:
            raise MixedProtocolError(message + "; pass allow_mixed=True to show them anyway")
        warnings.warn(message, MixedProtocolWarning, stacklevel=2)
        out.append(Panel(f"[bold]WARNING:[/] {message}", style="bold red"))
    out += [build_table(group) for group in group_by_protocol(results)]
    if console is not None:
        for renderable in out:
            console.print(renderable)
    return out


def print_results(
    results: Sequence[EvalResult], *, allow_mixed: bool = False, console: Console | None = None
) -> list[Table | Panel]:
    """`render_results`, printed to `console` (default: a new stdout Console)."""
    return render_results(results, allow_mixed=allow_mixed, console=console or Console())
