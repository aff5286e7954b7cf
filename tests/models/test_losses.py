"""Each loss against small examples computed independently with math/numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from h2rec.models.losses import (
    LossConfig,
    SampledLoss,
    bce,
    bpr,
    full_ce,
    gbce,
    gbce_beta,
    num_negatives_needed,
    sampled_softmax,
)


def log_sigmoid(x: float) -> float:
    return math.log(1.0 / (1.0 + math.exp(-x)))


POS = [1.0, -0.5]
NEG = [[0.2, -1.0], [0.0, 2.0]]


def t(x: list) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


def test_bce_sums_negatives_and_averages_positions() -> None:
    rows = [
        -log_sigmoid(p) - sum(math.log(1.0 - 1.0 / (1.0 + math.exp(-n))) for n in negs)
        for p, negs in zip(POS, NEG, strict=True)
    ]
    expected = sum(rows) / len(rows)
    assert bce(t(POS), t(NEG)).item() == pytest.approx(expected, rel=1e-6)


def test_bce_drops_invalid_negatives() -> None:
    valid = torch.tensor([[True, False], [True, True]])
    expected = (
        -log_sigmoid(1.0)
        - math.log(1 - 1 / (1 + math.exp(-0.2)))
        + -log_sigmoid(-0.5)
        - math.log(1 - 1 / (1 + math.exp(-0.0)))
        - math.log(1 - 1 / (1 + math.exp(-2.0)))
    ) / 2
    assert bce(t(POS), t(NEG), valid).item() == pytest.approx(expected, rel=1e-6)


def test_bpr_averages_over_pairs() -> None:
    pairs = [-log_sigmoid(p - n) for p, negs in zip(POS, NEG, strict=True) for n in negs]
    assert bpr(t(POS), t(NEG)).item() == pytest.approx(sum(pairs) / 4, rel=1e-6)
    valid = torch.tensor([[True, True], [False, True]])
    kept = [pairs[0], pairs[1], pairs[3]]
    assert bpr(t(POS), t(NEG), valid).item() == pytest.approx(sum(kept) / 3, rel=1e-6)


def test_full_ce_excludes_padding_column() -> None:
    # column 0 has a huge logit: if it entered the softmax the loss would be ~100
    logits = np.array([[100.0, 1.0, 2.0, 0.5], [100.0, -1.0, 0.0, 3.0]])
    targets = np.array([2, 1])
    expected = np.mean(
        [
            -(row[1:][tg - 1] - math.log(np.exp(row[1:]).sum()))
            for row, tg in zip(logits, targets, strict=True)
        ]
    )
    got = full_ce(torch.tensor(logits, dtype=torch.float32), torch.tensor(targets))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_sampled_softmax_plain_and_logq() -> None:
    def manual(pos, neg):
        out = []
        for p, negs in zip(pos, neg, strict=True):
            z = [p, *negs]
            out.append(-(p - math.log(sum(math.exp(v) for v in z))))
        return sum(out) / len(out)

    assert sampled_softmax(t(POS), t(NEG)).item() == pytest.approx(manual(POS, NEG), rel=1e-6)
    lq_pos = [math.log(0.1), math.log(0.3)]
    lq_neg = [[math.log(0.2), math.log(0.05)], [math.log(0.5), math.log(0.01)]]
    pos_c = [p - q for p, q in zip(POS, lq_pos, strict=True)]
    neg_c = [
        [n - q for n, q in zip(ns, qs, strict=True)] for ns, qs in zip(NEG, lq_neg, strict=True)
    ]
    got = sampled_softmax(t(POS), t(NEG), t(lq_pos), t(lq_neg))
    assert got.item() == pytest.approx(manual(pos_c, neg_c), rel=1e-6)
    # an invalid negative leaves the softmax entirely
    valid = torch.tensor([[True, False], [True, True]])
    got = sampled_softmax(t(POS), t(NEG), neg_valid=valid)
    assert got.item() == pytest.approx(manual(POS, [[0.2], [0.0, 2.0]]), rel=1e-6)


def test_gbce_beta_formula_and_limits() -> None:
    # n_items = 11, k = 2: alpha = 2 / 10 = 0.2
    assert gbce_beta(2, 11, 0.0) == pytest.approx(1.0)  # t = 0: plain BCE
    assert gbce_beta(2, 11, 1.0) == pytest.approx(0.2)  # t = 1: beta = alpha
    assert gbce_beta(2, 11, 0.5) == pytest.approx(0.2 * (0.5 * (1 - 5) + 5))  # = 0.6
    with pytest.raises(ValueError):
        gbce_beta(11, 11, 0.5)  # more negatives than other items
    with pytest.raises(ValueError):
        gbce_beta(2, 11, 1.5)


def test_gbce_hand_example_and_reduction_to_bce() -> None:
    beta = 0.6  # n_items = 11, k = 2, t = 0.5 (above)
    rows = [
        -beta * log_sigmoid(p) - sum(math.log(1 - 1 / (1 + math.exp(-n))) for n in negs)
        for p, negs in zip(POS, NEG, strict=True)
    ]
    assert gbce(t(POS), t(NEG), n_items=11, t=0.5).item() == pytest.approx(sum(rows) / 2, rel=1e-6)
    assert gbce(t(POS), t(NEG), n_items=11, t=0.0).item() == pytest.approx(
        bce(t(POS), t(NEG)).item(), rel=1e-6
    )


def test_losses_return_float32_from_bf16_logits() -> None:
    pos, neg = t(POS).bfloat16(), t(NEG).bfloat16()
    for fn in (bce, bpr, sampled_softmax):
        assert fn(pos, neg).dtype == torch.float32


def test_loss_config_validation() -> None:
    assert num_negatives_needed(LossConfig(name="ce")) == 0
    assert num_negatives_needed(LossConfig(name="bce", num_negatives=4)) == 4
    assert LossConfig().name == "bce" and LossConfig().num_negatives == 1
    with pytest.raises(ValidationError):
        LossConfig(name="bce", num_negatives=0)
    with pytest.raises(ValidationError):
        LossConfig(name="bpr", logq=True)
    with pytest.raises(ValidationError):
        LossConfig(name="bce", negatives=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        LossConfig(name="hinge")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SampledLoss(LossConfig(name="ce"), n_items=10)


def test_sampled_loss_dispatch() -> None:
    cfg = LossConfig(name="gbce", num_negatives=2, gbce_t=0.5)
    assert SampledLoss(cfg, 11)(t(POS), t(NEG)).item() == pytest.approx(
        gbce(t(POS), t(NEG), 11, 0.5).item()
    )
    assert SampledLoss(LossConfig(name="bpr", num_negatives=2), 11)(t(POS), t(NEG)).item() == (
        pytest.approx(bpr(t(POS), t(NEG)).item())
    )
