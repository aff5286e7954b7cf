"""Checkpoints that resume exactly: safetensors weights, optimizer/scheduler, RNG, trainer state.

Nothing is pickled except tensor containers loaded with `weights_only=True`; the config is YAML
and the trainer state JSON. A checkpoint folder is written atomically (temp folder + rename).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from h2rec.errors import CacheError
from h2rec.io import atomic_directory
from h2rec.training.seeding import rng_state, set_rng_state


def save_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any | None,
    state: dict[str, Any],
    rank_rngs: list[dict[str, torch.Tensor]] | None = None,
) -> None:
    """Write a resumable checkpoint folder.

    `rank_rngs`: every data-parallel rank's RNG state, in rank order (gathered by the caller,
    which alone writes); rank 0's is also stored as `rng`, so a single process resumes it too.
    """
    with atomic_directory(path) as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        extra: dict[str, Any] = {"rng": rank_rngs[0] if rank_rngs else rng_state()}
        if rank_rngs is not None and len(rank_rngs) > 1:
            extra["rng_ranks"] = rank_rngs
        if optimizer is not None:
            extra["optimizer"] = optimizer.state_dict()
        if scheduler is not None:
            extra["scheduler"] = scheduler.state_dict()
        torch.save(extra, tmp / "training.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=2))


def load_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    restore_rng: bool = True,
    rng_rank: int | None = None,
) -> dict[str, Any]:
    """Restore everything into the given objects and return the trainer state.

    `rng_rank`: restore that data-parallel rank's RNG state when the checkpoint holds one per
    rank (written by a run with as many processes); otherwise rank 0's (`rng`).
    """
    path = Path(path)
    if not (path / "state.json").is_file():
        raise CacheError(f"{path}: not a complete checkpoint (no state.json)")
    load_model(model, str(path / "model.safetensors"))
    extra = torch.load(path / "training.pt", weights_only=True, map_location="cpu")
    if optimizer is not None and "optimizer" in extra:
        optimizer.load_state_dict(extra["optimizer"])
    if scheduler is not None and "scheduler" in extra:
        scheduler.load_state_dict(extra["scheduler"])
    if restore_rng:
        per_rank = extra.get("rng_ranks")
        if rng_rank is not None and per_rank is not None and rng_rank < len(per_rank):
            set_rng_state(per_rank[rng_rank])
        else:
            set_rng_state(extra["rng"])
    return json.loads((path / "state.json").read_text())


def save_weights(path: str | Path, model: torch.nn.Module) -> None:
    """Weights only (the best model), atomically: written beside the target, then renamed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_model(model, str(tmp))
    os.replace(tmp, path)


def load_weights(path: str | Path, model: torch.nn.Module) -> None:
    load_model(model, str(path))
