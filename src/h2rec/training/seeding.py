"""One call that seeds every RNG a run touches; deterministic kernels are opt-in."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (CPU and CUDA); optionally force deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def rank_seed(seed: int, rank: int) -> int:
    """A 63-bit seed for data-parallel rank `rank` of a run seeded with `seed`: every rank draws
    different dropout masks, cloze masks and auxiliary-loss samples, reproducibly."""
    seq = np.random.SeedSequence([seed & (2**64 - 1), rank, 0xD1])
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def seed_rank(seed: int, rank: int) -> None:
    """Re-seed python, numpy and torch with `rank_seed(seed, rank)` (after the model is built
    from the shared seed, so every rank starts from the same weights)."""
    derived = rank_seed(seed, rank)
    random.seed(derived)
    np.random.seed(derived % 2**32)
    torch.manual_seed(derived)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(derived)


def rng_state(cuda_devices: list[int] | None = None) -> dict[str, torch.Tensor]:
    """Torch RNG states (CPU, and every CUDA device) as tensors, for checkpoints.

    `cuda_devices` limits the CUDA states to those devices (a data-parallel process uses one GPU;
    reading the others' states would create a CUDA context on each of them).
    """
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        if cuda_devices is None:
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                state[f"cuda{i}"] = s
        else:
            for i in cuda_devices:
                state[f"cuda{i}"] = torch.cuda.get_rng_state(i)
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    """Restore what `rng_state` returned (each CUDA state onto the device it was read from)."""
    torch.set_rng_state(state["cpu"])
    if not torch.cuda.is_available():
        return
    n_devices = torch.cuda.device_count()
    for key, value in state.items():
        if key.startswith("cuda") and int(key[4:]) < n_devices:
            torch.cuda.set_rng_state(value, int(key[4:]))
