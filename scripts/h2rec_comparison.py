"""H2Rec vs SASRec vs SID-only vs HID+SID concat (issue 5, section 10): run and report.

Resumable: a finished cell (its summary in docs/results/h2rec/, committed, or in its run folder)
is skipped, an interrupted one resumes from its last checkpoint. Each finished cell's summary and test results are copied to
docs/results/h2rec/ (small JSON files, committed). Cells can be split over processes with
--lane i/n (cell k runs in lane k mod n), e.g. two single-threaded lanes on a 2-core machine.

    python scripts/h2rec_comparison.py run --datasets beauty --lane 0/2 --threads 1
    python scripts/h2rec_comparison.py report [--write docs/results.md]   # tables from docs/results/h2rec/
    python scripts/h2rec_comparison.py alpha --run runs/cmp-h2rec-beauty-s42   # alpha statistics
    python scripts/h2rec_comparison.py geometry --run runs/cmp-h2rec-beauty-s42   # L_CA's effect
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results" / "h2rec"
MODELS = {  # label -> config stem; H2Rec first so that with two lanes it starts at once
    "H2Rec": "h2rec-{ds}",
    "SASRec": "sasrec-{ds}-bpr",
    "SID-only": "sid-only-{ds}",
    "HID+SID concat": "hid-sid-concat-{ds}",
}
SEEDS = (42, 43, 44)
ABLATIONS = {  # label -> (config stem, overrides): the "find out why" runs
    "H2Rec w/o L_CA": ("h2rec-{ds}", ["model.beta=0"]),
    "H2Rec w/o L_MSG": ("h2rec-{ds}", ["model.gamma=0"]),
    "H2Rec w/o L_CA, L_MSG": ("h2rec-{ds}", ["model.beta=0", "model.gamma=0"]),
    "H2Rec beta=0.1": ("h2rec-{ds}", ["model.beta=0.1"]),  # the reference code's L_CA weight
    # L_CA's positives without the co-occurrence window: is it P_H(i) that hurts?
    "H2Rec L_CA w/o co-occurrence": ("h2rec-{ds}", ["model.ca_cooccurrence=false"]),
    "HID+SID concat, random HID": (  # is concat's PCA-initialised HID table what holds it back?
        "hid-sid-concat-{ds}",
        ["model.hid_init=random", "model.text_embeddings=null"],
    ),
}


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-").replace("--", "-")


def cell_spec(label: str, ds: str, seed: int) -> tuple[str, str, list[str]]:
    """(run name, config stem, overrides) of one cell."""
    if label in MODELS:
        stem = MODELS[label].format(ds=ds)
        return f"cmp-{stem}-s{seed}", stem, []
    stem, overrides = ABLATIONS[label]
    return f"abl-{_slug(label)}-{ds}-s{seed}", stem.format(ds=ds), list(overrides)


def cells(datasets: list[str], models: list[str], seeds: list[int]) -> list[tuple[str, str, int]]:
    return [(ds, m, s) for ds in datasets for s in seeds for m in models]


def run(args: argparse.Namespace) -> None:
    from h2rec.config import load_config
    from h2rec.training import TrainConfig, Trainer

    lane, n_lanes = (int(x) for x in args.lane.split("/"))
    todo = cells(args.datasets, args.models, args.seeds)
    for k, (ds, label, seed) in enumerate(todo):
        if k % n_lanes != lane:
            continue
        name, stem, extra = cell_spec(label, ds, seed)
        overrides = [*extra, f"seed={seed}", f"name={name}"]
        if args.threads:
            overrides.append(f"threads={args.threads}")
        dest = OUT / ds
        if (dest / f"{name}.summary.json").is_file():
            continue  # finished in an earlier session (its run folder may be gone)
        cfg = load_config(TrainConfig, f"train/{stem}", overrides)
        run_dir = Path(cfg.runs_dir) / name
        if not (run_dir / "summary.json").is_file():
            resume = (run_dir / "checkpoints" / "last").exists()
            print(f"[{k + 1}/{len(todo)}] {name} ({'resume' if resume else 'start'})", flush=True)
            Trainer(cfg).fit(resume=resume, overwrite=not resume)
        dest.mkdir(parents=True, exist_ok=True)
        for f in (run_dir / "results").glob("*.json"):
            shutil.copy(f, dest / f"{name}.{f.name}")
        if (run_dir / "metrics.jsonl").is_file():
            shutil.copy(run_dir / "metrics.jsonl", dest / f"{name}.metrics.jsonl")
        shutil.copy(run_dir / "summary.json", dest / f"{name}.summary.json")  # last: "done" mark


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {std:.4f}" if len(values) > 1 else f"{mean:.4f}"


def report(args: argparse.Namespace) -> None:
    lines = []
    for ds in args.datasets:
        for protocol in ("full", "uni100"):
            rows = []
            for label in [*MODELS, *ABLATIONS]:
                got: dict[str, list[float]] = {}
                seeds, secs = [], []
                for seed in args.seeds:
                    name = cell_spec(label, ds, seed)[0]
                    path = OUT / ds / f"{name}.test-{protocol}.json"
                    summ = OUT / ds / f"{name}.summary.json"
                    if not path.is_file():
                        continue
                    res = json.loads(path.read_text())
                    seeds.append(seed)
                    secs.append(json.loads(summ.read_text())["train_seconds"])
                    for group, key in (("overall", None), ("head", "head"), ("tail", "tail")):
                        metrics = res["overall"] if key is None else res["groups"][key]["metrics"]
                        for m in ("HR@10", "NDCG@10"):
                            got.setdefault(f"{group} {m}", []).append(metrics[m])
                if not seeds:
                    continue
                cols = [
                    _mean_std(got[f"{g} {m}"])
                    for g in ("overall", "head", "tail")
                    for m in ("HR@10", "NDCG@10")
                ]
                mins = statistics.fmean(secs) / 60
                rows.append(
                    f"| {label} | {','.join(map(str, seeds))} | "
                    + " | ".join(cols)
                    + f" | {mins:.0f} |"
                )
            if rows:
                lines += [
                    f"**{ds}, {protocol}** (test, leave-one-out, pessimistic ties; mean ± std over seeds)",
                    "",
                    "| model | seeds | HR@10 | NDCG@10 | head HR@10 | head NDCG@10 | tail HR@10 "
                    "| tail NDCG@10 | train min/run |",
                    "|---|---|---|---|---|---|---|---|---|",
                    *rows,
                    "",
                ]
    text = "\n".join(lines)
    if args.write:
        path = Path(args.write)
        doc = path.read_text(encoding="utf-8")
        start, end = "<!-- h2rec-report:start -->", "<!-- h2rec-report:end -->"
        if start not in doc or end not in doc:
            raise SystemExit(f"{path}: no {start} ... {end} block to replace")
        head, rest = doc.split(start, 1)
        tail = rest.split(end, 1)[1]
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(f"{head}{start}\n{text}\n{end}{tail}", encoding="utf-8")
        tmp.replace(path)  # atomic: a reader never sees a half-written file
    print(text)


def alpha(args: argparse.Namespace) -> None:
    """Fusion weights alpha of a trained H2Rec over the test users: mean and std per level,
    split by whether the user's last item (the query) is a head or a tail item."""
    import numpy as np
    import torch

    from h2rec.data.popularity import head_mask
    from h2rec.evaluation.examples import build_examples
    from h2rec.training.trainer import load_run

    cfg, trainer = load_run(args.run)
    model = trainer.model.eval()
    ex = build_examples(trainer.ds, "test", cfg.max_len)
    out = []
    with torch.no_grad():
        for start in range(0, len(ex.users), 4096):
            h = torch.from_numpy(ex.histories[start : start + 4096]).to(trainer.device)
            out.append(model.fusion_weights(h).float().cpu().numpy())
    a = np.concatenate(out)
    head = head_mask(trainer.ds.item_popularity("train"))[ex.histories[:, -1]]
    print(f"{args.run}: alpha over {len(a):,} test users ({a.shape[1]} levels)")
    for name, rows in (("all", slice(None)), ("last item head", head), ("last item tail", ~head)):
        sub = a[rows]
        print(
            f"  {name:>15}: mean "
            + " ".join(f"{v:.3f}" for v in sub.mean(0))
            + "  std "
            + " ".join(f"{v:.3f}" for v in sub.std(0))
            + f"  (n={len(sub):,})"
        )
    if hasattr(model.fusion, "b_prior"):
        prior = torch.softmax(model.fusion.b_prior.detach().float(), 0).cpu().numpy()
        print("  softmax(b_prior): " + " ".join(f"{v:.3f}" for v in prior))


def geometry(args: argparse.Namespace) -> None:
    """What L_CA does to the item tables of a trained H2Rec: the cosine between each item's HID
    embedding and its SID embedding (the mean of its code rows), the HID table's effective rank
    (participation ratio of its centred singular values), and the HID cosine of random item
    pairs against pairs sharing their first code (200k pairs each draw, seed 0)."""
    import torch
    import torch.nn.functional as F

    from h2rec.training.trainer import load_run

    _, trainer = load_run(args.run)
    model = trainer.model.eval()
    n = model.n_items
    with torch.no_grad():
        hid = model.hid.embedding.weight[1 : n + 1].float()
        sid = model.codes.levels(torch.arange(1, n + 1, device=hid.device)).float().mean(1)
        self_cos = F.cosine_similarity(hid, sid, dim=-1).mean()
        sv = torch.linalg.svdvals(hid - hid.mean(0))
        rank = (sv**2).sum() ** 2 / (sv**4).sum()
        first = model.codes.item_rows[1 : n + 1, 0]
        g = torch.Generator().manual_seed(0)
        i, j = torch.randint(0, n, (2, 200_000), generator=g)
        unit = F.normalize(hid, dim=-1).cpu()
        pair = (unit[i] * unit[j]).sum(-1)
        same = ((first.cpu()[i] == first.cpu()[j]) & (i != j)).numpy()
    print(
        f"{args.run}: cos(HID_i, SID_i) {float(self_cos):.3f}; HID effective rank "
        f"{float(rank):.1f} of {hid.shape[1]}; HID cosine of random pairs {float(pair.mean()):.3f}, "
        f"of pairs sharing code 1 {float(pair[same].mean()):.3f}"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("command", choices=["run", "report", "alpha", "geometry"])
    p.add_argument("--run", help="alpha: a trained H2Rec run folder")
    p.add_argument("--write", help="report: replace the marked block in this Markdown file")
    p.add_argument("--datasets", nargs="+", default=["beauty", "yelp"])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=[*MODELS, *ABLATIONS])
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    p.add_argument("--lane", default="0/1", help="i/n: run every n-th cell starting at i")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    {"run": run, "report": report, "alpha": alpha, "geometry": geometry}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
