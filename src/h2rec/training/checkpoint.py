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
) -> None:
    with atomic_directory(path) as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        extra: dict[str, Any] = {"rng": rng_state()}
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
) -> dict[str, Any]:
    """Restore everything into the given objects and return the trainer state."""
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
