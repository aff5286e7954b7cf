"""Companion models: sid_only (prefix-n-gram SIDs) and hid_sid_concat, on every backbone."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from h2rec.errors import ConfigError
from h2rec.models import (
    ClozeObjective,
    NextItemObjective,
    SequentialModel,
    build_model,
    list_models,
    parse_model_config,
)
from h2rec.models.companions import pca_item_vectors
from h2rec.models.inputs import ModelInputs
from h2rec.models.parts.sid import PrefixEmbedding

# 10 items, 3 levels. Collisions: 1 == 2 and 7 == 8. Item 3 shares (0, 1) with item 1; items 4
# and 5 end like item 1 (..., 2) / (1, 2) under other parents.
CODES = np.array(
    [
        [-1, -1, -1],
        [0, 1, 2],
        [0, 1, 2],
        [0, 1, 0],
        [0, 2, 2],
        [1, 1, 2],
        [1, 0, 0],
        [2, 3, 1],
        [2, 3, 1],
        [3, 0, 3],
        [1, 1, 0],
    ]
)
N_ITEMS = CODES.shape[0] - 1
D = 8
MODELS = ["sid_only", "hid_sid_concat"]
BACKBONES = ["sasrec", "gru4rec", "bert4rec"]
SMALL = {"hidden_size": D, "n_layers": 1, "n_heads": 2, "max_len": 6}


def make(name: str, backbone: str = "sasrec", inputs: ModelInputs | None = None, **cfg: object):
    torch.manual_seed(0)
    inputs = inputs if inputs is not None else ModelInputs(codes=CODES.copy())
    return build_model(name, N_ITEMS, inputs=inputs, backbone=backbone, **{**SMALL, **cfg})


def seqs() -> torch.Tensor:
    return torch.tensor([[0, 0, 3, 1, 5, 7], [0, 0, 0, 0, 0, 0], [2, 4, 6, 8, 9, 10]])


def independent_prefix_rows(codes: np.ndarray) -> np.ndarray:
    """Table row of each item's prefix at each level: levels in order, prefixes sorted."""
    items = [tuple(int(c) for c in row) for row in codes[1:]]
    rows = np.zeros(codes.shape, dtype=np.int64)
    offset = 1
    for level in range(codes.shape[1]):
        prefixes = sorted({item[: level + 1] for item in items})
        index = {p: offset + k for k, p in enumerate(prefixes)}
        rows[1:, level] = [index[item[: level + 1]] for item in items]
        offset += len(prefixes)
    return rows


# -- PrefixEmbedding ---------------------------------------------------------------------------
def test_prefix_embedding_rows_vectors_and_padding() -> None:
    torch.manual_seed(0)
    emb = PrefixEmbedding(CODES, D, extra_tokens=1)
    n_prefixes = sum(len({tuple(r[: lvl + 1]) for r in CODES[1:]}) for lvl in range(3))
    assert n_prefixes == 4 + 6 + 8  # counted by hand from CODES
    assert emb.table.weight.shape == (1 + n_prefixes + 1, D)
    assert PrefixEmbedding(CODES, D).table.weight.shape == (1 + n_prefixes, D)
    assert emb.prefix_counts == [4, 6, 8]

    expected_rows = independent_prefix_rows(CODES)
    weight = emb.table.weight.detach()
    hand = torch.stack([weight[expected_rows[i]].sum(0) for i in range(1, N_ITEMS + 1)])
    with torch.no_grad():
        table = emb.weight_for_scoring()
        embedded = emb.embed(torch.arange(N_ITEMS + 1).view(1, -1))[0]
    assert table.shape == (N_ITEMS + 1, D)
    torch.testing.assert_close(table[1:], hand)
    torch.testing.assert_close(embedded, table)
    assert table[0].abs().sum() == 0 and weight[0].abs().sum() == 0
    # [MASK] (id n_items + 1) has its own single row: the last one
    with torch.no_grad():
        torch.testing.assert_close(emb.embed(torch.tensor(N_ITEMS + 1)), weight[-1])
    assert weight[1:].std().item() == pytest.approx(0.02, rel=0.3)


def test_prefix_embedding_collisions_share_vectors_and_nothing_else() -> None:
    emb = PrefixEmbedding(CODES, D)
    with torch.no_grad():
        table = emb.weight_for_scoring()
    for i in range(1, N_ITEMS + 1):
        for j in range(i + 1, N_ITEMS + 1):
            same_code = (CODES[i] == CODES[j]).all()
            assert torch.equal(table[i], table[j]) == same_code, (i, j)
    # a shared code under a different parent is a different prefix: item 1 (0,1,2), item 5 (1,1,2)
    rows = emb.item_rows
    assert rows[1, 2] != rows[5, 2] and rows[1, 1] != rows[5, 1]
    assert rows[1, 1] == rows[3, 1] and rows[1, 2] != rows[3, 2]


def test_sid_only_without_prefix_sums_level_codes() -> None:
    model = make("sid_only", prefix=False)
    codes = model.items.codes
    offsets = 1 + np.concatenate([[0], np.cumsum([4, 4, 4])[:-1]])
    weight = codes.table.weight.detach()
    hand = torch.stack([weight[offsets + CODES[i]].sum(0) for i in range(1, N_ITEMS + 1)])
    with torch.no_grad():
        table = model.item_weights()
    torch.testing.assert_close(table[1:], hand)
    assert table[0].abs().sum() == 0
    # the level-3 code 2 is the same row for items 1 and 5 here (not with prefixes)
    assert codes.item_rows[1, 2] == codes.item_rows[5, 2]


# -- hid_sid_concat ------------------------------------------------------------------------------
def test_concat_item_vectors_are_projection_of_hid_and_sid() -> None:
    model = make("hid_sid_concat")
    items = model.items
    hid = items.hid.embedding.weight.detach()[: N_ITEMS + 1]
    code_table = items.sid.table.weight.detach()
    offsets = 1 + np.concatenate([[0], np.cumsum([4, 4, 4])[:-1]])
    sid = torch.zeros(N_ITEMS + 1, D)
    for i in range(1, N_ITEMS + 1):
        for level in range(3):
            sid[i] += code_table[offsets[level] + CODES[i, level]]
    w = items.proj.weight.detach()
    assert w.shape == (D, 2 * D)
    expected = torch.cat([hid, sid], dim=1) @ w.T
    with torch.no_grad():
        table = model.item_weights()
        embedded = model.items.embed(torch.arange(N_ITEMS + 1))
    torch.testing.assert_close(table, expected)
    torch.testing.assert_close(embedded, table)
    assert table[0].abs().sum() == 0
    assert not torch.equal(table[1], table[2])  # the HID half separates colliding items


def test_concat_sid_table_starts_from_codebooks() -> None:
    rng = np.random.default_rng(0)
    books = [rng.normal(size=(4, D)).astype(np.float32) for _ in range(2)]  # level 3: none
    model = make("hid_sid_concat", inputs=ModelInputs(codes=CODES.copy(), codebooks=books))
    sid = model.items.sid
    first = sid.code_table(0).detach().numpy()
    scale = float((first * books[0]).sum() / (books[0] ** 2).sum())
    assert scale > 0
    np.testing.assert_allclose(first, scale * books[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sid.code_table(1).detach().numpy(), scale * books[1], rtol=1e-5)


def test_pca_item_vectors_match_covariance_eigenvectors() -> None:
    rng = np.random.default_rng(1)
    text = rng.normal(size=(N_ITEMS + 1, 6)) * np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.1])
    text[0] = 0.0
    x = text[1:]
    values, vectors = np.linalg.eigh(np.cov(x, rowvar=False))
    top = vectors[:, np.argsort(values)[::-1]]
    expected = (x - x.mean(axis=0)) @ top  # all 6 components, descending variance

    got = pca_item_vectors(text, 3)
    assert got.shape == (N_ITEMS + 1, 3) and got.dtype == np.float32
    assert not got[0].any()
    for j in range(3):
        sign = np.sign(got[1:, j] @ expected[:, j])
        np.testing.assert_allclose(got[1:, j], sign * expected[:, j], rtol=1e-4, atol=1e-4)

    wide = pca_item_vectors(text, 8)  # only 6 axes exist: the rest is zero
    assert wide.shape == (N_ITEMS + 1, 8) and not wide[:, 6:].any()
    np.testing.assert_allclose(np.abs(wide[1:, :6]), np.abs(expected), rtol=1e-4, atol=1e-4)


def test_concat_pca_init_loads_scaled_pca_into_hid() -> None:
    rng = np.random.default_rng(2)
    text = rng.normal(size=(N_ITEMS + 1, 12)).astype(np.float32)
    inputs = ModelInputs(codes=CODES.copy(), text_vectors=text)
    model = make("hid_sid_concat", inputs=inputs, hid_init="pca", text_embeddings="t")
    hid = model.items.hid.weight_for_scoring().detach().numpy()
    pca = pca_item_vectors(text, D)
    scale = float((hid[1:] * pca[1:]).sum() / (pca[1:] ** 2).sum())
    np.testing.assert_allclose(hid[1:], scale * pca[1:], rtol=1e-4, atol=1e-6)
    assert not hid[0].any()
    assert float(np.sqrt(np.mean(hid[1:] ** 2))) == pytest.approx(0.02, rel=1e-4)


# -- models on every backbone ----------------------------------------------------------------------
@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("name", MODELS)
def test_scores_shape_and_padding_column(name: str, backbone: str) -> None:
    model = make(name, backbone).eval()
    assert model.name == name and model.trainable
    with torch.no_grad():
        full = model.score(seqs())
        cands = torch.tensor([[5, 1, 9, 10], [2, 2, 0, 7], [10, 3, 1, 4]])
        some = model.score(seqs(), cands)
    assert full.shape == (3, N_ITEMS + 1) and full.dtype == torch.float32
    assert torch.isneginf(full[:, 0]).all() and torch.isfinite(full[:, 1:]).all()
    torch.testing.assert_close(some, full.gather(1, cands))
    assert model.item_weights().shape == (N_ITEMS + 1, D)


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec"])
@pytest.mark.parametrize("name", MODELS)
def test_causal_backbones_never_look_ahead(name: str, backbone: str) -> None:
    model = make(name, backbone).eval()
    x = seqs()
    changed = x.clone()
    changed[:, -1] = torch.tensor([9, 0, 4])
    changed[2, -2] = 1
    with torch.no_grad():
        before, after = model.hidden(x), model.hidden(changed)
    torch.testing.assert_close(before[:, :-2], after[:, :-2])
    torch.testing.assert_close(before[:2, -2], after[:2, -2])
    assert not torch.allclose(before[0, -1], after[0, -1])


@pytest.mark.parametrize("name", MODELS)
def test_bert4rec_backbone_has_mask_token_and_trains_with_cloze(name: str) -> None:
    model = make(name, "bert4rec")
    assert model.mask_token_id == N_ITEMS + 1
    assert model.scorer.bias is not None  # BERT4Rec's output head, as the baseline
    x = seqs()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.user_repr(x), model.hidden(model.append_mask(x))[:, -1])
        mask_vec = model.items.embed(torch.tensor(N_ITEMS + 1))
    assert mask_vec.abs().sum() > 0
    model.train()
    torch.manual_seed(1)
    loss, _ = ClozeObjective(mask_ratio=0.5)(model, {"inputs": x})
    loss.backward()
    assert math.isfinite(loss.item())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.items.parameters())


def test_no_mask_token_without_bert4rec_backbone() -> None:
    assert not hasattr(make("sid_only", "sasrec"), "mask_token_id")


def next_item_step(model: SequentialModel) -> torch.Tensor:
    x = torch.tensor([[0, 3, 1, 5], [6, 9, 2, 4]])
    y = torch.tensor([[0, 1, 5, 7], [9, 2, 4, 10]])
    neg = torch.tensor([[[0], [8], [6], [2]], [[1], [3], [5], [6]]])
    model.train()
    loss, logs = NextItemObjective("bce")(model, {"inputs": x, "targets": y, "negatives": neg})
    loss.backward()
    assert math.isfinite(loss.item()) and int(logs["n_targets"]) == 7
    return loss


def test_gradients_reach_prefix_table() -> None:
    model = make("sid_only")
    next_item_step(model)
    grad = model.items.table.weight.grad
    assert grad is not None and grad[0].abs().sum() == 0
    used = np.unique(independent_prefix_rows(CODES)[1:])
    assert (grad[used].abs().sum(dim=1) > 0).all()  # every item occurs as input, target or negative


def test_gradients_reach_hid_code_tables_and_projection() -> None:
    model = make("hid_sid_concat")
    next_item_step(model)
    items = model.items
    for param in (items.hid.embedding.weight, items.sid.table.weight, items.proj.weight):
        assert param.grad is not None and param.grad.abs().sum() > 0
    assert items.sid.table.weight.grad[0].abs().sum() == 0
    assert items.hid.embedding.weight.grad[0].abs().sum() == 0


# -- configs and errors ----------------------------------------------------------------------------
def test_registered_with_backbone_defaults_from_baselines() -> None:
    assert set(MODELS) <= set(list_models())
    for name in MODELS:
        sas = parse_model_config(name, {})
        assert (sas.backbone, sas.hidden_size, sas.n_layers, sas.n_heads) == ("sasrec", 64, 2, 1)
        assert sas.scale_embeddings is True and sas.sids == "rqvae-4x128"
        assert (sas.dropout, sas.max_len, sas.inner_size) == (0.2, 50, None)
        gru = parse_model_config(name, {"backbone": "gru4rec", "d": 32})
        assert (gru.hidden_size, gru.n_layers, gru.scale_embeddings) == (32, 1, False)
        bert = parse_model_config(name, {"backbone": "bert4rec"})
        assert (bert.n_heads, bert.activation, bert.output_bias) == (2, "gelu", True)
        override = parse_model_config(name, {"backbone": "gru4rec", "scale_embeddings": True})
        assert override.scale_embeddings is True
        # a filled-in config validates to itself (saved configs rebuild the same model)
        assert parse_model_config(name, bert.model_dump()) == bert
    assert make("sid_only", "sasrec").scale_embeddings is True
    assert make("sid_only", "gru4rec").scale_embeddings is False


def test_clear_errors() -> None:
    for name in MODELS:
        with pytest.raises(ConfigError, match=rf"'{name}' needs codes"):
            build_model(name, N_ITEMS)
        with pytest.raises(ConfigError, match="hiddne"):
            make(name, hiddne=3)
        with pytest.raises(ConfigError, match="divisible"):
            make(name, hidden_size=9)
    with pytest.raises(ConfigError, match="text_embeddings"):
        make("hid_sid_concat", hid_init="pca")
    with pytest.raises(ConfigError, match="only used with hid_init"):
        make("hid_sid_concat", text_embeddings="t")
    with pytest.raises(ConfigError, match="'hid_sid_concat' needs text_vectors"):
        make("hid_sid_concat", hid_init="pca", text_embeddings="t")
    with pytest.raises(ConfigError, match="prefix"):
        make("hid_sid_concat", prefix=False)
