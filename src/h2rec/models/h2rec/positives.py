"""Positive sets of H2Rec's code-guided alignment loss (paper Eq. 7).

For item ``i`` the positives are ``P(i) = {i} ∪ P_C(i) ∪ P_H(i)``:

* ``P_C(i)`` (code part): items sharing at least ``p`` semantic-code levels with ``i``.
  ``code_match="prefix"`` (default) asks for the same first ``p`` levels, the meaningful notion
  for residual quantisers, whose level ``l`` only means something under its prefix;
  ``code_match="any"`` asks for at least ``p`` equal level positions out of ``L``.
* ``P_H(i)`` (co-occurrence part): items within ``window`` positions (before or after) of an
  occurrence of ``i`` in some user's *training* sequence.

The caller must pass training-split sequences only: every pair found in ``train_items`` becomes
a positive, so a validation or test item in those arrays would leak held-out interactions into
the loss. Nothing but ``train_offsets``/``train_items`` is read for co-occurrence.

Co-occurrence pairs are stored sparsely as CSR (``indptr``/``indices`` buffers); membership in
:meth:`PositiveSets.mask` walks the anchors' rows with tensor ops on the inputs' device, and no
dense ``[n_items, n_items]`` matrix is ever built (the reference code's dense matrix would take
13 GB for Beauty).
"""

from __future__ import annotations

import time
from itertools import combinations
from math import comb
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

from h2rec.models.parts.ids import id_lookup

if TYPE_CHECKING:
    import scipy.sparse

CodeMatch = Literal["prefix", "any"]

__all__ = ["CodeMatch", "PositiveSets"]


def _as_int_array(name: str, value: Any, ndim: int) -> np.ndarray:
    """Integer numpy view of ``value``; fails loudly so a float or ragged input never slips by."""
    arr = np.asarray(value)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _cooccurrence_keys(
    offsets: np.ndarray, items: np.ndarray, n_items: int, window: int
) -> np.ndarray:
    """Sorted unique keys ``a * (n_items + 1) + b`` of all symmetric within-window pairs.

    Vectorised per offset ``o`` in ``1..window``: position ``t`` pairs with ``t + o`` when both
    belong to the same user, in both directions.
    """
    start, stop = int(offsets[0]), int(offsets[-1])
    seq = items[start:stop]
    user = np.repeat(np.arange(offsets.size - 1, dtype=np.int64), np.diff(offsets))
    base = n_items + 1
    chunks: list[np.ndarray] = []
    for o in range(1, min(window, seq.size - 1) + 1):
        same = user[:-o] == user[o:]
        a, b = seq[:-o][same], seq[o:][same]
        chunks.append(a * base + b)
        chunks.append(b * base + a)
    if not chunks:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(chunks))


class PositiveSets(torch.nn.Module):
    """Positive sets ``P(i)`` of the code-guided alignment loss.

    An ``nn.Module`` with no parameters so that its lookup buffers follow ``.to(device)`` with
    the model; the buffers are non-persistent (derived from data, so they stay out of
    checkpoints). Row 0 of ``codes`` and item id 0 are padding: id 0 is never a code or
    co-occurrence positive (only ``0 == 0`` through identity).
    """

    def __init__(
        self,
        codes: np.ndarray | None,
        train_offsets: np.ndarray | None,
        train_items: np.ndarray | None,
        n_items: int,
        *,
        p: int = 3,
        window: int = 3,
        code_match: CodeMatch = "prefix",
        use_codes: bool = True,
        use_cooccurrence: bool = True,
    ) -> None:
        """Validate inputs and precompute lookup buffers.

        ``codes``: int [n_items + 1, L], row 0 = -1 (padding), real items' codes >= 0.
        ``train_offsets``/``train_items``: CSR of the users' *training* sequences only (time
        order, item ids in 1..n_items); a leading empty padding user is fine. ``p = 0`` or
        ``use_codes=False`` disables the code part; ``window = 0`` or ``use_cooccurrence=False``
        disables the co-occurrence part.
        """
        super().__init__()
        t0 = time.perf_counter()
        if isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items < 1:
            raise ValueError(f"n_items must be a positive int, got {n_items!r}")
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 0:
            raise ValueError(f"p must be a non-negative int (0 disables the code part), got {p!r}")
        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 0:
            raise ValueError(
                f"window must be a non-negative int (0 disables co-occurrence), got {window!r}"
            )
        if code_match not in ("prefix", "any"):
            raise ValueError(f"code_match must be 'prefix' or 'any', got {code_match!r}")
        self.n_items = int(n_items)
        self.p = int(p)
        self.window = int(window)
        self.code_match: CodeMatch = code_match
        self.use_codes = bool(use_codes) and self.p > 0
        self.use_cooccurrence = bool(use_cooccurrence) and self.window > 0

        # --- code part -------------------------------------------------------------------
        self.n_levels = 0
        self._codes_np = np.zeros((self.n_items + 1, 0), dtype=np.int64)
        self._group_np = np.full(self.n_items + 1, -1, dtype=np.int64)
        if self.use_codes:
            if codes is None:
                raise ValueError("codes are required when use_codes=True and p > 0")
            c = _as_int_array("codes", codes, 2)
            if c.shape[0] != self.n_items + 1:
                raise ValueError(
                    f"codes must have n_items + 1 = {self.n_items + 1} rows (row 0 = padding), "
                    f"got {c.shape[0]}"
                )
            self.n_levels = int(c.shape[1])
            if self.p > self.n_levels:
                raise ValueError(f"p={self.p} exceeds the number of code levels L={self.n_levels}")
            if (c[1:] < 0).any():
                raise ValueError("codes of real items (rows 1..n_items) must be non-negative")
            # An owned copy: the torch buffer below shares its memory, so it must not be the
            # caller's array (which the caller may change).
            self._codes_np = np.array(c, dtype=np.int64, copy=True)
            c = self._codes_np
            if code_match == "prefix":
                # Group ids over real items only; padding keeps -1 so it matches nothing.
                _, inverse = np.unique(c[1:, : self.p], axis=0, return_inverse=True)
                self._group_np[1:] = inverse.reshape(-1)

        # --- co-occurrence part ---------------------------------------------------------
        keys = np.zeros(0, dtype=np.int64)
        if self.use_cooccurrence:
            if train_offsets is None or train_items is None:
                raise ValueError(
                    "train_offsets and train_items are required when use_cooccurrence=True "
                    "and window > 0"
                )
            offsets = _as_int_array("train_offsets", train_offsets, 1)
            items = _as_int_array("train_items", train_items, 1)
            if offsets.size < 1:
                raise ValueError("train_offsets must have at least one entry")
            if offsets[0] < 0 or (np.diff(offsets) < 0).any():
                raise ValueError("train_offsets must be non-negative and non-decreasing")
            if offsets[-1] > items.size:
                raise ValueError(
                    f"train_offsets[-1]={int(offsets[-1])} exceeds len(train_items)={items.size}"
                )
            span = items[offsets[0] : offsets[-1]]
            if span.size and (span.min() < 1 or span.max() > self.n_items):
                raise ValueError(f"train_items must be item ids in 1..{self.n_items}")
            keys = _cooccurrence_keys(offsets, items, self.n_items, self.window)
        # CSR rows of the sorted unique keys: indptr by binary search (no per-key temporary),
        # indices = keys % base written over the keys themselves, which are then not kept.
        base = self.n_items + 1
        self._indptr = np.searchsorted(keys, np.arange(base + 1, dtype=np.int64) * base).astype(
            np.int64, copy=False
        )
        self._indices = np.remainder(keys, base, out=keys)

        # The buffers SHARE the numpy arrays' memory (each array is owned here and never
        # written), so on CPU every lookup table is held once; `.to(device)` replaces a buffer by
        # a device copy and leaves the numpy array, which `positive_set` and `stats` read.
        for name, arr in (
            ("group_ids", self._group_np),
            ("codes", self._codes_np),
            ("cooc_indptr", self._indptr),
            ("cooc_indices", self._indices),
        ):
            self.register_buffer(name, torch.from_numpy(arr), persistent=False)
        self.build_seconds = time.perf_counter() - t0

    def extra_repr(self) -> str:
        """Summary for ``print(model)``."""
        code = f"p={self.p}, code_match={self.code_match!r}" if self.use_codes else "codes=off"
        cooc = f"window={self.window}" if self.use_cooccurrence else "cooccurrence=off"
        return f"n_items={self.n_items}, {code}, {cooc}, cooc_keys={self._indices.size}"

    def memory_bytes(self) -> dict[str, int]:
        """Bytes of the lookup tables: ``numpy`` arrays, torch ``buffers``, and ``held``, what
        they take together (a buffer that shares a numpy array's memory is counted once)."""
        arrays = (self._group_np, self._codes_np, self._indptr, self._indices)
        ptrs = {a.ctypes.data for a in arrays if a.nbytes}
        numpy_bytes = sum(int(a.nbytes) for a in arrays)
        buffers = [b.numel() * b.element_size() for b in self.buffers()]
        own = [
            n
            for n, b in zip(buffers, self.buffers(), strict=True)
            if not (b.device.type == "cpu" and b.data_ptr() in ptrs)
        ]
        return {"numpy": numpy_bytes, "buffers": sum(buffers), "held": numpy_bytes + sum(own)}

    # ------------------------------------------------------------------------------------
    def mask(self, anchors: Tensor, others: Tensor) -> Tensor:
        """``bool [M, N]``: ``others[j] ∈ P(anchors[i])``, for ids in 1..n_items.

        Pure tensor ops on the inputs' device (call ``.to(device)`` on this module first), so it
        can run inside the training step without host syncs. Ids are not range-checked here.
        """
        if anchors.dim() != 1 or others.dim() != 1:
            raise ValueError(
                f"anchors and others must be 1-D, got {tuple(anchors.shape)}, {tuple(others.shape)}"
            )
        group_ids: Tensor = self.group_ids
        if anchors.device != group_ids.device or others.device != group_ids.device:
            raise ValueError(
                f"inputs on {anchors.device}/{others.device} but positive-set buffers on "
                f"{group_ids.device}; move the module with .to(device)"
            )
        a = anchors.long()
        o = others.long()
        out = a[:, None] == o[None, :]
        if self.use_codes:
            if self.code_match == "prefix":
                ga, go = group_ids.index_select(0, a), group_ids.index_select(0, o)
                out |= ga[:, None] == go[None, :]
            else:
                codes: Tensor = self.codes
                ca, co = codes[a], codes[o]
                # Accumulate per level rather than building [M, N, L] at once.
                count = torch.zeros(out.shape, dtype=torch.int16, device=out.device)
                for level in range(self.n_levels):
                    count += ca[:, None, level] == co[None, :, level]
                out |= count >= self.p
        if self.use_cooccurrence and self.cooc_indices.numel() > 0:
            out |= self._cooc_mask(a, o)
        return out

    def _cooc_mask(self, a: Tensor, o: Tensor) -> Tensor:
        """Co-occurrence membership by walking the anchors' CSR rows: O(sum |P_H(a)| + M N),
        not M N binary searches (about 10x faster for a 1024-anchor batch).

        Every gather is a 1-D `index_select` and the hits are filled through a flat index into a
        `[unique others, M]` matrix whose ROWS are then picked per column: on CPU, advanced
        indexing (`x[idx]`, `x[:, inv]`) cost 2x this whole function at 256 anchors."""
        indptr: Tensor = self.cooc_indptr
        indices: Tensor = self.cooc_indices
        uniq, lookup = id_lookup(o, self.n_items + 1)  # lookup: -1 for ids not among `o`
        inv = lookup.index_select(0, o)
        starts = indptr.index_select(0, a)
        counts = indptr.index_select(0, a + 1) - starts
        rows = torch.repeat_interleave(torch.arange(a.numel(), device=a.device), counts)
        first = torch.cumsum(counts, 0) - counts  # where each anchor's run starts in `rows`
        flat = (starts - first).index_select(0, rows) + torch.arange(rows.numel(), device=a.device)
        cols = lookup.index_select(0, indices.index_select(0, flat))
        keep = cols >= 0
        hit_t = torch.zeros(uniq.numel(), a.numel(), dtype=torch.bool, device=a.device)
        hit_t.view(-1).index_fill_(0, (cols * a.numel() + rows)[keep], True)
        return hit_t.index_select(0, inv).t()

    def _check_item(self, item: int) -> int:
        if not 1 <= int(item) <= self.n_items:
            raise ValueError(f"item must be in 1..{self.n_items}, got {item}")
        return int(item)

    def _code_part(self, item: int) -> np.ndarray:
        """Item ids in ``P_C(item)`` (includes ``item`` itself), from the numpy codes."""
        if not self.use_codes:
            return np.zeros(0, dtype=np.int64)
        if self.code_match == "prefix":
            hit = self._group_np == self._group_np[item]
        else:
            hit = (self._codes_np == self._codes_np[item]).sum(axis=1) >= self.p
        hit[0] = False
        return np.flatnonzero(hit).astype(np.int64)

    def _cooc_part(self, item: int) -> np.ndarray:
        """Item ids in ``P_H(item)``: the CSR row."""
        return self._indices[self._indptr[item] : self._indptr[item + 1]]

    def positive_set(self, item: int) -> np.ndarray:
        """Sorted item ids of ``P(item)``, including ``item``; for diagnostics and tests."""
        item = self._check_item(item)
        parts = [np.array([item], dtype=np.int64), self._code_part(item), self._cooc_part(item)]
        return np.unique(np.concatenate(parts))

    def cooccurrence_matrix(self) -> scipy.sparse.csr_matrix:
        """``[n_items + 1, n_items + 1]`` boolean CSR of ``P_H`` (symmetric; row/col 0 empty)."""
        import scipy.sparse  # local: scipy is only needed for this diagnostic view

        base = self.n_items + 1
        data = np.ones(self._indices.size, dtype=bool)
        return scipy.sparse.csr_matrix(
            (data, self._indices.copy(), self._indptr.copy()), shape=(base, base)
        )

    # ------------------------------------------------------------------------------------
    def _code_sizes(self) -> np.ndarray:
        """``|P_C(i) \\ {i}|`` for items 1..n_items, without an n_items² comparison."""
        n = self.n_items
        if not self.use_codes:
            return np.zeros(n, dtype=np.int64)
        c = self._codes_np[1:]
        if self.code_match == "prefix":
            g = self._group_np[1:]
            return np.bincount(g)[g] - 1
        # "any": #{j : |M(i, j)| >= p} by inclusion-exclusion over level subsets S with
        # |S| >= p, weight (-1)^(|S|-p) * C(|S|-1, p-1), where N(S) = #{j agreeing with i on S}.
        total = np.zeros(n, dtype=np.int64)
        for size in range(self.p, self.n_levels + 1):
            weight = (-1) ** (size - self.p) * comb(size - 1, self.p - 1)
            for subset in combinations(range(self.n_levels), size):
                _, inv, counts = np.unique(
                    c[:, list(subset)], axis=0, return_inverse=True, return_counts=True
                )
                total += weight * counts[inv.reshape(-1)]
        return total - 1

    def stats(self) -> dict[str, float | int]:
        """Sizes of the positive sets, to check that Eq. 7 neither starves nor floods the loss.

        ``code_*``: ``|P_C(i) \\ {i}|``; ``cooc_*``: ``|P_H(i) \\ {i}|``; ``total_*``: ``|P(i)|``
        (overlaps counted once); ``n_cooc_pairs``: distinct unordered pairs ``{i, j}``, i != j.
        """
        n = self.n_items
        base = n + 1
        code = self._code_sizes()
        rows = np.repeat(np.arange(base, dtype=np.int64), np.diff(self._indptr))
        cols = self._indices
        off_diag = rows != cols
        cooc = np.bincount(rows[off_diag], minlength=base)[1:]
        overlap = np.zeros(n, dtype=np.int64)
        if self.use_codes and off_diag.any():
            r, k = rows[off_diag], cols[off_diag]
            if self.code_match == "prefix":
                both = self._group_np[r] == self._group_np[k]
            else:
                both = (self._codes_np[r] == self._codes_np[k]).sum(axis=1) >= self.p
            overlap = np.bincount(r[both], minlength=base)[1:]
        total = 1 + code + cooc - overlap
        out: dict[str, float | int] = {}
        for name, sizes in (("code", code), ("cooc", cooc), ("total", total)):
            out[f"{name}_mean"] = float(sizes.mean())
            out[f"{name}_median"] = float(np.median(sizes))
            out[f"{name}_max"] = int(sizes.max())
        out["n_cooc_pairs"] = int(off_diag.sum()) // 2
        out["build_seconds"] = float(self.build_seconds)
        return out
