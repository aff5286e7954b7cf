"""Models: scoring interface, BERT4Rec's appended [MASK], MostPop, item table, registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from h2rec.errors import ConfigError
from h2rec.models import (
    BERT4Rec,
    ModelConfig,
    SequentialModel,
    build_model,
    list_models,
    model_class,
    model_config_class,
    parse_model_config,
    register_model,
)
from h2rec.models import registry as registry_module
from h2rec.models.parts.items import HashItemEmbedding

N_ITEMS = 25
NEURAL = ["sasrec", "bert4rec", "gru4rec"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def make(name: str, **cfg: object) -> SequentialModel:
    torch.manual_seed(0)
    pop = np.arange(N_ITEMS + 1, dtype=np.int64) % 7
    defaults: dict[str, object] = {} if name == "mostpop" else {"hidden_size": 16, "max_len": 10}
    return build_model(name, N_ITEMS, popularity=pop, **{**defaults, **cfg}).eval()


def seqs() -> torch.Tensor:
    return torch.tensor(
        [[0, 0, 0, 0, 3, 4, 5, 6], [0, 0, 0, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7, 8]]
    )


def test_registered_models() -> None:
    assert {"sasrec", "bert4rec", "gru4rec", "mostpop"} <= set(list_models())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", [*NEURAL, "mostpop"])
def test_score_shapes_padding_column_and_candidates(name: str, device: str) -> None:
    model = make(name).to(device)
    x = seqs().to(device)
    with torch.no_grad():
        full = model.score(x)
        cands = torch.tensor([[5, 1, 9, 25], [2, 2, 0, 7], [25, 24, 1, 3]], device=device)
        some = model.score(x, cands)
    assert full.shape == (3, N_ITEMS + 1) and full.dtype == torch.float32
    assert full.device.type == device
    assert torch.isneginf(full[:, 0]).all()
    assert torch.isfinite(full[:, 1:]).all()  # also for the fully padded row
    assert some.shape == (3, 4)
    torch.testing.assert_close(some, full.gather(1, cands))


@pytest.mark.parametrize("name", NEURAL)
def test_score_is_float32_under_bf16_autocast(name: str) -> None:
    model = make(name)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        full = model.score(seqs())
        some = model.score(seqs(), torch.tensor([[1, 2], [3, 4], [5, 6]]))
        user = model.user_repr(seqs())
        assert model.score_all(user).dtype == torch.float32
    assert full.dtype == torch.float32 and some.dtype == torch.float32
    if name == "bert4rec":
        return  # its transform head (a Linear) legitimately runs in bf16 under autocast
    # the final dot product itself is float32, not a bf16 product cast afterwards (no extra ties)
    user = torch.randn(3, 16)
    with torch.no_grad():
        exact = model.score_all(user)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.testing.assert_close(model.score_all(user), exact)


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_user_repr_is_last_slot(name: str) -> None:
    model = make(name)
    with torch.no_grad():
        torch.testing.assert_close(model.user_repr(seqs()), model.hidden(seqs())[:, -1])


def test_score_all_and_score_items_agree() -> None:
    model = make("bert4rec")  # has output bias and transform head
    with torch.no_grad():
        model.scorer.bias.uniform_(-1, 1)
        user = torch.randn(4, 16)
        items = torch.randint(1, N_ITEMS + 1, (4, 6))
        torch.testing.assert_close(
            model.score_items(user, items), model.score_all(user).gather(1, items)
        )


def test_bert4rec_user_repr_uses_appended_mask() -> None:
    model = make("bert4rec")
    assert isinstance(model, BERT4Rec) and model.mask_token_id == N_ITEMS + 1
    x = seqs()
    appended = model.append_mask(x)
    assert appended[:, -1].eq(N_ITEMS + 1).all()
    torch.testing.assert_close(appended[:, :-1], x[:, 1:])
    with torch.no_grad():
        user = model.user_repr(x)
        torch.testing.assert_close(user, model.hidden(appended)[:, -1])
        assert not torch.allclose(user[0], model.hidden(x)[0, -1])
    # the [MASK] row is embedded but never scored
    assert model.item_weights().shape == (N_ITEMS + 1, 16)
    assert model.items.embedding.weight.shape[0] == N_ITEMS + 2


def test_mostpop_scores_are_training_popularity() -> None:
    pop = np.array([4, 10, 0, 3, 7, 7])
    model = build_model("mostpop", 5, popularity=pop)
    assert model.trainable is False and not list(model.parameters())
    got = model.score(torch.tensor([[0, 1, 2], [3, 4, 5]]))
    expected = torch.tensor([[-math.inf, 10.0, 0.0, 3.0, 7.0, 7.0]] * 2)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(
        model.score(torch.tensor([[1, 2]]), torch.tensor([[4, 1]])), torch.tensor([[7.0, 10.0]])
    )
    assert "popularity" in model.state_dict()  # checkpoints carry the counts
    with pytest.raises(ConfigError):
        build_model("mostpop", 5)
    with pytest.raises(ConfigError):
        build_model("mostpop", 5, popularity=np.ones(3))


def test_neural_models_are_trainable() -> None:
    for name in NEURAL:
        model = make(name)
        assert model.trainable and model.name == name
        assert model.max_len == 10 and model.n_items == N_ITEMS


def test_registry_builds_from_config_dicts_and_rejects_unknown_keys() -> None:
    configs = {
        "sasrec": {
            "hidden_size": 8,
            "n_layers": 1,
            "n_heads": 2,
            "dropout": 0.5,
            "max_len": 7,
            "causal": False,
            "scale_embeddings": False,
            "activation": "gelu",
        },
        "bert4rec": {"d": 8, "n_layers": 1, "n_heads": 4, "max_len": 7, "output_bias": False},
        "gru4rec": {"hidden_size": 8, "n_layers": 2, "gru_bias": False},
        "mostpop": {"max_len": 7},
    }
    for name, cfg in configs.items():
        model = build_model(name, 12, popularity=np.ones(13), **cfg)
        assert model.name == name
        with pytest.raises(ConfigError, match="hiddne"):
            build_model(name, 12, popularity=np.ones(13), **cfg, hiddne=3)
    sas = build_model("sasrec", 12, **configs["sasrec"])
    assert sas.encoder.causal is False and sas.scale_embeddings is False
    assert build_model("bert4rec", 12, **configs["bert4rec"]).item_bias() is None
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("transformer", 12)
    with pytest.raises(ConfigError, match="divisible"):
        build_model("sasrec", 12, hidden_size=10, n_heads=3)
    cfg = parse_model_config("sasrec", {"d": 32})
    assert cfg.model_dump()["hidden_size"] == 32
    assert model_config_class("sasrec")().causal is True


def test_model_class_gives_each_models_paper_loss_without_building_it() -> None:
    """Experiment cells name no loss, so each model trains with its own paper's (the notes in
    shared/notes/baselines-and-sids.md); runs are compared with cells before any model is built."""
    paper_loss = {
        "h2rec": "bpr",  # Eq. 10
        "llm_esr": "bce",
        "melt": "bce",
        "pcr_ca": "bce",
        "url4dr": "bce",
        "ccfrec": "ce",
    }
    for name in list_models():
        cls = model_class(name)
        assert issubclass(cls, SequentialModel)
        assert getattr(cls, "default_loss", None) == paper_loss.get(name), name
    for name in ["sasrec", "bert4rec", "gru4rec", "mostpop"]:
        assert type(make(name)) is model_class(name)

    @register_model("unannotated-test", config=ModelConfig)
    def build(n_items, cfg, inputs):  # type: ignore[no-untyped-def]
        return make("sasrec")

    try:
        with pytest.raises(TypeError, match="unannotated-test"):
            model_class("unannotated-test")
        # comparing a run folder's config with a cell's then keeps the config as it is
        from h2rec.config import apply_overrides, read_yaml, validate
        from h2rec.training import TrainConfig
        from h2rec.training.trainer import resolve_loss

        raw = apply_overrides(read_yaml("train/paper-yelp"), ["model={name: unannotated-test}"])
        cfg = validate(TrainConfig, raw)
        assert resolve_loss(cfg) is cfg
    finally:
        registry_module._REGISTRY.pop("unannotated-test")


def test_register_model_decorator() -> None:
    class TinyConfig(ModelConfig):
        max_len: int = 5

    @register_model("tiny-test", config=TinyConfig)
    def build_tiny(n_items, cfg, popularity):  # type: ignore[no-untyped-def]
        return build_model("mostpop", n_items, popularity=np.ones(n_items + 1), max_len=cfg.max_len)

    try:
        assert "tiny-test" in list_models()
        assert build_model("tiny-test", 4, max_len=3).max_len == 3
        with pytest.raises(ValueError, match="already registered"):
            register_model("tiny-test", config=TinyConfig)(lambda n, c, p: None)  # type: ignore[arg-type]
    finally:
        registry_module._REGISTRY.pop("tiny-test")


def test_hash_item_embedding() -> None:
    torch.manual_seed(0)
    emb = HashItemEmbedding(10, 4, extra_tokens=2)
    assert emb.embedding.weight.shape == (13, 4)
    assert emb.weight_for_scoring().shape == (11, 4)
    assert emb.embed(torch.tensor([0])).abs().sum() == 0
    assert emb.embedding.weight[1:].std().item() == pytest.approx(0.02, rel=0.3)
    vectors = torch.randn(10, 4)
    emb.load_item_vectors(vectors)
    torch.testing.assert_close(emb.weight_for_scoring()[1:], vectors)
    assert emb.weight_for_scoring()[0].abs().sum() == 0
    with pytest.raises(ValueError):
        emb.load_item_vectors(torch.randn(9, 4))
    xavier = HashItemEmbedding(10, 4, init="xavier")
    assert xavier.embed(torch.tensor([0])).abs().sum() == 0


def test_padding_embedding_gets_no_gradient() -> None:
    model = make("sasrec").train()
    model.score(seqs()).masked_fill(torch.isinf(model.score(seqs())), 0).sum().backward()
    assert model.items.embedding.weight.grad[0].abs().sum() == 0
