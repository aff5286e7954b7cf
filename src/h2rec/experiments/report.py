"""Aggregate an experiment's cell results into tables (Markdown, CSV) and figures (PNG).

- Mean and sample standard deviation (ddof = 1) over seeds; n is shown when a cell is missing.
- Per column, the best mean is **bold** and the second best _underlined_ (<u>).
- Significance: a paired two-sided t-test (`scipy.stats.ttest_rel`, pairs = seeds both models
  finished) of the target model (e.g. H2Rec) against the STRONGEST baseline of that dataset and
  protocol, i.e. the baseline with the best mean overall `select_metric`. Where p < alpha the
  target's value is marked by the DIRECTION of the difference: `*` (`**` for p < alpha / 5) when
  it is significantly higher, `†` (`††`) when significantly lower, so a significant loss never
  reads as a win; the p-values are listed under the table.
- Pairwise: the target against EVERY baseline on `select_metric` per dataset and group (mean
  difference, paired t-test p, and Holm-adjusted p within each dataset/group column, since a
  claim such as "H2Rec beats the literature baselines" makes one test per baseline); written
  under the table and as `<name>-<protocol>-pairwise.csv`.
- One table per protocol: sampled (uniN/popN) and full-ranking numbers never share a table.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from h2rec.experiments.runner import CellStatus
from h2rec.experiments.spec import ExperimentSpec, slug
from h2rec.io import atomic_write_bytes, atomic_write_text

Key = tuple[str, str, str, str, str]  # dataset, model, protocol, group, metric


def collect(records: list[dict[str, Any]]) -> dict[Key, dict[int, float]]:
    """{(dataset, model, protocol, group, metric): {seed: value}}; group "overall" included."""
    out: dict[Key, dict[int, float]] = {}
    for rec in records:
        for protocol, res in rec["results"].items():
            groups = {"overall": res["overall"], **res["groups"]}
            for group, metrics in groups.items():
                for metric, value in metrics.items():
                    if value is None:
                        continue
                    key = (rec["dataset"], rec["model"], protocol, group, metric)
                    out.setdefault(key, {})[int(rec["seed"])] = float(value)
    return out


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float  # sample std (ddof = 1); 0 for a single seed
    n: int


def summarize(values: dict[int, float]) -> Stat:
    v = list(values.values())
    return Stat(statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v))


def paired_test(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, int]:
    """(t, two-sided p, number of pairs) of a vs b over the seeds both have; NaN when < 2 pairs
    or when every difference is identical (the t statistic is undefined)."""
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return math.nan, math.nan, len(seeds)
    diffs = [a[s] - b[s] for s in seeds]
    if max(diffs) == min(diffs):
        return math.nan, math.nan, len(seeds)
    res = stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds])
    return float(res.statistic), float(res.pvalue), len(seeds)


def baseline_labels(spec: ExperimentSpec) -> list[str]:
    if spec.report.baselines is not None:
        return list(spec.report.baselines)
    return [m for m, e in spec.models.items() if m != spec.report.target and e.group is None]


def strongest(
    spec: ExperimentSpec,
    data: dict[Key, dict[int, float]],
    dataset: str,
    protocol: str,
    *,
    testable: bool = False,
) -> str | None:
    """The baseline with the best mean overall `select_metric` on this dataset and protocol.

    `testable`: only baselines sharing at least two seeds with the target (a paired test needs
    two pairs), so that while a grid fills, the target is tested against the strongest baseline
    that can be tested rather than against none."""
    best, best_mean = None, -math.inf
    metric = spec.report.select_metric
    target = data.get((dataset, spec.report.target, protocol, "overall", metric)) or {}
    for m in baseline_labels(spec):
        vals = data.get((dataset, m, protocol, "overall", metric))
        if not vals or (testable and len(set(vals) & set(target)) < 2):
            continue
        if summarize(vals).mean > best_mean:
            best, best_mean = m, summarize(vals).mean
    return best


def _rank_marks(means: dict[str, float]) -> dict[str, str]:
    order = sorted(means, key=lambda m: -means[m])
    marks = {}
    if order:
        marks[order[0]] = "best"
    if len(order) > 1 and means[order[1]] < means[order[0]]:
        marks[order[1]] = "second"
    return marks


def sid_columns(spec: ExperimentSpec) -> dict[tuple[str, str], dict[str, str]]:
    """(dataset, model) -> {"coll. %", "occup. %"} of the SIDs each model's config names, read
    from the tokenizer diagnostics stored with the dataset (Table 8's extra columns). Occupancy
    is |items| / K^L, what the paper calls "Util."; real per-level use is in the diagnostics."""
    from h2rec.experiments.spec import cells

    out: dict[tuple[str, str], dict[str, str]] = {}
    for cell in cells(spec):
        if (cell.dataset, cell.model) in out:
            continue
        cfg = cell.train_config()
        sids = cfg.model.params().get("sids")
        diag = Path(cfg.data) / "sids" / str(sids) / "diagnostics.json"
        if sids and diag.is_file():
            d = json.loads(diag.read_text(encoding="utf-8"))
            out[cell.dataset, cell.model] = {
                "coll. %": f"{100 * d['collision']['rate']:.2f}",
                "occup. %": f"{100 * d['occupancy']:.3g}",
            }
    return out


def significance_mark(t: float, p: float, alpha: float) -> str:
    """`*`/`**` for a significantly higher target, `†`/`††` for a significantly lower one
    (the second mark at p < alpha / 5), "" when p >= alpha."""
    if math.isnan(p) or p >= alpha:
        return ""
    mark = "*" if t > 0 else "†"
    return mark * 2 if p < alpha / 5 else mark


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down; NaN entries are left out of the family and
    stay NaN): the smallest of m p-values is multiplied by m, the next by m - 1, ..., and the
    running maximum keeps the adjusted values monotone."""
    idx = sorted((i for i, p in enumerate(pvalues) if not math.isnan(p)), key=lambda i: pvalues[i])
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (len(idx) - rank) * pvalues[i]))
        out[i] = running
    return out


def pairwise(
    spec: ExperimentSpec, data: dict[Key, dict[int, float]], protocol: str
) -> list[dict[str, Any]]:
    """The target against every baseline on `select_metric`, per dataset and group: one row per
    (dataset, group, baseline) with both means, their difference, t, p and Holm-adjusted p (the
    family is one dataset/group column). Empty when no pair has two shared seeds."""
    rep = spec.report
    if rep.target is None:
        return []
    rows: list[dict[str, Any]] = []
    for d in spec.datasets:
        for g in rep.groups:
            tgt = data.get((d, rep.target, protocol, g, rep.select_metric))
            if not tgt:
                continue
            col = []
            for b in baseline_labels(spec):
                base = data.get((d, b, protocol, g, rep.select_metric))
                if not base:
                    continue
                t, p, n = paired_test(tgt, base)
                seeds = sorted(set(tgt) & set(base))
                diff = statistics.fmean(tgt[s] - base[s] for s in seeds) if seeds else math.nan
                col.append(
                    {
                        "dataset": d,
                        "group": g,
                        "metric": rep.select_metric,
                        "target": rep.target,
                        "baseline": b,
                        "target_mean": summarize(tgt).mean,
                        "baseline_mean": summarize(base).mean,
                        "diff": diff,
                        "t": t,
                        "p": p,
                        "n_pairs": n,
                    }
                )
            for row, adj in zip(col, holm([r["p"] for r in col]), strict=True):
                row["p_holm"] = adj
            rows += col
    return rows if any(not math.isnan(r["p"]) for r in rows) else []


def pairwise_markdown(spec: ExperimentSpec, rows: list[dict[str, Any]]) -> str:
    """Baselines x (dataset, group) grid of "difference, p (Holm p)"."""
    cols = list(dict.fromkeys((r["dataset"], r["group"]) for r in rows))
    bases = list(dict.fromkeys(r["baseline"] for r in rows))
    cell = {(r["baseline"], r["dataset"], r["group"]): r for r in rows}
    multi = len({d for d, _ in cols}) > 1
    header = ["baseline", *[f"{d} {g}" if multi else g for d, g in cols]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for b in bases:
        out = [b]
        for d, g in cols:
            r = cell.get((b, d, g))
            if r is None or r["n_pairs"] == 0:
                out.append("–")
            elif math.isnan(r["p"]):
                out.append(f"{r['diff']:+.4f} (n={r['n_pairs']})")
            else:
                out.append(f"{r['diff']:+.4f}, p {r['p']:.2g} ({r['p_holm']:.2g})")
        lines.append("| " + " | ".join(out) + " |")
    rep = spec.report
    return (
        f"{rep.target} against every baseline, {rep.select_metric}: mean paired difference "
        f"({rep.target} minus baseline), two-sided paired t-test p and, in brackets, p "
        "Holm-adjusted over the baselines of its column (n = shared seeds where fewer than "
        "two):\n\n" + "\n".join(lines)
    )


def protocol_table(
    spec: ExperimentSpec, data: dict[Key, dict[int, float]], protocol: str
) -> tuple[str, list[dict[str, Any]]]:
    """Markdown tables (models x group/metric, one per dataset) and the long-format rows of all
    of them (for CSV)."""
    rep = spec.report
    models = [m for m in spec.models if any(k[1] == m and k[2] == protocol for k in data)]
    columns = [(d, g, m) for d in spec.datasets for g in rep.groups for m in rep.metrics]
    columns = [c for c in columns if any((c[0], mm, protocol, c[1], c[2]) in data for mm in models)]
    rows: list[dict[str, Any]] = []
    text: dict[tuple[str, tuple[str, str, str]], str] = {}
    notes: list[str] = []
    bases = {d: strongest(spec, data, d, protocol, testable=True) for d in spec.datasets}
    for d, base in bases.items():
        if len(data.get((d, rep.target, protocol, "overall", rep.select_metric), {})) < 2:
            continue  # a target with fewer than two seeds here is never tested
        best = strongest(spec, data, d, protocol)
        if best is not None and best != base:
            notes.append(
                f"{d}: {best} has the best mean {rep.select_metric} but fewer than 2 seeds "
                f"paired with {rep.target}, so {rep.target} is tested against "
                f"{base or 'no baseline'} until it has them"
            )
    for d, g, metric in columns:
        stats = {
            m: summarize(data[(d, m, protocol, g, metric)])
            for m in models
            if (d, m, protocol, g, metric) in data
        }
        marks = _rank_marks({m: s.mean for m, s in stats.items()})
        base = bases[d]
        t = p = math.nan
        n_pairs = 0
        if rep.target in stats and base in stats:
            t, p, n_pairs = paired_test(
                data[(d, rep.target, protocol, g, metric)], data[(d, base, protocol, g, metric)]
            )
            if not math.isnan(p):
                notes.append(
                    f"{d} {g} {metric}: {rep.target} vs {base}, t = {t:+.2f}, p = {p:.3g} "
                    f"({n_pairs} paired seeds)"
                )
        for m, s in stats.items():
            cell = f"{s.mean:.4f} ± {s.std:.4f}" if s.n > 1 else f"{s.mean:.4f}"
            if s.n < len(spec.seeds):
                cell += f" (n={s.n})"
            if marks.get(m) == "best":
                cell = f"**{cell}**"
            elif marks.get(m) == "second":
                cell = f"<u>{cell}</u>"
            if m == rep.target:
                cell += significance_mark(t, p, rep.alpha)
            text[(m, (d, g, metric))] = cell
            rows.append(
                {
                    "dataset": d,
                    "model": m,
                    "protocol": protocol,
                    "group": g,
                    "metric": metric,
                    "mean": s.mean,
                    "std": s.std,
                    "n": s.n,
                    "values": " ".join(
                        f"{seed}:{v:.6f}"
                        for seed, v in sorted(data[(d, m, protocol, g, metric)].items())
                    ),
                    "vs_strongest": base if m == rep.target else "",
                    "t": t if m == rep.target else "",
                    "p": p if m == rep.target else "",
                }
            )
    extra = sid_columns(spec) if "sid" in rep.extra_columns else {}
    extra_cols = [(d, name) for d in spec.datasets for name in ("coll. %", "occup. %")]
    extra_cols = [c for c in extra_cols if any((c[0], m) in extra for m in models)]
    # one table per dataset: a models x (group, metric) grid stays readable; with one dataset
    # the table has no dataset heading
    lines: list[str] = []
    datasets = [d for d in spec.datasets if any(c[0] == d for c in columns)]
    for d in datasets:
        cols_d = [c for c in columns if c[0] == d]
        extra_d = [c for c in extra_cols if c[0] == d]
        header = ["model", *[f"{g} {m}" for _, g, m in cols_d], *[n for _, n in extra_d]]
        if len(datasets) > 1:
            lines += [*([""] if lines else []), f"**{d}**", ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for m in models:
            if not any((m, c) in text for c in cols_d):
                continue
            cells_ = [text.get((m, c), "–") for c in cols_d]
            cells_ += [extra.get((dd, m), {}).get(n, "–") for dd, n in extra_d]
            lines.append("| " + " | ".join([m, *cells_]) + " |")
    md = "\n".join(lines)
    if notes:
        md += (
            "\n\nPaired two-sided t-tests against the strongest testable baseline"
            f" (marks on {rep.target}: `*` significantly higher, `†` significantly lower, at"
            f" p < {rep.alpha:g}; doubled at p < {rep.alpha / 5:g}):\n\n"
            + "\n".join(f"- {n}" for n in notes)
        )
    return md, rows


def published_table(spec: ExperimentSpec, protocol: str) -> str:
    """The paper's published numbers for this protocol, as a table (no marks)."""
    pub = spec.report.published.get(protocol)
    if not pub:
        return ""
    present = {c for per_ds in pub.values() for per_m in per_ds.values() for c in per_m}
    # the column order of this project's tables above it (group x metric), then any others
    ours = [f"{g} {m}" for g in spec.report.groups for m in spec.report.metrics]
    cols = [c for c in ours if c in present] + sorted(present - set(ours))
    lines = []
    for d, per_ds in pub.items():
        lines += [f"\n{d} (published):\n", "| model | " + " | ".join(cols) + " |"]
        lines.append("|" + "---|" * (len(cols) + 1))
        for m, vals in per_ds.items():
            lines.append(
                f"| {m} | "
                + " | ".join(f"{vals[c]:.4f}" if c in vals else "–" for c in cols)
                + " |"
            )
    src = f" Source: {spec.report.published_source}." if spec.report.published_source else ""
    return "\n".join(lines) + f"\n\n(Different protocol details: see the text.{src})"


def _figure(
    spec: ExperimentSpec, data: dict[Key, dict[int, float]], fig_spec: Any, out: Path
) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [fig_spec.dataset] if fig_spec.dataset else list(spec.datasets)
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.2), squeeze=False)
    drew = False
    for ax, d in zip(axes[0], datasets, strict=True):
        if fig_spec.kind == "sweep":
            members = [
                (e.x, m)
                for m, e in spec.models.items()
                if e.group == fig_spec.sweep and e.x is not None
            ] + [(x, m) for m, x in fig_spec.points.items()]
            members.sort()
            for g in fig_spec.groups:
                xs, ys, es = [], [], []
                for x, m in members:
                    vals = data.get((d, m, fig_spec.protocol, g, fig_spec.metric))
                    if vals:
                        s = summarize(vals)
                        xs.append(x)
                        ys.append(s.mean)
                        es.append(s.std)
                if xs:
                    ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=g)
                    drew = True
            ax.set_xlabel(fig_spec.sweep or "")
        else:
            width = 0.8 / max(1, len(fig_spec.models))
            for j, m in enumerate(fig_spec.models):
                ys, es = [], []  # whiskers: sample std over seeds (none for a single seed)
                for g in fig_spec.groups:
                    vals = data.get((d, m, fig_spec.protocol, g, fig_spec.metric))
                    s = summarize(vals) if vals else None
                    ys.append(s.mean if s else math.nan)
                    es.append(s.std if s else 0.0)
                xs = [i + j * width for i in range(len(fig_spec.groups))]
                ax.bar(xs, ys, width=width, label=m, yerr=es, capsize=2, error_kw={"lw": 0.8})
                drew = drew or any(not math.isnan(y) for y in ys)
            ax.set_xticks([i + 0.4 - width / 2 for i in range(len(fig_spec.groups))])
            ax.set_xticklabels(fig_spec.groups, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{d} ({fig_spec.protocol})")
        ax.set_ylabel(fig_spec.metric)
        ax.legend(fontsize=7)
    if not drew:
        plt.close(fig)
        return None
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    path = out / f"{fig_spec.name}.png"
    atomic_write_bytes(path, buf.getvalue())
    return path


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows of one shape as a CSV file, written atomically (header from the first row)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def report(spec: ExperimentSpec, statuses: list[CellStatus], out: Path | None = None) -> str:
    """Write report.md, one CSV per protocol and the figures under `out` (default:
    `<results_dir>/reports/<name>`, so experiments sharing a results folder keep apart);
    return the Markdown."""
    out = out or spec.results_path / "reports" / spec.name
    done = [st for st in statuses if st.state == "done" and st.record is not None]
    stale = [st.cell.key for st in statuses if st.state == "stale"]
    records = [st.record for st in done if st.record is not None]
    data = collect(records)
    hours = sum(float(r.get("wall_seconds") or 0.0) for r in records) / 3600
    devices = sorted({str(r.get("device")) for r in records})
    parts = [
        f"### {spec.name}" + (f": {spec.description}" if spec.description else ""),
        "",
        f"{len(done)} of {len(statuses)} cells finished ({', '.join(spec.datasets)}; seeds "
        f"{', '.join(map(str, spec.seeds))}); compute {hours:.1f} h on {', '.join(devices) or '-'}."
        + (f" Stale (config changed, not shown): {', '.join(stale)}." if stale else ""),
        "Metrics are test-split means ± sample std over seeds; models selected on validation.",
    ]
    for protocol in spec.report.protocols:
        md, rows = protocol_table(spec, data, protocol)
        if not rows:
            continue
        stamp = next(
            (r["results"][protocol]["stamp"] for r in records if protocol in r["results"]), {}
        )
        parts += [
            "",
            f"#### Protocol `{protocol}` (split {stamp.get('split', 'test')}, ties "
            f"{stamp.get('tie_policy', '?')}, history excluded: {stamp.get('exclude_history', '?')}"
            + (
                f", negatives seed {stamp['negatives_seed']}"
                if stamp.get("negatives_seed") is not None
                else ""
            )
            + ")",
            "",
            md,
        ]
        pair_rows = pairwise(spec, data, protocol)
        if pair_rows:
            parts += ["", pairwise_markdown(spec, pair_rows)]
            _write_csv(out / f"{spec.name}-{protocol}-pairwise.csv", pair_rows)
        pub = published_table(spec, protocol)
        if pub:
            parts += ["", pub]
        _write_csv(out / f"{spec.name}-{protocol}.csv", rows)
    figures = []
    for fig_spec in spec.report.figures:
        path = _figure(spec, data, fig_spec, out)
        if path is not None:
            figures.append(path)
    if figures:
        parts += ["", "Figures: " + ", ".join(f"`{p}`" for p in figures)]
    md = "\n".join(parts) + "\n"
    atomic_write_text(out / "report.md", md)
    return md


def write_block(doc: Path, name: str, markdown: str) -> None:
    """Replace (or append) the `<!-- experiment:NAME:start/end -->` block of a Markdown file."""
    start, end = f"<!-- experiment:{name}:start -->", f"<!-- experiment:{name}:end -->"
    text = doc.read_text(encoding="utf-8") if doc.is_file() else ""
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    atomic_write_text(doc, text)


__all__ = [
    "collect",
    "holm",
    "paired_test",
    "pairwise",
    "protocol_table",
    "report",
    "slug",
    "summarize",
    "write_block",
]
