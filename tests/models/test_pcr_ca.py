"""PCR-CA: the Parallel-Codebook auto-encoder, dual-attention fusion, late-fusion scoring, the
auxiliary losses (values by hand, switches that remove them), every backbone, and a short
training run that must beat MostPop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import h2rec.models.pcr_ca  # noqa: F401  (registers "pcr_ca")
from h2rec.config import apply_overrides, read_yaml, validate
from h2rec.errors import ConfigError
from h2rec.models import ClozeObjective, NextItemObjective, build_model, parse_model_config
from h2rec.models.inputs import ModelInputs
from h2rec.models.pcr_ca import (
    PCRCA,
    ParallelCodebookAE,
    normalize_text,
    symmetric_info_nce,
)
from h2rec.training import TrainConfig, Trainer

N_ITEMS = 30
TEXT_DIM = 12
D = 8
BACKBONES = ["sasrec", "gru4rec", "bert4rec"]
SMALL = {"hidden_size": D, "max_len": 6, "codebook_size": 8, "ae_hidden": 16}


def text_vectors(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros((N_ITEMS + 1, TEXT_DIM), dtype=np.float32)
    out[1:] = rng.normal(size=(N_ITEMS, TEXT_DIM)) * 3.0 + 1.0
    return out


def make(backbone: str = "sasrec", **cfg: object) -> PCRCA:
    torch.manual_seed(0)
    heads = {"n_heads": 2} if backbone != "gru4rec" else {}
    model = build_model(
        "pcr_ca",
        N_ITEMS,
        inputs=ModelInputs(text_vectors=text_vectors()),
        backbone=backbone,
        **{**SMALL, **heads, **cfg},
    )
    assert isinstance(model, PCRCA)
    return model


def seqs() -> torch.Tensor:
    return torch.tensor([[0, 0, 3, 1, 5, 7], [0, 0, 0, 0, 0, 0], [2, 4, 6, 8, 9, 10]])


def next_item_batch() -> dict[str, torch.Tensor]:
    inputs = seqs()
    targets = torch.roll(inputs, -1, dims=1)
    targets[:, -1] = torch.tensor([11, 0, 12])
    targets = targets * (inputs != 0)
    negatives = torch.randint(1, N_ITEMS + 1, (*inputs.shape, 1), generator=torch.Generator())
    return {"inputs": inputs, "targets": targets, "negatives": negatives}


# -- config -----------------------------------------------------------------------------------
def test_config_defaults_follow_the_paper_and_the_backbones() -> None:
    cfg = parse_model_config("pcr_ca", {})
    assert (cfg.latent_dim, cfg.n_codebooks, cfg.codebook_size) == (16, 4, 128)
    assert cfg.code_dim == 4 and not cfg.shared_latent
    assert (cfg.recon_weight, cfg.vq_weight, cfg.item_cl_weight, cfg.user_cl_weight) == (
        1.0,
        1.0,
        0.1,
        0.1,
    )
    assert cfg.commitment == 0.25 and cfg.item_cl_temperature == cfg.user_cl_temperature == 0.1
    assert cfg.id_init == "random" and cfg.text_embeddings == "st-all-minilm-l6-v2"
    assert (cfg.n_layers, cfg.n_heads, cfg.scale_embeddings) == (2, 1, True)
    gru = parse_model_config("pcr_ca", {"backbone": "gru4rec"})
    assert (gru.n_layers, gru.n_heads, gru.scale_embeddings) == (1, 1, False)
    bert = parse_model_config("pcr_ca", {"backbone": "bert4rec"})
    assert (bert.n_layers, bert.n_heads, bert.scale_embeddings) == (2, 2, False)
    assert parse_model_config("pcr_ca", {"shared_latent": True}).code_dim == 16
    assert PCRCA.default_loss == "bce"


def test_config_and_inputs_are_checked() -> None:
    with pytest.raises(ConfigError, match="divisible by n_codebooks"):
        parse_model_config("pcr_ca", {"latent_dim": 10, "n_codebooks": 4})
    parse_model_config("pcr_ca", {"latent_dim": 10, "n_codebooks": 4, "shared_latent": True})
    with pytest.raises(ConfigError):
        parse_model_config("pcr_ca", {"hid_init": "pca"})  # the field is id_init
    with pytest.raises(ConfigError, match="text_vectors"):
        build_model("pcr_ca", N_ITEMS, **SMALL)
    flat = np.zeros((N_ITEMS + 1, TEXT_DIM), dtype=np.float32)
    with pytest.raises(ConfigError, match="no variance"):
        build_model("pcr_ca", N_ITEMS, inputs=ModelInputs(text_vectors=flat), **SMALL)


def test_text_vectors_are_centred_to_unit_rms() -> None:
    raw = text_vectors()
    out = normalize_text(raw).numpy()
    items = raw[1:] - raw[1:].mean(axis=0)
    np.testing.assert_allclose(out[1:], items / np.sqrt((items**2).mean()), rtol=1e-5, atol=1e-6)
    assert np.abs(out[0]).sum() == 0
    assert np.sqrt((out[1:] ** 2).mean()) == pytest.approx(1.0, rel=1e-5)


# -- Parallel-Codebook auto-encoder --------------------------------------------------------------
def numpy_codes(chunks: np.ndarray, books: np.ndarray) -> np.ndarray:
    """Nearest codeword per (item, codebook) by brute force."""
    dist = ((chunks[:, :, None, :] - books[None]) ** 2).sum(-1)  # [N, M, K]
    return dist.argmin(-1)


@pytest.mark.parametrize("shared", [False, True])
def test_parallel_codebooks_quantise_independently(shared: bool) -> None:
    torch.manual_seed(0)
    ae = ParallelCodebookAE(TEXT_DIM, 16, 8, 4, 5, shared_latent=shared)
    x = torch.randn(20, TEXT_DIM)
    with torch.no_grad():
        z = ae.encode(x)
    expected_chunks = z.unsqueeze(1).expand(-1, 4, -1) if shared else z.view(20, 4, 2)
    qz = ae(x)
    torch.testing.assert_close(qz.chunks, expected_chunks)
    books = ae.codebooks.detach().numpy()
    codes = numpy_codes(expected_chunks.numpy(), books)
    np.testing.assert_array_equal(qz.codes.numpy(), codes)
    hand_q = np.stack([books[m][codes[:, m]] for m in range(4)], axis=1)
    np.testing.assert_allclose(qz.q.detach().numpy(), hand_q)
    # straight-through: forward value q, gradient of q_st w.r.t. the latent is the identity
    torch.testing.assert_close(qz.q_st, qz.q)
    z_leaf = z.clone().requires_grad_(True)
    ae.quantize(z_leaf).q_st.sum().backward()
    expected_grad = torch.full_like(z, 4.0 if shared else 1.0)  # shared: used by 4 codebooks
    torch.testing.assert_close(z_leaf.grad, expected_grad)
    # the codebooks get no gradient through q_st, only through q
    assert ae.codebooks.grad is None


def _cdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact pairwise L2 distances (cdist's matmul path is off by ~1e-3 near zero)."""
    return (a[:, None, :] - b[None, :, :]).pow(2).sum(-1).sqrt()


def test_codebooks_start_on_item_latents_and_dead_codes_are_redrawn() -> None:
    torch.manual_seed(0)
    ae = ParallelCodebookAE(TEXT_DIM, 16, 8, 2, 6, shared_latent=False)
    x = torch.randn(40, TEXT_DIM)
    ae.init_codebooks(x)
    with torch.no_grad():
        chunks = ae.split(ae.encode(x))
    for m in range(2):  # every codeword is the chunk of some item, and K distinct items
        dist = _cdist(ae.codebooks[m].detach(), chunks[:, m])
        assert (dist.min(dim=1).values < 1e-5).all()
        assert len(set(dist.argmin(dim=1).tolist())) == 6
    with torch.no_grad():
        ae.codebooks[1, 3] = 100.0  # far from every latent: dead
    assert (ae.nearest(chunks)[:, 1] != 3).all()
    n_reset = ae.reset_dead_codes(x, torch.Generator().manual_seed(0))
    assert n_reset >= 1
    dist = _cdist(ae.codebooks[1, 3:4].detach(), chunks[:, 1])
    assert float(dist.min()) < 1e-5  # now an item's latent chunk
    used = torch.bincount(ae.nearest(chunks)[:, 1], minlength=6)
    assert used[3] > 0


def test_vq_and_reconstruction_losses_by_hand() -> None:
    model = make(item_cl_weight=0.0, user_cl_weight=0.0, commitment=0.5)
    _, state = model.forward_train(seqs())
    batch = state.items
    assert batch.items.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]  # distinct real items
    qz = batch.quantized
    z = model.ae.encode(model.text[batch.items]).detach().numpy().reshape(10, 4, -1)
    books = model.ae.codebooks.detach().numpy()
    codes = numpy_codes(z, books)
    q = np.stack([books[m][codes[:, m]] for m in range(4)], axis=1)
    vq = ((q - z) ** 2).mean() * (1.0 + 0.5)  # codebook and commitment terms are equal in value
    dec = model.ae.decoder
    assert dec is not None
    h = np.maximum(
        q.reshape(10, -1) @ dec[0].weight.detach().numpy().T + dec[0].bias.detach().numpy(), 0
    )
    recon = h @ dec[2].weight.detach().numpy().T + dec[2].bias.detach().numpy()
    mse = ((recon - model.text[batch.items].numpy()) ** 2).mean()
    losses = model.auxiliary_losses(state, seqs(), seqs())
    assert set(losses) == {"loss_recon", "loss_vq"}
    assert float(losses["loss_vq"].detach()) == pytest.approx(vq, rel=1e-4)
    assert float(losses["loss_recon"].detach()) == pytest.approx(mse, rel=1e-4)
    np.testing.assert_array_equal(qz.codes.numpy(), codes)
    # the codebook term moves the codebooks, the commitment term the encoder
    model.vq_loss(qz).backward()
    assert model.ae.codebooks.grad is not None and model.ae.encoder[0].weight.grad is not None


# -- InfoNCE -----------------------------------------------------------------------------------
def test_symmetric_info_nce_by_hand() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    b = torch.tensor([[2.0, 0.5], [0.5, 1.0], [-1.0, 1.0]])
    tau = 0.1
    an = a.numpy() / np.linalg.norm(a.numpy(), axis=1, keepdims=True)
    bn = b.numpy() / np.linalg.norm(b.numpy(), axis=1, keepdims=True)
    sim = an @ bn.T / tau

    def one_way(s: np.ndarray) -> float:
        return float(np.mean([-s[i, i] + np.log(np.exp(s[i]).sum()) for i in range(3)]))

    expected = 0.5 * (one_way(sim) + one_way(sim.T))
    assert float(symmetric_info_nce(a, b, tau)) == pytest.approx(expected, rel=1e-5)


def test_alignment_losses_use_the_right_vectors() -> None:
    model = make(recon_weight=0.0, vq_weight=0.0, item_cl_weight=0.5, user_cl_weight=2.0)
    model.eval()  # no dropout: the encoders can be rerun to get the same vectors
    with torch.no_grad():
        _, state = model.forward_train(seqs())
        losses = model.auxiliary_losses(state, seqs(), seqs())
        assert set(losses) == {"loss_item_cl", "loss_user_cl"}
        items = torch.arange(1, 11)
        e_sem = model.item_weights()[items, D:]  # the scoring table's semantic half
        e_id = model.ids.embed(items)
        expected_item = 0.5 * symmetric_info_nce(e_sem, e_id, 0.1)
        # user level: the two encoders' last-slot outputs BEFORE fusion, non-empty rows only
        s = seqs()
        mask = s != 0
        h_id = model.id_encoder(model.ids.embed(s) * model.embedding_scale, mask)[:, -1]
        h_sem = model.sem_encoder(model.semantic(s)[0] * model.embedding_scale, mask)[:, -1]
        rows = torch.tensor([0, 2])
        expected_user = 2.0 * symmetric_info_nce(h_id[rows], h_sem[rows], 0.1)
    assert float(losses["loss_item_cl"]) == pytest.approx(float(expected_item), rel=1e-5)
    assert float(losses["loss_user_cl"]) == pytest.approx(float(expected_user), rel=1e-5)


def test_zero_weights_remove_their_components() -> None:
    off = make(recon_weight=0.0, vq_weight=0.0, item_cl_weight=0.0, user_cl_weight=0.0)
    assert off.ae.decoder is None
    _, state = off.forward_train(seqs())
    assert off.auxiliary_losses(state, seqs(), seqs()) == {}
    # the total loss is then exactly the recommendation loss
    batch = next_item_batch()
    loss, logs = NextItemObjective("bce")(off, batch)
    assert float(loss.detach()) == pytest.approx(float(logs["loss_rec"]))
    # each weight alone
    for key, name in [
        ("recon_weight", "loss_recon"),
        ("vq_weight", "loss_vq"),
        ("item_cl_weight", "loss_item_cl"),
        ("user_cl_weight", "loss_user_cl"),
    ]:
        model = make(**{key: 0.0})
        _, state = model.forward_train(seqs())
        losses = model.auxiliary_losses(state, seqs(), seqs())
        assert name not in losses and len(losses) == 3, key
    # full model: every component present and each term reaches its parameters
    model = make()
    loss, logs = NextItemObjective("bce")(model, batch)
    assert {"loss_recon", "loss_vq", "loss_item_cl", "loss_user_cl"} <= set(logs)
    assert float(loss.detach()) == pytest.approx(
        sum(float(logs[k]) for k in logs if k.startswith("loss_") and k != "loss"), rel=1e-5
    )
    loss.backward()
    for p in (
        model.ae.encoder[0].weight,
        model.ae.codebooks,
        model.ae.decoder[0].weight,  # type: ignore[index]
        model.sem_proj.weight,  # type: ignore[union-attr]
        model.ids.embedding.weight,
        model.fusion.gate_id.weight,  # type: ignore[union-attr]
    ):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_fusion_none_is_the_plain_two_tower_concat() -> None:
    model = make(fusion="none", dropout=0.0)
    assert model.fusion is None
    model.eval()
    s = seqs()
    mask = s != 0
    with torch.no_grad():
        h_id = model.id_encoder(model.ids.embed(s) * model.embedding_scale, mask)
        h_sem = model.sem_encoder(model.semantic(s)[0] * model.embedding_scale, mask)
        torch.testing.assert_close(model.hidden(s), torch.cat([h_id, h_sem], dim=-1))
    summed = make(fusion="sum")
    assert summed.fusion is not None and summed.fusion.gate_id is None


# -- item side and scoring ---------------------------------------------------------------------
def test_item_table_is_id_and_projected_quantised_codes() -> None:
    model = make()
    model.eval()
    with torch.no_grad():
        table = model.item_weights()
        codes = model.item_codes()
    assert table.shape == (N_ITEMS + 1, 2 * D)
    assert codes.shape == (N_ITEMS + 1, 4) and (codes[0] == -1).all()
    assert ((codes[1:] >= 0) & (codes[1:] < 8)).all()
    books = model.ae.codebooks.detach()
    q = torch.stack([books[m, codes[1:, m]] for m in range(4)], dim=1).flatten(1)
    torch.testing.assert_close(table[1:, D:], q @ model.sem_proj.weight.detach().T)  # type: ignore[union-attr]
    torch.testing.assert_close(table[:, :D], model.ids.weight_for_scoring().detach())
    assert table[0].abs().sum() == 0
    # items with the same codes share the semantic half (and only it)
    same = [
        (i, j)
        for i in range(1, N_ITEMS + 1)
        for j in range(i + 1, N_ITEMS + 1)
        if torch.equal(codes[i], codes[j])
    ]
    for i, j in same:
        torch.testing.assert_close(table[i, D:], table[j, D:])
    stats = model.code_stats()
    assert stats["rate"] == pytest.approx(1 - len({tuple(c) for c in codes[1:].tolist()}) / N_ITEMS)
    # e_sem starts at about the ID table's scale
    assert float(table[1:, D:].pow(2).mean().sqrt()) == pytest.approx(0.02, rel=0.5)


def test_code_table_variant_sums_code_embeddings() -> None:
    model = make(semantic_embedding="code_table")
    assert model.sem_proj is None and model.code_table is not None
    model.eval()
    with torch.no_grad():
        table = model.item_weights()
        codes = model.item_codes()
    w = model.code_table.weight.detach()
    hand = torch.stack([w[m * 8 + codes[1:, m]] for m in range(4)], dim=1).sum(1)
    torch.testing.assert_close(table[1:, D:], hand)


def test_pca_id_init_uses_the_text_vectors() -> None:
    model = make(id_init="pca")
    from h2rec.models.parts.pca import pca_item_vectors

    pca = pca_item_vectors(text_vectors(), D)
    rows = model.ids.weight_for_scoring().detach().numpy()[1:]
    ratio = rows / pca[1:]
    np.testing.assert_allclose(ratio, ratio[0, 0], rtol=1e-4)  # one global factor
    assert float(np.sqrt((rows**2).mean())) == pytest.approx(0.02, rel=1e-4)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_shapes_scores_and_late_fusion_on_every_backbone(backbone: str) -> None:
    model = make(backbone)
    assert (model.mask_token_id == N_ITEMS + 1) == (backbone == "bert4rec")
    s = seqs()
    model.eval()
    with torch.no_grad():
        hidden = model.hidden(s)
        assert hidden.shape == (3, 6, 2 * D)
        assert hidden[1].abs().sum() == 0 and hidden[0, :2].abs().sum() == 0  # padding slots
        user = model.user_repr(s)
        full = model.score(s)
        assert full.shape == (3, N_ITEMS + 1) and torch.isinf(full[:, 0]).all()
        # late fusion: [u_id ; u_sem] . [e_id ; e_sem]
        torch.testing.assert_close(full[:, 1:], user @ model.item_weights()[1:].T)
        cands = torch.tensor([[1, 2, 3], [4, 5, 0], [6, 7, 8]])
        sub = model.score(s, cands)
        expected = full.gather(1, cands).masked_fill(cands == 0, -math.inf)
        torch.testing.assert_close(sub, expected)
    # the training path (per-item PC-AE, with grad) gives the same scores as the cached table
    items = torch.tensor([[1, 2], [3, 30], [9, 10]])
    with torch.no_grad():
        cached = model.score_items(user, items)
    torch.testing.assert_close(model.score_items(user, items), cached)
    if backbone == "bert4rec":  # the query is the output at an appended [MASK]
        appended = torch.cat([s[:, 1:], torch.full_like(s[:, :1], N_ITEMS + 1)], 1)
        with torch.no_grad():
            torch.testing.assert_close(user, model.hidden(appended)[:, -1])


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec"])
def test_causal_backbones_never_see_later_items(backbone: str) -> None:
    model = make(backbone)
    model.eval()
    a = seqs()
    b = a.clone()
    b[:, -1] = torch.tensor([20, 0, 21])
    b[0, 3] = 22  # and an earlier one in row 0: slots before 3 must not change
    with torch.no_grad():
        ha, hb = model.hidden(a), model.hidden(b)
    torch.testing.assert_close(ha[0, :3], hb[0, :3])
    torch.testing.assert_close(ha[2, :-1], hb[2, :-1])
    assert not torch.allclose(ha[2, -1], hb[2, -1])


def test_bert4rec_is_bidirectional_and_trains_with_cloze() -> None:
    model = make("bert4rec")
    model.eval()
    a = seqs()
    b = a.clone()
    b[2, -1] = 20
    with torch.no_grad():
        assert not torch.allclose(model.hidden(a)[2, 0], model.hidden(b)[2, 0])
        # [MASK] gets the learnable semantic vector, never a PC-AE output
        masked = torch.tensor([[0, N_ITEMS + 1, 3]])
        assert model.sem_mask is not None
        torch.testing.assert_close(model.semantic(masked)[0][0, 1], model.sem_mask)
    model.train()
    torch.manual_seed(1)
    negatives = torch.randint(1, N_ITEMS + 1, (3, 6, 1))
    loss, logs = ClozeObjective(loss="bce")(model, {"inputs": a, "negatives": negatives})
    assert torch.isfinite(loss) and {"loss_recon", "loss_item_cl"} <= set(logs)
    loss.backward()
    assert model.ids.embedding.weight.grad is not None


def test_item_table_cache_follows_the_parameters() -> None:
    model = make()
    model.eval()
    with torch.no_grad():
        first = model.item_weights()
        assert model.item_weights() is first
        model.sem_proj.weight.mul_(2.0)  # type: ignore[union-attr]
        second = model.item_weights()
    assert second is not first
    torch.testing.assert_close(second[:, D:], 2.0 * first[:, D:])


def test_start_epoch_is_a_function_of_the_parameters_and_epoch() -> None:
    a, b = make(), make()
    for model in (a, b):
        with torch.no_grad():
            model.ae.codebooks[0, :4] = 50.0  # dead codes
        model.start_epoch(3, 10)
    torch.testing.assert_close(a.ae.codebooks, b.ae.codebooks)
    assert (a.ae.codebooks[0, :4].abs() < 50.0).all()
    off = make(dead_code_reset=False)
    with torch.no_grad():
        off.ae.codebooks[0, :4] = 50.0
    off.start_epoch(0, 10)
    assert (off.ae.codebooks[0, :4] == 50.0).all()


def test_state_dict_round_trip_restores_scores_and_codes() -> None:
    a = make()
    a.start_epoch(0, 1)
    b = make(dead_code_reset=False)
    with torch.no_grad():
        b.ae.codebooks.add_(1.0)
    b.load_state_dict(a.state_dict(), strict=True)
    assert "text" not in a.state_dict()  # data, rebuilt from the inputs, not saved
    a.eval()
    b.eval()
    with torch.no_grad():
        torch.testing.assert_close(a.score(seqs()), b.score(seqs()))
    torch.testing.assert_close(a.item_codes(), b.item_codes())


# -- training ----------------------------------------------------------------------------------
def _run(tmp_path, ds, name: str, model: str) -> float:  # type: ignore[no-untyped-def]
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
            "epochs=6",
            "eval.patience=6",
            "seed=0",
        ],
    )
    raw["objective"].pop("loss")  # the model's own default loss
    trainer = Trainer(validate(TrainConfig, raw), ds)
    if name == "pcr_ca":
        assert trainer.cfg.objective.loss == "bce"
    return float(trainer.fit()["results"]["full"].overall["NDCG@10"])


def test_pcr_ca_trains_and_beats_mostpop(tmp_path, synth_sid_dataset) -> None:  # type: ignore[no-untyped-def]
    pcr = _run(
        tmp_path,
        synth_sid_dataset,
        "pcr_ca",
        "{name: pcr_ca, hidden_size: 32, text_embeddings: tfidf, codebook_size: 16}",
    )
    pop = _run(tmp_path, synth_sid_dataset, "mostpop", "{name: mostpop}")
    print(f"NDCG@10 pcr_ca {pcr:.4f} mostpop {pop:.4f}")
    assert pcr > 1.2 * pop, (pcr, pop)
