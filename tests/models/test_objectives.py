"""Training objectives: which positions are used, masking statistics, equality with manual losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from h2rec.models import (
    ClozeObjective,
    LossConfig,
    NextItemObjective,
    SASRec,
    SequentialModel,
    build_model,
    full_ce,
    list_models,
    sampled_softmax,
)
from h2rec.models.inputs import ModelInputs

N_ITEMS = 30


def sasrec():
    torch.manual_seed(0)
    return build_model("sasrec", N_ITEMS, hidden_size=16, max_len=8).eval()


def next_item_batch() -> dict[str, torch.Tensor]:
    inputs = torch.tensor([[0, 0, 0, 4, 5, 6], [0, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6]])
    targets = torch.tensor([[0, 0, 0, 5, 6, 7], [0, 0, 0, 0, 0, 0], [2, 3, 4, 5, 6, 9]])
    negatives = torch.tensor(
        [
            [[0], [0], [0], [11], [12], [13]],
            [[0], [0], [0], [0], [0], [0]],
            [[21], [22], [23], [24], [25], [26]],
        ]
    )
    return {"inputs": inputs, "targets": targets, "negatives": negatives}


def test_objective_metadata() -> None:
    assert NextItemObjective(LossConfig(name="bce", num_negatives=3)).num_negatives == 3
    assert NextItemObjective("ce").num_negatives == 0
    assert NextItemObjective({"name": "gbce", "num_negatives": 8}).loss_cfg.gbce_t == 0.75
    assert NextItemObjective().batch_kind == "next_item"
    assert ClozeObjective().batch_kind == "sequence" and ClozeObjective().num_negatives == 0
    with pytest.raises(ValueError):
        NextItemObjective(positions="first")  # type: ignore[arg-type]


def test_next_item_last_uses_only_the_last_real_position() -> None:
    model, batch = sasrec(), next_item_batch()
    loss, logs = NextItemObjective(LossConfig(name="bce"), positions="last")(model, batch)
    assert int(logs["n_targets"]) == 2  # the empty row contributes nothing
    with torch.no_grad():
        h = model.hidden(batch["inputs"])[:, -1]
        emb = model.items.embedding.weight
        terms = []
        for row, pos_item, neg_item in [(0, 7, 13), (2, 9, 26)]:
            p = float(h[row] @ emb[pos_item])
            n = float(h[row] @ emb[neg_item])
            terms.append(-math.log(1 / (1 + math.exp(-p))) - math.log(1 - 1 / (1 + math.exp(-n))))
    assert loss.item() == pytest.approx(sum(terms) / 2, rel=1e-5)


def test_next_item_all_positions_with_full_ce() -> None:
    model, batch = sasrec(), next_item_batch()
    loss, logs = NextItemObjective("ce")(model, batch)
    assert int(logs["n_targets"]) == 9
    with torch.no_grad():
        h = model.hidden(batch["inputs"])
        valid = batch["targets"] != 0
        logits = h[valid] @ model.item_weights().t()
        expected = F.cross_entropy(logits[:, 1:], batch["targets"][valid] - 1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_negatives_equal_to_the_target_are_ignored() -> None:
    model = sasrec()
    batch = next_item_batch()
    obj = NextItemObjective(LossConfig(name="sampled_softmax", num_negatives=2), positions="last")
    with_hit = dict(
        batch, negatives=torch.cat([batch["negatives"], batch["targets"][..., None]], -1)
    )
    clean, _ = NextItemObjective("sampled_softmax", positions="last")(model, batch)
    hit, _ = obj(model, with_hit)
    assert hit.item() == pytest.approx(clean.item(), rel=1e-6)


def test_sampled_losses_need_negatives() -> None:
    batch = next_item_batch()
    del batch["negatives"]
    with pytest.raises(ValueError, match="negatives"):
        NextItemObjective("bce")(sasrec(), batch)


def test_logq_correction_uses_the_sampler_table() -> None:
    model, batch = sasrec(), next_item_batch()
    cfg = LossConfig(name="sampled_softmax", num_negatives=1, logq=True)
    with pytest.raises(ValueError, match="set_log_q"):
        NextItemObjective(cfg)(model, batch)
    log_q = torch.log(torch.linspace(0.01, 1.0, N_ITEMS + 1))
    loss, _ = NextItemObjective(cfg, positions="last", log_q=log_q)(model, batch)
    with torch.no_grad():
        h = model.hidden(batch["inputs"])[[0, 2], -1]
        emb = model.item_weights()
        pos_items, neg_items = torch.tensor([7, 9]), torch.tensor([[13], [26]])
        pos = (h * emb[pos_items]).sum(-1)
        neg = torch.einsum("nd,nkd->nk", h, emb[neg_items])
        expected = sampled_softmax(pos, neg, log_q[pos_items], log_q[neg_items])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_batch_without_targets_gives_zero_loss_with_a_graph() -> None:
    model = sasrec().train()
    x = torch.zeros(2, 5, dtype=torch.long)
    loss, logs = NextItemObjective("ce")(model, {"inputs": x, "targets": x})
    loss.backward()
    assert loss.item() == 0.0 and int(logs["n_targets"]) == 0


def cloze_inputs(rows: int, length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, length + 1, (rows,), generator=g)
    items = torch.randint(1, 1001, (rows, length), generator=g)
    slots = torch.arange(length).expand(rows, -1)
    return torch.where(slots >= length - lengths[:, None], items, torch.zeros_like(items))


def test_cloze_masks_only_real_positions_with_80_10_10() -> None:
    inputs = cloze_inputs(800, 50)
    torch.manual_seed(123)
    obj = ClozeObjective(mask_ratio=0.2)
    corrupted, labels = obj.mask(inputs, n_items=1000, mask_token_id=1001)
    real = inputs != 0
    chosen = labels != 0
    assert not (chosen & ~real).any()  # never a padding slot
    assert (corrupted[~real] == 0).all()
    torch.testing.assert_close(labels[chosen], inputs[chosen])
    assert (corrupted[~chosen] == inputs[~chosen]).all()  # untouched elsewhere
    non_empty = real.any(1)
    assert chosen[non_empty].any(1).all() and not chosen[~non_empty].any()
    n = chosen.sum().item()
    assert n / real.sum().item() == pytest.approx(0.2, abs=0.02)
    frac_mask = (corrupted[chosen] == 1001).float().mean().item()
    frac_same = (corrupted[chosen] == inputs[chosen]).float().mean().item()
    frac_random = 1 - frac_mask - frac_same
    assert frac_mask == pytest.approx(0.8, abs=0.02)
    assert frac_same == pytest.approx(0.1, abs=0.015)
    assert frac_random == pytest.approx(0.1, abs=0.015)
    assert corrupted.max() <= 1001


def test_cloze_is_reproducible_from_the_global_seed() -> None:
    inputs = cloze_inputs(16, 10)
    obj = ClozeObjective(mask_ratio=0.3)
    torch.manual_seed(7)
    a = obj.mask(inputs, 1000, 1001)
    torch.manual_seed(7)
    b = obj.mask(inputs, 1000, 1001)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_cloze_last_item_only_rows() -> None:
    inputs = cloze_inputs(20, 8)
    torch.manual_seed(0)
    corrupted, labels = ClozeObjective(last_item_prob=1.0).mask(inputs, 1000, 1001)
    non_empty = (inputs != 0).any(1)
    assert (labels[non_empty, :-1] == 0).all()
    assert torch.equal(labels[non_empty, -1], inputs[non_empty, -1])
    assert (corrupted[non_empty, -1] == 1001).all()


def test_cloze_loss_equals_manual_ce_over_masked_positions() -> None:
    torch.manual_seed(0)
    model = build_model("bert4rec", N_ITEMS, hidden_size=16, max_len=8).eval()
    with torch.no_grad():
        model.scorer.bias.uniform_(-1, 1)  # the output bias must take part
    inputs = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 0, 1, 2]])
    obj = ClozeObjective(mask_ratio=0.5)
    torch.manual_seed(11)
    loss, logs = obj(model, {"inputs": inputs})
    torch.manual_seed(11)
    corrupted, labels = obj.mask(inputs, N_ITEMS, model.mask_token_id)
    with torch.no_grad():
        h = model.hidden(corrupted)[labels != 0]
        logits = model.scorer.project(h) @ model.item_weights().t() + model.scorer.bias
        expected = full_ce(logits, labels[labels != 0])
    assert int(logs["n_targets"]) == int((labels != 0).sum())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_cloze_needs_a_mask_token() -> None:
    with pytest.raises(TypeError, match="mask_token_id"):
        ClozeObjective()(sasrec(), {"inputs": torch.tensor([[0, 1, 2]])})


# -- chunked full-softmax CE -------------------------------------------------------------------------
def rich_inputs(n_items: int = N_ITEMS) -> ModelInputs:
    """Every input any registered model asks for: SIDs with codebooks, text, training sequences."""
    rng = np.random.default_rng(0)
    sizes = [4, 5, 3]
    codes = np.full((n_items + 1, len(sizes)), -1, dtype=np.int64)
    for level, k in enumerate(sizes):
        codes[1:, level] = rng.integers(0, k, n_items)
    text = rng.normal(size=(n_items + 1, 24)).astype(np.float32)
    text[0] = 0.0
    seqs = [[1, 2, 3, 4, 5, 6], [7, 8, 9, 1, 2], [10, 11, 12, 13, 14, 15, 16], [29, 30, 1, 7, 13]]
    items = np.array([i for s in seqs for i in s], dtype=np.int64)
    return ModelInputs(
        popularity=np.bincount(items, minlength=n_items + 1),
        codes=codes,
        codebooks=[rng.normal(size=(k, 16)).astype(np.float32) for k in sizes],
        codebook_sizes=sizes,
        text_vectors=text,
        train_offsets=np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64),
        train_items=items,
    )


TRAINABLE = [name for name in list_models() if name != "mostpop"]


def build_small(name: str) -> SequentialModel:
    torch.manual_seed(0)
    cfg: dict[str, object] = {"hidden_size": 16, "max_len": 8, "n_heads": 2}
    if name == "gru4rec":
        del cfg["n_heads"]
    if name == "url4dr":
        cfg["semantic_dim"] = 8
    return build_model(name, N_ITEMS, inputs=rich_inputs(), **cfg).eval()


def ce_run(model: SequentialModel, chunk_elements: int) -> tuple[torch.Tensor, dict]:
    """Loss and parameter gradients of one CE step; the same seed makes Cloze masks identical."""
    torch.manual_seed(5)
    cfg = LossConfig(name="ce", ce_chunk_elements=chunk_elements)
    batch = {**next_item_batch(), "users": torch.arange(3)}  # LLM-ESR's distillation needs them
    if getattr(model, "mask_token_id", None) is not None:
        loss, logs = ClozeObjective(mask_ratio=0.5, loss=cfg)(model, batch)
    else:
        loss, logs = NextItemObjective(cfg)(model, batch)
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logs["loss_rec"], grads


@pytest.mark.parametrize("name", TRAINABLE)
def test_chunked_ce_equals_the_full_logits_path_for_every_model(name: str) -> None:
    """Every registered model scores all items with one linear map (`full_scoring`), and the
    chunked loss (2-row chunks) gives the loss and parameter gradients of `full_ce` on
    `score_all`'s logits."""
    model = build_small(name)
    # a real user vector: its width need not be the table's (H2Rec's compact state expands)
    user = model.user_repr(next_item_batch()["inputs"]).detach()
    linear = model.full_scoring(user)
    assert linear is not None, f"{name} would fall back to the [N, n_items] logits"
    u, table, bias = linear
    with torch.no_grad():
        logits = u.float() @ table.float().t() + (0.0 if bias is None else bias.float())
        torch.testing.assert_close(logits, model.score_all(user, catalogue_only=True))
    full_loss, full_grads = ce_run(model, 0)
    chunk_loss, chunk_grads = ce_run(model, 2 * N_ITEMS)
    assert chunk_loss.item() == pytest.approx(full_loss.item(), rel=1e-5)
    assert chunk_grads.keys() == full_grads.keys() and full_grads
    # float rounding: relative, plus an absolute part for entries that are ~0 (e.g. attention
    # key biases, whose exact gradient is zero) scaled by the model's largest gradient
    atol = 1e-6 * max(float(g.abs().max()) for g in full_grads.values())
    for key, grad in full_grads.items():
        torch.testing.assert_close(chunk_grads[key], grad, rtol=1e-4, atol=atol, msg=key)


def test_sasrec_ce_saves_no_targets_by_items_tensor() -> None:
    """The objective really takes the chunked path: with 9 targets and 30 items, autograd keeps a
    [9, 30] log-softmax only when chunking is off."""
    model = sasrec()
    n_targets = int((next_item_batch()["targets"] != 0).sum())
    for chunk, expect in ((0, True), (N_ITEMS, False)):
        saved: list[tuple[int, ...]] = []

        def pack(x: torch.Tensor) -> torch.Tensor:
            saved.append(tuple(x.shape))  # noqa: B023 - used inside this iteration only
            return x

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            NextItemObjective(LossConfig(name="ce", ce_chunk_elements=chunk))(
                model, next_item_batch()
            )
        assert ((n_targets, N_ITEMS) in saved) is expect


class _Doubled(SASRec):
    """A model whose score_all is not the base linear map (scores x 2): no hook by default."""

    def score_all(self, user: torch.Tensor, *, catalogue_only: bool = False) -> torch.Tensor:
        return 2.0 * super().score_all(user, catalogue_only=catalogue_only)


def test_overridden_score_all_falls_back_to_the_full_logits() -> None:
    base = sasrec()
    model = _Doubled(N_ITEMS, 8, base.items, base.encoder, base.scorer).eval()
    assert model.full_scoring(torch.randn(2, 16)) is None
    loss, _ = NextItemObjective("ce")(model, next_item_batch())
    with torch.no_grad():
        valid = next_item_batch()["targets"] != 0
        h = model.hidden(next_item_batch()["inputs"])[valid]
        expected = full_ce(
            2.0 * (h @ model.item_weights().t()), next_item_batch()["targets"][valid]
        )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
