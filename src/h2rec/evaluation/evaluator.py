"""One evaluator for every model: a score function in, stamped metrics and breakdowns out.

The evaluator knows a model only through ``score_fn(histories, candidates)``:

- ``histories``: LongTensor [B, max_len], the last max_len items before the target, left-padded
  with 0;
- ``candidates``: None for full ranking, where the function returns scores [B, n_items + 1]
  for every item (column 0 = padding, ignored); or a LongTensor [B, 1 + N] of item ids with the
  target in column 0 for sampled protocols, where it returns scores [B, 1 + N] for those ids.

The caller puts its model in eval mode; the evaluator runs ``score_fn`` under ``torch.no_grad()``
in batches. Ranks do not depend on the batch size (random tie breaks are drawn once per user).
A batch holds at most ``batch_size`` users and at most ``score_budget`` scores: with a 1M-item
catalogue, 1024 users of full-ranking scores would be 4 GB (plus the comparison masks), so the
number of users per batch shrinks with the catalogue, while sampled protocols (1 + N scores per
user) keep the whole ``batch_size``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

import h2rec
from h2rec.data.dataset import Dataset
from h2rec.data.popularity import LLMESR_GROUP_BOUNDARIES
from h2rec.evaluation.breakdowns import (
    GroupSpec,
    PopularitySource,
    item_head_mask,
    item_popularity,
    user_groups,
)
from h2rec.evaluation.candidates import load_or_draw_negatives, negatives_hash, parse_protocol
from h2rec.evaluation.examples import build_examples, check_split, padded_full_histories
from h2rec.evaluation.exposure import exposure
from h2rec.evaluation.metrics import check_ks, compute_metrics
from h2rec.evaluation.ranking import check_tie, rank_full, rank_sampled
from h2rec.evaluation.revisits import revisit_mask
from h2rec.evaluation.stamp import ProtocolStamp, config_hash
from h2rec.io import atomic_write_bytes, atomic_write_json, npy_bytes

ScoreFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
RESULT_FORMAT = "h2rec-eval-result-v1"
DEFAULT_SCORE_BUDGET = 2**26
"""Scores per evaluation batch (256 MiB of float32): 1024 users up to 65k items, 67 users at 1M."""


@dataclass(frozen=True)
class GroupResult:
    n_users: int
    metrics: dict[str, float]  # NaN when the group is empty


@dataclass(eq=False)
class EvalResult:
    """Stamped metrics of one model; per-user ranks are kept (and saved) for paired tests."""

    stamp: ProtocolStamp
    overall: dict[str, float]  # metrics over all evaluated users
    groups: dict[str, GroupResult]
    ranks: np.ndarray  # float64 [n_users], 0-based, aligned with `users`
    users: np.ndarray  # int64 [n_users], internal user ids
    group_info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> null); ranks and users are saved separately."""
        return {
            "format": RESULT_FORMAT,
            "stamp": self.stamp.model_dump(mode="json"),
            "overall": _nan_to_none(self.overall),
            "groups": {
                name: {"n_users": g.n_users, "metrics": _nan_to_none(g.metrics)}
                for name, g in self.groups.items()
            },
            "group_info": self.group_info,
            "seconds": self.seconds,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)

    def save(self, path: str | Path) -> Path:
        """Write `<path>` (JSON) plus `<stem>.ranks.npy` and `<stem>.users.npy`, each atomically.

        The JSON is written last and records the SHA-256 of both arrays, so `load` detects a
        JSON that does not belong to the arrays next to it.
        """
        path = Path(path)
        blobs = {
            "ranks": npy_bytes(self.ranks.astype(np.float64)),
            "users": npy_bytes(self.users.astype(np.int64)),
        }
        files = {}
        for name, data in blobs.items():
            target = _side_path(path, name)
            atomic_write_bytes(target, data)
            files[name] = {"file": target.name, "sha256": _sha256(data)}
        atomic_write_json(path, {**self.to_dict(), "files": files})
        return path

    @classmethod
    def load(cls, path: str | Path) -> EvalResult:
        path = Path(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != RESULT_FORMAT:
            raise ValueError(f"{path}: not an h2rec evaluation result ({data.get('format')!r})")
        arrays = {}
        for name in ("ranks", "users"):
            side = path.parent / data["files"][name]["file"]
            raw = side.read_bytes()
            if _sha256(raw) != data["files"][name]["sha256"]:
                raise ValueError(
                    f"{side}: does not match {path.name} (modified or from another run)"
                )
            arrays[name] = np.load(side, allow_pickle=False)
        return cls(
            stamp=ProtocolStamp.model_validate(data["stamp"]),
            overall=_none_to_nan(data["overall"]),
            groups={
                name: GroupResult(n_users=int(g["n_users"]), metrics=_none_to_nan(g["metrics"]))
                for name, g in data["groups"].items()
            },
            ranks=arrays["ranks"],
            users=arrays["users"],
            group_info=data.get("group_info", {}),
            seconds=float(data.get("seconds", 0.0)),
        )


def _process_group() -> tuple[int, int]:
    """(rank, world size) of the initialised torch.distributed process group; (0, 1) without."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _nan_to_none(d: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if math.isnan(v) else v) for k, v in d.items()}


def _none_to_nan(d: dict[str, float | None]) -> dict[str, float]:
    return {k: (float("nan") if v is None else float(v)) for k, v in d.items()}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _side_path(path: Path, name: str) -> Path:
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return path.with_name(f"{stem}.{name}.npy")


class Evaluator:
    """Evaluates any model, given as a score function, under one explicit, stamped protocol.

    Examples, candidate negatives and user groups are built once here and shared by every
    `evaluate` call, so all models see exactly the same users, targets and candidates.

    Options beyond the protocol basics: ``min_history`` (default 1) skips users with fewer earlier
    items, i.e. cold-start users under a temporal split (never happens with leave-one-out);
    ``tie_seed`` seeds tie='random'; ``popularity`` ('train' or 'all') is the item popularity the
    head/tail and popularity groups use; ``short_threshold`` (default: median history length)
    splits short/long users; ``exclude_history`` removes every earlier item of the user (whole
    history, not only the max_len window) from full ranking, never the target itself; for
    sampled protocols it changes nothing, as negatives never include the user's items.
    ``batch_size`` (users) and ``score_budget`` (scores, default `DEFAULT_SCORE_BUDGET`) bound a
    batch; see `rows_per_batch`. Neither changes any rank.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        split: str = "test",
        protocol: str = "full",
        ks: Sequence[int] = (5, 10, 20),
        tie: str = "pessimistic",
        exclude_history: bool = False,
        negatives_seed: int = 0,
        max_len: int = 50,
        batch_size: int = 256,
        score_budget: int = DEFAULT_SCORE_BUDGET,
        head_fraction: float = 0.2,
        head_threshold: int | None = None,
        popularity: PopularitySource = "train",
        boundaries: tuple[int, ...] = LLMESR_GROUP_BOUNDARIES,
        short_threshold: float | None = None,
        min_history: int = 1,
        tie_seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        check_split(split)
        self.dataset = dataset
        self.split = split
        self.protocol = parse_protocol(protocol)
        self.ks = check_ks(ks)
        self.tie = check_tie(tie)
        self.exclude_history = bool(exclude_history)
        if int(negatives_seed) < 0 or int(tie_seed) < 0:
            raise ValueError("seeds must be >= 0")
        self.negatives_seed = int(negatives_seed)
        self.tie_seed = int(tie_seed)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        if score_budget < 1:
            raise ValueError(f"score_budget must be >= 1, got {score_budget}")
        self.score_budget = int(score_budget)
        self.max_len = int(max_len)
        self.min_history = int(min_history)
        self.device = torch.device(device)
        self.content_hash = dataset.content_hash()

        self.examples = build_examples(dataset, split, self.max_len, min_history=self.min_history)
        self._revisits: np.ndarray | None = None
        if len(self.examples) == 0:
            raise ValueError(
                f"dataset {dataset.name!r} has no users to evaluate on split {split!r} "
                f"(min_history={self.min_history})"
            )
        self.negatives: np.ndarray | None = None
        self.negatives_path: Path | None = None
        self.negatives_hash: str | None = None
        if self.protocol.sampled:
            neg = load_or_draw_negatives(
                dataset, split, self.protocol, self.negatives_seed, content_hash=self.content_hash
            )
            self.negatives = neg.for_users(self.examples.users)
            self.negatives_path = neg.path
            self.negatives_hash = negatives_hash(self.examples.users, self.negatives)

        self.group_spec = GroupSpec(
            head_fraction=head_fraction,
            head_threshold=head_threshold,
            popularity=popularity,
            boundaries=tuple(boundaries),
            short_threshold=short_threshold,
        )
        self.popularity = item_popularity(dataset, popularity)
        self.groups, self.group_info = user_groups(
            self.examples.targets, self.examples.history_lengths, self.popularity, self.group_spec
        )

    @property
    def users(self) -> np.ndarray:
        return self.examples.users

    @property
    def n_users(self) -> int:
        return len(self.examples)

    @property
    def n_candidates(self) -> int:
        """Scores per user that `score_fn` returns: n_items + 1 (full ranking) or 1 + N."""
        if self.protocol.sampled:
            assert self.protocol.n_negatives is not None
            return 1 + self.protocol.n_negatives
        return self.dataset.n_items + 1

    @property
    def rows_per_batch(self) -> int:
        """Users per evaluation batch: `batch_size`, capped so a batch's score matrix holds at
        most `score_budget` scores (at least one user)."""
        return max(1, min(self.batch_size, self.score_budget // self.n_candidates))

    def candidates(self, rows: np.ndarray | None = None) -> np.ndarray | None:
        """int64 [len(rows), 1 + N] candidate ids (target first) of example `rows` (default: all
        users) for sampled protocols, else None. A new array on every call: ranking builds one
        batch at a time, never the whole [U, 1 + N] matrix."""
        if self.negatives is None:
            return None
        targets = self.examples.targets if rows is None else self.examples.targets[rows]
        negatives = self.negatives if rows is None else self.negatives[rows]
        out = np.empty((len(targets), 1 + negatives.shape[1]), dtype=np.int64)
        out[:, 0] = targets
        out[:, 1:] = negatives
        return out

    def stamp(
        self,
        model_name: str,
        model_config: dict[str, Any] | BaseModel | None,
        train_seed: int | None,
    ) -> ProtocolStamp:
        return ProtocolStamp(
            dataset=self.dataset.name,
            dataset_hash=self.content_hash,
            split=self.split,
            n_users=self.n_users,
            n_items=self.dataset.n_items,
            protocol=self.protocol.name,
            n_negatives=self.protocol.n_negatives,
            negatives_seed=self.negatives_seed if self.protocol.sampled else None,
            negatives_hash=self.negatives_hash,
            tie_policy=self.tie,
            tie_seed=self.tie_seed if self.tie == "random" else None,
            exclude_history=self.exclude_history,
            max_len=self.max_len,
            min_history=self.min_history,
            head_rule=self.group_info["head_rule"],
            popularity=self.group_info["popularity"],
            short_threshold=self.group_info["short_threshold"],
            model_name=model_name,
            model_config_hash=None if model_config is None else config_hash(model_config),
            train_seed=train_seed,
            h2rec_version=h2rec.__version__,
        )

    def batches(self) -> list[np.ndarray]:
        """The evaluation batches (rows of `examples`): users sorted by history length, so a score
        function may drop the columns that are padding in every row of a batch."""
        order = np.argsort(self.examples.history_lengths, kind="stable")
        size = self.rows_per_batch
        return [order[lo : lo + size] for lo in range(0, len(order), size)]

    def ranks(self, score_fn: ScoreFn, *, distributed: bool = False) -> np.ndarray:
        """0-based float64 rank of each evaluated user's target (aligned with `users`).

        `distributed`: with an initialised torch.distributed process group of W > 1 processes,
        process r scores batches r, r + W, ... of `batches()` and the per-user ranks are gathered,
        so every process returns the whole vector. The batches are the single-process ones, so
        each user's scores, and rank, are exactly those a single process computes.
        """
        rank, world = _process_group() if distributed else (0, 1)
        batches = self.batches()
        mine = batches[rank::world]
        out = np.empty(len(self.examples), dtype=np.float64)
        for rows, r in zip(mine, self._rank_batches(score_fn, mine), strict=True):
            out[rows] = r
        if world > 1:
            import torch.distributed as dist

            local = out[np.concatenate(mine)] if mine else np.empty(0, dtype=np.float64)
            gathered: list[np.ndarray | None] = [None] * world
            dist.all_gather_object(gathered, local)
            for other, part in enumerate(gathered):
                theirs = batches[other::world]
                if theirs:
                    out[np.concatenate(theirs)] = part
        return out

    def rank_rows(self, score_fn: ScoreFn, rows: np.ndarray) -> np.ndarray:
        """0-based float64 ranks of the targets of example `rows` (indices into `users`), in
        that order; scored in batches of `rows_per_batch` rows, in the order given (pass rows
        sorted by history length to let a score function trim padding, as `ranks` does)."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1:
            raise ValueError(f"rows must be 1-D, got shape {rows.shape}")
        if rows.size and (rows.min() < 0 or rows.max() >= len(self.examples)):
            raise ValueError(f"rows must be indices in 0..{len(self.examples) - 1}")
        size = self.rows_per_batch
        chunks = [rows[lo : lo + size] for lo in range(0, len(rows), size)]
        parts = self._rank_batches(score_fn, chunks)
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)

    def _rank_batches(self, score_fn: ScoreFn, batches: list[np.ndarray]) -> list[np.ndarray]:
        """Ranks of the targets of each batch of example rows, batch after batch."""
        ex = self.examples
        uniform = None
        if self.tie == "random":  # drawn for every user, so a user's draw is the same anywhere
            gen = torch.Generator().manual_seed(self.tie_seed)
            uniform = torch.rand(len(ex), generator=gen, dtype=torch.float64)
        out = []
        with torch.no_grad():
            for rows in batches:
                # Copies: a score function that writes into its inputs cannot corrupt ours.
                hist = torch.tensor(ex.histories[rows], dtype=torch.long, device=self.device)
                u = None if uniform is None else uniform[torch.from_numpy(rows)]
                cand_np = self.candidates(rows)
                if cand_np is None:
                    scores, exclude = self._score_full(score_fn, hist, rows)
                    targets = torch.from_numpy(ex.targets[rows])
                    r = rank_full(scores, targets, tie=self.tie, exclude=exclude, tie_uniform=u)
                else:
                    cand = torch.from_numpy(cand_np).to(self.device)  # a fresh array per batch
                    scores = torch.as_tensor(score_fn(hist, cand))
                    if scores.shape != cand.shape:
                        raise ValueError(
                            f"score_fn returned {tuple(scores.shape)} for {self.protocol.name}; "
                            f"expected {tuple(cand.shape)} (one score per candidate, target first)"
                        )
                    r = rank_sampled(scores, tie=self.tie, tie_uniform=u)
                # Freed now, not when the next batch's scores replace them: one batch of scores
                # is alive at a time, not two.
                del scores
                out.append(r.cpu().numpy())
        return out

    def recommend(self, score_fn: ScoreFn, k: int) -> np.ndarray:
        """int64 [U, k] top-k item ids of every evaluated user (aligned with `users`), best
        first, over the whole catalogue whatever the protocol: padding never, the user's earlier
        items not when `exclude_history` (as full ranking). Ties are ordered arbitrarily."""
        n_items = self.dataset.n_items
        if not 1 <= k <= n_items:
            raise ValueError(f"k must be in 1..{n_items}, got {k}")
        ex = self.examples
        out = np.empty((len(ex), k), dtype=np.int64)
        with torch.no_grad():
            for rows in self.batches():
                hist = torch.tensor(ex.histories[rows], dtype=torch.long, device=self.device)
                scores, seen = self._score_full(score_fn, hist, rows)
                scores = scores.float().clone()  # ours to mask
                scores[:, 0] = -torch.inf
                if seen is not None:  # (its padding entries point at column 0)
                    scores.scatter_(1, seen.to(scores.device), -torch.inf)
                out[rows] = scores.topk(k, dim=1).indices.cpu().numpy()
        return out

    def _score_full(
        self, score_fn: ScoreFn, hist: torch.Tensor, rows: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Full-catalogue scores of example `rows`, checked, and the items to exclude from
        them (every earlier item of the user, with `exclude_history`; else None)."""
        n_items = self.dataset.n_items
        scores = torch.as_tensor(score_fn(hist, None))
        if scores.shape != (len(rows), n_items + 1):
            raise ValueError(
                f"score_fn returned {tuple(scores.shape)} for full ranking; expected "
                f"[{len(rows)}, n_items + 1 = {n_items + 1}] (column 0 = padding)"
            )
        if not self.exclude_history:
            return scores, None
        return scores, torch.from_numpy(padded_full_histories(self.dataset, self.examples, rows))

    def revisits(self) -> np.ndarray:
        """bool per evaluated user: the target is already in the user's history (a revisit; see
        `evaluation.revisits`). Aligned with `users` and the group masks."""
        if self._revisits is None:
            self._revisits = revisit_mask(self.dataset, self.examples)
        return self._revisits

    def exposure(self, score_fn: ScoreFn, ks: Sequence[int] = (10,)) -> dict[str, float]:
        """Head share, average popularity, coverage and Gini of the top-k recommendations (see
        `evaluation.exposure`), with this evaluator's popularity and head rule."""
        top = self.recommend(score_fn, max(ks))
        head = item_head_mask(self.popularity, self.group_spec)
        out: dict[str, float] = {}
        for k in sorted(set(ks)):
            out.update(exposure(top[:, :k], self.popularity, head, self.examples.targets))
        return out

    def evaluate(
        self,
        score_fn: ScoreFn,
        *,
        model_name: str,
        model_config: dict[str, Any] | BaseModel | None = None,
        train_seed: int | None = None,
        distributed: bool = False,
    ) -> EvalResult:
        """Rank every evaluated user's target and report overall and per-group metrics.

        `distributed`: split the users over the torch.distributed process group (see `ranks`);
        every process gets the same, complete result.
        """
        start = time.perf_counter()
        ranks = self.ranks(score_fn, distributed=distributed)
        return EvalResult(
            stamp=self.stamp(model_name, model_config, train_seed),
            overall=compute_metrics(ranks, self.ks),
            groups={
                name: GroupResult(int(mask.sum()), compute_metrics(ranks[mask], self.ks))
                for name, mask in self.groups.items()
            },
            ranks=ranks,
            users=self.users.copy(),
            group_info=dict(self.group_info),
            seconds=time.perf_counter() - start,
        )
