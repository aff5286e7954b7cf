"""Data-parallel training over several processes (`torchrun`), and nothing at all without it.

`torchrun` starts one process per device and sets RANK, WORLD_SIZE and LOCAL_RANK; the trainer
then joins the process group (gloo on CPU, NCCL on CUDA, one GPU per process: `cuda:LOCAL_RANK`),
trains on every W-th batch of the epoch's shared batch list, averages gradients with
DistributedDataParallel, writes the run folder from rank 0 only, and evaluates with the users
split across ranks and their ranks gathered exactly. With WORLD_SIZE unset or 1 every helper here
is a no-op and training is exactly the single-process path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger("h2rec")

FIND_UNUSED_ENV = "H2REC_DDP_FIND_UNUSED"
"""Force DDP's `find_unused_parameters` on ("1") or off ("0") instead of deciding per model."""


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the only process that writes to the run folder and logs per-epoch lines."""
        return self.rank == 0


SINGLE = World()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def env_world() -> World:
    """The world `torchrun` describes in RANK / WORLD_SIZE / LOCAL_RANK (single when unset)."""
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return SINGLE
    rank = _env_int("RANK", 0)
    return World(rank=rank, size=size, local_rank=_env_int("LOCAL_RANK", rank))


def current_world() -> World:
    """The initialised process group's world, else the one the environment describes."""
    if not (dist.is_available() and dist.is_initialized()):
        return env_world()
    size = dist.get_world_size()
    if size <= 1:
        return SINGLE
    env = env_world()
    local = env.local_rank if env.size == size else dist.get_rank()
    return World(rank=dist.get_rank(), size=size, local_rank=local)


def setup(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); else change nothing.

    A CUDA device becomes `cuda:LOCAL_RANK` (one GPU per process) with the NCCL backend; CPU
    uses gloo. A process group that the caller already initialised is used as it is.
    """
    world = current_world()
    if not world.distributed:
        return SINGLE, device
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
        log.debug("rank %d/%d joined the %s process group", world.rank, world.size, backend)
    return world, device


def cleanup() -> None:
    """Leave the process group (end of `h2rec train` under torchrun); a no-op without one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard_indices(n: int, rank: int, size: int) -> list[int]:
    """Rank `rank`'s batch indices among `n`: rank, rank + size, ... padded by wrapping around.

    Every rank gets ceil(n / size) indices (DDP needs the same number of steps on every rank,
    else the gradient all-reduce waits forever); an index >= n stands for batch `index % n`
    (DistributedSampler's padding), so no user is dropped from an epoch.
    """
    steps = -(-n // size)
    return list(range(rank, steps * size, size))


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def broadcast_object(obj: Any, world: World, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank (picklable objects; decisions, small states)."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any, world: World) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if not world.distributed:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


@contextmanager
def main_first(world: World) -> Iterator[None]:
    """Run the body on rank 0 first, then on the others: rank 0 writes shared caches (stored
    evaluation negatives) that the other ranks then read instead of drawing their own."""
    if world.distributed and not world.main:
        dist.barrier()
    yield
    if world.distributed and world.main:
        dist.barrier()


def broadcast_module_state(
    module: nn.Module, world: World, src: int = 0, *, buffers_only: bool = False
) -> None:
    """Copy rank `src`'s parameters and persistent buffers into every rank's `module`, in place:
    the best weights at the end of training, loaded by rank 0 only (no shared disk needed), or,
    with `buffers_only`, buffers that training updated from each rank's own batch (EMA codebooks),
    so that every rank evaluates and checkpoints rank 0's."""
    if not world.distributed:
        return
    params = {id(p) for p in module.parameters()}
    with torch.no_grad():
        for tensor in module.state_dict(keep_vars=True).values():
            if buffers_only and id(tensor) in params:
                continue
            data = tensor.detach()
            if data.is_contiguous():
                dist.broadcast(data, src=src)
            else:
                copy = data.contiguous()
                dist.broadcast(copy, src=src)
                data.copy_(copy)


def _overrides(model: nn.Module, name: str) -> bool:
    from h2rec.models import SequentialModel

    return getattr(type(model), name, None) is not getattr(SequentialModel, name, None)


def needs_unused_parameter_search(model: nn.Module) -> bool:
    """Whether DDP must look for parameters without a gradient after every forward.

    DDP all-reduces gradients bucket by bucket as autograd produces them; a parameter that gets
    no gradient in a step (an auxiliary loss skipped on a batch without positives, MELT's branches
    during warm-up) leaves its bucket unfinished and the next step fails, unless DDP searches the
    autograd graph after each forward (`find_unused_parameters=True`, a graph traversal per step).
    The plain compositions (SASRec, BERT4Rec, GRU4Rec, ...) use every parameter on every batch,
    so the search is on only for models that override `forward_train`, `auxiliary_losses` or
    `start_epoch`; H2REC_DDP_FIND_UNUSED=0/1 forces it.
    """
    forced = os.environ.get(FIND_UNUSED_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return any(_overrides(model, h) for h in ("forward_train", "auxiliary_losses", "start_epoch"))


class ObjectiveModule(nn.Module):
    """The model plus its objective as one module whose `forward` returns (loss, logs).

    DDP prepares its gradient all-reduce in `forward`, but the objectives reach the model through
    `forward_train`, `score_all`, `score_items` and `auxiliary_losses`, never `forward`; wrapping
    the whole loss computation makes every one of those calls part of the DDP forward.
    """

    def __init__(self, model: nn.Module, objective: Any) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(
        self, batch: dict[str, torch.Tensor], target_norm: float | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.objective(self.model, batch, target_norm=target_norm)


def wrap(
    model: nn.Module, objective: Any, device: torch.device
) -> nn.parallel.DistributedDataParallel:
    """`DistributedDataParallel` over model + objective; the model itself stays unwrapped (the
    trainer evaluates, checkpoints and clips gradients on it directly).

    Non-persistent buffers (item text vectors, code tables, neighbour lists: data rebuilt from the
    dataset, never changed by training, else checkpoints would not resume) are excluded from
    DDP's per-step buffer broadcast, which would otherwise copy them from rank 0 at every step.
    Persistent buffers (e.g. EMA codebooks) are broadcast from rank 0 before each forward.
    """
    module = ObjectiveModule(model, objective)
    persistent = set(module.state_dict().keys())
    data_buffers = [n for n, _ in module.named_buffers() if n not in persistent]
    if data_buffers:
        nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            module, data_buffers
        )
    find_unused = needs_unused_parameter_search(model)
    log.debug("DDP find_unused_parameters=%s", find_unused)
    return nn.parallel.DistributedDataParallel(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused,
    )
