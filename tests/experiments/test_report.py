"""Report aggregation against numpy/scipy computed independently on made-up cell results."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from scipy import stats

from h2rec.experiments.report import collect, paired_test, report, summarize, write_block
from h2rec.experiments.runner import CELL_FORMAT, CellStatus
from h2rec.experiments.spec import ExperimentSpec, cells

# made-up test NDCG@10 per (model, seed), overall and tail
VALUES = {
    "H2Rec": {42: (0.30, 0.20), 43: (0.32, 0.22), 44: (0.31, 0.25)},
    "SASRec": {42: (0.28, 0.10), 43: (0.29, 0.12), 44: (0.30, 0.09)},
    "SID-only": {42: (0.20, 0.15), 43: (0.21, 0.14), 44: (0.19, 0.16)},
}


def _spec(**report) -> ExperimentSpec:
    return ExperimentSpec.model_validate(
        {
            "name": "t2",
            "base": "train/sasrec-synth",
            "datasets": {"synth": {"data": "nowhere"}},
            "seeds": [42, 43, 44],
            "models": {m: {} for m in VALUES},
            "report": {"target": "H2Rec", "metrics": ["NDCG@10"], **report},
        }
    )


def _records(protocol: str = "full") -> list[dict]:
    out = []
    for m, per_seed in VALUES.items():
        for seed, (overall, tail) in per_seed.items():
            out.append(
                {
                    "format": CELL_FORMAT,
                    "dataset": "synth",
                    "model": m,
                    "seed": seed,
                    "wall_seconds": 60.0,
                    "device": "cpu",
                    "results": {
                        protocol: {
                            "stamp": {"split": "test", "tie_policy": "pessimistic"},
                            "overall": {"NDCG@10": overall},
                            "groups": {"tail": {"NDCG@10": tail}, "head": {"NDCG@10": overall}},
                        }
                    },
                }
            )
    return out


def test_mean_and_sample_std_match_numpy() -> None:
    data = collect(_records())
    s = summarize(data[("synth", "H2Rec", "full", "tail", "NDCG@10")])
    v = np.array([0.20, 0.22, 0.25])
    assert s.mean == pytest.approx(v.mean())
    assert s.std == pytest.approx(v.std(ddof=1))
    assert s.n == 3


def test_paired_t_test_matches_the_formula() -> None:
    a = {42: 0.20, 43: 0.22, 44: 0.25}
    b = {42: 0.10, 43: 0.12, 44: 0.09}
    t, p, n = paired_test(a, b)
    d = np.array([0.10, 0.10, 0.16])
    t_hand = d.mean() / (d.std(ddof=1) / math.sqrt(3))
    p_hand = 2 * stats.t.sf(abs(t_hand), df=2)
    assert (t, n) == (pytest.approx(t_hand), 3)
    assert p == pytest.approx(p_hand)
    # only seeds both have are paired; fewer than two pairs gives NaN, never a fake p
    assert math.isnan(paired_test({42: 1.0}, {42: 0.5, 43: 0.4})[1])


def test_report_marks_best_second_and_significance(tmp_path) -> None:
    spec = _spec()
    sts = [CellStatus(c, "done", r) for c, r in zip(_cells_for(spec), _records(), strict=True)]
    md = report(spec, sts, tmp_path)
    # tail: H2Rec best (bold), SID-only second (underlined); overall: H2Rec best, SASRec second
    main = md.split("against every baseline")[0]  # the pairwise grid below has the same rows
    row = {line.split("|")[1].strip(): line for line in main.splitlines() if line.startswith("| ")}
    assert "**0.3100 ± 0.0100**" in row["H2Rec"]
    assert "<u>0.2900 ± 0.0100</u>" in row["SASRec"]
    assert "<u>0.1500 ± 0.0100</u>" in row["SID-only"]
    # strongest baseline = SASRec (best overall mean); tail difference is significant at 0.05
    t, p, _ = paired_test({42: 0.20, 43: 0.22, 44: 0.25}, {42: 0.10, 43: 0.12, 44: 0.09})
    assert p < 0.05
    assert f"tail NDCG@10: H2Rec vs SASRec, t = {t:+.2f}, p = {p:.3g}" in md
    with open(tmp_path / "t2-full.csv") as fh:
        rows = list(csv.DictReader(fh))
    tail = next(r for r in rows if r["model"] == "H2Rec" and r["group"] == "tail")
    assert float(tail["mean"]) == pytest.approx(np.mean([0.20, 0.22, 0.25]))
    assert float(tail["p"]) == pytest.approx(p)
    assert (tmp_path / "report.md").read_text() == md


def test_a_one_seed_leader_does_not_silence_the_t_test(tmp_path) -> None:
    """While a grid fills, a baseline with one seed may lead: the target is then tested against
    the strongest baseline it shares two or more seeds with, and the report says so."""
    spec = ExperimentSpec.model_validate(
        {
            **_spec().model_dump(),
            "models": {m: {} for m in [*VALUES, "BERT4Rec"]},
        }
    )
    records = _records()
    leader = dict(records[0], model="BERT4Rec", seed=42)
    leader["results"] = {
        "full": {**records[0]["results"]["full"], "overall": {"NDCG@10": 0.40}},
    }
    done = [CellStatus(c, "done", r) for c, r in zip(_cells_for(spec), records, strict=False)]
    bert = next(c for c in cells(spec) if c.model == "BERT4Rec" and c.seed == 42)
    md = report(spec, [*done, CellStatus(bert, "done", leader)], tmp_path)
    assert (
        "synth: BERT4Rec has the best mean NDCG@10 but fewer than 2 seeds paired with H2Rec" in md
    )
    t, p, _ = paired_test({42: 0.20, 43: 0.22, 44: 0.25}, {42: 0.10, 43: 0.12, 44: 0.09})
    assert f"tail NDCG@10: H2Rec vs SASRec, t = {t:+.2f}, p = {p:.3g}" in md
    assert "vs BERT4Rec" not in md


def test_significance_marks_say_the_direction(tmp_path) -> None:
    from h2rec.experiments.report import significance_mark

    assert significance_mark(+3.0, 0.03, 0.05) == "*"
    assert significance_mark(+9.0, 0.005, 0.05) == "**"
    assert significance_mark(-3.0, 0.03, 0.05) == "†"
    assert significance_mark(-9.0, 0.005, 0.05) == "††"
    assert significance_mark(-9.0, 0.2, 0.05) == ""
    assert significance_mark(+9.0, math.nan, 0.05) == ""
    # in a table: H2Rec's tail beats SASRec significantly (made-up values above) -> "*"; with
    # the roles swapped (SASRec the target) the same comparison is a significant loss -> "†"
    spec = _spec()
    sts = [CellStatus(c, "done", r) for c, r in zip(_cells_for(spec), _records(), strict=True)]
    tail_col = 3  # ["", model, overall NDCG@10, tail NDCG@10, head NDCG@10, ""]
    row = {
        ln.split("|")[1].strip(): ln.split("|")
        for ln in report(spec, sts, tmp_path / "a").splitlines()
        if ln.startswith("| ")
    }
    assert row["H2Rec"][tail_col].strip().endswith("*")
    assert "†" not in row["H2Rec"][tail_col]
    swapped = _spec(target="SASRec", baselines=["H2Rec"])
    sts = [CellStatus(c, "done", r) for c, r in zip(_cells_for(swapped), _records(), strict=True)]
    md = report(swapped, sts, tmp_path / "b")
    row = {ln.split("|")[1].strip(): ln.split("|") for ln in md.splitlines() if ln.startswith("| ")}
    assert row["SASRec"][tail_col].strip().endswith("†")
    # the table says what its marks mean, for the target it marks and at which p
    assert (
        "(marks on SASRec: `*` significantly higher, `†` significantly lower, at p < 0.05;"
        " doubled at p < 0.01)" in md
    )


def test_protocols_get_separate_tables(tmp_path) -> None:
    spec = _spec(protocols=["full", "uni100"])
    recs = _records("full")
    for r, r2 in zip(recs, _records("uni100"), strict=True):
        r["results"].update(r2["results"])
    sts = [CellStatus(c, "done", r) for c, r in zip(_cells_for(spec), recs, strict=True)]
    md = report(spec, sts, tmp_path)
    assert md.count("#### Protocol `full`") == 1 and md.count("#### Protocol `uni100`") == 1
    assert (tmp_path / "t2-uni100.csv").is_file()


def test_figures_are_written(tmp_path) -> None:
    spec = _spec(
        figures=[
            {
                "kind": "groups",
                "name": "fig4",
                "models": ["H2Rec", "SASRec"],
                "groups": ["tail", "head"],
            }
        ]
    )
    sts = [CellStatus(c, "done", r) for c, r in zip(_cells_for(spec), _records(), strict=True)]
    report(spec, sts, tmp_path)
    assert (tmp_path / "fig4.png").read_bytes()[:4] == b"\x89PNG"


def test_write_block_replaces_only_its_block(tmp_path) -> None:
    doc = tmp_path / "results.md"
    doc.write_text("intro\n<!-- experiment:t2:start -->\nold\n<!-- experiment:t2:end -->\noutro\n")
    write_block(doc, "t2", "new table")
    assert doc.read_text() == (
        "intro\n<!-- experiment:t2:start -->\nnew table\n<!-- experiment:t2:end -->\noutro\n"
    )


def _cells_for(spec: ExperimentSpec):
    """Cells in the order _records() lists them (model-major, then seed)."""
    by = {(c.model, c.seed): c for c in cells(spec)}
    return [by[m, s] for m, per in VALUES.items() for s in per]


def test_each_dataset_gets_its_own_table(tmp_path) -> None:
    """Two datasets: one table each under a bold dataset heading, group/metric columns without
    the dataset prefix, and a model with no result on a dataset left out of that table."""
    spec = ExperimentSpec.model_validate(
        {
            **_spec().model_dump(exclude={"datasets"}),
            "datasets": {"synth": {"data": "nowhere"}, "other": {"data": "nowhere"}},
        }
    )
    by = {(c.dataset, c.model, c.seed): c for c in cells(spec)}
    recs = _records() + [dict(r, dataset="other") for r in _records() if r["model"] != "SID-only"]
    sts = [CellStatus(by[r["dataset"], r["model"], r["seed"]], "done", r) for r in recs]
    md = report(spec, sts, tmp_path)
    table = md.split("#### Protocol `full`")[1].split("Paired")[0]
    blocks: dict[str, list[str]] = {}
    for line in table.splitlines():
        if line.startswith("**") and line.endswith("**"):
            current = blocks.setdefault(line.strip("*"), [])
        elif line.startswith("| "):
            current.append(line.split("|")[1].strip())
    assert blocks == {
        "synth": ["model", "H2Rec", "SASRec", "SID-only"],
        "other": ["model", "H2Rec", "SASRec"],
    }
    assert "| model | overall NDCG@10 | tail NDCG@10 | head NDCG@10 |" in table


def test_published_numbers_follow_our_column_order() -> None:
    """The paper's numbers sit under ours; their columns come in our tables' order (groups x
    metrics), not alphabetically, so a reader compares column by column; unknown ones go last."""
    from h2rec.experiments.report import published_table

    spec = _spec(
        groups=["overall", "tail", "head"],
        metrics=["HR@10", "NDCG@10"],
        published={
            "uni100": {
                "synth": {
                    "H2Rec": {
                        "head NDCG@10": 0.6,
                        "overall HR@10": 0.1,
                        "tail HR@10": 0.3,
                        "Extra": 0.9,
                        "overall NDCG@10": 0.2,
                        "head HR@10": 0.5,
                        "tail NDCG@10": 0.4,
                    }
                }
            }
        },
    )
    table = published_table(spec, "uni100")
    header = next(line for line in table.splitlines() if line.startswith("| model"))
    assert header == (
        "| model | overall HR@10 | overall NDCG@10 | tail HR@10 | tail NDCG@10 | head HR@10 "
        "| head NDCG@10 | Extra |"
    )
    assert "| H2Rec | 0.1000 | 0.2000 | 0.3000 | 0.4000 | 0.5000 | 0.6000 | 0.9000 |" in table
    assert published_table(spec, "full") == ""


def test_holm_adjustment_by_hand() -> None:
    from h2rec.experiments.report import holm

    # four testable p-values (NaN is not part of the family): sorted 0.005, 0.01, 0.03, 0.04
    # -> 4 x 0.005 = 0.02, 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, max(0.06, 1 x 0.04) = 0.06
    adj = holm([0.01, 0.04, 0.03, math.nan, 0.005])
    assert adj[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(adj[3])
    assert adj[4] == pytest.approx(0.02)
    assert holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_target_is_tested_against_every_baseline(tmp_path) -> None:
    spec = _spec()
    sts = [CellStatus(c, "done", r) for c, r in zip(_cells_for(spec), _records(), strict=True)]
    md = report(spec, sts, tmp_path)
    with open(tmp_path / "t2-full-pairwise.csv") as fh:
        rows = {(r["group"], r["baseline"]): r for r in csv.DictReader(fh)}
    assert set(rows) == {
        (g, b) for g in ("overall", "tail", "head") for b in ("SASRec", "SID-only")
    }
    h2 = {s: v[1] for s, v in VALUES["H2Rec"].items()}
    ps = {}
    for b in ("SASRec", "SID-only"):
        other = np.array([VALUES[b][s][1] for s in (42, 43, 44)])
        mine = np.array([h2[s] for s in (42, 43, 44)])
        res = stats.ttest_rel(mine, other)
        r = rows["tail", b]
        assert float(r["diff"]) == pytest.approx((mine - other).mean())
        assert float(r["p"]) == pytest.approx(res.pvalue)
        assert int(r["n_pairs"]) == 3
        ps[b] = res.pvalue
    # Holm over the two baselines of the tail column
    lo, hi = sorted(ps, key=ps.get)
    assert float(rows["tail", lo]["p_holm"]) == pytest.approx(min(1, 2 * ps[lo]))
    assert float(rows["tail", hi]["p_holm"]) == pytest.approx(max(min(1, 2 * ps[lo]), ps[hi]))
    assert "H2Rec against every baseline, NDCG@10" in md
    sid_row = next(line for line in md.splitlines() if line.startswith("| SID-only | +"))
    assert f"{float(rows['tail', 'SID-only']['diff']):+.4f}, p {ps['SID-only']:.2g}" in sid_row
