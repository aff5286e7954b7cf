"""parts.take: index_select row selection equals advanced indexing, values and gradients."""

from __future__ import annotations

import numpy as np
import torch

from h2rec.models.parts.take import take_rows, take_slots


def test_take_slots_equals_advanced_indexing_with_its_gradient() -> None:
    x = torch.randn(3, 5, 4, requires_grad=True)
    rows = torch.tensor([0, 0, 2, 1, 2])
    cols = torch.tensor([4, 1, 0, 3, 0])  # (2, 0) twice: its gradient accumulates
    picked = take_slots(x, rows * 5 + cols)
    np.testing.assert_array_equal(picked.detach().numpy(), x.detach().numpy()[rows, cols])
    upstream = torch.randn(5, 4)
    (picked * upstream).sum().backward()
    expected = np.zeros((3, 5, 4), dtype=np.float32)
    for k in range(5):
        expected[rows[k], cols[k]] += upstream[k].numpy()
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6)


def test_take_rows_any_id_shape_and_a_1d_table() -> None:
    table = torch.randn(6, 3, requires_grad=True)
    ids = torch.tensor([[1, 5, 1], [0, 2, 1]])
    picked = take_rows(table, ids)
    assert picked.shape == (2, 3, 3)
    np.testing.assert_array_equal(picked.detach().numpy(), table.detach().numpy()[ids.numpy()])
    upstream = torch.randn(2, 3, 3)
    (picked * upstream).sum().backward()
    expected = np.zeros((6, 3), dtype=np.float32)
    for (b, t), item in np.ndenumerate(ids.numpy()):
        expected[item] += upstream[b, t].numpy()  # row 1 three times
    np.testing.assert_allclose(table.grad.numpy(), expected, rtol=1e-6)
    bias = torch.arange(6.0)
    np.testing.assert_array_equal(take_rows(bias, ids).numpy(), ids.numpy().astype(np.float32))
