"""`h2rec experiment run` under torchrun: the ranks go through the cells together and train each
one data-parallel (2 CPU processes, gloo, tiny synthetic cells)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch
import yaml

from ..synth_data import prepare_synth
from ..training.test_distributed import TIMEOUT_S, TINY, _child_env

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="needs torch.distributed with gloo",
)


def test_two_ranks_run_the_same_cells_together(tmp_path) -> None:
    ds = prepare_synth(tmp_path / "ds", n_users=300, n_items=400, n_categories=2, seed=5)
    spec = {
        "name": "ddp-exp",
        "base": "train/sasrec-synth",
        "overrides": ["epochs=1", "eval.test_protocols=[full]", *TINY],
        "datasets": {"synth": {"data": str(ds.path)}},
        "seeds": [1, 2],
        "models": {"SASRec": {}},
        "runs_dir": str(tmp_path / "runs"),
        "results_dir": str(tmp_path / "results"),
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "h2rec.cli.main",
        "-q",
        "experiment",
        "run",
        str(path),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, env=_child_env(), capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    print(f"torchrun experiment, 2 cells: {time.perf_counter() - t0:.1f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    # rank 0 alone reports: one "done" line per cell
    assert proc.stdout.count("done in") == 2, proc.stdout
    for seed in (1, 2):
        record = json.loads((tmp_path / "results" / "synth" / f"sasrec-s{seed}.json").read_text())
        assert record["world_size"] == 2 and record["epochs_run"] == 1
        summary = json.loads(
            (tmp_path / "runs" / f"synth-sasrec-s{seed}" / "summary.json").read_text()
        )
        assert summary["world_size"] == 2
    # run again: both cells are finished, so nothing trains and nothing is rewritten
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*.json")}
    proc = subprocess.run(
        cmd, env=_child_env(), capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "done in" not in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*.json")} == before
