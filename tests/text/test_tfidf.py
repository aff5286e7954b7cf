"""TF-IDF + truncated SVD: seeded, dim capped, corpus-dependent key, no per-text cache."""

from __future__ import annotations

import numpy as np
import pytest

from h2rec.text import EmbedConfig, EmbeddingError, TfidfSvdEmbedder, embed_items

from .conftest import make_dataset, with_texts

pytest.importorskip("sklearn")

TEXTS = [
    "red matte lipstick",
    "glossy red lip color",
    "lip balm with spf",
    "car battery charger",
    "car wax polish",
    "hair shampoo for dry hair",
    "hair conditioner for curly hair",
    "face cream for dry skin",
    "night face serum",
    "nail polish red",
]


def test_deterministic_under_seed_and_unit_norm() -> None:
    a = TfidfSvdEmbedder(dim=4, seed=3)
    b = TfidfSvdEmbedder(dim=4, seed=3)
    va, vb = a.embed(TEXTS), b.embed(TEXTS)
    assert va.shape == (10, 4) and va.dtype == np.float32
    np.testing.assert_allclose(va, vb, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(va, axis=1), 1.0, atol=1e-5)
    assert a.key == b.key and a.key.startswith("tfidf-svd:4:seed3:corpus")
    # lipstick is closer to lip colour than to a car battery
    assert va[0] @ va[1] > va[0] @ va[3]


def test_dim_capped_by_vocabulary_and_items() -> None:
    emb = TfidfSvdEmbedder(dim=500)
    out = emb.embed(TEXTS)
    assert emb.dim == out.shape[1] == 10  # 10 texts < vocabulary size < 500
    tiny = TfidfSvdEmbedder(dim=50)
    out = tiny.embed(["alpha beta", "beta gamma", "alpha gamma", "alpha", "beta"])
    assert tiny.dim == out.shape[1] == 3  # 3 terms
    with pytest.raises(EmbeddingError, match="no words"):
        TfidfSvdEmbedder().embed(["", " ", "a"])


def test_key_follows_the_corpus_and_no_per_text_cache(tmp_path) -> None:
    ds = make_dataset(TEXTS)
    cfg = EmbedConfig(kind="tfidf", tfidf={"dim": 4, "seed": 0})
    r1 = embed_items(ds, cfg, cache_dir=tmp_path)
    r2 = embed_items(ds, cfg, cache_dir=tmp_path)
    np.testing.assert_allclose(r1.vectors, r2.vectors, atol=1e-6)
    assert r1.key == r2.key and r1.name == "tfidf-svd-4"
    assert r1.info["n_embedded"] == 10 and r1.info["n_from_cache"] == 0
    assert not any(tmp_path.iterdir())  # nothing cached
    changed = [*TEXTS[:-1], "something else entirely"]
    r3 = embed_items(with_texts(ds, changed), cfg, cache_dir=tmp_path)
    assert r3.key != r1.key
