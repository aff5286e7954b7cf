"""Code neighbourhoods: which items share the first p code levels, for all items at once.

H2Rec's code-guided alignment takes as positives of item i the items sharing its first p codes
(p = 3 by default). The released code materialises a dense (n+2) x (n+2) matrix for this — 13 GB
at Beauty scale. Here everything is sparse: items are grouped by their length-p prefix (a dense
group id per item), `members(p)` is the one-hot group x item matrix M (nnz = n), and the
neighbour relation is M^T M minus the diagonal (nnz = sum of squared group sizes).

Item ids: the index works on **0-based rows** of the [n, L] code array it is given. For a
`Dataset`, whose internal item ids are 1-based with row 0 = padding, use
`PrefixIndex.from_dataset(ds)`: row r is item r + 1, so add 1 to every item index it returns
(or use `to_item_ids`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from h2rec.sid.base import TokenizerError

if TYPE_CHECKING:
    from h2rec.data.dataset import Dataset


def _drop_entries(mat: sp.csr_matrix, cols: np.ndarray) -> sp.csr_matrix:
    """`mat` without entry (k, cols[k]) in each row k (vectorised; no LIL round trip)."""
    counts = np.diff(mat.indptr)
    row = np.repeat(np.arange(mat.shape[0]), counts)
    keep = mat.indices != cols[row]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(row[keep], minlength=mat.shape[0]))])
    return sp.csr_matrix((mat.data[keep], mat.indices[keep], indptr), shape=mat.shape)


class PrefixIndex:
    """Prefix groups of a code array [n, L] (any non-negative integers; 0-based item rows)."""

    #: neighbours(p) refuses to build more than this many non-zeros (use members/neighbours_of)
    max_nnz: int = 200_000_000

    def __init__(self, codes: Any) -> None:
        arr = np.asarray(codes)
        if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
            raise TokenizerError(
                f"codes: expected a non-empty 2-D array [n, L], got shape {arr.shape}"
            )
        if arr.dtype.kind not in "iu":
            raise TokenizerError(f"codes: expected integer codes, got dtype {arr.dtype}")
        if (arr < 0).any():
            raise TokenizerError(
                "codes: negative codes found; Dataset.codes row 0 is -1 padding, so pass "
                "Dataset.codes[1:] or use PrefixIndex.from_dataset"
            )
        self.codes = np.ascontiguousarray(arr, dtype=np.int64)
        self.n_items, self.levels = self.codes.shape
        self._gids: dict[int, np.ndarray] = {0: np.zeros(self.n_items, dtype=np.int64)}
        self._members: dict[int, sp.csr_matrix] = {}

    @classmethod
    def from_dataset(cls, ds: Dataset) -> PrefixIndex:
        """Index over `ds.codes[1:]`: row r is internal item r + 1."""
        if ds.codes is None:
            raise TokenizerError(f"dataset {ds.name!r} has no codes")
        return cls(ds.codes[1:])

    @staticmethod
    def to_item_ids(rows: np.ndarray) -> np.ndarray:
        """0-based rows -> 1-based Dataset item ids."""
        return np.asarray(rows, dtype=np.int64) + 1

    def _check_p(self, p: int, *, allow_zero: bool = False) -> int:
        lo = 0 if allow_zero else 1
        if not isinstance(p, (int, np.integer)) or not lo <= p <= self.levels:
            raise TokenizerError(
                f"prefix length p must be an integer in [{lo}, {self.levels}], got {p!r}"
            )
        return int(p)

    def group_ids(self, p: int) -> np.ndarray:
        """Dense id int64 [n] of each item's length-p prefix; ids follow lexicographic prefix order."""
        p = self._check_p(p, allow_zero=True)
        if p not in self._gids:
            prev = self.group_ids(p - 1)
            col = self.codes[:, p - 1]
            key = prev * (int(col.max()) + 1) + col  # < n * K: no overflow in int64
            self._gids[p] = np.unique(key, return_inverse=True)[1].reshape(-1).astype(np.int64)
        return self._gids[p]

    def n_groups(self, p: int) -> int:
        gid = self.group_ids(p)
        return int(gid.max()) + 1

    def group_sizes(self, p: int) -> np.ndarray:
        """Items per length-p prefix group, int64 [n_groups(p)]."""
        return np.bincount(self.group_ids(p)).astype(np.int64)

    def members(self, p: int) -> sp.csr_matrix:
        """One-hot CSR [n_groups(p), n] (int8): row g marks the items whose prefix is group g."""
        p = self._check_p(p, allow_zero=True)
        if p not in self._members:
            gid = self.group_ids(p)
            n = self.n_items
            self._members[p] = sp.csr_matrix(
                (np.ones(n, dtype=np.int8), (gid, np.arange(n))), shape=(int(gid.max()) + 1, n)
            )
        return self._members[p]

    def neighbours(self, p: int, include_self: bool = False) -> sp.csr_matrix:
        """CSR [n, n] (int8, sorted indices): (i, j) = 1 when items i, j share their first p codes.

        Built as M^T M (minus the diagonal unless `include_self`); nnz = sum of squared group
        sizes, checked against `max_nnz` first so a coarse p cannot silently go dense.
        """
        p = self._check_p(p)
        sizes = self.group_sizes(p)
        nnz = int((sizes.astype(np.float64) ** 2).sum()) - (0 if include_self else self.n_items)
        if nnz > self.max_nnz:
            raise TokenizerError(
                f"neighbours(p={p}) would hold {nnz:,} pairs (> max_nnz={self.max_nnz:,}); "
                "use members(p) or neighbours_of(items, p) instead"
            )
        m = self.members(p)
        out = (m.T @ m).tocsr()
        if not include_self:
            out = _drop_entries(out, np.arange(self.n_items))
        out.sort_indices()
        return out.astype(np.int8)

    def neighbours_of(
        self, items: Sequence[int] | np.ndarray, p: int, include_self: bool = False
    ) -> sp.csr_matrix:
        """CSR [len(items), n] (int8): row k marks the items sharing the first p codes of items[k]."""
        p = self._check_p(p)
        idx = np.asarray(items, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_items):
            raise TokenizerError(f"items must be 0-based rows in [0, {self.n_items - 1}]")
        m = self.members(p)
        out = m[self.group_ids(p)[idx]].tocsr()  # each item's group row
        if not include_self:
            out = _drop_entries(out, idx)
        out.sort_indices()
        return out.astype(np.int8)

    def collision_groups(self, min_size: int = 2) -> list[np.ndarray]:
        """Item rows of each full-SID group (p = L) with at least `min_size` items, sorted rows,
        groups ordered by SID."""
        gid = self.group_ids(self.levels)
        sizes = np.bincount(gid)
        order = np.argsort(gid, kind="stable")
        bounds = np.cumsum(sizes)[:-1]
        return [g for g in np.split(order, bounds) if len(g) >= min_size]
