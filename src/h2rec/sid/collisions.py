"""What to do when several items get the same Semantic ID (a *collision*).

* ``keep`` — H2Rec's choice: colliding items share a SID; the HID branch keeps them apart.
* ``extra-level`` — TIGER / GRID: append a level holding each item's rank 0..g-1 inside its
  collision group (by item row order). Its size is the largest group, so unique items get 0.
  Always yields unique codes. The extra code depends on the corpus, so `Tokenizer.encode` of a
  new item cannot produce it: re-run the policy on the grown corpus.
* ``sinkhorn`` — LC-Rec's uniform semantic mapping: re-assign the *last* level of colliding items
  from Sinkhorn-Knopp balanced transport plans over the distances of each item's last residual to
  the last-level codebook (distances centred to [-1, 1] per group, entropy epsilon, log-domain so
  a small epsilon cannot overflow), for up to `max_rounds` rounds until no collision is left.
  Two deliberate differences from LC-Rec's argmax rounding: (1) codes already held by other items
  with the same (L-1)-prefix are excluded from a group's choices, and (2) the plan is rounded
  greedily (largest mass first, one item per code), because argmax never separates items whose
  embeddings are identical. `rounding="argmax"` gives LC-Rec's rule. Zero collisions are reached
  when every (L-1)-prefix group has at most K items; a bigger prefix group cannot be made unique
  by changing only the last level, so some collisions remain (reported, not raised).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from h2rec.sid.base import TokenizerError

Policy = Literal["keep", "extra-level", "sinkhorn"]
POLICIES: tuple[str, ...] = ("keep", "extra-level", "sinkhorn")


def sid_groups(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dense group id int64 [n] of each item's full SID, size int64 [n_groups] of each group)."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or len(codes) == 0:
        raise TokenizerError(
            f"codes: expected a non-empty 2-D array [n, L], got shape {codes.shape}"
        )
    _, inv, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return inv.reshape(-1).astype(np.int64), counts.astype(np.int64)


def collision_stats(codes: np.ndarray) -> dict[str, Any]:
    """Collision rate 1 - unique/n (LC-Rec), largest group, colliding items and groups."""
    inv, counts = sid_groups(codes)
    n = len(inv)
    return {
        "rate": 1.0 - len(counts) / n,
        "n_unique_sids": len(counts),
        "largest_group": int(counts.max()),
        "n_colliding_items": int(counts[counts > 1].sum()),
        "n_collision_groups": int((counts > 1).sum()),
    }


def add_extra_level(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """codes [n, L] -> ([n, L+1] with each item's 0-based rank in its collision group, level size)."""
    codes = np.asarray(codes, dtype=np.int64)
    inv, counts = sid_groups(codes)
    order = np.argsort(inv, kind="stable")  # rows grouped, row order kept inside each group
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(inv), dtype=np.int64)
    rank[order] = np.arange(len(inv)) - starts[inv[order]]
    return np.concatenate([codes, rank[:, None]], axis=1), int(counts.max())


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return (np.log(np.exp(a - m).sum(axis=axis, keepdims=True)) + m).squeeze(axis)


def sinkhorn_plan(cost: np.ndarray, epsilon: float, iters: int) -> np.ndarray:
    """Entropic transport plan [B, F] with uniform marginals (1/B per item, 1/F per code).

    The cost is first centred to [-1, 1] as LC-Rec does, so epsilon has the same meaning for any
    distance scale. Computed in the log domain (LC-Rec's exp(-d/0.003) overflows float32).
    """
    c = np.asarray(cost, dtype=np.float64)
    lo, hi = c.min(), c.max()
    mid = (hi + lo) / 2.0
    c = (c - mid) / (hi - mid + 1e-5)
    log_k = -c / epsilon
    b, f = c.shape
    log_a, log_b = -np.log(b), -np.log(f)
    u = np.zeros(b)
    v = np.zeros(f)
    for _ in range(iters):
        v = log_b - _logsumexp(log_k + u[:, None], axis=0)
        u = log_a - _logsumexp(log_k + v[None, :], axis=1)
    return np.exp(log_k + u[:, None] + v[None, :])


def _round_plan(plan: np.ndarray, rounding: str) -> np.ndarray:
    """Column (code) choice per row (item)."""
    if rounding == "argmax":
        return plan.argmax(axis=1)
    b, f = plan.shape
    choice = np.full(b, -1, dtype=np.int64)
    taken = np.zeros(f, dtype=bool)
    flat = np.argsort(-plan, axis=None, kind="stable")
    left = b
    for idx in flat:
        if left == 0 or taken.all():
            break
        i, j = divmod(int(idx), f)
        if choice[i] < 0 and not taken[j]:
            choice[i], taken[j] = j, True
            left -= 1
    rest = choice < 0  # more items than free codes: fall back to argmax (they stay collided)
    choice[rest] = plan[rest].argmax(axis=1)
    return choice


def sinkhorn_dedup(
    codes: np.ndarray,
    last_distances: np.ndarray,
    *,
    epsilon: float = 0.003,
    iters: int = 50,
    max_rounds: int = 20,
    rounding: Literal["greedy", "argmax"] = "greedy",
) -> tuple[np.ndarray, int]:
    """(codes with the last level re-assigned, rounds run). See the module docstring."""
    codes = np.array(codes, dtype=np.int64, copy=True)
    dist = np.asarray(last_distances, dtype=np.float64)
    n, levels = codes.shape
    if dist.shape[0] != n:
        raise TokenizerError(f"last_distances has {dist.shape[0]} rows, codes has {n}")
    k = dist.shape[1]
    if levels > 1:
        prefix = np.unique(codes[:, :-1], axis=0, return_inverse=True)[1].reshape(-1)
    else:
        prefix = np.zeros(n, dtype=np.int64)
    rounds = 0
    for _ in range(max_rounds):
        inv, counts = sid_groups(codes)
        colliding = np.flatnonzero(counts[inv] > 1)
        if colliding.size == 0:
            break
        rounds += 1
        before = codes[:, -1].copy()
        # process collision groups prefix by prefix, updating which last codes are taken
        groups = inv[colliding]
        order = np.lexsort((colliding, groups, prefix[colliding]))
        items_sorted, groups_sorted = colliding[order], groups[order]
        bounds = np.flatnonzero(np.diff(groups_sorted)) + 1
        occupancy: dict[int, np.ndarray] = {}
        for g_items in np.split(items_sorted, bounds):
            p = int(prefix[g_items[0]])
            occ = occupancy.get(p)
            if occ is None:
                occ = np.bincount(codes[prefix == p, -1], minlength=k)
                occupancy[p] = occ
            mine = np.bincount(codes[g_items, -1], minlength=k)
            free = np.flatnonzero(occ - mine == 0)
            if free.size == 0:
                continue
            plan = sinkhorn_plan(dist[np.ix_(g_items, free)], epsilon, iters)
            new = free[_round_plan(plan, rounding)]
            occ -= mine
            occ += np.bincount(new, minlength=k)
            codes[g_items, -1] = new
        if np.array_equal(before, codes[:, -1]):
            break  # no progress possible (prefix groups larger than K, or argmax stuck)
    return codes, rounds


@dataclass
class CollisionResult:
    """Codes after a collision policy, with what it changed."""

    codes: np.ndarray
    policy: str
    rounds: int
    extra_level_size: int | None
    before: dict[str, Any]
    after: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("codes")
        return d


def apply_collision_policy(
    codes: np.ndarray,
    policy: str,
    *,
    tokenizer: Any = None,
    vectors: Any = None,
    last_distances: np.ndarray | None = None,
    epsilon: float = 0.003,
    iters: int = 50,
    max_rounds: int = 20,
    rounding: Literal["greedy", "argmax"] = "greedy",
) -> CollisionResult:
    """Apply `policy` to codes [n, L]. `sinkhorn` needs `last_distances` [n, K_L], or a fitted
    `tokenizer` and the `vectors` the codes came from (to compute them)."""
    codes = np.asarray(codes, dtype=np.int64)
    before = collision_stats(codes)
    if policy == "keep":
        return CollisionResult(codes.copy(), policy, 0, None, before, before)
    if policy == "extra-level":
        out, size = add_extra_level(codes)
        return CollisionResult(out, policy, 1, size, before, collision_stats(out))
    if policy == "sinkhorn":
        if last_distances is None:
            if tokenizer is None or vectors is None:
                raise TokenizerError(
                    "collision='sinkhorn' needs last_distances, or a tokenizer and its vectors"
                )
            last_distances = tokenizer.last_level_distances(vectors, codes)
        out, rounds = sinkhorn_dedup(
            codes,
            last_distances,
            epsilon=epsilon,
            iters=iters,
            max_rounds=max_rounds,
            rounding=rounding,
        )
        return CollisionResult(out, policy, rounds, None, before, collision_stats(out))
    raise TokenizerError(
        f"unknown collision policy {policy!r}; choose one of {', '.join(POLICIES)}"
    )
