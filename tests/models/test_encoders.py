"""Encoders: causality, bidirectionality, padding invariance and fully padded rows."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from h2rec.models.parts.encoders import (
    BERT4RecEncoder,
    GRU4RecEncoder,
    SASRecEncoder,
    attention_mask,
    encode_full_and_last,
    encode_last,
)

D = 16


def left_pad(items: list[int], length: int) -> torch.Tensor:
    return torch.tensor([[0] * (length - len(items)) + items])


def run(encoder: nn.Module, emb_table: nn.Embedding, seqs: torch.Tensor) -> torch.Tensor:
    return encoder(emb_table(seqs), seqs != 0)


@pytest.fixture
def table() -> nn.Embedding:
    torch.manual_seed(0)
    return nn.Embedding(30, D, padding_idx=0)


def encoders() -> dict[str, nn.Module]:
    torch.manual_seed(1)
    return {
        "sasrec": SASRecEncoder(D, n_layers=2, n_heads=2, max_len=20).eval(),
        "sasrec_noncausal": SASRecEncoder(D, n_heads=2, max_len=20, causal=False).eval(),
        "bert4rec": BERT4RecEncoder(D, max_len=20).eval(),
        "gru4rec": GRU4RecEncoder(D, n_layers=2).eval(),
    }


def test_attention_mask_never_has_empty_rows() -> None:
    mask = torch.tensor([[False, False, True, True], [False, False, False, False]])
    allowed = attention_mask(mask, causal=True)[:, 0]
    assert allowed.any(dim=-1).all()
    # real query 3 sees real keys 2, 3 only
    assert allowed[0, 3].tolist() == [False, False, True, True]
    assert allowed[0, 2].tolist() == [False, False, True, False]
    assert attention_mask(mask, causal=False)[0, 0, 2].tolist() == [False, False, True, True]


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_causal_encoders_ignore_later_items(name: str, table: nn.Embedding) -> None:
    enc = encoders()[name]
    a = left_pad([3, 5, 7, 9, 11], 10)
    b = a.clone()
    b[0, -1] = 12  # change the LAST item
    with torch.no_grad():
        ha, hb = run(enc, table, a), run(enc, table, b)
    torch.testing.assert_close(ha[:, :-1], hb[:, :-1])
    assert not torch.allclose(ha[:, -1], hb[:, -1])


@pytest.mark.parametrize("name", ["sasrec_noncausal", "bert4rec"])
def test_bidirectional_encoders_see_later_items(name: str, table: nn.Embedding) -> None:
    enc = encoders()[name]
    a = left_pad([3, 5, 7, 9, 11], 10)
    b = a.clone()
    b[0, -1] = 12
    with torch.no_grad():
        ha, hb = run(enc, table, a), run(enc, table, b)
    assert not torch.allclose(ha[0, -2], hb[0, -2])  # an EARLIER position changed


@pytest.mark.parametrize("name", ["sasrec", "sasrec_noncausal", "bert4rec", "gru4rec"])
def test_amount_of_left_padding_does_not_matter(name: str, table: nn.Embedding) -> None:
    enc = encoders()[name]
    items = [4, 8, 15, 16, 23, 2]
    with torch.no_grad():
        short, long = run(enc, table, left_pad(items, 10)), run(enc, table, left_pad(items, 20))
    torch.testing.assert_close(short[:, -6:], long[:, -6:])
    assert short[:, :4].abs().sum() == 0 and long[:, :14].abs().sum() == 0  # padding slots zero


def test_gru4rec_equals_plain_gru_on_the_unpadded_sequence(table: nn.Embedding) -> None:
    enc = encoders()["gru4rec"]
    items = [4, 8, 15, 16, 23]
    with torch.no_grad():
        out = run(enc, table, left_pad(items, 12))
        direct, _ = enc.gru(table(torch.tensor([items])))
    torch.testing.assert_close(out[:, -5:], direct)


def test_gru4rec_rows_with_different_lengths_in_one_batch(table: nn.Embedding) -> None:
    enc = encoders()["gru4rec"]
    rows = [[1, 2, 3], [9, 8, 7, 6, 5, 4], [], [11]]
    batch = torch.cat([left_pad(r, 8) for r in rows])
    with torch.no_grad():
        out = run(enc, table, batch)
        for i, r in enumerate(rows):
            if r:
                direct, _ = enc.gru(table(torch.tensor([r])))
                torch.testing.assert_close(out[i, 8 - len(r) :], direct[0])
    assert out[2].abs().sum() == 0


@pytest.mark.parametrize("name", ["sasrec", "sasrec_noncausal", "bert4rec", "gru4rec"])
def test_fully_padded_row_is_finite_in_train_and_eval(name: str, table: nn.Embedding) -> None:
    enc = encoders()[name]
    seqs = torch.cat([left_pad([], 6), left_pad([1, 2], 6)])
    for train in (False, True):
        enc.train(train)
        out = run(enc, table, seqs)
        assert torch.isfinite(out).all()
        assert out[0].abs().sum() == 0
        out.sum().backward()
        grads = [p.grad for p in enc.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        enc.zero_grad()


def test_inputs_longer_than_max_len_are_rejected(table: nn.Embedding) -> None:
    enc = SASRecEncoder(D, max_len=5)
    with pytest.raises(ValueError, match="max_len"):
        run(enc, table, left_pad([1, 2], 6))


@pytest.mark.parametrize("name", ["sasrec", "sasrec_noncausal", "bert4rec", "gru4rec"])
def test_full_and_last_equals_the_full_pass_sliced(name: str, table: nn.Embedding) -> None:
    """H2Rec's L_MSG view computes the final layer at the last slot only; the values must be the
    full forward pass's, for every row kind (short, full-length, fully padded)."""
    encoder = encoders()[name]
    torch.manual_seed(3)
    seqs = torch.cat(
        [
            left_pad([3, 4, 5], 8),
            left_pad([1, 2, 3, 4, 5, 6, 7, 8], 8),
            left_pad([], 8),
            left_pad([9, 2], 8),
            left_pad([7, 7, 7, 1, 2], 8),
        ]
    )
    emb, mask = table(seqs), seqs != 0
    with torch.no_grad():
        reference = encoder(emb, mask)
        full, last = encode_full_and_last(encoder, emb, mask, 2)
    torch.testing.assert_close(full, reference[:2], rtol=0, atol=1e-6)
    torch.testing.assert_close(last, reference[2:, -1], rtol=0, atol=1e-6)
    assert last.shape == (3, D)


def test_full_and_last_gradients_match_the_full_pass(table: nn.Embedding) -> None:
    """Training goes through the partial pass: its gradients are the full pass's."""
    torch.manual_seed(4)
    encoder = SASRecEncoder(D, n_layers=2, n_heads=2, max_len=20, dropout=0.0)
    seqs = torch.cat([left_pad([3, 4, 5], 6), left_pad([1, 2, 3, 4, 5, 6], 6)])
    emb, mask = table(seqs).detach(), seqs != 0
    weights = torch.randn(2, 6, D), torch.randn(1, D)

    def grads(partial: bool) -> list[torch.Tensor]:
        encoder.zero_grad()
        if partial:
            full, last = encode_full_and_last(encoder, emb, mask, 1)
        else:
            out = encoder(emb, mask)
            full, last = out[:1], out[1:, -1]
        ((full * weights[0][:1]).sum() + (last * weights[1]).sum()).backward()
        return [p.grad.clone() for p in encoder.parameters() if p.grad is not None]

    for a, b in zip(grads(True), grads(False), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["sasrec", "sasrec_noncausal", "bert4rec", "gru4rec"])
@pytest.mark.parametrize("n_layers", [1, 2])
def test_last_equals_the_full_pass_at_the_last_slot(
    name: str, n_layers: int, table: nn.Embedding
) -> None:
    """Scoring reads the last slot only (`encode_last`): the full pass's values, for short,
    full-length and fully padded rows, with one layer (only the query side is trimmed) or two."""
    torch.manual_seed(5)
    encoder = {
        "sasrec": lambda: SASRecEncoder(D, n_layers=n_layers, n_heads=2, max_len=20),
        "sasrec_noncausal": lambda: SASRecEncoder(D, n_layers=n_layers, max_len=20, causal=False),
        "bert4rec": lambda: BERT4RecEncoder(D, n_layers=n_layers, max_len=20),
        "gru4rec": lambda: GRU4RecEncoder(D, n_layers=n_layers),
    }[name]().eval()
    seqs = torch.cat(
        [left_pad([3, 4, 5], 8), left_pad([1, 2, 3, 4, 5, 6, 7, 8], 8), left_pad([], 8)]
    )
    emb, mask = table(seqs), seqs != 0
    with torch.no_grad():
        reference = encoder(emb, mask)[:, -1]
        last = encode_last(encoder, emb, mask)
    assert last.shape == (3, D)
    torch.testing.assert_close(last, reference, rtol=0, atol=1e-6)
