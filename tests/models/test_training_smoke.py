"""A few optimisation steps on a deterministic pattern (item i is followed by i + 1) must learn it."""

from __future__ import annotations

import pytest
import torch

from h2rec.models import ClozeObjective, LossConfig, NextItemObjective, build_model

N_ITEMS = 20
L = 10


def pattern_batch(rows: int, generator: torch.Generator) -> torch.Tensor:
    """Left-padded runs of consecutive items (cyclic: 20 -> 1), lengths 3..L."""
    starts = torch.randint(1, N_ITEMS + 1, (rows,), generator=generator)
    lengths = torch.randint(3, L + 1, (rows,), generator=generator)
    slots = torch.arange(L)
    offset = slots[None, :] - (L - lengths[:, None])
    items = (starts[:, None] - 1 + offset) % N_ITEMS + 1
    return torch.where(offset >= 0, items, torch.zeros_like(items))


def next_item_split(seqs: torch.Tensor) -> dict[str, torch.Tensor]:
    inputs = torch.cat([torch.zeros_like(seqs[:, :1]), seqs[:, :-1]], dim=1)
    targets = torch.where(inputs != 0, seqs, torch.zeros_like(seqs))
    return {"inputs": inputs, "targets": targets}


def probe() -> tuple[torch.Tensor, torch.Tensor]:
    seqs = torch.tensor([[0, 0, 0, 0, 0, 5, 6, 7, 8, 9], [0, 0, 0, 0, 0, 0, 0, 14, 15, 16]])
    return seqs, torch.tensor([10, 17])


@pytest.mark.parametrize(
    ("name", "loss", "steps", "lr"),
    [
        ("sasrec", LossConfig(name="ce"), 60, 1e-2),
        ("sasrec", LossConfig(name="bpr", num_negatives=4), 60, 1e-2),
        ("gru4rec", LossConfig(name="bce", num_negatives=4), 100, 2e-2),
    ],
)
def test_next_item_training_learns_the_successor(
    name: str, loss: LossConfig, steps: int, lr: float
) -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = build_model(name, N_ITEMS, hidden_size=32, max_len=L, dropout=0.0)
    objective = NextItemObjective(loss)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        batch = next_item_split(pattern_batch(32, gen))
        if objective.num_negatives:
            k = objective.num_negatives
            batch["negatives"] = torch.randint(
                1, N_ITEMS + 1, (*batch["targets"].shape, k), generator=gen
            )
        model.train()
        loss, _ = objective(model, batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    seqs, expected = probe()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.score(seqs).argmax(dim=1), expected)


def test_bert4rec_cloze_training_learns_the_successor() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = build_model("bert4rec", N_ITEMS, hidden_size=32, max_len=L, dropout=0.0)
    # Random masking alone trains the test-time query (a trailing [MASK] with only left context)
    # slowly; BERT4Rec's extra "mask the last item" samples speed this up.
    objective = ClozeObjective(mask_ratio=0.3, last_item_prob=0.5)
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(200):
        model.train()
        loss, _ = objective(model, {"inputs": pattern_batch(32, gen)})
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    seqs, expected = probe()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.score(seqs).argmax(dim=1), expected)
