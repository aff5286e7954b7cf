"""One trainer for every model: epochs, validation-based early stopping, checkpoints, test.

A run folder holds the resolved config, the dataset stamp, `metrics.jsonl` (one line per epoch),
resumable checkpoints, the best weights and the test results. A run interrupted at any point and
resumed from its last checkpoint ends with the same weights and metrics as an uninterrupted one:
batch order and negatives are functions of (seed, epoch, step), and the torch RNG, optimizer and
scheduler states are restored.

Under `torchrun` (WORLD_SIZE > 1) the same trainer runs data-parallel (`training.distributed`):
each rank trains on its share of every epoch's batches, DDP averages the gradients, rank 0 alone
writes the run folder, and evaluation is split across ranks with per-user ranks gathered exactly.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from h2rec.config import dump_yaml, load_config
from h2rec.data import Dataset, load_dataset
from h2rec.errors import ConfigError, H2RecError
from h2rec.evaluation import EvalResult, Evaluator, compute_metrics, config_hash
from h2rec.io import atomic_write_json, atomic_write_text
from h2rec.models import (
    ClozeObjective,
    LossConfig,
    NextItemObjective,
    SequentialModel,
    build_model,
    model_class,
)
from h2rec.progress import progress_enabled
from h2rec.training import distributed as ddp
from h2rec.training.batching import BatchIterator, TrainSequences
from h2rec.training.checkpoint import load_checkpoint, load_weights, save_checkpoint, save_weights
from h2rec.training.config import ObjectiveSection, TrainConfig
from h2rec.training.inputs import load_model_inputs
from h2rec.training.seeding import rng_state, seed_everything, seed_rank

log = logging.getLogger("h2rec")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_objective(
    cfg: ObjectiveSection, model: SequentialModel, n_items: int
) -> NextItemObjective | ClozeObjective:
    """The training objective named by the config; `auto` is cloze for bidirectional models (those
    with a [MASK] token: BERT4Rec, or any model on a BERT4Rec backbone), next-item otherwise."""
    bidirectional = getattr(model, "mask_token_id", None) is not None
    kind = cfg.kind if cfg.kind != "auto" else ("cloze" if bidirectional else "next_item")
    loss = LossConfig(
        name=cfg.loss, num_negatives=cfg.num_negatives, gbce_t=cfg.gbce_t, logq=cfg.logq
    )
    if kind == "cloze":
        return ClozeObjective(
            mask_ratio=cfg.mask_ratio, loss=loss, last_item_prob=cfg.last_item_prob
        )
    obj = NextItemObjective(loss, positions=cfg.positions)
    if cfg.logq:  # our negatives are uniform over the catalogue: q = 1 / n_items
        obj.set_log_q(torch.full((n_items + 1,), -math.log(n_items)))
    return obj


class RunExistsError(H2RecError):
    """A run folder with a checkpoint exists and neither resume nor overwrite was asked for."""


# How a run executes, not what it computes: a run may resume with other values (e.g. one CPU
# thread instead of two once another job shares the machine). Evaluation batches only chunk the
# same ranking.
_EXECUTION_FIELDS = ("runs_dir", "threads", "tensorboard", "checkpoint_every")


def _experiment_fields(cfg: TrainConfig) -> dict[str, Any]:
    """The config minus its execution-only fields: what must match for a resume."""
    dumped = cfg.model_dump(mode="json")
    for name in _EXECUTION_FIELDS:
        dumped.pop(name)
    dumped["eval"].pop("batch_size")
    return dumped


def resolve_loss(cfg: TrainConfig, model: SequentialModel | None = None) -> TrainConfig:
    """`cfg` with its model's own paper loss (`default_loss`; H2Rec: Eq. 10's BPR, LLM-ESR, MELT,
    PCR-CA, URL4DR: BCE) where the config names none, as the trainer trains it and saves it in
    the run folder. Without a built `model` the class is found by name in the registry, so a
    run folder's config can be compared with an experiment cell's before anything is built."""
    if "loss" in cfg.objective.model_fields_set:
        return cfg
    source: Any = model
    if source is None:
        try:
            source = model_class(cfg.model.name)
        except TypeError:  # a user's factory without a return annotation: no class to ask
            return cfg
    default_loss = getattr(source, "default_loss", None)
    if not default_loss:
        return cfg
    objective = cfg.objective.model_copy(update={"loss": default_loss})
    objective.model_fields_set.add("loss")
    return cfg.model_copy(update={"objective": objective})


def same_experiment(saved: TrainConfig, cfg: TrainConfig) -> bool:
    """Whether a run folder's saved (resolved) config and `cfg` train the same thing, so the run
    may resume under `cfg`. `cfg` is resolved here: the saved config holds the model's own loss
    where the cell named none, which is not a change (read as one, every cell of a model with a
    paper loss of its own restarted from epoch 1 in the next session)."""
    return _experiment_fields(saved) == _experiment_fields(resolve_loss(cfg))


class Trainer:
    """Train `cfg.model` on `cfg.data` with `cfg.objective`; evaluate with the one evaluator."""

    def __init__(self, cfg: TrainConfig, dataset: Dataset | None = None) -> None:
        self.cfg = cfg
        self.ds = dataset if dataset is not None else load_dataset(cfg.data)
        self.run_dir = Path(cfg.runs_dir) / cfg.name
        # torchrun: join the process group; rank r uses cuda:LOCAL_RANK (nothing changes alone)
        self.world, self.device = ddp.setup(resolve_device(cfg.device))
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed, deterministic=cfg.deterministic)
        params = cfg.model.params()
        params.setdefault("max_len", cfg.max_len)
        self.seqs = TrainSequences(self.ds)
        self.model = build_model(
            cfg.model.name,
            self.ds.n_items,
            inputs=load_model_inputs(self.ds, cfg.model.name, params, self.seqs),
            **params,
        ).to(self.device)
        self.trainable = getattr(self.model, "trainable", True)
        # written into the resolved config, so the run folder says which loss was used
        cfg = self.cfg = resolve_loss(cfg, self.model)
        self.objective = build_objective(cfg.objective, self.model, self.ds.n_items)
        self.batches = BatchIterator(
            self.seqs,
            batch_size=cfg.batch_size,
            max_len=cfg.max_len,
            seed=cfg.seed,
            kind=self.objective.batch_kind,
            positions=cfg.objective.positions,
            num_negatives=self.objective.num_negatives,
            negatives_exclude=cfg.objective.negatives_exclude,
            negatives_shared=cfg.objective.negatives_shared,
            bucket_by_length=cfg.bucket_by_length,
        )
        # Objectives average over a batch's targets; with loss_norm=constant they rescale that by
        # n_targets / (expected targets per batch): a sum with one constant divisor, so batch
        # composition (length buckets) does not change how much a target counts.
        self.targets_per_batch = self.batches.targets_per_batch(cfg.objective.mask_ratio)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        if self.trainable:
            self.optimizer = self._optimizer()
            self.scheduler = self._scheduler(self.optimizer)
        self.model_config = {
            "name": cfg.model.name,
            **params,
            "objective": cfg.objective.model_dump(),
        }
        self.model_hash = config_hash(self.model_config)
        self._evaluators: dict[tuple[Any, ...], Evaluator] = {}
        self._ddp: torch.nn.parallel.DistributedDataParallel | None = None
        if self.world.distributed:
            # Same weights everywhere (built from the shared seed above); from here on each rank
            # draws its own dropout and cloze masks.
            seed_rank(cfg.seed, self.world.rank)

    # ---- construction ------------------------------------------------------------------------
    def _optimizer(self) -> torch.optim.Optimizer:
        o = self.cfg.optim
        cls = torch.optim.AdamW if o.optimizer == "adamw" else torch.optim.Adam
        kind = {
            "fused": {"fused": True},
            "foreach": {"foreach": True},
            "for-loop": {"foreach": False},
        }[o.implementation]
        return cls(
            self.model.parameters(),
            lr=o.lr,
            betas=o.betas,
            weight_decay=o.weight_decay,
            **kind,  # type: ignore[arg-type]
        )

    def _scheduler(self, opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
        o = self.cfg.optim
        if o.scheduler == "none" and o.warmup_steps == 0:
            return None
        total = max(1, self.cfg.epochs * self.batches.steps(self.world.size))

        def factor(step: int) -> float:
            if step < o.warmup_steps:
                return (step + 1) / o.warmup_steps
            if o.scheduler == "none":
                return 1.0
            frac = min(1.0, (step - o.warmup_steps) / max(1, total - o.warmup_steps))
            return 0.5 * (1 + math.cos(math.pi * frac)) if o.scheduler == "cosine" else 1 - frac

        return torch.optim.lr_scheduler.LambdaLR(opt, factor)

    def evaluator(self, split: str, protocol: str) -> Evaluator:
        """Built once per setting and reused: validation runs every epoch with the same examples."""
        e = self.cfg.eval
        key = (split, protocol, e.tie, e.exclude_history, tuple(e.ks), e.negatives_seed)
        if key in self._evaluators:
            return self._evaluators[key]
        with ddp.main_first(self.world):  # rank 0 stores sampled negatives, the others read them
            self._evaluators[key] = Evaluator(
                self.ds,
                split=split,
                protocol=protocol,
                ks=tuple(e.ks),
                tie=e.tie,
                exclude_history=e.exclude_history,
                negatives_seed=e.negatives_seed,
                max_len=self.cfg.max_len,
                batch_size=e.batch_size,
                device=str(self.device),
            )
        return self._evaluators[key]

    def _autocast(self):  # type: ignore[no-untyped-def]
        if self.device.type == "cuda" and self.cfg.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def score_fn(self, histories: torch.Tensor, candidates: torch.Tensor | None) -> torch.Tensor:
        """What the evaluator sees of the model.

        Leading columns that are padding in every row are dropped (one spare padding column is
        kept for BERT4Rec's appended [MASK]); encoders number positions from the right, so the
        scores are unchanged and short batches cost less.
        """
        real = (histories != 0).any(0)
        if bool(real.any()):
            first = max(0, int(real.to(torch.int8).argmax()) - 1)
            histories = histories[:, first:]
        with self._autocast():
            cand = None if candidates is None else candidates.to(self.device)
            return self.model.score(histories.to(self.device), cand).float()

    def evaluate(self, split: str, protocol: str) -> EvalResult:
        """Evaluate the current weights; data-parallel, every rank scores a share of the users
        and gets the whole, gathered result (the same as one process computes)."""
        self.model.eval()
        return self.evaluator(split, protocol).evaluate(
            self.score_fn,
            model_name=self.cfg.model.name,
            model_config=self.model_config,
            train_seed=self.cfg.seed,
            distributed=self.world.distributed,
        )

    # ---- run folder --------------------------------------------------------------------------
    @property
    def last_ckpt(self) -> Path:
        return self.run_dir / "checkpoints" / "last"

    def _prepare_run_dir(self, resume: bool, overwrite: bool) -> None:
        """Create (or check, on resume) the run folder: rank 0 does it, and an error it meets is
        raised on every rank, so no rank is left waiting for the others."""
        if not self.world.distributed:
            self._prepare_run_dir_here(resume, overwrite)
            return
        if self.world.main:
            try:
                self._prepare_run_dir_here(resume, overwrite)
            except Exception as exc:
                ddp.broadcast_object((type(exc), str(exc)), self.world)
                raise
            ddp.broadcast_object(None, self.world)
            return
        error = ddp.broadcast_object(None, self.world)
        if error is not None:
            kind, message = error
            if issubclass(kind, H2RecError):
                raise kind(message)
            raise H2RecError(f"rank 0 could not prepare {self.run_dir}: {message}")

    def _prepare_run_dir_here(self, resume: bool, overwrite: bool) -> None:
        if self.run_dir.exists() and not resume:
            if not overwrite and (
                self.last_ckpt.exists() or (self.run_dir / "summary.json").exists()
            ):
                raise RunExistsError(
                    f"{self.run_dir} already holds a run; pass --resume to continue it or "
                    "--overwrite to start again"
                )
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume and (self.run_dir / "config.yaml").is_file():
            # compared as validated configs, so a field added to TrainConfig since the run
            # started (at its default) does not block resuming it
            saved = load_config(TrainConfig, self.run_dir / "config.yaml")
            if not same_experiment(saved, self.cfg):
                raise ConfigError(
                    f"{self.run_dir}: resuming with a different config than the run's"
                )
        atomic_write_text(self.run_dir / "config.yaml", dump_yaml(self.cfg))
        atomic_write_json(
            self.run_dir / "dataset.json",
            {
                "name": self.ds.name,
                "path": str(self.ds.path),
                "content_hash": self.ds.content_hash(),
            },
        )

    def _append_metrics(self, row: dict[str, Any]) -> None:
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.cfg.tensorboard:
            writer = self._tb_writer()
            for key, value in row.items():
                if key == "valid":
                    for m, v in value.items():
                        writer.add_scalar(f"valid/{m}", v, row["epoch"])
                elif key != "epoch" and isinstance(value, (int, float)):
                    writer.add_scalar(f"train/{key}", value, row["epoch"])
            writer.flush()

    def _tb_writer(self):  # type: ignore[no-untyped-def]
        if getattr(self, "_writer", None) is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ConfigError(
                    "tensorboard=true needs the tensorboard package: pip install 'h2rec[track]'"
                ) from exc
            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        return self._writer

    def _truncate_metrics(self, epoch: int) -> None:
        """On resume, forget epochs logged after the checkpoint (they will be redone)."""
        path = self.run_dir / "metrics.jsonl"
        if path.is_file():
            keep = [
                ln
                for ln in path.read_text().splitlines()
                if ln and json.loads(ln)["epoch"] <= epoch
            ]
            atomic_write_text(path, "".join(ln + "\n" for ln in keep))

    # ---- training ----------------------------------------------------------------------------
    def fit(
        self,
        *,
        resume: bool = False,
        overwrite: bool = False,
        max_epochs: int | None = None,
        on_epoch: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """Train (or resume), select the best epoch on validation, evaluate it on test.

        `max_epochs` stops after that many epochs in this call (to simulate an interruption).
        `on_epoch(state)` runs after every epoch (its validation done, its checkpoint written),
        with a copy of the run state (`epoch`, `best_epoch`, `best_metric`, `stopped`, ...);
        returning True ends this call there like `max_epochs` does: `{"interrupted": True, ...}`,
        no test evaluation, the run resumable. For callers that watch a run from outside (a
        benchmark's time to quality) without re-implementing this loop.
        Data-parallel, every rank calls this; each resumes from the same checkpoint (the run
        folder must then be on a disk every rank sees) with its own RNG state.
        """
        self._prepare_run_dir(resume, overwrite)
        state: dict[str, Any] = {
            "epoch": 0,
            "global_step": 0,
            "best_metric": None,
            "best_epoch": None,
            "bad_epochs": 0,
            "stopped": False,
            "train_seconds": 0.0,
        }
        if resume and ddp.broadcast_object(self.last_ckpt.exists(), self.world):
            state = load_checkpoint(
                self.last_ckpt,
                model=self.model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                rng_rank=self.world.rank if self.world.distributed else None,
            )
            saved_world = state.pop("world_size", 1)
            if saved_world != self.world.size:
                if self.world.main:
                    log.warning(
                        "%s was trained with %d process(es), resumed with %d: batches differ "
                        "from an uninterrupted run",
                        self.run_dir,
                        saved_world,
                        self.world.size,
                    )
                if self.world.distributed:  # no per-rank RNG state for this world: derive one
                    seed_rank(self.cfg.seed + state["epoch"], self.world.rank)
            if self.world.main:
                self._truncate_metrics(state["epoch"])
                log.info("resumed %s at epoch %d", self.run_dir, state["epoch"])
        elif resume and self.world.main:
            log.info("%s has no checkpoint; starting from scratch", self.run_dir)

        if self.trainable:
            cap = self.model.converging_warmup
            warmup = max(cap, self.model.selection_start_epoch)
            if warmup >= self.cfg.epochs:
                raise ConfigError(
                    f"{self.cfg.model.name}: model selection starts after epoch {warmup} (its "
                    f"warm-up, at most) but epochs={self.cfg.epochs}"
                )
            if cap:  # a checkpoint from before converging warm-ups has none: it starts one
                state.setdefault(
                    "warmup",
                    {"best_metric": None, "best_epoch": None, "bad_epochs": 0, "ended": None},
                )
            if self.world.distributed and self._ddp is None:
                self._ddp = ddp.wrap(self.model, self.objective, self.device)
            done_here = 0
            while not state["stopped"] and state["epoch"] < self.cfg.epochs:
                if max_epochs is not None and done_here >= max_epochs:
                    return {"interrupted": True, **state}
                self._train_epoch(state)
                done_here += 1
                if on_epoch is not None and on_epoch(dict(state)):
                    return {"interrupted": True, **state}
        else:
            state["stopped"] = True
        return self._finish(state)

    def _train_epoch(self, state: dict[str, Any]) -> None:
        cfg, epoch, world = self.cfg, state["epoch"], self.world
        warm = state.get("warmup")  # a converging warm-up's progress, or None
        warming = warm is not None and warm["ended"] is None
        self.model.train()
        self.model.start_epoch(epoch, cfg.epochs)
        t0 = time.perf_counter()
        n_batches, n_seqs, n_targets = 0, 0, 0
        # Loss sums stay on the device (float64, as the Python floats they replace) and are read
        # once per epoch: reading a CUDA scalar every step would make the host wait for the GPU.
        # The progress bar reads the running loss every step on CPU (free there) and every
        # `_BAR_SYNC_EVERY` steps on an accelerator.
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        part_sums: dict[str, Tensor] = {}  # loss components (loss_rec, H2Rec's loss_ca, loss_msg)
        sync_every = 1 if self.device.type == "cpu" else _BAR_SYNC_EVERY
        shown = float("nan")
        bar = _EpochBar(epoch + 1, cfg.epochs, self.batches.steps(world.size), show=world.main)
        with bar:
            for batch in self.batches.epoch(epoch, rank=world.rank, world_size=world.size):
                n_targets += batch.n_targets  # counted on the host batch, before the copy
                batch = batch.to(self.device)
                norm = self.targets_per_batch if cfg.loss_norm == "constant" else None
                with self._autocast():
                    if self._ddp is not None:  # the same objective, with gradients averaged
                        loss, logs = self._ddp(batch.as_dict(), norm)
                    else:
                        loss, logs = self.objective(self.model, batch.as_dict(), target_norm=norm)
                assert self.optimizer is not None
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.optim.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
                self.optimizer.step()
                if self.scheduler is not None:
                    self.scheduler.step()
                state["global_step"] += 1
                loss_sum += loss.detach().double()
                for key, value in logs.items():
                    if key.startswith("loss_"):
                        part = value.detach().double()
                        part_sums[key] = part_sums[key] + part if key in part_sums else part
                n_batches += 1
                n_seqs += batch.inputs.shape[0]
                if bar.enabled:
                    if n_batches % sync_every == 0:
                        shown = float(loss_sum) / n_batches
                    bar.advance(shown, n_seqs / (time.perf_counter() - t0))
        total_loss = float(loss_sum)
        parts = {key: float(value) for key, value in part_sums.items()}
        train_s = time.perf_counter() - t0
        if world.distributed:
            # weights are equal on every rank; buffers a model updates from its own batch are
            # made rank 0's, so that every rank evaluates and checkpoints the same model
            ddp.broadcast_module_state(self.model, world, buffers_only=True)
            # the epoch's numbers over every rank's batches
            total_loss, parts, n_batches, n_seqs, n_targets, train_s = _sum_over_ranks(
                (total_loss, parts, n_batches, n_seqs, n_targets, train_s), world
            )
        state["train_seconds"] += train_s
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": total_loss / max(1, n_batches),
            **{k: v / max(1, n_batches) for k, v in parts.items()},
            "train_seconds": train_s,
            "sequences_per_s": n_seqs / train_s,
            "targets_per_s": n_targets / train_s,
            "lr": self.optimizer.param_groups[0]["lr"] if self.optimizer else None,
        }
        if (epoch + 1) % cfg.eval.every == 0 or epoch + 1 == cfg.epochs:
            t1 = time.perf_counter()
            res = self.evaluate("valid", cfg.eval.valid_protocol)
            row["valid_seconds"] = time.perf_counter() - t1
            row["valid"] = res.overall
            selection = res.overall
            if cfg.eval.valid_targets == "new":  # selection leaves revisit targets out
                new = ~self.evaluator("valid", cfg.eval.valid_protocol).revisits()
                selection = row["valid_new"] = compute_metrics(res.ranks[new], cfg.eval.ks)
            if cfg.eval.metric not in selection:
                raise ConfigError(f"eval.metric {cfg.eval.metric!r} not among {sorted(selection)}")
            value = selection[cfg.eval.metric]
            if warming:
                self._track_warmup(warm, epoch + 1, value)
            # before the model's selection start (a warm-up of something else) an epoch is
            # neither a candidate nor a bad epoch
            start = self.model.selection_start_epoch if warm is None else warm["ended"]
            selectable = start is not None and epoch + 1 > start
            improved = selectable and (state["best_metric"] is None or value > state["best_metric"])
            if world.distributed:  # every rank holds the same gathered metrics; rank 0 decides
                improved = ddp.broadcast_object(improved, world)
            if improved:
                state.update(best_metric=value, best_epoch=epoch + 1, bad_epochs=0)
                if world.main:
                    save_weights(self.run_dir / "best.safetensors", self.model)
            elif selectable:
                state["bad_epochs"] += 1
                if state["bad_epochs"] >= cfg.eval.patience:
                    state["stopped"] = True
            if world.main:
                best = state["best_metric"]
                log.info(
                    "epoch %d  loss %.4f  valid %s %.4f  (best %s)  %.1fs",
                    epoch + 1,
                    row["loss"],
                    cfg.eval.metric,
                    value,
                    f"warm-up {warm['best_metric']:.4f} @ {warm['best_epoch']}"
                    if warming
                    else ("-" if best is None else f"{best:.4f} @ {state['best_epoch']}"),
                    train_s,
                )
        if warming:
            row["warmup"] = True
            if warm["bad_epochs"] >= cfg.eval.patience or epoch + 1 >= self.model.converging_warmup:
                self._end_warmup(warm, epoch + 1)
        if world.main:
            self._append_metrics(row)
        state["epoch"] = epoch + 1
        if (
            state["epoch"] % cfg.checkpoint_every == 0
            or state["stopped"]
            or state["epoch"] == cfg.epochs
        ):
            self._save_checkpoint(state)

    def _track_warmup(self, warm: dict[str, Any], epoch: int, value: float) -> None:
        """A converging warm-up's own selection: best weights in warmup.safetensors, patience."""
        improved = warm["best_metric"] is None or value > warm["best_metric"]
        if self.world.distributed:
            improved = ddp.broadcast_object(improved, self.world)
        if improved:
            warm.update(best_metric=value, best_epoch=epoch, bad_epochs=0)
            if self.world.main:
                save_weights(self.run_dir / "warmup.safetensors", self.model)
        else:
            warm["bad_epochs"] += 1

    def _end_warmup(self, warm: dict[str, Any], epoch: int) -> None:
        """Continue from the warm-up's best weights with a fresh optimizer, as fine-tuning a
        converged, saved model does (MELT starts from the best pretrained SASRec)."""
        path = self.run_dir / "warmup.safetensors"
        if self.world.distributed:
            if ddp.broadcast_object(path.is_file(), self.world):
                if self.world.main:
                    load_weights(path, self.model)
                ddp.broadcast_module_state(self.model, self.world)
        elif path.is_file():
            load_weights(path, self.model)
        self.model.end_warmup(epoch)
        self.optimizer = self._optimizer()
        self.scheduler = self._scheduler(self.optimizer)
        warm["ended"] = epoch
        if self.world.main:
            log.info(
                "warm-up ended after epoch %d; continuing from its best epoch %s",
                epoch,
                warm["best_epoch"],
            )

    def _save_checkpoint(self, state: dict[str, Any]) -> None:
        """Rank 0 writes the checkpoint, with every rank's RNG state; the others wait for it."""
        world = self.world
        if not world.distributed:
            save_checkpoint(
                self.last_ckpt,
                model=self.model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                state=state,
            )
            return
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        rngs = ddp.all_gather_object(rng_state(cuda_devices=cuda), world)
        if world.main:
            save_checkpoint(
                self.last_ckpt,
                model=self.model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                state={**state, "world_size": world.size},
                rank_rngs=rngs,
            )
        ddp.barrier(world)

    def _finish(self, state: dict[str, Any]) -> dict[str, Any]:
        best = self.run_dir / "best.safetensors"
        if self.world.distributed:
            # rank 0 reads the best weights and sends them: the other ranks need no shared disk
            if self.trainable and ddp.broadcast_object(best.is_file(), self.world):
                if self.world.main:
                    load_weights(best, self.model)
                ddp.broadcast_module_state(self.model, self.world)
        elif self.trainable and best.is_file():
            load_weights(best, self.model)
        results = {}
        for protocol in self.cfg.eval.test_protocols:
            res = self.evaluate("test", protocol)
            if self.world.main:
                res.save(self.run_dir / "results" / f"test-{protocol}.json")
            results[protocol] = res
        summary = {
            "run": str(self.run_dir),
            "model": self.cfg.model.name,
            "model_config_hash": self.model_hash,
            "dataset": self.ds.name,
            "dataset_content_hash": self.ds.content_hash(),
            "device": str(self.device),
            "epochs_run": state["epoch"],
            "best_epoch": state["best_epoch"],
            "best_valid": {
                self.cfg.eval.metric: state["best_metric"],
                "protocol": self.cfg.eval.valid_protocol,
            },
            "train_seconds": state["train_seconds"],
            "test": {p: r.overall for p, r in results.items()},
        }
        if "warmup" in state:  # a converging warm-up: where it ended, its best epoch and value
            summary["warmup"] = dict(state["warmup"])
        if self.world.distributed:
            summary["world_size"] = self.world.size
        if self.world.main:
            atomic_write_json(self.run_dir / "summary.json", summary)
        ddp.barrier(self.world)  # the run folder is complete when fit returns on any rank
        return {"summary": summary, "results": results}


def _sum_over_ranks(
    numbers: tuple[float, dict[str, float], int, int, int, float], world: ddp.World
) -> tuple[float, dict[str, float], int, int, int, float]:
    """An epoch's (loss sum, loss-part sums, batches, sequences, targets) summed over ranks, and
    the slowest rank's seconds."""
    gathered = ddp.all_gather_object(numbers, world)
    parts: dict[str, float] = {}
    for _, p, *_ in gathered:
        for key, value in p.items():
            parts[key] = parts.get(key, 0.0) + value
    return (
        sum(g[0] for g in gathered),
        parts,
        sum(g[2] for g in gathered),
        sum(g[3] for g in gathered),
        sum(g[4] for g in gathered),
        max(g[5] for g in gathered),
    )


_BAR_SYNC_EVERY = 50  # steps between progress-bar loss reads on an accelerator


class _EpochBar:
    """A rich progress bar with running loss and sequences/s, shown only when enabled."""

    def __init__(self, epoch: int, epochs: int, total: int, show: bool = True) -> None:
        self.enabled = show and progress_enabled()
        self.epoch, self.epochs, self.total = epoch, epochs, total

    def __enter__(self) -> _EpochBar:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.p = Progress(
                TextColumn(f"epoch {self.epoch}/{self.epochs}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}  {task.fields[speed]:,.0f} seq/s"),
                TimeElapsedColumn(),
                transient=True,
            )
            self.p.__enter__()
            self.task = self.p.add_task("train", total=self.total, loss=float("nan"), speed=0.0)
        return self

    def advance(self, loss: float, speed: float) -> None:
        if self.enabled:
            self.p.update(self.task, advance=1, loss=loss, speed=speed)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.p.__exit__(None, None, None)


def load_run(run_dir: str | Path) -> tuple[TrainConfig, Trainer]:
    """Rebuild a trainer from a run folder with its best weights loaded (for re-evaluation)."""

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise H2RecError(f"{run_dir}: not a run folder (no config.yaml)")
    cfg = load_config(TrainConfig, run_dir / "config.yaml")
    cfg = cfg.model_copy(update={"runs_dir": str(run_dir.parent), "name": run_dir.name})
    trainer = Trainer(cfg)
    best = run_dir / "best.safetensors"
    if trainer.trainable:
        if not best.is_file():
            raise H2RecError(
                f"{run_dir}: no best.safetensors yet (training has not validated once)"
            )
        load_weights(best, trainer.model)
    return cfg, trainer
