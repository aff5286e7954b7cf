"""CCFRec (`ccfrec`): codes read frozen text through a Q-Former; cosine/tau scoring; L_MCM and
L_MSA. Values are checked against hand computations in plain torch/numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from h2rec.config import apply_overrides, read_yaml, validate
from h2rec.errors import ConfigError
from h2rec.models import NextItemObjective, build_model, list_models, parse_model_config
from h2rec.models.ccfrec import (
    CCFRec,
    QFormerLayer,
    masked_code_loss,
    masked_sequence_alignment,
    whitened_pca,
)
from h2rec.models.inputs import ModelInputs

# 10 items, 3 levels of 4 codes; items 1 and 2 collide (same codes, different text)
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
        [2, 3, 3],
        [3, 0, 3],
        [1, 1, 0],
    ]
)
N_ITEMS = CODES.shape[0] - 1
D = 8
SMALL = {"hidden_size": D, "n_heads": 2, "max_len": 6, "text_fields": 2}


def text_vectors(width: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(N_ITEMS + 1, width)) * np.linspace(3.0, 0.5, width)
    text[0] = 0.0
    return text.astype(np.float32)


def make(inputs: ModelInputs | None = None, **cfg: object) -> CCFRec:
    torch.manual_seed(0)
    inputs = inputs or ModelInputs(codes=CODES.copy(), text_vectors=text_vectors())
    model = build_model("ccfrec", N_ITEMS, inputs=inputs, **{**SMALL, **cfg})
    assert isinstance(model, CCFRec)
    return model


def seqs() -> torch.Tensor:
    return torch.tensor([[0, 0, 3, 1, 5, 7], [0, 0, 0, 0, 2, 2], [2, 4, 6, 8, 9, 10]])


def batch() -> dict[str, torch.Tensor]:
    x = torch.tensor([[0, 3, 1, 5], [6, 9, 2, 4], [0, 0, 7, 8]])
    y = torch.tensor([[0, 1, 5, 7], [9, 2, 4, 10], [0, 0, 8, 1]])
    neg = torch.tensor([[[0], [8], [6], [2]], [[1], [3], [5], [6]], [[0], [0], [2], [3]]])
    return {"inputs": x, "targets": y, "negatives": neg}


# -- config ----------------------------------------------------------------------------------------
def test_registered_with_the_papers_defaults() -> None:
    assert "ccfrec" in list_models()
    cfg = parse_model_config("ccfrec", {})
    assert (cfg.sids, cfg.text_embeddings) == ("rqvae-4x128", "st-all-minilm-l6-v2")
    assert (cfg.backbone, cfg.hidden_size, cfg.n_layers, cfg.n_heads) == ("sasrec", 64, 2, 2)
    assert (cfg.cross_layers, cfg.dropout, cfg.cross_dropout, cfg.tau) == (2, 0.3, 0.3, 0.07)
    assert (cfg.lambda_mlm, cfg.lambda_cl, cfg.mask_ratio) == (0.4, 0.4, 0.5)
    assert (cfg.mask_token_prob, cfg.random_token_prob, cfg.mcm_scope) == (0.8, 0.1, "all")
    assert (cfg.text_fields, cfg.text_tokens, cfg.inner_size) == (4, "linear", None)
    assert parse_model_config("ccfrec", cfg.model_dump()) == cfg
    assert CCFRec.default_loss == "ce"
    model = make()
    assert model.encoder.blocks[0].ffn.fc1.out_features == 4 * D  # CCFRec's FFN: 4d
    # no item-ID table anywhere: every parameter is a code, text-map, Q-Former or encoder weight
    assert {name.split(".")[0] for name, _ in model.named_parameters()} == {
        "code_table",
        "text",
        "qformer",
        "encoder",
    }
    assert model.code_table.weight.shape == (1 + 3 * 4, D)


def test_clear_errors() -> None:
    with pytest.raises(ConfigError, match="'ccfrec' needs codes, text_vectors"):
        build_model("ccfrec", N_ITEMS)
    with pytest.raises(ConfigError, match="'ccfrec' needs text_vectors"):
        build_model("ccfrec", N_ITEMS, inputs=ModelInputs(codes=CODES.copy()))
    with pytest.raises(ConfigError, match="divisible"):
        make(hidden_size=9)
    with pytest.raises(ConfigError, match="<= 1"):
        make(mask_token_prob=0.95, random_token_prob=0.1)
    with pytest.raises(ConfigError, match="hiddne"):
        make(hiddne=3)
    # 24-d text over 10 items has at most 9 principal axes: 2 chunks of 8 do not fit
    with pytest.raises(ConfigError, match="principal axes"):
        make(text_tokens="chunks")


# -- item side -----------------------------------------------------------------------------------
def test_code_rows_use_one_table_with_level_offsets_and_mask_row() -> None:
    model = make()
    rows = model.code_rows.numpy()
    np.testing.assert_array_equal(rows[1:], CODES[1:] + np.array([1, 5, 9]))
    np.testing.assert_array_equal(rows[0], [0, 0, 0])  # padding -> [MASK] row, never attended
    np.testing.assert_array_equal(model.row_level.numpy(), [-1] + [0] * 4 + [1] * 4 + [2] * 4)


def test_whitened_pca_matches_an_independent_eigendecomposition() -> None:
    text = text_vectors()
    x = text[1:].astype(np.float64)
    values, vectors = np.linalg.eigh(np.cov(x, rowvar=False))
    order = np.argsort(values)[::-1][:4]
    expected = (x - x.mean(0)) @ vectors[:, order] / np.sqrt(values[order])  # unit variance
    got = whitened_pca(text, 4)
    assert got.shape == (N_ITEMS + 1, 4) and got.dtype == np.float32 and not got[0].any()
    for j in range(4):
        sign = np.sign(got[1:, j] @ expected[:, j])
        np.testing.assert_allclose(got[1:, j], sign * expected[:, j], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got[1:].std(0, ddof=1), 1.0, rtol=1e-5)
    # 10 items -> 9 axes: the rest stays zero instead of blowing noise up
    wide = whitened_pca(text, 12)
    assert not wide[:, 9:].any()


def test_chunk_tokens_are_consecutive_whitened_components() -> None:
    text = text_vectors(width=24)
    model = make(ModelInputs(codes=CODES.copy(), text_vectors=text), hidden_size=4,
                 text_tokens="chunks")  # fmt: skip
    tokens = model.text(torch.arange(N_ITEMS + 1))
    assert tokens.shape == (N_ITEMS + 1, 2, 4)
    white = torch.from_numpy(whitened_pca(text, 8))
    torch.testing.assert_close(tokens[:, 0], white[:, :4])
    torch.testing.assert_close(tokens[:, 1], white[:, 4:])
    assert list(model.text.parameters()) == []  # frozen, as CCFRec's field embeddings


def test_linear_tokens_are_learned_rotations_of_the_frozen_whitened_text() -> None:
    model = make()
    white = torch.from_numpy(whitened_pca(text_vectors(), D))
    weight = model.text.proj.weight.detach()
    tokens = model.text(torch.arange(N_ITEMS + 1)).detach()
    for m in range(2):
        block = weight[m * D : (m + 1) * D]
        torch.testing.assert_close(block @ block.T, torch.eye(D), atol=1e-5, rtol=0)
        torch.testing.assert_close(tokens[:, m], white @ block.T)
    assert not torch.allclose(tokens[:, 0], tokens[:, 1])
    # the text is data: not trainable and not saved
    assert not model.text.text.requires_grad
    assert all(not k.startswith("text.text") for k in model.state_dict())


def _layer_by_hand(layer: QFormerLayer, q: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    def lin(mod: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
        return x @ mod.weight.T + mod.bias

    def norm(mod: torch.nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-12) * mod.weight + mod.bias

    def attend(attn, query: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
        n, g, d = query.shape
        h = attn.n_heads
        qh = lin(attn.q_proj, query).view(n, g, h, d // h)
        kh = lin(attn.k_proj, kv).view(n, kv.shape[1], h, d // h)
        vh = lin(attn.v_proj, kv).view(n, kv.shape[1], h, d // h)
        weights = torch.softmax(torch.einsum("nghe,nmhe->nhgm", qh, kh) / math.sqrt(d // h), -1)
        return lin(attn.out_proj, torch.einsum("nhgm,nmhe->nghe", weights, vh).reshape(n, g, d))

    x = norm(layer.self_norm, q + attend(layer.self_attn, q, q))
    x = norm(layer.cross_norm, x + attend(layer.cross_attn, x, text))
    ffn = lin(layer.fc2, F.gelu(lin(layer.fc1, x)))
    return norm(layer.ffn_norm, x + ffn)


def test_qformer_layer_matches_a_hand_computation() -> None:
    torch.manual_seed(3)
    layer = QFormerLayer(D, 2, dropout=0.3, inner=4 * D).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    q, text = torch.randn(5, 3, D), torch.randn(5, 4, D)
    with torch.no_grad():
        torch.testing.assert_close(layer(q, text), _layer_by_hand(layer, q, text))
        # one text token: the cross-attention weight is 1, so queries cannot tell tokens apart
        one = torch.randn(5, 1, D)
        torch.testing.assert_close(layer(q, one), _layer_by_hand(layer, q, one))


def test_input_and_output_item_vectors() -> None:
    model = make().eval()
    ids = torch.arange(1, N_ITEMS + 1)
    with torch.no_grad():
        h, queries = model.encode_items(ids)
        inputs, outputs = model.item_tables()
        x = model.input_vectors(torch.arange(N_ITEMS + 1).view(1, -1))[0]
    rows = torch.from_numpy(CODES[1:] + np.array([1, 5, 9]))
    torch.testing.assert_close(queries, model.code_table.weight.detach()[rows])
    torch.testing.assert_close(inputs[1:], h.mean(1))  # x_i: mean of the query outputs
    expected = F.normalize(h.mean(1) + queries.mean(1), dim=-1)  # e_i: + mean code embedding
    torch.testing.assert_close(outputs[1:], expected)
    assert not inputs[0].any() and not outputs[0].any()
    torch.testing.assert_close(x, inputs)
    with torch.no_grad():
        torch.testing.assert_close(
            model.output_vectors(torch.tensor([0, 4, 2])), outputs[[0, 4, 2]]
        )
    # colliding codes (items 1, 2) still get different vectors through their text
    assert not torch.allclose(outputs[1], outputs[2])


# -- scoring and the sequence encoder ------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec"])
def test_scores_are_cosine_over_tau(backbone: str) -> None:
    model = make(backbone=backbone, tau=0.5).eval()
    x = seqs()
    with torch.no_grad():
        full = model.score(x)
        cands = torch.tensor([[5, 1, 9, 10], [2, 2, 0, 7], [10, 3, 1, 4]])
        some = model.score(x, cands)
        user = model.hidden(x)[:, -1].numpy().astype(np.float64)
        h, queries = model.encode_items(torch.arange(1, N_ITEMS + 1))
        items = (h.mean(1) + queries.mean(1)).numpy().astype(np.float64)
    assert full.shape == (3, N_ITEMS + 1) and full.dtype == torch.float32
    assert torch.isneginf(full[:, 0]).all() and torch.isfinite(full[:, 1:]).all()
    cos = (user / np.linalg.norm(user, axis=1, keepdims=True)) @ (
        items / np.linalg.norm(items, axis=1, keepdims=True)
    ).T
    np.testing.assert_allclose(full[:, 1:].numpy(), cos / 0.5, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(some, full.gather(1, cands))
    assert model.item_weights().shape == (N_ITEMS + 1, D)


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec"])
def test_causal_backbones_never_look_ahead(backbone: str) -> None:
    model = make(backbone=backbone).eval()
    x = seqs()
    changed = x.clone()
    changed[:, -1] = torch.tensor([9, 3, 4])
    changed[2, -2] = 1
    with torch.no_grad():
        before, after = model.hidden(x), model.hidden(changed)
    torch.testing.assert_close(before[:, :-2], after[:, :-2])
    torch.testing.assert_close(before[:2, -2], after[:2, -2])
    assert not torch.allclose(before[0, -1], after[0, -1])


def test_eval_cache_equals_the_uncached_path_and_follows_parameter_updates() -> None:
    model = make().eval()
    x = seqs()
    with torch.no_grad():
        cached = model.score(x)
        table = model.item_weights()
        assert model.item_weights() is table  # computed once
    uncached = model.score(x).detach()  # grad enabled: per-slot Q-Former, fresh table
    torch.testing.assert_close(cached, uncached)
    with torch.no_grad():
        model.qformer[0].fc1.weight.mul_(1.5)  # an in-place update, as an optimiser step
        refreshed = model.score(x)
    assert model.item_weights() is not table
    torch.testing.assert_close(refreshed, model.score(x).detach())
    assert not torch.allclose(refreshed, cached)
    model.train()
    assert model._cache.empty


def test_cache_built_under_autocast_serves_float32_outside_it() -> None:
    model = make().eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        inside = model.score(seqs())
        inputs, outputs = model.item_tables()
    assert inputs.dtype == outputs.dtype == torch.float32
    with torch.no_grad():
        outside = model.score(seqs())  # reuses the table: no dtype clash in the encoder
        assert model.item_tables()[1] is outputs
    torch.testing.assert_close(outside, inside, atol=0.2, rtol=0.05)


def test_empty_and_single_histories_train_and_score() -> None:
    model = make().train()
    x = torch.tensor([[0, 0, 3], [0, 0, 0]])
    y = torch.tensor([[0, 0, 4], [0, 0, 0]])
    loss, logs = NextItemObjective("ce")(model, {"inputs": x, "targets": y})
    loss.backward()
    assert math.isfinite(loss.item()) and logs["loss_msa"].item() == 0.0  # needs 2 users
    loss, _ = NextItemObjective("ce")(model, {"inputs": x[1:], "targets": y[1:]})
    assert loss.item() == 0.0
    model.eval()
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            scores = model.score(torch.zeros(2, 3, dtype=torch.long))
        assert torch.isfinite(scores[:, 1:]).all()


def test_score_items_encodes_only_the_needed_items() -> None:
    model = make().eval()  # grad enabled: the uncached path of sampled losses
    user = torch.randn(3, D)
    items = torch.tensor([[4, 4, 1], [0, 2, 9], [10, 3, 3]])
    got = model.score_items(user, items)
    with torch.no_grad():
        full = model.score_all(user)
    torch.testing.assert_close(got.detach(), full.gather(1, items))


# -- masking and the auxiliary losses ------------------------------------------------------------
@pytest.mark.parametrize("scope", ["all", "level"])
def test_code_masking_follows_80_10_10(scope: str) -> None:
    model = make(mcm_scope=scope)
    ids = torch.randint(1, N_ITEMS + 1, (20000,), generator=torch.Generator().manual_seed(0))
    rows = model.code_rows[ids]
    torch.manual_seed(1)
    corrupted, labels = model.mask_codes(rows)
    chosen = labels >= 0
    assert chosen.float().mean().item() == pytest.approx(0.5, abs=0.01)
    torch.testing.assert_close(labels[chosen], rows[chosen])
    assert torch.equal(corrupted[~chosen], rows[~chosen])  # unchosen codes are untouched
    n = chosen.sum().item()
    masked = (corrupted == 0) & chosen
    changed = (corrupted != rows) & (corrupted != 0)
    assert masked.sum().item() / n == pytest.approx(0.8, abs=0.01)
    # random codes equal the original 1/K of the time (K = 12 rows for "all", 4 per level)
    hit = 1 / 12 if scope == "all" else 1 / 4
    assert changed.sum().item() / n == pytest.approx(0.1 * (1 - hit), abs=0.01)
    assert (corrupted[~masked] >= 1).all() and (corrupted <= 12).all()
    level = model.row_level[corrupted[changed]]
    own = torch.arange(3).expand_as(rows)[changed]
    if scope == "level":
        assert torch.equal(level, own)
    else:  # the original draws from every level
        assert (level != own).float().mean().item() == pytest.approx(2 / 3, abs=0.05)


def test_masked_code_loss_by_hand() -> None:
    h = np.array([[1.0, 0.0], [0.6, 0.8], [-1.0, 2.0]])
    table = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, -3.0]])
    labels = np.array([0, 2, 1])
    tau = 0.5
    logits = (
        (h / np.linalg.norm(h, axis=1, keepdims=True))
        @ (table / np.linalg.norm(table, axis=1, keepdims=True)).T
        / tau
    )

    def ce(z: np.ndarray) -> float:
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(3), labels].mean())

    t = torch.tensor
    got = masked_code_loss(t(h).float(), t(table).float(), t(labels), tau)
    assert got.item() == pytest.approx(ce(logits), rel=1e-5)
    # per-level candidates: rows 0-1 are level 0, rows 2-3 level 1
    table_level, label_level = np.array([0, 0, 1, 1]), np.array([0, 1, 0])
    restricted = np.where(table_level[None, :] == label_level[:, None], logits, -np.inf)
    got = masked_code_loss(
        t(h).float(), t(table).float(), t(labels), tau, t(label_level), t(table_level)
    )
    assert got.item() == pytest.approx(ce(restricted), rel=1e-5)


def test_masked_sequence_alignment_by_hand() -> None:
    u = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 1.0, 1.0]])
    v = np.array([[0.9, 0.1, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    tau = 0.2
    sim = (
        (u / np.linalg.norm(u, axis=1, keepdims=True))
        @ (v / np.linalg.norm(v, axis=1, keepdims=True)).T
        / tau
    )

    def ce_diag(z: np.ndarray) -> float:
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - np.diag(z)))

    expected = 0.5 * (ce_diag(sim) + ce_diag(sim.T))
    got = masked_sequence_alignment(torch.tensor(u).float(), torch.tensor(v).float(), tau)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_auxiliary_losses_are_the_weighted_losses_of_one_masked_copy() -> None:
    model = make(lambda_mlm=0.3, lambda_cl=0.7, mcm_scope="level").eval()
    x = batch()["inputs"]
    torch.manual_seed(5)
    hidden, state = model.forward_train(x)
    aux = model.auxiliary_losses(state, x, batch()["targets"])
    assert set(aux) == {"loss_mcm", "loss_msa"}
    # redo by hand: the same draws give the same corrupted codes
    mask = x != 0
    rows = model.code_rows[x[mask]]
    torch.manual_seed(5)
    corrupted, labels = model.mask_codes(rows)
    assert torch.equal(labels, state.labels)
    h, _ = model.encode_items(x[mask], corrupted)
    chosen = labels >= 0
    mcm = masked_code_loss(
        h[chosen],
        model.code_table.weight[1:],
        labels[chosen] - 1,
        model.tau,
        model.row_level[labels[chosen]],
        model.row_level[1:],
    )
    torch.testing.assert_close(aux["loss_mcm"], 0.3 * mcm)
    x_masked = torch.zeros(*x.shape, D)
    x_masked[mask] = h.mean(1)
    u_masked = model.encoder(x_masked, mask)[:, -1]
    torch.testing.assert_close(state.u_masked, u_masked)
    torch.testing.assert_close(hidden, model.hidden(x))  # eval mode: no dropout
    msa = masked_sequence_alignment(hidden[:, -1], u_masked, model.tau)
    torch.testing.assert_close(aux["loss_msa"], 0.7 * msa)


@pytest.mark.parametrize(("mlm", "cl"), [(0.0, 0.0), (0.5, 0.0), (0.0, 0.5)])
def test_zero_lambda_removes_its_component(mlm: float, cl: float) -> None:
    model = make(lambda_mlm=mlm, lambda_cl=cl).train()
    calls: list[int] = []
    model.encoder.register_forward_hook(lambda _m, args, _o: calls.append(args[0].shape[0]))
    torch.manual_seed(0)
    rng_before = torch.get_rng_state()
    objective = NextItemObjective("ce")
    loss, logs = objective(model, batch())
    _, state = model.forward_train(batch()["inputs"])
    expected = {k for k, w in (("loss_mcm", mlm), ("loss_msa", cl)) if w > 0}
    assert expected == {k for k in logs if k in ("loss_mcm", "loss_msa")}
    assert (state.masked_outputs is None) == (mlm == 0)
    assert (state.u_masked is None) == (cl == 0)
    assert calls[0] == (6 if cl > 0 else 3)  # the masked sequence runs only for L_MSA
    if mlm == 0 and cl == 0:
        assert loss.item() == logs["loss_rec"].item()
        # dropout draws only: the same forward with dropout off consumes no random numbers
        model.eval()
        torch.set_rng_state(rng_before)
        objective(model, batch())
        assert torch.equal(torch.get_rng_state(), rng_before)
    loss.backward()
    assert math.isfinite(loss.item())


def test_gradients_reach_every_part_but_the_frozen_text() -> None:
    for loss_name in ("ce", "bce"):  # full table, and score_items' needed items only
        model = make().train()
        loss, _ = NextItemObjective(loss_name)(model, batch())
        loss.backward()
        for name, param in model.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, (loss_name, name)
        # the [MASK] row learns (it is BERT's [MASK] here, not a frozen padding row)
        assert model.code_table.weight.grad[0].abs().sum() > 0
        assert model.text.text.grad is None


# -- training on the synthetic dataset -------------------------------------------------------------
def _train(tmp_path, ds, name: str, model: str, epochs: int) -> tuple[float, str]:  # type: ignore[no-untyped-def]
    from h2rec.training import TrainConfig, Trainer

    raw = apply_overrides(
        read_yaml("train/h2rec-synth"),
        [
            f"name={name}",
            f"data={ds.path}",
            f"runs_dir={tmp_path}",
            f"model={model}",
            "eval.test_protocols=[full]",
            "batch_size=128",
            "max_len=20",
            f"epochs={epochs}",
            f"eval.patience={epochs}",
            "seed=0",
        ],
    )
    raw["objective"].pop("loss")  # the model's own default loss
    trainer = Trainer(validate(TrainConfig, raw), ds)
    result = trainer.fit()["results"]["full"]
    return result.overall["NDCG@10"], trainer.cfg.objective.loss


def test_ccfrec_trains_and_beats_mostpop(tmp_path, synth_sid_dataset) -> None:  # type: ignore[no-untyped-def]
    ccf, loss = _train(
        tmp_path,
        synth_sid_dataset,
        "ccfrec",
        "{name: ccfrec, hidden_size: 32, sids: rqk, text_embeddings: tfidf}",
        epochs=4,
    )
    assert loss == "ce"  # CCFRec's softmax loss is the default
    pop, _ = _train(tmp_path, synth_sid_dataset, "mostpop", "{name: mostpop}", epochs=1)
    # measured: 0.207 vs 0.083 (4 epochs, seed 0)
    assert ccf > 1.5 * pop, (ccf, pop)


# -- negatives shared by the batch (objective.negatives_shared) ------------------------------------
def test_score_items_with_duplicates_equals_gathering_score_all() -> None:
    """Shared negatives repeat the same ids on every row: each distinct id is encoded once, and
    the logits (one [N, U] product gathered, or the per-row path for mostly distinct ids) equal
    gathering `score_all`."""
    model = make().eval()  # grad enabled: the uncached path of sampled losses
    encoded: list[int] = []
    encode = model.encode_items

    def counting(ids: torch.Tensor, rows: torch.Tensor | None = None):  # type: ignore[no-untyped-def]
        encoded.extend(ids.tolist())
        return encode(ids, rows)

    model.encode_items = counting  # type: ignore[method-assign]
    torch.manual_seed(1)
    user = torch.randn(5, D)
    shared = torch.tensor([3, 7, 7, 10, 2, 3])
    targets = torch.tensor([1, 3, 9, 9, 4])
    items = torch.cat([targets.unsqueeze(1), shared.expand(5, -1)], dim=1)  # few distinct ids
    distinct = torch.tensor([[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]])  # the per-row path
    with torch.no_grad():
        full = model.score_all(user)
    for ids in (items, distinct):
        encoded.clear()
        got = model.score_items(user, ids)
        assert sorted(encoded) == torch.unique(ids).tolist()  # each distinct item once
        torch.testing.assert_close(got.detach(), full.gather(1, ids))
        got.sum().backward()  # differentiable through both paths


def test_shared_negatives_sampled_softmax_by_hand() -> None:
    """NextItemObjective on a shared-negative batch = sampled softmax over [target, shared
    negatives] from `score_all`, a negative equal to the target (or 0) dropped."""
    from h2rec.models.losses import LossConfig

    model = make(lambda_mlm=0.0, lambda_cl=0.0).eval()
    b = batch()
    shared = torch.tensor([2, 5, 8, 8])
    neg = torch.where((b["targets"] != 0).unsqueeze(-1), shared, torch.zeros_like(shared))
    obj = NextItemObjective(LossConfig(name="sampled_softmax", num_negatives=4))
    loss, _ = obj(model, {**b, "negatives": neg})
    with torch.no_grad():
        hidden, _ = model.forward_train(b["inputs"])
    rows, cols = torch.nonzero(b["targets"] != 0, as_tuple=True)
    full = model.score_all(hidden[rows, cols])
    terms = []
    for logits, t in zip(full, b["targets"][rows, cols].tolist(), strict=True):
        keep = [t] + [n for n in shared.tolist() if n != t]
        terms.append(torch.logsumexp(logits[keep], 0) - logits[t])
    torch.testing.assert_close(loss.detach(), torch.stack(terms).mean())


def test_ccfrec_trains_with_shared_sampled_softmax_and_beats_mostpop(
    tmp_path, synth_sid_dataset
) -> None:  # type: ignore[no-untyped-def]
    from h2rec.training import TrainConfig, Trainer

    def run(name: str, model: str, epochs: int, extra: list[str]) -> float:
        raw = apply_overrides(
            read_yaml("train/h2rec-synth"),
            [
                f"name={name}",
                f"data={synth_sid_dataset.path}",
                f"runs_dir={tmp_path}",
                f"model={model}",
                "eval.test_protocols=[full]",
                "batch_size=128",
                "max_len=20",
                f"epochs={epochs}",
                f"eval.patience={epochs}",
                "seed=0",
                *extra,
            ],
        )
        trainer = Trainer(validate(TrainConfig, raw), synth_sid_dataset)
        return trainer.fit()["results"]["full"].overall["NDCG@10"]

    shared = [
        "objective.loss=sampled_softmax",
        "objective.num_negatives=64",
        "objective.negatives_shared=true",
    ]
    ccf = run(
        "ccfrec-shared",
        "{name: ccfrec, hidden_size: 32, sids: rqk, text_embeddings: tfidf}",
        4,
        shared,
    )
    pop = run("mostpop", "{name: mostpop}", 1, [])
    assert ccf > 1.5 * pop, (ccf, pop)
