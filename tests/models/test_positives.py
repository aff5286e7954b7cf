"""PositiveSets (H2Rec Eq. 7) against brute-force Python set computations on small inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from h2rec.models.h2rec.positives import PositiveSets

N_ITEMS = 30
N_LEVELS = 4


def make_data(seed: int) -> tuple[np.ndarray, list[list[int]]]:
    """Codes [31, 4] (3 values per level, row 0 = -1) and 10 random user sequences."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 3, size=(N_ITEMS + 1, N_LEVELS))
    codes[0] = -1
    seqs = [rng.integers(1, N_ITEMS + 1, size=rng.integers(0, 13)).tolist() for _ in range(10)]
    return codes, seqs


def to_csr(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
    items = np.array([i for s in seqs for i in s], dtype=np.int64)
    return offsets, items


def brute_code(codes: np.ndarray, p: int, mode: str) -> set[tuple[int, int]]:
    pairs = set()
    for i in range(1, N_ITEMS + 1):
        for j in range(1, N_ITEMS + 1):
            a, b = codes[i].tolist(), codes[j].tolist()
            n_equal = sum(x == y for x, y in zip(a, b, strict=True))
            if (a[:p] == b[:p]) if mode == "prefix" else n_equal >= p:
                pairs.add((i, j))
    return pairs


def brute_cooc(seqs: list[list[int]], w: int) -> set[tuple[int, int]]:
    pairs = set()
    for s in seqs:
        for t in range(len(s)):
            for u in range(len(s)):
                if 1 <= abs(t - u) <= w:
                    pairs.add((s[t], s[u]))
    return pairs


def brute_sets(
    codes: np.ndarray, seqs: list[list[int]], p: int, w: int, mode: str
) -> dict[int, set[int]]:
    pairs = {(i, i) for i in range(1, N_ITEMS + 1)}
    if p > 0:
        pairs |= brute_code(codes, p, mode)
    if w > 0:
        pairs |= brute_cooc(seqs, w)
    return {i: {j for (a, j) in pairs if a == i} for i in range(1, N_ITEMS + 1)}


def build(codes, seqs, **kw) -> PositiveSets:
    offsets, items = to_csr(seqs)
    return PositiveSets(codes, offsets, items, N_ITEMS, **kw)


def mask_from_sets(sets: dict[int, set[int]], anchors: list[int], others: list[int]) -> np.ndarray:
    return np.array([[o in sets[a] for o in others] for a in anchors])


ALL = list(range(1, N_ITEMS + 1))


@pytest.mark.parametrize("mode", ["prefix", "any"])
@pytest.mark.parametrize("p", [1, 2, 4])
@pytest.mark.parametrize("w", [1, 3])
def test_mask_and_positive_set_match_brute_force(mode: str, p: int, w: int) -> None:
    codes, seqs = make_data(seed=p * 10 + w)
    pos = build(codes, seqs, p=p, window=w, code_match=mode)
    sets = brute_sets(codes, seqs, p, w, mode)

    got = pos.mask(torch.tensor(ALL), torch.tensor(ALL))
    assert got.dtype == torch.bool and got.shape == (N_ITEMS, N_ITEMS)
    np.testing.assert_array_equal(got.numpy(), mask_from_sets(sets, ALL, ALL))

    # Unequal sizes, duplicates and arbitrary order.
    rng = np.random.default_rng(0)
    anchors = rng.integers(1, N_ITEMS + 1, size=7).tolist()
    others = rng.integers(1, N_ITEMS + 1, size=11).tolist()
    got = pos.mask(torch.tensor(anchors), torch.tensor(others))
    np.testing.assert_array_equal(got.numpy(), mask_from_sets(sets, anchors, others))

    for i in ALL:
        ps = pos.positive_set(i)
        assert ps.tolist() == sorted(sets[i])
        assert i in ps


@pytest.mark.parametrize("mode", ["prefix", "any"])
@pytest.mark.parametrize("p", [0, 1, 2, 3, 4])
def test_stats_match_brute_force(mode: str, p: int) -> None:
    codes, seqs = make_data(seed=7)
    pos = build(codes, seqs, p=p, window=2, code_match=mode)
    code = brute_code(codes, p, mode) if p else set()
    cooc = brute_cooc(seqs, 2)
    sets = brute_sets(codes, seqs, p, 2, mode)
    code_sizes = [len({j for a, j in code if a == i} - {i}) for i in ALL]
    cooc_sizes = [len({j for a, j in cooc if a == i} - {i}) for i in ALL]
    total_sizes = [len(sets[i]) for i in ALL]
    st = pos.stats()
    for name, sizes in (("code", code_sizes), ("cooc", cooc_sizes), ("total", total_sizes)):
        assert st[f"{name}_mean"] == pytest.approx(np.mean(sizes))
        assert st[f"{name}_median"] == pytest.approx(np.median(sizes))
        assert st[f"{name}_max"] == max(sizes)
    assert st["n_cooc_pairs"] == len({frozenset(pr) for pr in cooc if pr[0] != pr[1]})
    assert st["build_seconds"] >= 0.0


def test_disabling_parts_removes_them() -> None:
    codes, seqs = make_data(seed=3)
    t = torch.tensor(ALL)
    ident = np.eye(N_ITEMS, dtype=bool)
    code_only = mask_from_sets(brute_sets(codes, seqs, 2, 0, "prefix"), ALL, ALL)
    cooc_only = mask_from_sets(brute_sets(codes, seqs, 0, 2, "prefix"), ALL, ALL)
    assert not np.array_equal(code_only, ident) and not np.array_equal(cooc_only, ident)

    for kw in ({"use_codes": False}, {"p": 0}):
        m = build(codes, seqs, **{"p": 2, "window": 2, **kw}).mask(t, t).numpy()
        np.testing.assert_array_equal(m, cooc_only)
    for kw in ({"use_cooccurrence": False}, {"window": 0}):
        m = build(codes, seqs, **{"p": 2, "window": 2, **kw}).mask(t, t).numpy()
        np.testing.assert_array_equal(m, code_only)
    off = build(codes, seqs, p=2, window=2, use_codes=False, use_cooccurrence=False)
    np.testing.assert_array_equal(off.mask(t, t).numpy(), ident)
    assert off.positive_set(5).tolist() == [5]
    assert off.cooccurrence_matrix().nnz == 0

    # Disabled parts need no data.
    none = PositiveSets(None, None, None, N_ITEMS, use_codes=False, use_cooccurrence=False)
    np.testing.assert_array_equal(none.mask(t, t).numpy(), ident)


def test_items_outside_training_csr_are_never_positives() -> None:
    # User 0 is an empty padding user (the n_users + 2 offsets form). Training: [1, 2, 3] and
    # [4, 5]; item 9 is the held-out next item of the first user and is NOT in the arrays.
    offsets = np.array([0, 0, 3, 5])
    items = np.array([1, 2, 3, 4, 5])
    pos = PositiveSets(None, offsets, items, 10, window=5, use_codes=False)
    assert pos.positive_set(3).tolist() == [1, 2, 3]
    assert pos.positive_set(9).tolist() == [9]
    m = pos.mask(torch.tensor([1, 2, 3]), torch.tensor([9])).numpy()
    assert not m.any()
    # Pairs never cross users.
    assert not pos.mask(torch.tensor([3]), torch.tensor([4])).item()

    # Entries past offsets[-1] belong to no user and are ignored as well.
    padded = PositiveSets(None, offsets, np.append(items, [9, 3]), 10, window=5, use_codes=False)
    assert padded.positive_set(9).tolist() == [9]
    np.testing.assert_array_equal(
        padded.cooccurrence_matrix().toarray(), pos.cooccurrence_matrix().toarray()
    )


def test_window_counts_positions_not_distinct_items() -> None:
    # 1 and 3 are 3 positions apart with only one distinct item (2) between them.
    offsets, items = np.array([0, 4]), np.array([1, 2, 2, 3])
    a, b = torch.tensor([1]), torch.tensor([3])
    w2 = PositiveSets(None, offsets, items, 3, window=2, use_codes=False)
    w3 = PositiveSets(None, offsets, items, 3, window=3, use_codes=False)
    assert not w2.mask(a, b).item() and not w2.mask(b, a).item()
    assert w3.mask(a, b).item() and w3.mask(b, a).item()
    # A repeat within the window makes 2 its own co-occurrence positive (harmless: 2 ∈ P(2)).
    assert w2.cooccurrence_matrix()[2, 2]
    assert not w2.cooccurrence_matrix()[1, 1]


def test_prefix_and_any_differ_on_non_prefix_matches() -> None:
    codes = np.array([[-1, -1, -1], [0, 1, 2], [1, 1, 2], [0, 1, 0]])
    t = torch.tensor([1, 2, 3])
    prefix = PositiveSets(codes, None, None, 3, p=2, use_cooccurrence=False)
    any_ = PositiveSets(codes, None, None, 3, p=2, code_match="any", use_cooccurrence=False)
    # 1 ~ 2 share levels 1 and 2 but not level 0; 1 ~ 3 share the prefix (0, 1).
    assert prefix.mask(t, t).numpy().tolist() == [
        [True, False, True],
        [False, True, False],
        [True, False, True],
    ]
    assert any_.mask(t, t).numpy().tolist() == [
        [True, True, True],
        [True, True, False],
        [True, False, True],
    ]


def test_symmetric_and_csr_matches_brute_force() -> None:
    codes, seqs = make_data(seed=11)
    for mode in ("prefix", "any"):
        pos = build(codes, seqs, p=2, window=3, code_match=mode)
        m = pos.mask(torch.tensor(ALL), torch.tensor(ALL))
        assert torch.equal(m, m.T)
    csr = pos.cooccurrence_matrix()
    assert csr.shape == (N_ITEMS + 1, N_ITEMS + 1) and csr.dtype == bool
    assert (csr != csr.T).nnz == 0
    dense = np.zeros((N_ITEMS + 1, N_ITEMS + 1), dtype=bool)
    for a, b in brute_cooc(seqs, 3):
        dense[a, b] = True
    np.testing.assert_array_equal(csr.toarray(), dense)


def test_module_buffers_device_and_dtype() -> None:
    codes, seqs = make_data(seed=5)
    pos = build(codes, seqs, p=2, window=2)
    assert list(pos.parameters()) == []
    assert {n for n, _ in pos.named_buffers()} == {
        "group_ids",
        "codes",
        "cooc_indptr",
        "cooc_indices",
    }
    assert pos.state_dict() == {}  # derived data stays out of checkpoints
    pos = pos.to("cpu")
    a = torch.tensor([1, 2, 3], dtype=torch.int64)
    o = torch.tensor([4, 5], dtype=torch.int64)
    m = pos.mask(a, o)
    assert m.device.type == "cpu" and m.dtype == torch.bool and m.shape == (3, 2)
    with pytest.raises(ValueError, match="1-D"):
        pos.mask(a[None], o)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p": 5}, "exceeds the number of code levels"),
        ({"p": -1}, "p must be"),
        ({"window": -1}, "window must be"),
        ({"code_match": "suffix"}, "code_match"),
        ({"codes": None}, "codes are required"),
        ({"codes": np.zeros((5, 4), dtype=np.int64)}, "rows"),
        ({"codes": np.zeros((N_ITEMS + 1, 4))}, "integers"),
        ({"train_items": None}, "train_offsets and train_items are required"),
        ({"train_offsets": np.array([0, 5, 3])}, "non-decreasing"),
        ({"train_offsets": np.array([0, 10_000])}, "exceeds len"),
        ({"train_items": np.full(200, N_ITEMS + 1)}, "item ids"),
        ({"train_items": np.zeros(200, dtype=np.int64)}, "item ids"),
        ({"n_items": 0}, "n_items"),
    ],
)
def test_validation_errors(kwargs: dict, message: str) -> None:
    codes, seqs = make_data(seed=1)
    offsets, items = to_csr(seqs)
    args = {"codes": codes, "train_offsets": offsets, "train_items": items, "n_items": N_ITEMS}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        PositiveSets(args.pop("codes"), args.pop("train_offsets"), args.pop("train_items"), **args)


def test_negative_code_for_real_item_rejected() -> None:
    codes, seqs = make_data(seed=1)
    codes[4, 2] = -1
    with pytest.raises(ValueError, match="non-negative"):
        build(codes, seqs)
    with pytest.raises(ValueError, match=r"1\.\."):
        build(codes, seqs, use_codes=False).positive_set(0)


@pytest.mark.parametrize("mode", ["prefix", "any"])
def test_lookup_tables_are_held_once(mode: str) -> None:
    """Each torch buffer shares its numpy array's memory on CPU: nothing is stored twice."""
    codes, seqs = make_data(seed=9)
    pos = build(codes, seqs, p=2, window=2, code_match=mode)
    pairs = {
        "group_ids": pos._group_np,
        "codes": pos._codes_np,
        "cooc_indptr": pos._indptr,
        "cooc_indices": pos._indices,
    }
    for name, buffer in pos.named_buffers():
        arr = pairs[name]
        assert buffer.data_ptr() == arr.ctypes.data, name
        assert np.shares_memory(buffer.numpy(), arr), name
        np.testing.assert_array_equal(buffer.numpy(), arr)
    nbytes = sum(int(a.nbytes) for a in pairs.values())
    assert pos.memory_bytes() == {"numpy": nbytes, "buffers": nbytes, "held": nbytes}
    # indptr and indices are the CSR of every within-window pair (computed independently)
    keys = sorted(a * (N_ITEMS + 1) + b for a, b in brute_cooc(seqs, 2))
    assert pos._indices.tolist() == [k % (N_ITEMS + 1) for k in keys]
    assert pos._indptr.tolist() == [
        sum(1 for k in keys if k // (N_ITEMS + 1) < r) for r in range(N_ITEMS + 2)
    ]
    # the codes are the module's own copy: changing the caller's array afterwards changes nothing
    before = pos.mask(torch.tensor(ALL), torch.tensor(ALL)).clone()
    codes[1:] = 0
    assert not np.shares_memory(pos._codes_np, codes)
    assert torch.equal(pos.mask(torch.tensor(ALL), torch.tensor(ALL)), before)
