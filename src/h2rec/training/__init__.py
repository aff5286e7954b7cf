"""Training stage: vectorised batches, checkpoints with exact resume, and the one trainer."""

from __future__ import annotations

from h2rec.training.config import TrainConfig
from h2rec.training.seeding import seed_everything
from h2rec.training.trainer import Trainer, load_run

__all__ = ["TrainConfig", "Trainer", "load_run", "seed_everything"]
