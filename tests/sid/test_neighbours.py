"""PrefixIndex against brute force, sparsity and memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

from h2rec.data.dataset import Dataset
from h2rec.sid import PrefixIndex, TokenizerError

RNG = np.random.default_rng(11)
CODES = RNG.integers(0, 3, size=(150, 3))  # small K: many shared prefixes at every p


def brute_neighbours(codes: np.ndarray, p: int, include_self: bool) -> set[tuple[int, int]]:
    n = len(codes)
    return {
        (i, j)
        for i in range(n)
        for j in range(n)
        if (include_self or i != j) and tuple(codes[i, :p]) == tuple(codes[j, :p])
    }


def pairs(mat: sp.csr_matrix) -> set[tuple[int, int]]:
    coo = mat.tocoo()
    assert (coo.data == 1).all()
    return set(zip(coo.row.tolist(), coo.col.tolist(), strict=True))


def test_group_ids_are_dense_and_lexicographic() -> None:
    idx = PrefixIndex(CODES)
    for p in range(0, 4):
        gid = idx.group_ids(p)
        assert gid.dtype == np.int64 and gid.shape == (150,)
        prefixes = sorted({tuple(r) for r in CODES[:, :p].tolist()})
        expected = np.array([prefixes.index(tuple(r)) for r in CODES[:, :p].tolist()])
        np.testing.assert_array_equal(gid, expected)
        assert idx.n_groups(p) == len(prefixes)
        assert idx.group_sizes(p).sum() == 150


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("include_self", [False, True])
def test_neighbours_equal_brute_force(p: int, include_self: bool) -> None:
    idx = PrefixIndex(CODES)
    nb = idx.neighbours(p, include_self=include_self)
    assert isinstance(nb, sp.csr_matrix) and nb.shape == (150, 150) and nb.has_sorted_indices
    assert pairs(nb) == brute_neighbours(CODES, p, include_self)
    m = idx.members(p)
    assert isinstance(m, sp.csr_matrix) and m.shape == (idx.n_groups(p), 150)
    np.testing.assert_array_equal(np.asarray(m.sum(axis=0)).ravel(), 1)  # one group per item
    items = np.array([5, 0, 149, 5])
    sub = idx.neighbours_of(items, p, include_self=include_self)
    assert isinstance(sub, sp.csr_matrix) and sub.shape == (4, 150)
    full = brute_neighbours(CODES, p, include_self)
    for k, i in enumerate(items):
        row = set(sub.indices[sub.indptr[k] : sub.indptr[k + 1]].tolist())
        assert row == {j for (a, j) in full if a == i}


def test_collision_groups_equal_brute_force() -> None:
    idx = PrefixIndex(CODES)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, r in enumerate(CODES.tolist()):
        groups.setdefault(tuple(r), []).append(i)
    expected = [g for _, g in sorted(groups.items()) if len(g) >= 2]
    got = idx.collision_groups()
    assert [g.tolist() for g in got] == expected
    assert len(idx.collision_groups(min_size=1)) == len(groups)


def test_large_index_stays_sparse() -> None:
    """30k items: a dense n x n int8 matrix would be 900 MB; the whole query must stay far below."""
    n = 30_000
    codes = np.random.default_rng(0).integers(0, 64, size=(n, 3))
    tracemalloc.start()
    idx = PrefixIndex(codes)
    nb = idx.neighbours(2)
    sub = idx.neighbours_of(np.arange(0, n, 7), 1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert sp.issparse(nb) and sp.issparse(sub) and sp.issparse(idx.members(3))
    assert peak < 60 * 2**20, peak
    sizes = idx.group_sizes(2)
    assert nb.nnz == int((sizes**2).sum()) - n


def test_guard_against_accidentally_dense_results() -> None:
    idx = PrefixIndex(np.zeros((100, 2), dtype=np.int64))
    idx.max_nnz = 1000
    with pytest.raises(TokenizerError, match="max_nnz"):
        idx.neighbours(1)
    assert idx.neighbours_of([0], 1).nnz == 99  # still answerable row by row


def test_dataset_ids_and_bad_input() -> None:
    codes = np.vstack([np.full((1, 2), -1), [[0, 1], [0, 1], [1, 0]]])
    ds = Dataset(
        name="toy",
        user_ids=np.array(["", "u"]),
        item_ids=np.array(["", "a", "b", "c"]),
        inter_user=np.ones(3, dtype=np.int32),
        inter_item=np.arange(1, 4, dtype=np.int32),
        inter_split=np.zeros(3, dtype=np.int8),
        codes=codes,
    )
    idx = PrefixIndex.from_dataset(ds)
    rows = idx.neighbours_of([0], 2).indices
    np.testing.assert_array_equal(PrefixIndex.to_item_ids(rows), [2])  # item 1's twin is item 2
    with pytest.raises(TokenizerError, match="negative codes"):
        PrefixIndex(codes)
    with pytest.raises(TokenizerError, match=r"\[1, 2\]"):
        idx.neighbours(0)
    with pytest.raises(TokenizerError, match="0-based rows"):
        idx.neighbours_of([3], 1)
    with pytest.raises(TokenizerError, match="integer"):
        PrefixIndex(np.zeros((3, 2)))
