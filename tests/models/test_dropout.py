"""The cheap CPU dropout masks (`models/parts/dropout.py`) against the Bernoulli(1 - p) law they
replace, and the manual dropout attention against `scaled_dot_product_attention`."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from h2rec.models.parts import encoders
from h2rec.models.parts.dropout import Dropout, dropout, dyadic, keep_mask
from h2rec.models.parts.encoders import MultiHeadAttention, attend_with_dropout, attention_mask


@pytest.mark.parametrize(
    ("p", "expected"),
    [(0.5, (1, 1)), (0.25, (2, 1)), (0.75, (2, 3)), (3 / 16, (4, 3)), (1 / 256, (8, 1))],
)
def test_dyadic_probabilities_are_recognised(p, expected) -> None:
    assert dyadic(p) == expected


@pytest.mark.parametrize("p", [0.2, 0.3, 0.1, 1 / 512])
def test_other_probabilities_fall_back(p) -> None:
    assert dyadic(p) is None


@pytest.mark.parametrize("p", [0.5, 0.25, 0.75, 1 / 16, 1 / 256, 0.2, 0.3])
def test_keep_mask_is_bernoulli_one_minus_p_scaled(p) -> None:
    torch.manual_seed(0)
    shape = (37, 61, 29)  # 65,453 elements: not a multiple of the 64 bits of one draw
    mask = keep_mask(shape, p, torch.empty(0))
    assert mask.shape == shape and mask.dtype == torch.float32
    kept = mask != 0
    # values: exactly 0 or 1 / (1 - p)
    torch.testing.assert_close(mask[kept], torch.full_like(mask[kept], 1.0 / (1.0 - p)))
    n = mask.numel()
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * sigma


def test_every_bit_of_a_draw_is_uniform_and_neighbours_are_independent() -> None:
    """At p = 0.5 element i reads bit i mod 64 of a 64-bit draw: each of the 64 positions
    (the sign bit included) must keep half the time, and neighbours must be uncorrelated."""
    torch.manual_seed(1)
    words = 20_000
    kept = (keep_mask((words * 64,), 0.5, torch.empty(0)) != 0).float().view(words, 64)
    sigma = math.sqrt(0.25 / words)
    assert (kept.mean(dim=0) - 0.5).abs().max().item() < 5 * sigma
    flat = kept.view(-1) - 0.5
    for lag in (1, 8, 63, 64):
        corr = (flat[:-lag] * flat[lag:]).mean().item() / 0.25
        assert abs(corr) < 5 / math.sqrt(flat.numel())


def test_masks_follow_the_global_seed() -> None:
    torch.manual_seed(3)
    a = keep_mask((100, 7), 0.5, torch.empty(0))
    b = keep_mask((100, 7), 0.3, torch.empty(0))
    torch.manual_seed(3)
    torch.testing.assert_close(keep_mask((100, 7), 0.5, torch.empty(0)), a)
    torch.testing.assert_close(keep_mask((100, 7), 0.3, torch.empty(0)), b)


def test_dropout_keeps_the_mean_and_is_identity_in_eval() -> None:
    torch.manual_seed(4)
    x = torch.randn(6, 5)
    mean = torch.stack([dropout(x, 0.5, True) for _ in range(20_000)]).mean(dim=0)
    # per element: mean of 20k draws of x * {0, 2}: std |x| / sqrt(20k)
    assert ((mean - x).abs() <= 5 * x.abs() / math.sqrt(20_000) + 1e-6).all()
    assert dropout(x, 0.5, False) is x
    layer = Dropout(0.25).eval()
    assert layer(x) is x
    bf16 = dropout(x.bfloat16(), 0.5, True)
    assert bf16.dtype == torch.bfloat16 and set(bf16.float().div(x).round().unique().tolist()) <= {
        0.0,
        2.0,
    }


def _qkv(b: int = 3, h: int = 2, length: int = 7, dh: int = 4) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(5)
    return tuple(torch.randn(b, h, length, dh, generator=g) for _ in range(3))


def test_manual_attention_equals_sdpa_without_the_dropout(monkeypatch) -> None:
    q, k, v = _qkv()
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1] * 7, [0, 0, 0, 0, 0, 1, 1]]).bool()
    allowed = attention_mask(mask, causal=True)
    monkeypatch.setattr(encoders, "apply_dropout", lambda x, p, training: x)
    got = attend_with_dropout(q, k, v, allowed, 0.5)
    torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v, attn_mask=allowed))


def test_manual_attention_with_dropout_is_unbiased() -> None:
    torch.manual_seed(6)
    q, k, v = _qkv(b=1, length=4)
    allowed = attention_mask(torch.ones(1, 4, dtype=torch.bool), causal=False)
    exact = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    draws = torch.stack([attend_with_dropout(q, k, v, allowed, 0.5) for _ in range(20_000)])
    # each output is a sum of 4 terms w_j v_j times {0, 2}: std <= 2 sqrt(sum (w_j v_j)^2) / 2
    bound = 5 * draws.std(dim=0) / math.sqrt(draws.shape[0]) + 1e-5
    assert ((draws.mean(dim=0) - exact).abs() <= bound).all()


def test_attention_layer_uses_the_manual_path_only_when_training_on_cpu(monkeypatch) -> None:
    layer = MultiHeadAttention(8, 2, dropout=0.5)
    x = torch.randn(2, 5, 8)
    allowed = attention_mask(torch.ones(2, 5, dtype=torch.bool), causal=True)
    calls = []
    real = encoders.attend_with_dropout
    monkeypatch.setattr(encoders, "attend_with_dropout", lambda *a: calls.append(1) or real(*a))
    layer.train()(x, x, allowed)
    assert calls == [1]
    layer.eval()(x, x, allowed)
    assert calls == [1]
