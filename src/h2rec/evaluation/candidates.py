"""Candidate protocols: full ranking, or the target plus N sampled negatives (uniN / popN).

Sampled negatives follow the usual definition (RecBole, LLM-ESR's `random_neq`): N DISTINCT items
the user never interacted with in ANY split (so never the target either), drawn one after another
uniformly (`uniN`) or proportionally to TRAINING popularity (`popN`; items never seen in training
therefore cannot be drawn). "One after another with rejection" is implemented exactly, but
vectorised: each row takes the first N valid, not-yet-seen items of an i.i.d. stream of draws.

Negatives are drawn ONCE per (dataset content hash, split, protocol, seed) with
`numpy.random.Generator(seed)` and stored next to the prepared dataset, so every model, run and
re-run ranks the target against the same candidates (LLM-ESR re-draws them on every evaluation).
They are stored and held as int32 when every item id fits (404 instead of 808 bytes per user for
uni100); files written as int64 by earlier versions are read as they are, never redrawn, and the
stamped `negatives_hash` hashes the ids as int64 whatever the storage, so it does not change.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from h2rec.data.dataset import Dataset
from h2rec.evaluation.examples import check_split, target_positions
from h2rec.io import atomic_write_bytes

log = logging.getLogger("h2rec")

# Bump when the sampling algorithm changes: cached files drawn by another version are redrawn.
SAMPLER_VERSION = "h2rec-negatives-v1"

_PROTOCOL = re.compile(r"^(full|uni|pop)(\d*)$")


@dataclass(frozen=True)
class Protocol:
    """A parsed protocol string: 'full', 'uniN' or 'popN'."""

    kind: Literal["full", "uni", "pop"]
    n_negatives: int | None = None

    @property
    def name(self) -> str:
        return "full" if self.kind == "full" else f"{self.kind}{self.n_negatives}"

    @property
    def sampled(self) -> bool:
        return self.kind != "full"

    def __str__(self) -> str:
        return self.name


def parse_protocol(protocol: str | Protocol) -> Protocol:
    """'full' | 'uni<N>' | 'pop<N>' (N >= 1), e.g. 'uni100' as in LLM-ESR / H2Rec."""
    if isinstance(protocol, Protocol):
        return protocol
    m = _PROTOCOL.match(str(protocol).strip())
    if m is None:
        raise ValueError(
            f"unknown protocol {protocol!r}; use 'full', 'uniN' or 'popN' (e.g. 'uni100')"
        )
    kind, digits = m.group(1), m.group(2)
    if kind == "full":
        if digits:
            raise ValueError(f"protocol {protocol!r}: 'full' takes no number")
        return Protocol("full")
    if not digits or int(digits) < 1:
        raise ValueError(f"protocol {protocol!r}: give the number of negatives, e.g. '{kind}100'")
    return Protocol(kind, int(digits))  # type: ignore[arg-type]


# ---- membership of (user, item) pairs -------------------------------------------------------


def interaction_keys(ds: Dataset) -> np.ndarray:
    """Sorted unique int64 keys user * (n_items + 1) + item of every interaction, any split."""
    return np.unique(ds.inter_user.astype(np.int64) * (ds.n_items + 1) + ds.inter_item)


def _member(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Elementwise `query in keys` for sorted `keys`."""
    if len(keys) == 0:
        return np.zeros(query.shape, dtype=bool)
    idx = np.searchsorted(keys, query)
    return keys[np.minimum(idx, len(keys) - 1)] == query


def _first_occurrence(x: np.ndarray) -> np.ndarray:
    """True where x[r, j] does not occur earlier in row r."""
    order = np.argsort(x, axis=1, kind="stable")
    xs = np.take_along_axis(x, order, axis=1)
    dup_sorted = np.zeros(x.shape, dtype=bool)
    dup_sorted[:, 1:] = xs[:, 1:] == xs[:, :-1]
    dup = np.empty_like(dup_sorted)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    return ~dup


# ---- sampling --------------------------------------------------------------------------------


def sample_negatives(
    keys: np.ndarray,
    users: np.ndarray,
    n_items: int,
    n: int,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
    *,
    max_rounds: int = 30,
    budget: int = 2_000_000,
) -> np.ndarray:
    """[len(users), n] distinct negatives per row, drawn sequentially with rejection.

    keys: sorted (user, item) keys from `interaction_keys` (the items each user may not get).
    weights: None for uniform over 1..n_items, else a non-negative integer count per internal id
    (length n_items + 1; index 0 is ignored), e.g. training popularity. Rows may repeat a user.

    Each row receives the first n items of an i.i.d. stream (uniform or weights-proportional)
    that are neither the user's items nor already taken: the law of sequential sampling
    without replacement. Rows that are still short after `max_rounds` vectorised rounds (users
    who own almost all of the sampling mass) finish with an exact per-row draw of the same law.
    `max_rounds` and `budget` (elements per round) shape the random stream: changing their
    defaults changes the stored negatives, so bump SAMPLER_VERSION with them.
    """
    users = np.asarray(users, dtype=np.int64)
    n_rows = len(users)
    if n < 1:
        raise ValueError(f"number of negatives must be >= 1, got {n}")
    base = n_items + 1
    # What each row may draw: eligible count and share of the sampling mass.
    row_items_key = keys // base
    if weights is None:
        w = np.ones(base, dtype=np.int64)
    else:
        wf = np.asarray(weights, dtype=np.float64)
        if wf.shape != (base,) or not np.all(np.isfinite(wf)) or np.any(wf < 0):
            raise ValueError(f"weights must be finite, >= 0 and of length n_items + 1 = {base}")
        if np.any(wf != np.floor(wf)) or wf.sum() >= 2**62:
            raise ValueError("weights must be integer counts (e.g. training popularity)")
        w = wf.astype(np.int64)
    w[0] = 0
    # Integer cumulative counts make the popularity draw exact (no float rounding at the edges).
    cdf = np.cumsum(w)
    total = int(cdf[-1])
    owned_mass = np.bincount(row_items_key, weights=w[keys % base], minlength=1)
    owned_pos = np.bincount(row_items_key, weights=(w[keys % base] > 0), minlength=1)
    pad = max(0, int(users.max(initial=0)) + 1 - len(owned_mass))
    owned_mass = np.concatenate([owned_mass, np.zeros(pad)])[users]
    owned_pos = np.concatenate([owned_pos, np.zeros(pad)])[users]
    eligible = int(np.count_nonzero(w > 0)) - owned_pos.astype(np.int64)
    short = eligible < n
    if np.any(short):
        bad = np.flatnonzero(short)
        what = "items with a non-zero training count" if weights is not None else "items"
        raise ValueError(
            f"{len(bad)} user(s) have fewer than {n} eligible negatives ({what} they never "
            f"interacted with); e.g. internal user {int(users[bad[0]])} has {int(eligible[bad[0]])}. "
            "Use fewer negatives or full ranking."
        )
    accept = np.clip((total - owned_mass) / total, 0.0, 1.0) if total > 0 else np.zeros(n_rows)

    def draw(shape: tuple[int, int]) -> np.ndarray:
        if weights is None:
            return rng.integers(1, base, size=shape, dtype=np.int64)
        # x uniform in [0, total); the first id with cdf > x has probability w / total, and a
        # zero-weight id is never returned (its cdf equals its predecessor's).
        x = rng.integers(0, total, size=shape, dtype=np.int64)
        return np.searchsorted(cdf, x, side="right").astype(np.int64)

    out = np.zeros((n_rows, n), dtype=np.int64)
    have = np.zeros(n_rows, dtype=np.int64)
    # Rows owning > 98% of the mass would need huge over-sampling: draw them exactly below.
    active = np.flatnonzero(accept >= 0.02)
    for _ in range(max_rounds):
        if active.size == 0:
            break
        need = n - have[active]
        rate = float(np.min(accept[active]))
        width = min(math.ceil(float(need.max()) / rate * 1.25) + 8, budget)
        chunk = max(1, budget // (n + width))  # bounds the temporaries to ~budget elements
        for lo in range(0, active.size, chunk):
            part = active[lo : lo + chunk]
            cand = np.concatenate([out[part], draw((part.size, width))], axis=1)
            ok = cand > 0  # placeholders (0) of rows not yet full are not items
            ok &= ~_member(keys, users[part, None] * base + cand)
            ok &= _first_occurrence(cand)
            rank = np.cumsum(ok, axis=1)
            rows, cols = np.nonzero(ok & (rank <= n))
            block = np.zeros((part.size, n), dtype=np.int64)
            block[rows, rank[rows, cols] - 1] = cand[rows, cols]
            out[part] = block
            have[part] = np.minimum(rank[:, -1], n)
        active = active[have[active] < n]
    rest = np.flatnonzero(have < n)
    if rest.size:
        _finish_exact(out, have, rest, keys, users, w, n, base, rng)
    return out


def _finish_exact(
    out: np.ndarray,
    have: np.ndarray,
    rows: np.ndarray,
    keys: np.ndarray,
    users: np.ndarray,
    w: np.ndarray,
    n: int,
    base: int,
    rng: np.random.Generator,
) -> None:
    """Continue each row's sequential draw over its explicit eligible set (rare rows only)."""
    for r in rows:
        lo, hi = np.searchsorted(keys, [users[r] * base, (users[r] + 1) * base])
        banned = np.concatenate([keys[lo:hi] % base, out[r, : have[r]]])
        allowed = np.ones(base, dtype=bool)
        allowed[0] = False
        allowed[banned] = False
        allowed &= w > 0
        pool = np.flatnonzero(allowed)
        p = w[pool] / w[pool].sum()
        k = n - int(have[r])
        out[r, have[r] :] = rng.choice(pool, size=k, replace=False, p=p)
        have[r] = n


# ---- the stored candidate sets ---------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NegativeSet:
    """Negatives for every user that has a target in `split` (rows follow `users`)."""

    users: np.ndarray  # int64 [U], ascending
    negatives: np.ndarray  # [U, N] item ids, int32 when they fit (`compact_ids`), else int64
    path: Path | None  # where it is stored, or None when computed in memory

    def for_users(self, users: np.ndarray) -> np.ndarray:
        """Rows of `negatives` for the given (ascending) users.

        When they are exactly the stored users (the usual case) this is a read-only view of
        `negatives`, not a copy; otherwise a new array.
        """
        if np.array_equal(users, self.users):
            view = self.negatives.view()
            view.flags.writeable = False
            return view
        idx = np.searchsorted(self.users, users)
        if np.any(idx >= len(self.users)) or np.any(
            self.users[np.minimum(idx, len(self.users) - 1)] != users
        ):
            raise ValueError("negatives were not drawn for some of the requested users")
        return self.negatives[idx]


def compact_ids(ids: np.ndarray, n_items: int) -> np.ndarray:
    """`ids` as int32 when every id 0..n_items fits (always, in practice), else as int64; no copy
    when the dtype already matches. The values are unchanged."""
    dtype = np.int32 if n_items <= np.iinfo(np.int32).max else np.int64
    return np.asarray(ids).astype(dtype, copy=False)


def candidates_path(ds: Dataset, split: str, protocol: Protocol, seed: int) -> Path | None:
    if ds.path is None:
        return None
    return Path(ds.path) / "candidates" / f"{split}-{protocol.name}-seed{seed}.npz"


def draw_negatives(
    ds: Dataset, split: str, protocol: Protocol, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(users, negatives) for every user with a target in `split`; deterministic in its inputs."""
    if not protocol.sampled:
        raise ValueError("full ranking has no sampled negatives")
    assert protocol.n_negatives is not None
    users = ds.inter_user[target_positions(ds, split)].astype(np.int64)
    weights = ds.item_popularity("train") if protocol.kind == "pop" else None
    negatives = sample_negatives(
        interaction_keys(ds),
        users,
        ds.n_items,
        protocol.n_negatives,
        np.random.default_rng(seed),
        weights,
    )
    return users, negatives


def load_or_draw_negatives(
    ds: Dataset,
    split: str,
    protocol: str | Protocol,
    seed: int,
    *,
    content_hash: str | None = None,
) -> NegativeSet:
    """The stored negatives for (dataset, split, protocol, seed), drawing and storing them if needed.

    A stored file is used only when its dataset content hash, sampler version and key match;
    otherwise it is redrawn and replaced (atomically). Without `ds.path` nothing is stored.
    The stored file is the reference: numpy does not promise identical Generator streams across
    versions, so results also stamp a hash of the negatives themselves (`negatives_hash`).
    """
    check_split(split)
    proto = parse_protocol(protocol)
    content_hash = content_hash or ds.content_hash()
    path = candidates_path(ds, split, proto, seed)
    meta = {
        "content_hash": content_hash,
        "sampler": SAMPLER_VERSION,
        "split": split,
        "protocol": proto.name,
        "seed": str(seed),
    }
    if path is not None and path.is_file():
        loaded = _read(path, meta, proto, ds.n_items)
        if loaded is not None:
            return NegativeSet(users=loaded[0], negatives=loaded[1], path=path)
    users, drawn = draw_negatives(ds, split, proto, seed)
    negatives = compact_ids(drawn, ds.n_items)  # the same ids, half the bytes
    del drawn
    if path is not None:
        buf = io.BytesIO()
        np.savez(
            buf,
            users=users,
            negatives=negatives,
            **{k: np.array(v) for k, v in meta.items()},
        )
        try:
            atomic_write_bytes(path, buf.getvalue())
        except OSError as exc:  # e.g. a read-only shared folder: same draw, just not cached
            log.warning("cannot store negatives in %s (%s); keeping them in memory", path, exc)
            path = None
        else:
            log.info("stored %s negatives for %d users in %s", proto.name, len(users), path)
    return NegativeSet(users=users, negatives=negatives, path=path)


def _read(
    path: Path, meta: dict[str, str], proto: Protocol, n_items: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The stored arrays, or None (with a warning) when the file is stale or unreadable.

    Negatives may be stored as int64 (files of earlier versions) or int32; both are returned
    as `compact_ids`, so the ids, and every rank, are those that were drawn.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = {k: str(z[k]) for k in meta if k in z.files}
            users, negatives = z["users"], z["negatives"]
    except Exception as exc:  # a corrupt or foreign file is redrawn, never trusted
        log.warning("%s is unreadable (%s); drawing the negatives again", path, exc)
        return None
    if stored != meta:
        diff = sorted(k for k in meta if stored.get(k) != meta[k])
        log.warning("%s is stale (%s differ); drawing the negatives again", path, ", ".join(diff))
        return None
    if negatives.ndim != 2 or negatives.shape != (len(users), proto.n_negatives):
        log.warning("%s has unexpected shapes; drawing the negatives again", path)
        return None
    if not (np.issubdtype(users.dtype, np.integer) and np.issubdtype(negatives.dtype, np.integer)):
        log.warning("%s does not hold integer ids; drawing the negatives again", path)
        return None
    if negatives.size and (int(negatives.min()) < 1 or int(negatives.max()) > n_items):
        log.warning("%s holds ids outside 1..%d; drawing the negatives again", path, n_items)
        return None
    return users.astype(np.int64, copy=False), compact_ids(negatives, n_items)


def negatives_hash(users: np.ndarray, negatives: np.ndarray, *, block_rows: int = 65536) -> str:
    """Short fingerprint of a candidate set (the users and their negatives, in order).

    The ids are hashed as little-endian int64 whatever their dtype (so int32 storage keeps the
    fingerprint of int64 files), `block_rows` rows at a time (no int64 copy of the whole set;
    the hashed bytes, and the result, do not depend on `block_rows`).
    """
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(users, dtype="<i8").tobytes())
    negatives = np.asarray(negatives)
    step = max(1, int(block_rows))
    for lo in range(0, len(negatives), step):
        h.update(np.ascontiguousarray(negatives[lo : lo + step], dtype="<i8").tobytes())
    return h.hexdigest()[:16]
