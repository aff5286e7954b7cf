"""Dense id renumbering against torch.unique (an independent implementation)."""

from __future__ import annotations

import pytest
import torch

from h2rec.models.parts.ids import id_lookup, unique_ids


@pytest.mark.parametrize("shape", [(7,), (5, 9), (3, 4, 6)])
def test_unique_ids_equal_torch_unique(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(11)
    ids = torch.randint(0, 13, shape, generator=g)
    ids.view(-1)[0] = 0  # padding ids are ids too
    got_u, got_inv = unique_ids(ids, 20)
    want_u, want_inv = torch.unique(ids, return_inverse=True)
    assert torch.equal(got_u, want_u) and torch.equal(got_inv, want_inv)
    assert torch.equal(got_u[got_inv], ids)


def test_id_lookup_marks_absent_ids() -> None:
    ids = torch.tensor([5, 2, 5, 9])
    unique, lookup = id_lookup(ids, 12)
    assert unique.tolist() == [2, 5, 9]
    assert lookup.tolist() == [-1, -1, 0, -1, -1, 1, -1, -1, -1, 2, -1, -1]
