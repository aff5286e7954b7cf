"""LLM-ESR (`llm_esr`): dual-view items, cross-attention, shared encoder, retrieval-augmented
self-distillation. Values are checked against hand computations with plain torch/numpy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from h2rec.config import apply_overrides, read_yaml, validate
from h2rec.data.dataset import TRAIN
from h2rec.errors import ConfigError
from h2rec.evaluation.evaluator import EvalResult
from h2rec.models import NextItemObjective, build_model, list_models, parse_model_config
from h2rec.models.inputs import ModelInputs
from h2rec.models.llm_esr import (  # importing the module registers "llm_esr"
    LLMESR,
    CrossViewAttention,
    similar_users,
    teacher_windows,
    user_text_vectors,
)
from h2rec.models.parts.pca import pca_item_vectors
from h2rec.training import TrainConfig, Trainer
from h2rec.training.inputs import load_model_inputs

N_ITEMS, DIM, D = 12, 6, 4
TEXT = np.random.default_rng(0).normal(size=(N_ITEMS + 1, DIM)).astype(np.float32)
TEXT[0] = 0.0
# Training sequences per internal user id (user 0 = padding; user 4 has a single training item,
# so it neither trains nor can be a neighbour: its teacher sequence would be empty).
TRAIN_SEQS = [[], [1, 2, 3], [2, 3, 4, 5], [5, 6], [7], [1, 3, 5, 7, 9], [10, 11, 12, 1], [4, 2]]
TRAINERS = [u for u, s in enumerate(TRAIN_SEQS) if len(s) >= 2]
BACKBONES = ["sasrec", "gru4rec", "bert4rec"]
SMALL = {"hidden_size": D, "n_layers": 1, "max_len": 6, "dropout": 0.0, "sim_users": 2}


def train_csr() -> tuple[np.ndarray, np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in TRAIN_SEQS])]).astype(np.int64)
    return offsets, np.array([i for s in TRAIN_SEQS for i in s], dtype=np.int64)


def inputs(with_train: bool = True) -> ModelInputs:
    offsets, items = train_csr()
    if not with_train:
        return ModelInputs(text_vectors=TEXT.copy())
    return ModelInputs(text_vectors=TEXT.copy(), train_offsets=offsets, train_items=items)


def make(backbone: str = "sasrec", data: ModelInputs | None = None, **cfg: object) -> LLMESR:
    torch.manual_seed(0)
    model = build_model(
        "llm_esr", N_ITEMS, inputs=data or inputs(), backbone=backbone, **{**SMALL, **cfg}
    )
    assert isinstance(model, LLMESR)
    return model.eval()


def seqs() -> torch.Tensor:
    return torch.tensor([[0, 0, 3, 1, 5, 7], [0, 0, 0, 0, 2, 4], [2, 4, 6, 8, 9, 10]])


def adapter_by_hand(model: LLMESR) -> torch.Tensor:
    """W2 (W1 x + b1) + b2 for every item's text vector, padding row zero: `[n_items + 1, d]`."""
    first, second = model.adapter[0], model.adapter[1]
    x = torch.from_numpy(TEXT)
    out = (x @ first.weight.T + first.bias) @ second.weight.T + second.bias
    out[0] = 0.0
    return out


# -- registration and config -------------------------------------------------------------------
def test_registered_with_llm_esr_defaults() -> None:
    assert "llm_esr" in list_models()
    assert LLMESR.default_loss == "bce"
    cfg = parse_model_config("llm_esr", {})
    assert (cfg.hidden_size, cfg.layers, cfg.n_heads, cfg.max_len) == (64, 2, 1, 50)
    assert (cfg.cross_attention, cfg.cross_heads, cfg.sim_users, cfg.alpha) == (True, 2, 10, 0.1)
    assert cfg.sd_neighbours is None and cfg.text_embeddings == "st-all-minilm-l6-v2"
    assert parse_model_config("llm_esr", {"backbone": "gru4rec"}).layers == 1
    with pytest.raises(ConfigError, match="sd_neighbours"):
        parse_model_config("llm_esr", {"sim_users": 3, "sd_neighbours": 4})
    with pytest.raises(ConfigError, match="cross_heads"):
        parse_model_config("llm_esr", {"hidden_size": 6, "cross_heads": 4})
    with pytest.raises(ConfigError):
        parse_model_config("llm_esr", {"hid_init": "pca"})  # unknown keys are errors


def test_needs_text_vectors_and_training_sequences_only_for_distillation() -> None:
    with pytest.raises(ConfigError, match="text_vectors"):
        build_model("llm_esr", N_ITEMS, inputs=ModelInputs(), **SMALL)
    with pytest.raises(ConfigError, match="train_offsets"):
        make(data=inputs(with_train=False))
    make(data=inputs(with_train=False), alpha=0.0)  # no distillation: no sequences needed


# -- shapes and scoring ------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", BACKBONES)
def test_shapes_and_scores_on_every_backbone(backbone: str) -> None:
    model = make(backbone)
    x = seqs()
    with torch.no_grad():
        hidden = model.hidden(x)
        scores = model.score(x)
        weights = model.item_weights()
        cand = torch.tensor([[1, 5, 0], [12, 2, 3], [7, 7, 4]])
        some = model.score(x, cand)
    assert hidden.shape == (3, 6, 2 * D)
    assert weights.shape == (N_ITEMS + 1, 2 * D)
    assert scores.shape == (3, N_ITEMS + 1) and torch.isinf(scores[:, 0]).all()
    full = model.score_all(model.user_repr(x).detach())
    expected = full.gather(1, cand).masked_fill(cand == 0, -math.inf)
    torch.testing.assert_close(some, expected)
    assert torch.isfinite(scores[:, 1:]).all()
    if backbone == "bert4rec":
        assert model.mask_token_id == N_ITEMS + 1
        assert model.ids.embedding.weight.shape[0] == N_ITEMS + 2
        assert model.text.shape[0] == N_ITEMS + 2 and not model.text[N_ITEMS + 1].any()
        appended = torch.cat([x[:, 1:], torch.full_like(x[:, :1], N_ITEMS + 1)], dim=1)
        with torch.no_grad():
            torch.testing.assert_close(model.user_repr(x), model.hidden(appended)[:, -1])
    else:
        assert model.mask_token_id is None
        with torch.no_grad():
            torch.testing.assert_close(model.user_repr(x), hidden[:, -1])


def test_adapter_shape_rule_and_semantic_table_by_hand() -> None:
    model = make()
    assert (model.adapter[0].in_features, model.adapter[0].out_features) == (DIM, DIM // 2)
    assert (model.adapter[1].in_features, model.adapter[1].out_features) == (DIM // 2, D)
    assert len(model.adapter) == 2  # two linear maps, no nonlinearity (LLM-ESR's adapter)
    assert make(adapter_hidden=5).adapter[0].out_features == 5
    with torch.no_grad():
        torch.testing.assert_close(model.semantic_table(), adapter_by_hand(model))
    assert not any(p.requires_grad for p in model.buffers())  # text vectors are frozen data
    assert "text" not in model.state_dict()


def test_composed_adapter_gives_the_two_layer_gradients() -> None:
    """The semantic table is computed through the composed map (W2 W1, W2 b1 + b2); the
    parameters must get the gradients of the layer-by-layer formula (float64 autograd)."""
    model = make().train()
    weights = torch.randn(N_ITEMS + 1, D, dtype=torch.float64)  # an arbitrary linear loss
    (model.semantic_table().double() * weights).sum().backward()
    params = [model.adapter[0].weight, model.adapter[0].bias]
    params += [model.adapter[1].weight, model.adapter[1].bias]
    ref = [p.detach().double().requires_grad_() for p in params]
    x = torch.from_numpy(TEXT).double()
    out = (x @ ref[0].T + ref[1]) @ ref[2].T + ref[3]
    out = out * (torch.arange(N_ITEMS + 1) > 0).double().unsqueeze(-1)  # padding row is zero
    (out * weights).sum().backward()
    for p, r in zip(params, ref, strict=True):
        assert p.grad is not None and r.grad is not None
        torch.testing.assert_close(p.grad.double(), r.grad, rtol=1e-5, atol=1e-6)


def test_collaborative_table_starts_at_pca_of_text() -> None:
    model = make()
    pca = torch.from_numpy(pca_item_vectors(TEXT, D))
    torch.testing.assert_close(model.ids.weight_for_scoring()[1:], pca[1:])
    assert not model.ids.weight_for_scoring()[0].any()
    random = make(id_init="random").ids.weight_for_scoring()[1:]
    assert not torch.allclose(random, pca[1:])


def test_scores_are_dot_products_with_concatenated_item_vectors() -> None:
    model = make()
    x = seqs()
    with torch.no_grad():
        user = model.user_repr(x)
        items = torch.cat([model.ids.weight_for_scoring(), adapter_by_hand(model)], dim=1)
        torch.testing.assert_close(model.score(x)[:, 1:], (user @ items.T)[:, 1:])
        torch.testing.assert_close(model.item_weights(), items)


def test_eval_cache_follows_parameter_changes() -> None:
    model = make()
    x = seqs()
    with torch.no_grad():
        before = model.score(x)
        model.adapter[1].bias.add_(1.0)
        after = model.score(x)
        torch.testing.assert_close(model.semantic_table(), adapter_by_hand(model))
    assert not torch.allclose(before[:, 1:], after[:, 1:])


# -- cross-attention ---------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [True, False])
def test_cross_view_attention_by_hand(causal: bool) -> None:
    torch.manual_seed(1)
    att = CrossViewAttention(4, 2, causal=causal)
    q, kv = torch.randn(1, 4, 4), torch.randn(1, 4, 4)
    mask = torch.tensor([[False, True, True, True]])
    out = att(q, kv, mask)
    qs, ks, vs = att.q.weight @ q[0].T, att.k.weight @ kv[0].T, att.v.weight @ kv[0].T  # [4, L]
    expected = torch.zeros(4, 4)
    for t in range(1, 4):
        heads = []
        for h in range(2):
            rows = slice(2 * h, 2 * h + 2)
            keys = [s for s in range(1, 4) if s <= t or not causal]
            logits = torch.stack([qs[rows, t] @ ks[rows, s] for s in keys]) / math.sqrt(2)
            weights = torch.softmax(logits, dim=0)
            heads.append(sum(w * vs[rows, s] for w, s in zip(weights, keys, strict=True)))
        expected[t] = att.out.weight @ torch.cat(heads) + att.out.bias
    torch.testing.assert_close(out[0], expected)
    assert att.q.bias is None and att.k.bias is None and att.v.bias is None


def test_cross_attention_false_removes_it() -> None:
    with_cross, without = make(), make(cross_attention=False)
    assert without.cross_co is None and without.cross_se is None
    assert not any("cross" in name for name, _ in without.named_parameters())
    n_with = sum(p.numel() for p in with_cross.parameters())
    n_without = sum(p.numel() for p in without.parameters())
    assert n_with - n_without == 2 * (4 * D * D + D)  # Q, K, V (no bias) and output (bias)
    x = seqs()
    mask = x != 0
    with torch.no_grad():
        e_co = without.ids.embed(x) * math.sqrt(D)
        e_se = adapter_by_hand(without)[x] * math.sqrt(D)
        both = without.encoder(torch.cat([e_co, e_se]), torch.cat([mask, mask]))
        expected = torch.cat([both[:3], both[3:]], dim=-1)
        torch.testing.assert_close(without.hidden(x), expected)
        with_cross.load_state_dict(without.state_dict(), strict=False)
        assert not torch.allclose(with_cross.hidden(x), expected)


# -- causality ---------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec"])
def test_causal_backbones_never_see_later_items(backbone: str) -> None:
    model = make(backbone)
    a = torch.tensor([[0, 3, 1, 5, 7, 9]])
    b = a.clone()
    b[0, 4:] = torch.tensor([11, 2])
    with torch.no_grad():
        ha, hb = model.hidden(a), model.hidden(b)
    torch.testing.assert_close(ha[:, :4], hb[:, :4])
    assert not torch.allclose(ha[:, 4:], hb[:, 4:])


@pytest.mark.parametrize("backbone,extra", [("sasrec", {"causal": False}), ("bert4rec", {})])
def test_bidirectional_variants_do_see_later_items(backbone: str, extra: dict) -> None:
    model = make(backbone, **extra)
    a = torch.tensor([[0, 3, 1, 5, 7, 9]])
    b = a.clone()
    b[0, 5] = 11
    with torch.no_grad():
        assert not torch.allclose(model.hidden(a)[:, :5], model.hidden(b)[:, :5])


# -- retrieval ---------------------------------------------------------------------------------
def test_user_text_vectors_and_teacher_windows_use_training_items() -> None:
    offsets, items = train_csr()
    vectors = user_text_vectors(offsets, items, TEXT)
    for u, s in enumerate(TRAIN_SEQS):
        expected = TEXT[s].mean(axis=0) if s else np.zeros(DIM)
        np.testing.assert_allclose(vectors[u], expected, rtol=1e-5, atol=1e-6)
    windows = teacher_windows(offsets, items, 3)
    for u, s in enumerate(TRAIN_SEQS):
        body = s[:-1][-3:]  # the user's own last training input: all but the last item
        assert windows[u].tolist() == [0] * (3 - len(body)) + body


def test_similar_users_match_brute_force_cosine() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(40, 8)).astype(np.float32)
    vectors[0] = 0.0
    queries = np.arange(1, 40)
    candidates = np.arange(1, 35)  # users 35..39 are queries but no candidates
    found = similar_users(vectors, queries, candidates, 5, block=7)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    for row, q in zip(found, queries, strict=True):
        sims = unit[candidates] @ unit[q]
        ranked = [int(c) for c in candidates[np.argsort(-sims, kind="stable")] if c != q]
        assert row.tolist() == ranked[:5]
    few = similar_users(vectors, np.array([1, 2]), np.array([1, 2, 3]), 5)
    assert (few[:, 2:] == 0).all() and set(few[0, :2]) == {2, 3}


def test_neighbour_table_of_the_model() -> None:
    model = make()
    offsets, items = train_csr()
    unit = user_text_vectors(offsets, items, TEXT).astype(np.float64)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    for u in range(len(TRAIN_SEQS)):
        row = model.neighbours[u].tolist()
        if u not in TRAINERS:
            assert row == [0, 0]
            continue
        others = [v for v in TRAINERS if v != u]
        ranked = sorted(others, key=lambda v: -float(unit[u] @ unit[v]))
        assert row == ranked[:2]


def test_sd_neighbours_draws_distinct_real_neighbours() -> None:
    model = make(sim_users=4, sd_neighbours=2)
    users = torch.tensor(TRAINERS * 20)
    torch.manual_seed(0)
    picked = model.sample_neighbours(users)
    assert picked.shape == (len(users), 2)
    for u, row in zip(users.tolist(), picked.tolist(), strict=True):
        assert row[0] != row[1] and set(row) <= set(model.neighbours[u].tolist()) - {0}
    # every one of a user's 4 neighbours is drawn at some point
    first = users == TRAINERS[0]
    assert set(picked[first].flatten().tolist()) == set(model.neighbours[TRAINERS[0]].tolist())


# -- self-distillation -------------------------------------------------------------------------
def teacher_by_hand(model: LLMESR, users: list[int]) -> torch.Tensor:
    """Mean last-slot user vector of each user's neighbours' sequences, each encoded alone."""
    rows = []
    for u in users:
        vecs = []
        for v in model.neighbours[u].tolist():
            body = TRAIN_SEQS[v][:-1][-model.max_len :]
            vecs.append(model.hidden(torch.tensor([body]))[0, -1])
        rows.append(torch.stack(vecs).mean(dim=0))
    return torch.stack(rows)


def test_distillation_loss_by_hand() -> None:
    model = make(alpha=0.5, sim_users=3)
    model.TEACHER_CHUNK = 2  # exercise the length buckets
    users = [1, 2, 5, 6]
    x = torch.tensor(
        [[0, 0, 0, 0, 1, 2], [0, 0, 0, 2, 3, 4], [0, 1, 3, 5, 7, 9], [0, 0, 0, 10, 11, 12]]
    )
    with torch.no_grad():
        hidden, state = model.forward_train(x)
        aux = model.auxiliary_losses(state, x, torch.zeros_like(x), torch.tensor(users))
        expected = 0.5 * ((hidden[:, -1] - teacher_by_hand(model, users)) ** 2).mean()
    assert set(aux) == {"loss_sd"}
    torch.testing.assert_close(aux["loss_sd"], expected)


def test_teacher_is_gradient_free() -> None:
    model = make(alpha=0.1)
    users = torch.tensor([1, 3, 7])
    x = torch.tensor([[0, 0, 0, 0, 1, 2], [0, 0, 0, 0, 0, 5], [0, 0, 0, 0, 0, 4]])
    params = [p for p in model.parameters() if p.requires_grad]
    hidden, state = model.forward_train(x)
    loss = model.auxiliary_losses(state, x, torch.zeros_like(x), users)["loss_sd"]
    got = torch.autograd.grad(loss, params, allow_unused=True)
    with torch.no_grad():
        teacher = teacher_by_hand(model, users.tolist())
    hidden, _ = model.forward_train(x)
    want = torch.autograd.grad(0.1 * F.mse_loss(hidden[:, -1], teacher), params, allow_unused=True)
    for g, w in zip(got, want, strict=True):
        if w is None:
            assert g is None or not g.any()
        else:
            torch.testing.assert_close(g, w)


def test_alpha_zero_removes_distillation() -> None:
    model = make(alpha=0.0)
    assert not hasattr(model, "neighbours") and not hasattr(model, "windows")
    x = seqs()
    _, state = model.forward_train(x)
    assert model.auxiliary_losses(state, x, torch.zeros_like(x), torch.tensor([1, 2, 3])) == {}
    with pytest.raises(ValueError, match="users"):
        make().auxiliary_losses(state, x, torch.zeros_like(x), None)


def test_objective_adds_weighted_distillation_to_bce_by_hand() -> None:
    model = make(alpha=0.1)  # eval mode: no dropout, so the hand computation sees the same net
    x = torch.tensor([[0, 0, 0, 0, 1, 2], [0, 0, 0, 2, 3, 4]])
    y = torch.tensor([[0, 0, 0, 0, 2, 3], [0, 0, 0, 3, 4, 5]])
    neg = torch.tensor([[[0], [0], [0], [0], [9], [8]], [[0], [0], [0], [7], [6], [1]]])
    loss, logs = NextItemObjective("bce")(
        model, {"inputs": x, "targets": y, "negatives": neg, "users": torch.tensor([1, 2])}
    )
    with torch.no_grad():
        u = model.hidden(x)
        table = torch.cat([model.ids.weight_for_scoring(), adapter_by_hand(model)], dim=1)
        rows, cols = torch.nonzero(y, as_tuple=True)
        pos = (u[rows, cols] * table[y[rows, cols]]).sum(-1)
        negs = (u[rows, cols] * table[neg[rows, cols, 0]]).sum(-1)
        # LLM-ESR's per-position BCE with one negative: -log s(pos) - log(1 - s(neg)), averaged
        bce = (-F.logsigmoid(pos) - F.logsigmoid(-negs)).mean()
    torch.testing.assert_close(logs["loss_rec"], bce)
    torch.testing.assert_close(loss.detach(), bce + logs["loss_sd"])
    assert logs["loss_sd"] > 0
    loss.backward()
    assert model.adapter[0].weight.grad is not None and model.ids.embedding.weight.grad is not None


# -- data and training -------------------------------------------------------------------------
def test_only_training_split_items_reach_the_model(synth_sid_dataset) -> None:
    ds = synth_sid_dataset
    params = {"text_embeddings": "tfidf", **SMALL, "max_len": 50}
    model = build_model(
        "llm_esr", ds.n_items, inputs=load_model_inputs(ds, "llm_esr", params), **params
    )
    train = ds.inter_split == TRAIN
    for u in [1, 2, 3, 500, ds.n_users]:
        seq = ds.inter_item[(ds.inter_user == u) & train].tolist()  # stored in time order
        window = [i for i in model.windows[u].tolist() if i]
        assert window == seq[:-1][-50:]  # validation/test items never enter a teacher


def _run(tmp_path, ds, name: str, model: str, *overrides: str) -> tuple[Trainer, EvalResult]:
    raw = apply_overrides(
        read_yaml("train/llm-esr-synth"),
        [
            f"name={name}",
            f"data={ds.path}",
            f"runs_dir={tmp_path}",
            f"model={model}",
            "eval.test_protocols=[full]",
            "batch_size=128",
            "max_len=20",
            "epochs=8",
            "eval.patience=8",
            "seed=0",
            *overrides,
        ],
    )
    if not overrides:
        raw["objective"].pop("loss")  # the model's own default loss decides
    trainer = Trainer(validate(TrainConfig, raw), ds)
    return trainer, trainer.fit()["results"]["full"]


def test_training_beats_mostpop_and_sasrec_on_tail(tmp_path, synth_sid_dataset) -> None:
    model = "{name: llm_esr, hidden_size: 32, dropout: 0.2, text_embeddings: tfidf}"
    trainer, esr = _run(tmp_path, synth_sid_dataset, "llm-esr", model)
    assert trainer.cfg.objective.loss == "bce"  # LLM-ESR's default, used when none is named
    lines = (tmp_path / "llm-esr" / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line)["loss_sd"] > 0 for line in lines)  # the distillation ran
    _, pop = _run(tmp_path, synth_sid_dataset, "mostpop", "{name: mostpop}")
    sas_model = "{name: sasrec, hidden_size: 32, dropout: 0.2}"
    _, sas = _run(tmp_path, synth_sid_dataset, "sasrec", sas_model, "objective.loss=bce")
    # Measured (8 epochs, seed 0): NDCG@10 0.217 vs MostPop 0.083; tail NDCG@10 0.130 vs 0.069
    # for SASRec with the same loss and budget (the paper's long-tail claim, on informative text).
    ndcg, pop_ndcg = esr.overall["NDCG@10"], pop.overall["NDCG@10"]
    assert ndcg > 2.0 * pop_ndcg, (ndcg, pop_ndcg)
    tail, sas_tail = (r.groups["tail"].metrics["NDCG@10"] for r in (esr, sas))
    assert tail > 1.3 * sas_tail, (tail, sas_tail)
