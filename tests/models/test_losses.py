"""Each loss against small examples computed independently with math/numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from h2rec.models.losses import (
    CE_CHUNK_ELEMENTS,
    LossConfig,
    SampledLoss,
    bce,
    bpr,
    chunked_ce,
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


def _ce_problem(n: int, m: int, d: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    user = torch.randn(n, d, generator=g, dtype=torch.float64)
    weight = torch.randn(m, d, generator=g, dtype=torch.float64)
    bias = torch.randn(m, generator=g, dtype=torch.float64)
    targets = torch.randint(0, m, (n,), generator=g)
    return user, weight, bias, targets


def _grads(fn, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[no-untyped-def]
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    loss = fn(*leaves)
    loss.backward()
    return (loss.detach(), *(x.grad for x in leaves))


@pytest.mark.parametrize(
    ("n", "m", "rows"),
    [(1, 5, 1), (7, 13, 1), (7, 13, 3), (10, 4, 5), (10, 4, 10), (9, 50, 100), (33, 17, 8)],
)
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("saved_chunks", [0, 1, 4])
def test_chunked_ce_equals_cross_entropy_and_its_gradients(
    n: int, m: int, rows: int, with_bias: bool, saved_chunks: int
) -> None:
    """Value and the user / weight / bias gradients against F.cross_entropy on explicit float64
    logits, for chunks of one row, chunks not dividing N and one chunk holding everything; with
    every row recomputed in backward (0 saved chunks), some rows kept from forward, or all."""
    user, weight, bias, targets = _ce_problem(n, m, 6, seed=n * 100 + m)
    # the float64 reference; the chunked path computes in float32 from float32 inputs
    ref = _grads(
        lambda u, w, b: torch.nn.functional.cross_entropy(
            u @ w.t() + (b if with_bias else 0), targets
        ),
        user,
        weight,
        bias,
    )
    got = _grads(
        lambda u, w, b: chunked_ce(
            u,
            w,
            targets,
            b if with_bias else None,
            chunk_elements=rows * m,
            saved_chunks=saved_chunks,
        ),
        user.float(),
        weight.float(),
        bias.float(),
    )
    assert got[0].dtype == torch.float32
    torch.testing.assert_close(got[0].double(), ref[0], rtol=1e-5, atol=1e-6)
    for g, r in zip(got[1:3], ref[1:3], strict=True):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g.double(), r, rtol=1e-5, atol=1e-6)
    if with_bias:
        torch.testing.assert_close(got[3].double(), ref[3], rtol=1e-5, atol=1e-6)
    else:
        assert got[3] is None  # the bias never entered the loss


def test_chunked_ce_hand_example() -> None:
    # two rows, three items, no bias: logits [[1, 2, 0], [0, 0, 3]], targets [1, 2]
    user = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    weight = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    expected = (
        -(2 - math.log(math.exp(1) + math.exp(2) + 1)) - (3 - math.log(2 + math.exp(3)))
    ) / 2
    got = chunked_ce(user, weight, torch.tensor([1, 2]), chunk_elements=1)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_chunked_ce_from_bf16_inputs_is_float32_accurate() -> None:
    """bf16 user vectors (an autocast encoder's output) are upcast before the products, so the
    loss and gradients are those of the float32 computation on the same bf16 values."""
    user, weight, bias, targets = _ce_problem(40, 30, 8, seed=3)
    user16 = user.bfloat16()
    ref = _grads(
        lambda u, w, b: torch.nn.functional.cross_entropy(u @ w.t() + b, targets),
        user16.double(),
        weight,
        bias,
    )
    got = _grads(
        lambda u, w, b: chunked_ce(u, w, targets, b, chunk_elements=7 * 30),
        user16,
        weight.float(),
        bias.float(),
    )
    assert got[0].dtype == torch.float32 and got[1].dtype == torch.bfloat16
    torch.testing.assert_close(got[0].double(), ref[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[2].double(), ref[2], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[3].double(), ref[3], rtol=1e-5, atol=1e-6)
    # the user gradient is float32-accurate before its cast back to bf16 (within bf16's half ulp)
    torch.testing.assert_close(got[1].double(), ref[1], rtol=2**-8, atol=1e-7)


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_chunked_ce_stays_float32_under_bf16_autocast(device: str) -> None:
    """Under autocast the products would otherwise run in bf16 (8-bit mantissa); inside the
    chunked loss they stay float32, forward and backward."""
    user, weight, bias, targets = (x.to(device) for x in _ce_problem(40, 30, 8, seed=4))
    ref = _grads(
        lambda u, w, b: torch.nn.functional.cross_entropy(u @ w.t() + b, targets),
        user,
        weight,
        bias,
    )

    def under_autocast(u: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device, dtype=torch.bfloat16):
            return chunked_ce(u, w, targets, b, chunk_elements=7 * 30)

    got = _grads(under_autocast, user.float(), weight.float(), bias.float())
    for g, r in zip(got, ref, strict=True):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g.double(), r, rtol=1e-5, atol=1e-6)


def _saved_for_backward(fn) -> list[int]:  # type: ignore[no-untyped-def]
    """numel of every tensor autograd saves for backward while `fn()` builds its graph."""
    sizes: list[int] = []

    def pack(x: torch.Tensor) -> torch.Tensor:
        sizes.append(x.numel())
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        fn()
    return sizes


def test_chunked_ce_saves_nothing_of_size_n_by_items() -> None:
    """Memory without timing: what autograd keeps for backward. The unchunked loss keeps the
    [N, M] log-softmax; the chunked one keeps user, table, bias, targets and one log-sum-exp per
    row: N d + M d + M + 2 N elements, computed here by hand."""
    n, m, d = 64, 500, 8
    user, weight, bias, targets = (
        x.float() if x.is_floating_point() else x for x in _ce_problem(n, m, d, seed=1)
    )
    user.requires_grad_(True)
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    full = _saved_for_backward(
        lambda: full_ce(user @ weight.t() + bias, targets + 1, padding_column=False)
    )
    assert n * m in full
    chunked = _saved_for_backward(
        lambda: chunked_ce(user, weight, targets, bias, chunk_elements=16 * m)
    )
    assert max(chunked) < n * m
    assert sum(chunked) == n * d + m * d + m + n + n


def test_chunked_ce_rejects_bad_shapes_and_budget() -> None:
    user, weight, _, targets = _ce_problem(4, 5, 3, seed=0)
    with pytest.raises(ValueError):
        chunked_ce(user, weight, targets, chunk_elements=0)
    with pytest.raises(ValueError):
        chunked_ce(user, weight[:, :2], targets)


def test_chunked_ce_is_the_default() -> None:
    assert LossConfig(name="ce").ce_chunk_elements == CE_CHUNK_ELEMENTS > 0
    assert LossConfig(name="ce", ce_chunk_elements=0).ce_chunk_elements == 0
    with pytest.raises(ValidationError):
        LossConfig(name="ce", ce_chunk_elements=-1)
