"""H2Rec (paper Section 3, Eq. 2-10) against hand computations from the model's own parameters.

Every expected value here is recomputed independently (numpy float64 and plain Python loops over
items, levels, slots and keys), never taken from another call path of the model alone. The
sequence encoders f_theta1/f_theta2 are treated as black boxes: their inputs are rebuilt by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from h2rec.errors import ConfigError
from h2rec.models import BERT4Rec, ClozeObjective, NextItemObjective, build_model
from h2rec.models.companions import pca_item_vectors
from h2rec.models.h2rec import H2Rec
from h2rec.models.h2rec.alignment import (
    code_guided_alignment,
    masked_granularity_loss,
    multi_positive_info_nce,
)
from h2rec.models.h2rec.fusion import GranularityCrossAttention
from h2rec.models.inputs import ModelInputs
from h2rec.models.parts.sid import CodeEmbedding, project_codebooks

N_ITEMS = 30
D = 8
SIZES = [3, 4, 5, 3]
MAX_LEN = 8
BACKBONES = ["sasrec", "gru4rec", "bert4rec"]
SMALL = {"hidden_size": D, "n_layers": 1, "n_heads": 2, "max_len": MAX_LEN, "dropout": 0.1}
TRAIN_SEQS = [
    [1, 2, 3, 4, 5, 6],
    [7, 8, 9, 1, 2],
    [10, 11, 12, 13, 14, 15, 16, 17],
    [18, 19, 20, 21],
    [22, 23, 24, 25, 26, 27, 28],
    [29, 30, 1, 7, 13],
]


@dataclass
class Data:
    codes: np.ndarray  # [n + 1, L], row 0 = -1
    sizes: list[int]
    books: list[np.ndarray]
    text: np.ndarray  # [n + 1, 24], row 0 = 0

    def inputs(self, *, codebooks: bool = True, train: bool = True) -> ModelInputs:
        lengths = [len(s) for s in TRAIN_SEQS]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        items = np.array([i for s in TRAIN_SEQS for i in s], dtype=np.int64)
        return ModelInputs(
            codes=self.codes.copy(),
            codebooks=[b.copy() for b in self.books] if codebooks else None,
            codebook_sizes=list(self.sizes),
            text_vectors=self.text.copy(),
            train_offsets=offsets if train else None,
            train_items=items if train else None,
        )


def make_data(sizes: list[int] = SIZES, book_width: int = 16, seed: int = 0) -> Data:
    rng = np.random.default_rng(seed)
    n_levels = len(sizes)
    codes = np.full((N_ITEMS + 1, n_levels), -1, dtype=np.int64)
    for level, k in enumerate(sizes):
        codes[1:, level] = rng.integers(0, k, N_ITEMS)
    # residual-like codebooks: coarse levels larger than fine ones
    books = [rng.normal(size=(k, book_width)) / (level + 1) for level, k in enumerate(sizes)]
    text = rng.normal(size=(N_ITEMS + 1, 24))
    text[0] = 0.0
    return Data(codes, list(sizes), [b.astype(np.float32) for b in books], text.astype(np.float32))


DATA = make_data()


def make(
    data: Data = DATA, *, seed: int = 0, codebooks: bool = True, train: bool = True, **cfg: object
) -> H2Rec:
    torch.manual_seed(seed)
    cfg = {**SMALL, **cfg}
    if len(data.sizes) < 3:
        cfg.setdefault("ca_p", len(data.sizes))
    model = build_model(
        "h2rec", N_ITEMS, inputs=data.inputs(codebooks=codebooks, train=train), **cfg
    )
    assert isinstance(model, H2Rec)
    return model


def seqs() -> torch.Tensor:
    return torch.tensor(
        [
            [0, 0, 0, 3, 1, 5, 7, 9],
            [0, 0, 0, 0, 0, 0, 0, 0],
            [2, 4, 6, 8, 10, 12, 14, 16],
            [0, 0, 0, 0, 0, 11, 30, 29],
        ]
    )


def perturb_fusion(model: H2Rec, seed: int = 1, scale: float = 0.5) -> None:
    """fc2 starts at zero (alpha == softmax(b_prior) for every item): give it random weights so
    that alpha depends on the query item."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (model.fusion.fc2.weight, model.fusion.fc2.bias):
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


# -- hand computations -----------------------------------------------------------------------
def hand_alpha(model: H2Rec, e: np.ndarray) -> np.ndarray:
    """Eq. 2-3: softmax(W2 relu(W1 [e ; b] + b1) + b2 + b), with loops over units."""
    fn = model.fusion
    w1, b1 = np64(fn.fc1.weight), np64(fn.fc1.bias)
    w2, b2 = np64(fn.fc2.weight), np64(fn.fc2.bias)
    prior = np64(fn.b_prior)
    x = list(e) + list(prior)
    hidden = [max(0.0, sum(w1[u, k] * x[k] for k in range(len(x))) + b1[u]) for u in range(len(b1))]
    s = [
        sum(w2[lvl, u] * hidden[u] for u in range(len(hidden))) + b2[lvl] + prior[lvl]
        for lvl in range(len(prior))
    ]
    top = max(s)
    ex = [math.exp(v - top) for v in s]
    return np.array([v / sum(ex) for v in ex])


def level_offsets(sizes: list[int]) -> list[int]:
    return [1 + sum(sizes[:level]) for level in range(len(sizes))]


def hand_levels(model: H2Rec, data: Data, item: int) -> np.ndarray:
    """[L, d]: E^l[c^l_item] from the flat code table (zeros for padding)."""
    table = np64(model.codes.table.weight)
    if item == 0:
        return np.zeros((len(data.sizes), model.d))
    offs = level_offsets(data.sizes)
    return np.stack([table[offs[lvl] + data.codes[item, lvl]] for lvl in range(len(data.sizes))])


def hand_cross(
    att: GranularityCrossAttention,
    hid: np.ndarray,
    levels: np.ndarray,
    alpha: np.ndarray,
    mask: np.ndarray,
    *,
    causal: bool,
    query: str = "hid",
    residual: bool = True,
) -> np.ndarray:
    """Eq. 4-5 with explicit loops: per slot, per level, softmax over allowed real keys."""
    wq, wk, wv = np64(att.w_q.weight), np64(att.w_k.weight), np64(att.w_v.weight)
    b_size, length, n_levels, d = levels.shape
    out = np.zeros((b_size, length, d))
    for b in range(b_size):
        for t in range(length):
            if not mask[b, t]:
                continue  # padding slots are zero
            acc = np.zeros(d)
            keys = [s for s in range(length) if mask[b, s] and (s <= t or not causal)]
            for lvl in range(n_levels):
                if query == "hid":
                    q = wq @ hid[b, t]
                    source = [levels[b, s, lvl] for s in keys]
                else:
                    q = wq @ levels[b, t, lvl]
                    source = [hid[b, s] for s in keys]
                logits = [float(q @ (wk @ x)) / math.sqrt(d) for x in source]
                top = max(logits)
                weights = [math.exp(v - top) for v in logits]
                z = sum(weights)
                attended = sum(w / z * (wv @ x) for w, x in zip(weights, source, strict=True))
                a = alpha[b, t if alpha.shape[1] > 1 else 0, lvl]
                acc = acc + a * attended
            out[b, t] = acc + hid[b, t] if residual else acc
    return out


def hand_nce(anchors: np.ndarray, others: np.ndarray, positive: np.ndarray, tau: float) -> float:
    """-(1/M) sum_i log(sum_{k in P(i)} exp(cos_ik / tau) / sum_j exp(cos_ij / tau))."""
    total = 0.0
    for i in range(anchors.shape[0]):
        cos = []
        for j in range(others.shape[0]):
            a, o = anchors[i], others[j]
            cos.append(float(a @ o) / (math.sqrt(float(a @ a)) * math.sqrt(float(o @ o))))
        num = sum(math.exp(c / tau) for c, p in zip(cos, positive[i], strict=True) if p)
        den = sum(math.exp(c / tau) for c in cos)
        total += -math.log(num / den)
    return total / anchors.shape[0]


def recover_alpha(block: np.ndarray, u_sid: np.ndarray) -> np.ndarray:
    """The SID part of the user vector is [alpha_1 u ; ... ; alpha_G u]: alpha_l by least
    squares, after checking every block really is a multiple of u."""
    alpha = np.array([float(blk @ u_sid) / float(u_sid @ u_sid) for blk in block])
    np.testing.assert_allclose(block, alpha[:, None] * u_sid[None, :], rtol=1e-4, atol=1e-6)
    return alpha


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- 1. shapes on every backbone and code shape ----------------------------------------------
CODE_SHAPES = {"vq-1x8": [8], "l3": [4, 4, 4], "l4": SIZES, "uneven": [5, 3, 4]}


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("shape", list(CODE_SHAPES))
def test_scores_hidden_and_candidates_shapes(backbone: str, shape: str) -> None:
    data = make_data(CODE_SHAPES[shape])
    model = make(data, backbone=backbone).eval()
    n_levels = len(data.sizes)
    assert model.n_levels == n_levels
    x = seqs()
    with torch.no_grad():
        full = model.score(x)
        hidden = model.hidden(x)
        cands = torch.tensor([[9, 0, 1, 30], [1, 2, 3, 4], [30, 29, 0, 16], [5, 5, 11, 2]])
        picked = model.score(x, cands)
    assert full.shape == (4, N_ITEMS + 1) and full.dtype == torch.float32
    assert torch.isneginf(full[:, 0]).all() and torch.isfinite(full[:, 1:]).all()
    # the compact user state [u_sid ; u_hid ; alpha], expanded to q for the wide product
    assert hidden.shape == (4, MAX_LEN, 2 * D + n_levels)
    assert model.expand_user(hidden).shape == (4, MAX_LEN, (n_levels + 1) * D)
    torch.testing.assert_close(picked, full.gather(1, cands))
    assert torch.isneginf(picked[cands == 0]).all()
    # distinct users, distinct scores
    assert not torch.allclose(full[0, 1:], full[2, 1:])
    if backbone == "bert4rec":
        assert model.mask_token_id == N_ITEMS + 1
        model.train()
        torch.manual_seed(3)
        loss, logs = ClozeObjective(mask_ratio=0.4)(model, {"inputs": x})
        assert torch.isfinite(loss) and {"loss_rec", "loss_ca", "loss_msg"} <= set(logs)
        loss.backward()
        assert model.hid.embedding.weight.grad is not None
        assert model.hid.embedding.weight.grad.abs().sum() > 0
    else:
        assert model.mask_token_id is None


# -- 2. causality ------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec"])
def test_later_items_never_change_earlier_slots(backbone: str) -> None:
    model = make(backbone=backbone).eval()
    perturb_fusion(model)  # alpha depends on the item, so an alpha leak would show
    x = seqs()
    for slot in (5, 6, 7):
        changed = x.clone()
        changed[0, slot] = 20
        changed[2, slot] = 21
        changed[3, slot] = 22
        with torch.no_grad():
            h0, s0 = model.forward_train(x)
            h1, s1 = model.forward_train(changed)
        torch.testing.assert_close(h1[:, :slot], h0[:, :slot], rtol=0, atol=1e-6)
        torch.testing.assert_close(s1.u_sid[:, :slot], s0.u_sid[:, :slot], rtol=0, atol=1e-6)
        # the changed slot itself does change, in both branches ([u_sid ; u_hid ; alpha])
        assert not torch.allclose(h1[0, slot, :D], h0[0, slot, :D])
        assert not torch.allclose(h1[0, slot, D : 2 * D], h0[0, slot, D : 2 * D])


def test_sequence_alpha_scope_leaks_last_item_into_earlier_slots() -> None:
    """The documented leak of alpha_scope=sequence: this is what the causality test detects."""
    model = make(alpha_scope="sequence").eval()
    perturb_fusion(model)
    x = seqs()
    changed = x.clone()
    changed[:, -1] = torch.tensor([20, 0, 21, 22])
    with torch.no_grad():
        h0, s0 = model.forward_train(x)
        h1, s1 = model.forward_train(changed)
    for row, first in ((0, 3), (2, 0), (3, 5)):
        for slot in range(first, MAX_LEN - 1):
            assert not torch.allclose(h1[row, slot], h0[row, slot], atol=1e-5), (row, slot)
            assert not torch.allclose(s1.u_sid[row, slot], s0.u_sid[row, slot], atol=1e-5)


# -- 3. fusion weights alpha -------------------------------------------------------------------
def test_alpha_at_init_is_the_linspace_prior() -> None:
    model = make()
    prior = model.fusion.b_prior.detach()
    expected = torch.tensor([1.0 - 0.8 * k / 3 for k in range(4)])
    torch.testing.assert_close(prior, expected)
    assert isinstance(model.fusion.b_prior, torch.nn.Parameter)
    e = torch.randn(5, D)
    with torch.no_grad():
        alpha = model.fusion(e)
    ex = [math.exp(v) for v in expected.tolist()]
    hand = torch.tensor([v / sum(ex) for v in ex]).expand(5, -1)
    torch.testing.assert_close(alpha, hand, rtol=1e-6, atol=1e-7)
    fixed = make(prior_learnable=False, prior_init="zeros")
    assert "fusion.b_prior" not in dict(fixed.named_parameters())
    torch.testing.assert_close(fixed.fusion(e), torch.full((5, 4), 0.25))


def test_alpha_matches_the_hand_fusion_network() -> None:
    model = make()
    perturb_fusion(model)
    with torch.no_grad():
        model.fusion.b_prior.add_(torch.tensor([0.3, -0.2, 0.1, 0.4]))
    e = torch.randn(6, D) * 2
    with torch.no_grad():
        alpha = model.fusion(e)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(6))
    hand = np.stack([hand_alpha(model, row) for row in np64(e)])
    np.testing.assert_allclose(np64(alpha), hand, rtol=1e-5, atol=1e-6)
    assert np.ptp(hand, axis=0).max() > 0.05  # genuinely query-dependent


def test_fusion_weights_use_only_the_last_real_item() -> None:
    model = make(max_len=10).eval()
    perturb_fusion(model)
    with torch.no_grad():
        a = model.fusion_weights(torch.tensor([[0, 0, 3, 7]]))
        b = model.fusion_weights(torch.tensor([[0, 0, 0, 0, 0, 3, 7]]))
        c = model.fusion_weights(torch.tensor([[5, 3, 7]]))
        other = model.fusion_weights(torch.tensor([[0, 0, 7, 3]]))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    e7 = np64(model.hid.embedding.weight[7])
    np.testing.assert_allclose(np64(a[0]), hand_alpha(model, e7), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(a, other)


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec"])
def test_alpha_in_the_user_vector_is_the_last_items_alpha(backbone: str) -> None:
    model = make(backbone=backbone).eval()
    perturb_fusion(model)
    x = seqs()
    with torch.no_grad():
        compact, state = model.forward_train(x)
        user = model.expand_user(compact)
        weights = model.fusion_weights(x)
    n_levels = model.n_levels
    torch.testing.assert_close(compact[..., 2 * D :], state.alpha)  # the state carries alpha
    hid_table = np64(model.hid.embedding.weight)
    for row in (0, 2, 3):
        last = recover_alpha(
            np64(user[row, -1, : n_levels * D]).reshape(n_levels, D), np64(state.u_sid[row, -1])
        )
        np.testing.assert_allclose(last, np64(weights[row]), rtol=1e-4, atol=1e-6)
        # every real slot uses the alpha of the item at that slot (alpha_scope=position)
        for slot in range(MAX_LEN):
            item = int(x[row, slot])
            if item == 0:
                continue
            got = recover_alpha(
                np64(user[row, slot, : n_levels * D]).reshape(n_levels, D),
                np64(state.u_sid[row, slot]),
            )
            np.testing.assert_allclose(got, hand_alpha(model, hid_table[item]), rtol=1e-4)


def test_bert4rec_scoring_alpha_is_the_last_real_items_alpha() -> None:
    model = make(backbone="bert4rec").eval()
    perturb_fusion(model)
    x = seqs()
    shifted = torch.cat([x[:, 1:], torch.full_like(x[:, :1], N_ITEMS + 1)], dim=1)
    with torch.no_grad():
        user = model.expand_user(model.user_repr(x))
        state = model.forward_train(shifted)[1]
        weights = model.fusion_weights(x)
    n_levels = model.n_levels
    for row in (0, 2, 3):
        got = recover_alpha(
            np64(user[row, : n_levels * D]).reshape(n_levels, D), np64(state.u_sid[row, -1])
        )
        np.testing.assert_allclose(got, np64(weights[row]), rtol=1e-4, atol=1e-6)


# -- 4. the forward pass and Eq. 9 by hand -----------------------------------------------------
@pytest.mark.parametrize("sid_fusion", ["alpha", "mean"])
@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec"])
def test_forward_and_scores_equal_eq_2_to_9_by_hand(backbone: str, sid_fusion: str) -> None:
    model = make(backbone=backbone, sid_fusion=sid_fusion).eval()
    perturb_fusion(model)
    x = seqs()
    mask = np64(x != 0).astype(bool)
    n_levels = model.n_levels
    hid_table = np64(model.hid.embedding.weight)
    scale = math.sqrt(D) if backbone == "sasrec" else 1.0
    assert model.embedding_scale == pytest.approx(scale)

    # E^hid, g^l, alpha (Eq. 2-3, per slot), E^sid (Eq. 3), E^f (Eq. 4-5) by hand
    e_hid = np.stack([[hid_table[int(i)] for i in row] for row in x])
    levels = np.stack([[hand_levels(model, DATA, int(i)) for i in row] for row in x])
    alpha = np.stack([[hand_alpha(model, hid_table[int(i)]) for i in row] for row in x])
    sid_w = alpha if sid_fusion == "alpha" else np.full_like(alpha, 1.0 / n_levels)
    e_sid = np.einsum("blgd,blg->bld", levels, sid_w)
    e_f = hand_cross(model.cross, e_hid, levels, alpha, mask, causal=True)
    with torch.no_grad():
        compact, state = model.forward_train(x)
        user = model.expand_user(compact)
        full = model.score(x)
        u_sid_ref = model.sid_encoder(torch.tensor(e_sid * scale, dtype=torch.float32), x != 0)
        u_hid_ref = model.hid_encoder(torch.tensor(e_f * scale, dtype=torch.float32), x != 0)
    torch.testing.assert_close(state.u_sid, u_sid_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(user[..., n_levels * D :], u_hid_ref, rtol=1e-4, atol=1e-5)

    # Eq. 9 for every item, at the last slot
    u_sid = np64(state.u_sid[:, -1])
    u_hid = np64(user[:, -1, n_levels * D :])
    weights = np64(model.fusion_weights(x))
    if sid_fusion == "mean":
        weights = np.full_like(weights, 1.0 / n_levels)
    for row in range(x.shape[0]):
        for j in range(1, N_ITEMS + 1):
            rows = hand_levels(model, DATA, j)
            e_sid_j = sum(weights[row, lvl] * rows[lvl] for lvl in range(n_levels))
            expected = float(e_sid_j @ u_sid[row]) + float(hid_table[j] @ u_hid[row])
            assert float(full[row, j]) == pytest.approx(expected, rel=1e-4, abs=1e-5), (row, j)
    if sid_fusion == "mean":  # the user vector's SID blocks are u_sid / L
        block = np64(user[0, -1, : n_levels * D]).reshape(n_levels, D)
        np.testing.assert_allclose(block, np.tile(u_sid[0] / n_levels, (n_levels, 1)), atol=1e-6)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("shape", list(CODE_SHAPES))
def test_inference_scores_per_codeword_equal_the_wide_product(backbone: str, shape: str) -> None:
    """Eval-mode `score_all` sums per-codeword scores with an embedding bag; training's path is
    the (G+1)d-wide product q W^T. Both must give the same scores for every item, and training
    must keep a linear `full_scoring` (the chunked CE path)."""
    data = make_data(CODE_SHAPES[shape])
    model = make(data, backbone=backbone).eval()
    perturb_fusion(model)
    x = seqs()
    with torch.no_grad():
        user = model.user_repr(x)
        fast = model.score_all(user)
        fast_catalogue = model.score_all(user, catalogue_only=True)
    wide = model.expand_user(user) @ model.item_weights().t()  # grad enabled: the base path
    torch.testing.assert_close(fast, wide.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_catalogue, fast[:, 1:], rtol=0, atol=1e-6)
    with torch.enable_grad():
        linear = model.train().full_scoring(user)
    assert linear is not None
    u, table, bias = linear
    assert bias is None and table.shape == (N_ITEMS, (model.n_levels + 1) * D)
    torch.testing.assert_close((u @ table.t()).detach(), fast[:, 1:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_user_vector_is_the_full_pass_at_the_last_slot(backbone: str) -> None:
    """Scoring runs both encoders' final layer at the last slot only; the user vector must be
    the full forward pass's last slot (after BERT4Rec's appended [MASK])."""
    model = make(backbone=backbone).eval()
    perturb_fusion(model)
    x = seqs()
    query = BERT4Rec.append_mask(model, x) if backbone == "bert4rec" else x  # type: ignore[arg-type]
    with torch.no_grad():
        torch.testing.assert_close(
            model.user_repr(x), model.hidden(query)[:, -1], rtol=1e-5, atol=1e-6
        )


# -- 5. cross attention (Eq. 4-5) by hand ------------------------------------------------------
def cross_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    hid = torch.randn(2, 4, 4, generator=g)
    levels = torch.randn(2, 4, 3, 4, generator=g)
    alpha = torch.softmax(torch.randn(2, 4, 3, generator=g), dim=-1)
    mask = torch.tensor([[False, True, True, True], [False, False, True, True]])
    hid = hid * mask[..., None]
    levels = levels * mask[..., None, None]
    return hid, levels, alpha, mask


@pytest.mark.parametrize(
    ("causal", "query", "residual"),
    [
        (True, "hid", True),
        (False, "hid", True),
        (True, "sid", True),
        (True, "hid", False),
        (True, "sid", False),
    ],
)
def test_cross_attention_by_hand(causal: bool, query: str, residual: bool) -> None:
    torch.manual_seed(0)
    att = GranularityCrossAttention(4, causal=causal, query=query, residual=residual)
    hid, levels, alpha, mask = cross_inputs()
    with torch.no_grad():
        got = att(hid, levels, alpha, mask)
        per_sequence = att(hid, levels, alpha[:, -1:], mask)  # [B, 1, G] broadcast alpha
    kwargs = {"causal": causal, "query": query, "residual": residual}
    hand = hand_cross(att, np64(hid), np64(levels), np64(alpha), np64(mask).astype(bool), **kwargs)
    np.testing.assert_allclose(np64(got), hand, rtol=1e-5, atol=1e-6)
    hand1 = hand_cross(
        att, np64(hid), np64(levels), np64(alpha[:, -1:]), np64(mask).astype(bool), **kwargs
    )
    np.testing.assert_allclose(np64(per_sequence), hand1, rtol=1e-5, atol=1e-6)
    assert not got[~mask].any()  # zero at padding
    if (causal, query, residual) != (True, "hid", True):  # the variants differ from Eq. 5
        default = hand_cross(
            att, np64(hid), np64(levels), np64(alpha), np64(mask).astype(bool), causal=True
        )
        assert not np.allclose(np64(got), default, atol=1e-4)
    if not residual:  # exactly the residual is missing
        with_res = hand_cross(
            att,
            np64(hid),
            np64(levels),
            np64(alpha),
            np64(mask).astype(bool),
            causal=causal,
            query=query,
        )
        np.testing.assert_allclose(np64(got) + np64(hid), with_res, rtol=1e-5, atol=1e-6)


def test_cross_attention_bidirectional_only_for_bert4rec() -> None:
    assert make(backbone="bert4rec").cross.causal is False
    assert make(backbone="sasrec").cross.causal is True
    assert make(backbone="gru4rec").cross.causal is True


# -- 6. alignment losses (Eq. 7-8) by hand -----------------------------------------------------
def test_multi_positive_info_nce_by_hand() -> None:
    g = torch.Generator().manual_seed(5)
    a = torch.randn(3, 5, generator=g)
    o = torch.randn(3, 5, generator=g)
    positive = torch.tensor([[True, True, False], [False, True, False], [True, False, True]])
    for tau in (0.5, 0.1):
        got = multi_positive_info_nce(a, o, positive, tau)
        assert float(got) == pytest.approx(hand_nce(np64(a), np64(o), np64(positive), tau))
    # anchors and others of different counts
    o4 = torch.randn(4, 5, generator=g)
    pos4 = torch.tensor([[True, False, False, True], [False, False, True, False], [True] * 4])
    got = multi_positive_info_nce(a, o4, pos4, 0.3)
    assert float(got) == pytest.approx(hand_nce(np64(a), np64(o4), np64(pos4), 0.3))
    # a tiny temperature stays finite (computed with logsumexp)
    assert torch.isfinite(multi_positive_info_nce(a, o, positive, 1e-3))


def test_code_guided_alignment_is_both_directions() -> None:
    g = torch.Generator().manual_seed(6)
    e_sid = torch.randn(3, 4, generator=g)
    e_hid = torch.randn(3, 4, generator=g)
    positive = torch.tensor([[True, False, True], [False, True, False], [True, False, True]])
    got = code_guided_alignment(e_sid, e_hid, positive, 0.5)
    pos = np64(positive)
    hand = hand_nce(np64(e_sid), np64(e_hid), pos, 0.5) + hand_nce(
        np64(e_hid), np64(e_sid), pos, 0.5
    )
    assert float(got) == pytest.approx(hand)


def test_masked_granularity_loss_uses_identity_positives() -> None:
    g = torch.Generator().manual_seed(7)
    u = torch.randn(3, 4, generator=g)
    u_masked = torch.randn(3, 4, generator=g)
    got = masked_granularity_loss(u, u_masked, 0.5)
    eye = np.eye(3, dtype=bool)
    hand = hand_nce(np64(u), np64(u_masked), eye, 0.5) + hand_nce(np64(u_masked), np64(u), eye, 0.5)
    assert float(got) == pytest.approx(hand)


@pytest.mark.parametrize("tau", [0.5, 0.05, 0.01])  # 0.01: 1/tau > 40, the logsumexp path
def test_both_directions_with_an_asymmetric_positive_set_and_their_gradients(tau: float) -> None:
    """Each direction reads its own anchor's row of `positive` (SID anchor i: P(i); HID anchor
    k: P(k)), also when the matrix is not symmetric, and the gradients match autograd through the
    hand formula in float64 (an independent computation of the same loss)."""
    g = torch.Generator().manual_seed(9)
    e_sid = torch.randn(5, 4, generator=g, requires_grad=True)
    e_hid = torch.randn(5, 4, generator=g, requires_grad=True)
    positive = torch.eye(5, dtype=torch.bool)
    positive[0, 3] = positive[2, 4] = positive[4, 1] = True  # k in P(i) but not i in P(k)
    got = code_guided_alignment(e_sid, e_hid, positive, tau)
    pos = np64(positive)
    hand = hand_nce(np64(e_sid), np64(e_hid), pos, tau) + hand_nce(
        np64(e_hid), np64(e_sid), pos, tau
    )
    assert float(got.detach()) == pytest.approx(hand, rel=1e-5)
    got.backward()

    def reference(a: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        sim = F.normalize(a, dim=-1) @ F.normalize(o, dim=-1).t() / tau
        rows = torch.logsumexp(sim, 1) - torch.logsumexp(sim.masked_fill(~positive, -math.inf), 1)
        cols = torch.logsumexp(sim.t(), 1) - torch.logsumexp(
            sim.t().masked_fill(~positive, -math.inf), 1
        )
        return rows.mean() + cols.mean()

    a64 = e_sid.detach().double().requires_grad_()
    o64 = e_hid.detach().double().requires_grad_()
    reference(a64, o64).backward()
    assert e_sid.grad is not None and e_hid.grad is not None
    torch.testing.assert_close(e_sid.grad.double(), a64.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(e_hid.grad.double(), o64.grad, rtol=1e-4, atol=1e-6)


def next_item_batch() -> dict[str, torch.Tensor]:
    full = torch.tensor(
        [
            [0, 3, 1, 5, 7, 9, 2, 4, 6],
            [0, 0, 0, 0, 0, 0, 11, 30, 29],
            [2, 4, 6, 8, 10, 12, 14, 16, 18],
        ]
    )
    inputs, targets = full[:, :-1].clone(), full[:, 1:].clone()
    targets[inputs == 0] = 0
    g = torch.Generator().manual_seed(8)
    negatives = torch.randint(1, N_ITEMS + 1, (*targets.shape, 1), generator=g)
    negatives[targets == 0] = 0
    return {"inputs": inputs, "targets": targets, "negatives": negatives}


def brute_positive(data: Data, a: int, b: int, p: int, window: int) -> bool:
    if a == b or list(data.codes[a, :p]) == list(data.codes[b, :p]):
        return True
    for s in TRAIN_SEQS:
        for t in range(len(s)):
            for u in range(len(s)):
                if s[t] == a and s[u] == b and 1 <= abs(t - u) <= window:
                    return True
    return False


def test_model_loss_ca_and_loss_msg_by_hand() -> None:
    model = make(ca_p=2, ca_window=2, beta=0.7, gamma=0.4).eval()
    perturb_fusion(model)
    batch = next_item_batch()
    inputs, targets = batch["inputs"], batch["targets"]
    hid_table = np64(model.hid.embedding.weight)
    with torch.no_grad():
        _, state = model.forward_train(inputs)
        torch.manual_seed(11)
        aux = model.auxiliary_losses(state, inputs, targets)

    # L_CA: anchors = target items in row-major order, each with the alpha of its slot
    anchors = [(b, t) for b in range(3) for t in range(8) if int(targets[b, t]) != 0]
    items = [int(targets[b, t]) for b, t in anchors]
    e_sid, e_hid = [], []
    for (b, t), item in zip(anchors, items, strict=True):
        a = hand_alpha(model, hid_table[int(inputs[b, t])])
        rows = hand_levels(model, DATA, item)
        e_sid.append(sum(a[lvl] * rows[lvl] for lvl in range(4)))
        e_hid.append(hid_table[item])
    positive = np.array([[brute_positive(DATA, i, k, 2, 2) for k in items] for i in items])
    assert positive.sum() > len(items)  # more than identity: the test exercises P_C and P_H
    hand_ca = hand_nce(np.stack(e_sid), np.stack(e_hid), positive, 0.5) + hand_nce(
        np.stack(e_hid), np.stack(e_sid), positive, 0.5
    )
    assert float(aux["loss_ca"]) == pytest.approx(0.7 * hand_ca, rel=1e-4)

    # L_MSG: per row one level m replaced by the mask token at real slots, last-slot outputs
    torch.manual_seed(11)
    m = torch.randint(0, 4, (3,)).tolist()
    token = np64(model.granularity_mask)
    mask = np64(inputs != 0).astype(bool)
    masked = np.zeros((3, 8, D))
    full = np.zeros((3, 8, D))
    for b in range(3):
        for t in range(8):
            item = int(inputs[b, t])
            a = hand_alpha(model, hid_table[item])
            rows = hand_levels(model, DATA, item)
            full[b, t] = sum(a[lvl] * rows[lvl] for lvl in range(4))
            if mask[b, t]:
                rows[m[b]] = token
            masked[b, t] = sum(a[lvl] * rows[lvl] for lvl in range(4))
    scale = model.embedding_scale
    with torch.no_grad():
        u_full = model.sid_encoder(torch.tensor(full * scale, dtype=torch.float32), inputs != 0)
        u_masked = model.sid_encoder(torch.tensor(masked * scale, dtype=torch.float32), inputs != 0)
    u_full, u_masked = np64(u_full[:, -1]), np64(u_masked[:, -1])
    eye = np.eye(3, dtype=bool)
    hand_msg = hand_nce(u_full, u_masked, eye, 0.5) + hand_nce(u_masked, u_full, eye, 0.5)
    assert float(aux["loss_msg"]) == pytest.approx(0.4 * hand_msg, rel=1e-4)


# -- 7. the cached item table --------------------------------------------------------------------
def hand_item_table(model: H2Rec, data: Data) -> np.ndarray:
    hid_table = np64(model.hid.embedding.weight)
    return np.stack(
        [
            np.concatenate([hand_levels(model, data, j).reshape(-1), hid_table[j]])
            for j in range(N_ITEMS + 1)
        ]
    )


def test_item_weights_cache_follows_the_parameters() -> None:
    model = make().eval()
    with torch.no_grad():
        first = model.item_weights()
        assert model.item_weights() is first
    assert first.shape == (N_ITEMS + 1, 5 * D) and not first.requires_grad
    np.testing.assert_allclose(np64(first), hand_item_table(model, DATA), rtol=1e-6, atol=1e-7)

    other = make(seed=5, hid_init="random", code_init="random")
    model.load_state_dict(other.state_dict())
    with torch.no_grad():
        loaded = model.item_weights()
    assert loaded is not first
    np.testing.assert_allclose(np64(loaded), hand_item_table(other, DATA), rtol=1e-6, atol=1e-7)

    with torch.no_grad():
        model.hid.embedding.weight.mul_(2.0)
        doubled = model.item_weights()
        model.codes.table.weight[1:].add_(0.5)
        shifted = model.item_weights()
        assert model.item_weights() is shifted
    np.testing.assert_allclose(np64(doubled[:, 4 * D :]), 2 * np64(loaded[:, 4 * D :]), rtol=1e-6)
    np.testing.assert_allclose(np64(shifted), hand_item_table(model, DATA), rtol=1e-6, atol=1e-7)
    assert not shifted[0].any()

    # with grad, or in train mode: rebuilt every call, differentiable
    with_grad = model.item_weights()
    assert with_grad.requires_grad and with_grad is not model.item_weights()
    model.train()
    with torch.no_grad():
        in_train = model.item_weights()
    assert in_train is not model.item_weights()
    trained = model.item_weights()
    assert trained.requires_grad
    np.testing.assert_allclose(np64(trained), hand_item_table(model, DATA), rtol=1e-6, atol=1e-7)


# -- 8. ablation switches -------------------------------------------------------------------------
def test_without_fusion_network_alpha_is_uniform() -> None:
    model = make(fusion_network=False).eval()
    assert not [n for n, _ in model.named_parameters() if n.startswith("fusion.")]
    x = seqs()
    with torch.no_grad():
        torch.testing.assert_close(model.fusion_weights(x), torch.full((4, 4), 0.25))
        compact, state = model.forward_train(x)
        user = model.expand_user(compact)
    for row in (0, 2, 3):
        block = np64(user[row, -1, : 4 * D]).reshape(4, D)
        np.testing.assert_allclose(recover_alpha(block, np64(state.u_sid[row, -1])), [0.25] * 4)


def test_without_cross_attention_hid_branch_reads_e_hid() -> None:
    model = make(cross_attention=False).eval()
    assert model.cross is None
    assert not [n for n, _ in model.named_parameters() if n.startswith("cross.")]
    x = seqs()
    with torch.no_grad():
        user = model.hidden(x)
        expected = model.hid_encoder(model.hid.embed(x) * model.embedding_scale, x != 0)
        with_cross = make().eval().hidden(x)
    torch.testing.assert_close(user[..., D : 2 * D], expected)
    assert not torch.allclose(with_cross[..., D : 2 * D], expected)


def test_beta_and_gamma_zero_remove_their_losses() -> None:
    batch = next_item_batch()
    objective = NextItemObjective("bpr")
    full = make().train()
    _, logs = objective(full, batch)
    assert {"loss_ca", "loss_msg"} <= set(logs)

    no_ca = make(beta=0.0, train=False).train()  # needs no training sequences
    assert no_ca.positives is None
    _, logs = objective(no_ca, batch)
    assert "loss_ca" not in logs and "loss_msg" in logs

    no_msg = make(gamma=0.0).train()
    assert no_msg.granularity_mask is None
    assert "granularity_mask" not in dict(no_msg.named_parameters())
    _, logs = objective(no_msg, batch)
    assert "loss_msg" not in logs and "loss_ca" in logs

    with pytest.raises(ConfigError, match="train_offsets"):
        make(train=False)


def test_shared_encoder_is_one_module() -> None:
    separate = make()
    shared = make(shared_encoder=True)
    assert shared.sid_encoder is shared.hid_encoder
    assert separate.sid_encoder is not separate.hid_encoder
    assert n_params(separate) - n_params(shared) == n_params(separate.hid_encoder)


def grad_norm(p: torch.Tensor) -> float:
    return 0.0 if p.grad is None else float(p.grad.abs().sum())


def test_one_bpr_step_reaches_every_component() -> None:
    model = make().train()
    batch = next_item_batch()
    objective = NextItemObjective("bpr")
    # at init fc2 == 0, so fc1 gets no gradient yet (only fc2 and b_prior do)
    loss, _ = objective(model, batch)
    loss.backward()
    assert grad_norm(model.fusion.fc1.weight) == 0.0
    assert grad_norm(model.fusion.fc2.weight) > 0 and grad_norm(model.fusion.b_prior) > 0
    model.zero_grad()

    perturb_fusion(model)
    loss, logs = objective(model, batch)
    assert {"loss_rec", "loss_ca", "loss_msg"} <= set(logs) and torch.isfinite(loss)
    loss.backward()
    named = {
        "codes.table": model.codes.table.weight,
        "hid.embedding": model.hid.embedding.weight,
        "fusion.fc1": model.fusion.fc1.weight,
        "fusion.fc2": model.fusion.fc2.weight,
        "fusion.b_prior": model.fusion.b_prior,
        "cross.w_q": model.cross.w_q.weight,
        "cross.w_k": model.cross.w_k.weight,
        "cross.w_v": model.cross.w_v.weight,
        "granularity_mask": model.granularity_mask,
    }
    for name, p in named.items():
        assert grad_norm(p) > 0, name
    for encoder in (model.sid_encoder, model.hid_encoder):
        assert sum(grad_norm(p) for p in encoder.parameters()) > 0


def test_loss_ca_alone_trains_the_tables_not_the_encoders() -> None:
    model = make().train()
    perturb_fusion(model)
    batch = next_item_batch()
    _, state = model.forward_train(batch["inputs"])
    aux = model.auxiliary_losses(state, batch["inputs"], batch["targets"])
    aux["loss_ca"].backward()
    assert grad_norm(model.codes.table.weight) > 0
    assert grad_norm(model.hid.embedding.weight) > 0
    for encoder in (model.sid_encoder, model.hid_encoder):
        assert all(grad_norm(p) == 0 for p in encoder.parameters())
    assert all(grad_norm(p) == 0 for p in model.cross.parameters())
    assert grad_norm(model.granularity_mask) == 0


# -- 9. initialisation and configuration errors --------------------------------------------------
def test_hid_table_is_pca_of_text_vectors() -> None:
    model = make()
    pca = pca_item_vectors(DATA.text, D)
    hid = np64(model.hid.embedding.weight)
    assert hid.shape == (N_ITEMS + 1, D)  # sasrec: no [MASK] row
    np.testing.assert_allclose(hid[1:], pca[1:], rtol=1e-6, atol=1e-6)
    assert not hid[0].any()
    bert = make(backbone="bert4rec")
    assert bert.hid.embedding.weight.shape == (N_ITEMS + 2, D)
    np.testing.assert_allclose(np64(bert.hid.embedding.weight[1:-1]), pca[1:], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("book_width", [16, 4])
def test_code_tables_are_scaled_projected_codebooks(book_width: int) -> None:
    data = make_data(book_width=book_width, seed=2)
    model = make(data)
    table = np64(model.codes.table.weight)
    assert table.shape == (1 + sum(SIZES), D) and not table[0].any()
    projected = project_codebooks(data.books, D)
    # independent check of the projection: zero padding (4 < d) or a PCA on the pooled
    # codewords (16 > d), compared through sign-free Gram matrices
    pooled = np.concatenate(data.books).astype(np.float64)
    proj = np.concatenate(projected).astype(np.float64)
    if book_width < D:
        np.testing.assert_allclose(proj[:, :book_width], pooled, rtol=1e-6)
        assert not proj[:, book_width:].any()
    else:
        centred = pooled - pooled.mean(axis=0)
        values, vectors = np.linalg.eigh(centred.T @ centred)
        top = vectors[:, np.argsort(values)[::-1][:D]]
        expected = centred @ top
        np.testing.assert_allclose(proj @ proj.T, expected @ expected.T, rtol=1e-4, atol=1e-4)
    # table rows = ONE global scale x the projected codewords
    code_rows = np.concatenate(
        [table[off : off + k] for off, k in zip(level_offsets(SIZES), SIZES, strict=True)]
    )
    np.testing.assert_allclose(code_rows, table[1:])
    scale = float((code_rows * proj).sum() / (proj**2).sum())
    assert scale > 0
    np.testing.assert_allclose(code_rows, scale * proj, rtol=1e-5, atol=1e-7)
    hid_rms = math.sqrt(float(np.mean(np64(model.hid.embedding.weight[1:]) ** 2)))
    assert math.sqrt(float(np.mean(code_rows**2))) == pytest.approx(hid_rms, rel=1e-5)
    # the levels keep their relative sizes (coarse codewords larger)
    norms = [np.linalg.norm(model.codes.code_table(lvl).detach().numpy()) for lvl in range(4)]
    book_norms = [np.linalg.norm(b) for b in projected]
    np.testing.assert_allclose(
        np.array(norms) / norms[0], np.array(book_norms) / book_norms[0], rtol=1e-5
    )


def test_weighted_code_sum_and_its_gradients_equal_a_float64_level_loop() -> None:
    """CodeEmbedding.weighted (one embedding bag) against sum_l w_l E[row_l] written out in
    float64, value and both gradients; padding ids give zeros and send nothing to row 0."""
    codes = np.array([[-1, -1, -1], [0, 1, 2], [2, 0, 1], [1, 1, 0], [0, 0, 0]])
    emb = CodeEmbedding(codes, [3, 2, 3], 5)
    with torch.no_grad():
        emb.table.weight[0] = 0.0
    ids = torch.tensor([[0, 1, 2, 3], [4, 4, 0, 1]])
    weights = torch.rand(2, 4, 3, dtype=torch.float32, requires_grad=True)
    out = emb.weighted(ids, weights)
    upstream = torch.randn(2, 4, 5)
    (out * upstream).sum().backward()

    table = emb.table.weight.detach().double().numpy()
    w = weights.detach().double().numpy()
    g = upstream.double().numpy()
    offsets = [1, 4, 6]
    expected = np.zeros((2, 4, 5))
    grad_table = np.zeros_like(table)
    grad_w = np.zeros((2, 4, 3))
    for b in range(2):
        for t in range(4):
            item = int(ids[b, t])
            if item == 0:
                continue
            for level in range(3):
                row = offsets[level] + codes[item, level]
                expected[b, t] += w[b, t, level] * table[row]
                grad_table[row] += w[b, t, level] * g[b, t]
                grad_w[b, t, level] = table[row] @ g[b, t]
    np.testing.assert_allclose(out.detach().double().numpy(), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(emb.table.weight.grad.double().numpy(), grad_table, atol=1e-6)
    np.testing.assert_allclose(weights.grad.double().numpy(), grad_w, atol=1e-6)
    assert not emb.table.weight.grad[0].any()
    # weights broadcast over the ids' trailing axis ([B, 1, G] for a per-row alpha)
    shared = emb.weighted(ids, weights[:, :1].detach())
    np.testing.assert_allclose(
        shared.detach().numpy(),
        emb.weighted(ids, weights[:, :1].detach().expand(-1, 4, -1)).detach().numpy(),
    )


def test_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="code_init"):
        make(codebooks=False)
    random_codes = make(codebooks=False, code_init="random")
    assert random_codes.codes.table.weight.shape == (1 + sum(SIZES), D)
    with pytest.raises(ConfigError, match="ca_p"):
        make(ca_p=5)
    make(ca_p=5, ca_code_positives=False)  # the code part off: any p is fine
    with pytest.raises(ConfigError, match="h2rec"):
        build_model("h2rec", N_ITEMS, inputs=ModelInputs(text_vectors=DATA.text.copy()), **SMALL)
    inputs = DATA.inputs()
    inputs.text_vectors = None
    with pytest.raises(ConfigError, match="text_vectors"):
        build_model("h2rec", N_ITEMS, inputs=inputs, **SMALL)
