"""H2Rec's cost against SASRec at the same size (issue 5, section 11).

For each training loss (Eq. 10's BPR with one negative, full-softmax CE) it builds SASRec, H2Rec
with every component and H2Rec without the auxiliary losses in ONE process and times them
INTERLEAVED: round r runs one training step of each model on its r-th batch, and each model's
full-ranking pass over the validation users is repeated in alternation. So a burst of other work
on a shared machine hits all models alike; the ratios to SASRec are medians of per-round ratios.
Peak RSS comes from a separate subprocess per model (build, a few steps, one evaluation).
Targets: training step <= 3x SASRec's, full-ranking inference <= 2x. Last, the encoder floor:
what H2Rec's three encoder passes alone cost against SASRec's whole step.

Needs a prepared dataset with SIDs and text embeddings (default: Beauty, made by
`h2rec prepare -c data/beauty && h2rec embed beauty -c embed/minilm &&
h2rec tokenize beauty -c tokenize/rqvae-4x128`).

Run: python benchmarks/bench_h2rec.py [--data artifacts/prepared/beauty] [--steps 30] [--threads 2]
     [--losses bpr ce] [--adam fused|foreach|for-loop]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

H2REC = {
    "name": "h2rec",
    "sids": "rqvae-4x128",
    "text_embeddings": "st-all-minilm-l6-v2",
}
MODELS = {
    "sasrec": {"name": "sasrec"},
    "h2rec": H2REC,
    "h2rec-no-aux": {**H2REC, "beta": 0.0, "gamma": 0.0},
}


def build(data: str, model: str, loss: str, adam: str = "fused"):  # type: ignore[no-untyped-def]
    from h2rec.config import load_config
    from h2rec.training import TrainConfig, Trainer

    tmp = Path(tempfile.mkdtemp(prefix="h2rec-bench-h2rec-"))
    spec = {**MODELS[model], "hidden_size": 64, "n_layers": 2, "n_heads": 1, "dropout": 0.5}
    cfg = load_config(
        TrainConfig,
        "train/sasrec-beauty-bpr",
        [
            f"data={data}",
            f"runs_dir={tmp}",
            "name=b",
            f"objective.loss={loss}",
            f"optim.implementation={adam}",
            "model=" + json.dumps(spec),
        ],
    )
    tr = Trainer(cfg)
    assert tr.optimizer is not None
    norm = tr.targets_per_batch
    it = tr.batches.epoch(0)

    def step() -> tuple[float, int]:
        batch = next(it)
        t0 = time.perf_counter()
        loss_value, _ = tr.objective(tr.model, batch.as_dict(), target_norm=norm)
        tr.optimizer.zero_grad(set_to_none=True)
        loss_value.backward()
        tr.optimizer.step()
        return time.perf_counter() - t0, batch.inputs.shape[0]

    def evaluate() -> tuple[float, int]:
        tr.model.eval()
        t0 = time.perf_counter()
        res = tr.evaluate("valid", "full")
        seconds = time.perf_counter() - t0
        tr.model.train()
        return seconds, res.stamp.n_users

    tr.model.train()
    return tr, step, evaluate


def timings(data: str, loss: str, steps: int, eval_repeats: int, adam: str) -> list[dict]:
    built = {m: build(data, m, loss, adam) for m in MODELS}
    for _, step, _ in built.values():
        for _ in range(3):  # warm-up
            step()
    step_s: dict[str, list[float]] = {m: [] for m in MODELS}
    seqs: dict[str, int] = dict.fromkeys(MODELS, 0)
    for _ in range(steps):
        for m, (_, step, _) in built.items():
            sec, n = step()
            step_s[m].append(sec)
            seqs[m] += n
    eval_s: dict[str, list[float]] = {m: [] for m in MODELS}
    users = 0
    for _ in range(eval_repeats):
        for m, (_, _, evaluate) in built.items():
            sec, users = evaluate()
            eval_s[m].append(sec)
    rows = []
    for m, (tr, _, _) in built.items():
        rows.append(
            {
                "model": m,
                "loss": loss,
                "params": sum(p.numel() for p in tr.model.parameters()),
                "step_ms": 1000 * statistics.median(step_s[m]),
                "seq_per_s": seqs[m] / sum(step_s[m]),
                "step_ratio": statistics.median(
                    a / b for a, b in zip(step_s[m], step_s["sasrec"], strict=True)
                ),
                "eval_s": min(eval_s[m]),
                "eval_users_per_s": users / min(eval_s[m]),
                "eval_ratio": statistics.median(
                    a / b for a, b in zip(eval_s[m], eval_s["sasrec"], strict=True)
                ),
            }
        )
    return rows


def encoder_floor(data: str, steps: int, adam: str) -> tuple[float, float]:
    """(SASRec's encoder forward + backward / SASRec's BPR step, H2Rec's three encoder passes /
    SASRec's BPR step), medians of per-batch ratios on the same batches, interleaved.

    The three passes are what any H2Rec step must run: the SID encoder over the global and the
    L_MSG-masked view (the masked one's last layer at the last slot only) and the HID encoder.
    Their cost against SASRec's WHOLE step bounds how close H2Rec's step can get to SASRec's."""
    import torch

    from h2rec.models.parts.encoders import encode_full_and_last

    tr, _, _ = build(data, "sasrec", "bpr", adam)
    h2rec = build(data, "h2rec", "bpr", adam)[0].model
    model, opt, norm = tr.model, tr.optimizer, tr.targets_per_batch
    assert opt is not None
    batches = [b.as_dict() for _, b in zip(range(steps + 3), tr.batches.epoch(1), strict=False)]

    def full(b: dict) -> None:
        loss, _ = tr.objective(model, b, target_norm=norm)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sasrec_encoder(b: dict) -> None:
        seqs = b["inputs"]
        emb = model.input_embeddings(seqs).detach().requires_grad_()
        model.encoder(emb, seqs != 0).sum().backward()

    def h2rec_encoders(b: dict) -> None:
        seqs = b["inputs"]
        mask, n = seqs != 0, seqs.shape[0]
        emb = torch.randn(*seqs.shape, h2rec.d, requires_grad=True)
        both = torch.cat([emb, emb])
        glob, last = encode_full_and_last(h2rec.sid_encoder, both, torch.cat([mask, mask]), n)
        hid = h2rec.hid_encoder(emb, mask)
        (glob.sum() + last.sum() + hid.sum()).backward()

    times: dict[str, list[float]] = {"full": [], "enc": [], "h2": []}
    for i, b in enumerate(batches):
        for key, fn in (("full", full), ("enc", sasrec_encoder), ("h2", h2rec_encoders)):
            t0 = time.perf_counter()
            fn(b)
            if i >= 3:  # warm-up
                times[key].append(time.perf_counter() - t0)
    pairs = list(zip(times["enc"], times["h2"], times["full"], strict=True))
    return statistics.median(e / f for e, _, f in pairs), statistics.median(
        h / f for _, h, f in pairs
    )


def peak_rss(data: str, model: str, loss: str, adam: str) -> float:
    """Peak RSS (MB) of a process that builds one model, trains 3 steps and evaluates once."""
    _, step, evaluate = build(data, model, loss, adam)
    for _ in range(3):
        step()
    evaluate()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default="artifacts/prepared/beauty")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-repeats", type=int, default=3)
    ap.add_argument("--losses", nargs="+", default=["bpr", "ce"])
    ap.add_argument(
        "--adam",
        default="fused",
        choices=["fused", "foreach", "for-loop"],
        help="optim.implementation of every model (the library's default: fused)",
    )
    ap.add_argument("--rss-worker", nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.rss_worker is not None:
        print(json.dumps(peak_rss(args.data, *args.rss_worker, args.adam)))
        return
    # RSS workers first: Linux carries a parent's peak RSS into its children across exec, so they
    # must be started while this process is still small
    rss = {}
    for loss in args.losses:
        for model in MODELS:
            cmd = [sys.executable, __file__, "--rss-worker", model, loss]
            cmd += ["--data", args.data, "--threads", str(args.threads), "--adam", args.adam]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True)
            rss[model, loss] = json.loads(out.stdout.strip().splitlines()[-1])
    rows = []
    for loss in args.losses:
        for r in timings(args.data, loss, args.steps, args.eval_repeats, args.adam):
            rows.append({**r, "peak_rss_mb": rss[r["model"], loss]})
    print(
        f"H2Rec vs SASRec (d=64, 2 layers, batch 256, max_len 50) on {args.data}, "
        f"{args.threads} threads, Adam {args.adam}; {args.steps} interleaved steps, "
        f"{args.eval_repeats} interleaved evaluation passes; ratios are medians of per-round ratios"
    )
    print(
        f"{'loss':>4} {'model':>13} {'params':>9} {'step ms':>8} {'seq/s':>7} {'x SASRec':>8} | "
        f"{'eval users/s':>12} {'eval s':>7} {'x SASRec':>8} | {'peak RSS MB':>11}"
    )
    for r in rows:
        print(
            f"{r['loss']:>4} {r['model']:>13} {r['params']:>9,} {r['step_ms']:>8.1f} "
            f"{r['seq_per_s']:>7.0f} {r['step_ratio']:>7.2f}x | "
            f"{r['eval_users_per_s']:>12.0f} {r['eval_s']:>7.2f} {r['eval_ratio']:>7.2f}x | "
            f"{r['peak_rss_mb']:>11.0f}"
        )
    share, floor = encoder_floor(args.data, args.steps, args.adam)
    print(
        f"encoder floor (BPR batches): SASRec's encoder forward + backward is {share:.2f} of "
        f"SASRec's step; H2Rec's three encoder passes alone are {floor:.2f}x SASRec's step"
    )


if __name__ == "__main__":
    main()
