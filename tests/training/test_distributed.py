"""Data-parallel training with 2 CPU processes (gloo) on small synthetic data.

One run goes through `torchrun ... -m h2rec.cli.main train` exactly as documented; the others
spawn two processes that use the Python API. Evaluation is sharded across ranks with per-user
ranks gathered, so it must equal a single-process evaluation of the same weights EXACTLY.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from h2rec.config import apply_overrides, read_yaml, validate
from h2rec.data import load_dataset
from h2rec.training import TrainConfig, Trainer, load_run
from h2rec.training.checkpoint import load_weights

from ..synth_data import prepare_synth

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="needs torch.distributed with gloo",
)

TIMEOUT_S = 180  # a hung collective must fail the test, not the CI job
# tiny SASRec: 300 users -> 10 batches of 32 -> 5 steps per rank per epoch
TINY = [
    "batch_size=32",
    "max_len=20",
    "model.hidden_size=16",
    "model.n_layers=1",
    "threads=1",
    "eval.patience=10",
]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    return env


@pytest.fixture(scope="module")
def ddp_ds(tmp_path_factory):
    return prepare_synth(
        tmp_path_factory.mktemp("ddp-synth"), n_users=300, n_items=400, n_categories=2, seed=5
    )


def _cfg(data: str, runs: str, *overrides: str) -> TrainConfig:
    base = read_yaml("train/sasrec-synth")
    return validate(
        TrainConfig, apply_overrides(base, [f"data={data}", f"runs_dir={runs}", *TINY, *overrides])
    )


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_torchrun_two_cpu_processes(tmp_path, ddp_ds) -> None:
    """`torchrun --nproc_per_node=2 -m h2rec.cli.main train`: one run folder, written once, whose
    sharded evaluation equals a single-process evaluation of its best weights exactly."""
    runs = tmp_path / "runs"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # as the README documents; torchrun picks its own free port
        "--nproc_per_node=2",
        "-m",
        "h2rec.cli.main",
        "-q",
        "train",
        "train/sasrec-synth",
        f"data={ddp_ds.path}",
        f"runs_dir={runs}",
        "name=ddp",
        "epochs=2",
        "eval.test_protocols=[full,uni100]",
        *TINY,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, env=_child_env(), capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    print(f"torchrun 2 processes: {time.perf_counter() - t0:.1f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    # (1) one run folder, complete
    assert [p.name for p in runs.iterdir()] == ["ddp"]
    run = runs / "ddp"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs_run"] == 2
    # (4) written by rank 0 only: one metrics line per epoch, one checkpoint, every rank's RNG
    assert [r["epoch"] for r in _metrics(run)] == [1, 2]
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["last"]
    state = json.loads((run / "checkpoints" / "last" / "state.json").read_text())
    assert state["world_size"] == 2 and state["global_step"] == 2 * 5  # ceil(10 / 2) per epoch
    extra = torch.load(run / "checkpoints" / "last" / "training.pt", weights_only=True)
    rngs = extra["rng_ranks"]
    assert len(rngs) == 2 and not torch.equal(rngs[0]["cpu"], rngs[1]["cpu"])
    assert torch.equal(extra["rng"]["cpu"], rngs[0]["cpu"])

    # (2) the best weights evaluated by ONE process give exactly the 2-process results
    _, trainer = load_run(run)
    assert not trainer.world.distributed
    for protocol in ("full", "uni100"):
        res = trainer.evaluate("test", protocol)
        np.testing.assert_array_equal(
            res.ranks, np.load(run / "results" / f"test-{protocol}.ranks.npy")
        )
        assert res.overall == summary["test"][protocol]
    best = next(r for r in _metrics(run) if r["epoch"] == summary["best_epoch"])
    assert trainer.evaluate("valid", "full").overall == best["valid"]

    # (5) `h2rec evaluate` under torchrun: sharded ranks gathered exactly, written once by rank 0
    launcher = cmd[: cmd.index("-q") + 1]
    cmd_eval = [*launcher, "evaluate", str(run), "--protocol", "full,uni100", "--split", "valid"]
    proc = subprocess.run(
        cmd_eval, env=_child_env(), capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert proc.stdout.count("NDCG@10") == 2  # one table per protocol, printed by rank 0 only
    for protocol in ("full", "uni100"):
        one = trainer.evaluate("valid", protocol)
        np.testing.assert_array_equal(
            one.ranks, np.load(run / "results" / f"valid-{protocol}.ranks.npy")
        )


def _worker(rank: int, port: int, data: str, runs: str, out: str) -> None:
    """One of two spawned ranks: an uninterrupted run, an interrupted and resumed one, and a
    sharded evaluation of fixed weights with uneven shards."""
    # the rank's stderr goes to a file the parent shows on failure: a C++ abort (SIGABRT) inside
    # gloo leaves no Python traceback, only what it printed before dying
    log = os.open(Path(out) / f"rank{rank}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
    )
    torch.set_num_threads(1)
    from h2rec.training import distributed as ddp

    ds = load_dataset(data)
    try:
        for name, stops in (("straight", [None]), ("resumed", [1, None])):
            cfg = _cfg(data, runs, f"name={name}", "epochs=3", "eval.test_protocols=[full]")
            for i, stop in enumerate(stops):  # a fresh trainer, as a new process would build
                Trainer(cfg, ds).fit(max_epochs=stop, resume=i > 0)
        # fixed weights, 300 users in 43 batches of 7: rank 0 scores 22 of them, rank 1 21
        cfg = _cfg(data, runs, "name=fixed", "eval.batch_size=7", "eval.tie=random")
        trainer = Trainer(cfg, ds)
        assert trainer.world == ddp.World(rank=rank, size=2, local_rank=rank)
        load_weights(Path(runs) / "straight" / "best.safetensors", trainer.model)
        for split in ("valid", "test"):
            res = trainer.evaluate(split, "full")
            np.save(Path(out) / f"{split}-rank{rank}.npy", res.ranks)
    finally:
        ddp.cleanup()


def test_spawned_ranks_resume_exactly_and_gather_ranks_exactly(tmp_path, ddp_ds) -> None:
    import torch.multiprocessing as mp

    runs, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    t0 = time.perf_counter()
    old = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES")}
    os.environ.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")  # inherited by the children
    try:
        for attempt in range(3):
            ctx = mp.start_processes(
                _worker,
                args=(_free_port(), str(ddp_ds.path), str(runs), str(out)),
                nprocs=2,
                join=False,
                start_method="spawn",
            )
            deadline = time.monotonic() + TIMEOUT_S
            try:
                while not ctx.join(timeout=5):
                    if time.monotonic() > deadline:
                        for p in ctx.processes:
                            p.kill()
                        pytest.fail(f"2-process run did not finish within {TIMEOUT_S} s")
                break
            except mp.ProcessRaisedException as exc:
                # the probed port can be taken by another process before rank 0 binds it (a
                # race of any "find a free port" scheme): start again on a new port
                if "address already in use" not in str(exc).lower() or attempt == 2:
                    raise
                shutil.rmtree(runs, ignore_errors=True)
            except mp.ProcessExitedException as exc:  # killed by a signal: show what it printed
                logs = {p.name: p.read_text()[-4000:] for p in sorted(out.glob("rank*.log"))}
                pytest.fail(f"{exc}\n" + "\n".join(f"--- {k}:\n{v}" for k, v in logs.items()))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    print(f"spawned 2 processes: {time.perf_counter() - t0:.1f} s")

    # resuming a 2-process run ends exactly where the uninterrupted 2-process run does
    a, b = _metrics(runs / "straight"), _metrics(runs / "resumed")
    assert [r["epoch"] for r in b] == [1, 2, 3]
    for ra, rb in zip(a, b, strict=True):
        assert ra["loss"] == rb["loss"] and ra["valid"] == rb["valid"]
    np.testing.assert_array_equal(
        np.load(runs / "straight" / "results" / "test-full.ranks.npy"),
        np.load(runs / "resumed" / "results" / "test-full.ranks.npy"),
    )

    # (3) the same weights evaluated by 1 and by 2 processes: identical per-user ranks
    single = Trainer(
        _cfg(str(ddp_ds.path), str(runs), "name=single", "eval.batch_size=7", "eval.tie=random"),
        ddp_ds,
    )
    load_weights(runs / "straight" / "best.safetensors", single.model)
    for split in ("valid", "test"):
        expected = single.evaluate(split, "full").ranks
        for rank in (0, 1):
            np.testing.assert_array_equal(np.load(out / f"{split}-rank{rank}.npy"), expected)
