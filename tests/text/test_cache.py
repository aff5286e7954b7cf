"""The per-text cache: only new or changed texts are embedded; keys never mix."""

from __future__ import annotations

import numpy as np
import pytest

from h2rec.text import EmbedConfig, EmbeddingError, TextVectorStore, embed_items, embed_texts
from h2rec.text.base import text_digest
from h2rec.text.cache import default_cache_dir, store_dir

from .conftest import CountingEmbedder, fake_vector, make_dataset, with_texts

TEXTS = [f"product number {k}" for k in range(12)]


def test_second_run_embeds_nothing_and_one_change_reembeds_one(tmp_path) -> None:
    ds = make_dataset(TEXTS)
    emb = CountingEmbedder()
    first = embed_items(ds, cache_dir=tmp_path, embedder=emb)
    assert (first.info["n_embedded"], first.info["n_from_cache"]) == (12, 0)
    assert emb.n_texts == 12
    assert first.vectors.shape == (13, 4) and not first.vectors[0].any()
    np.testing.assert_allclose(first.vectors[5], fake_vector(TEXTS[4], 4), rtol=1e-6)

    emb2 = CountingEmbedder()
    second = embed_items(ds, cache_dir=tmp_path, embedder=emb2)
    assert emb2.n_texts == 0 and second.info["n_embedded"] == 0
    assert second.info["n_from_cache"] == 12
    np.testing.assert_array_equal(second.vectors, first.vectors)

    changed = list(TEXTS)
    changed[7] = "a brand new description"
    emb3 = CountingEmbedder()
    third = embed_items(with_texts(ds, changed), cache_dir=tmp_path, embedder=emb3)
    assert emb3.n_texts == 1 and third.info["n_embedded"] == 1
    np.testing.assert_allclose(third.vectors[8], fake_vector(changed[7], 4), rtol=1e-6)
    np.testing.assert_array_equal(np.delete(third.vectors, 8, 0), np.delete(first.vectors, 8, 0))


def test_other_model_key_reembeds_everything(tmp_path) -> None:
    ds = make_dataset(TEXTS)
    embed_items(ds, cache_dir=tmp_path, embedder=CountingEmbedder("fake:v1"))
    other = CountingEmbedder("fake:v2")
    res = embed_items(ds, cache_dir=tmp_path, embedder=other)
    assert other.n_texts == 12 and res.info["n_embedded"] == 12
    assert store_dir(tmp_path, "fake:v1") != store_dir(tmp_path, "fake:v2")


def test_cache_is_shared_across_datasets_and_duplicates_embedded_once(tmp_path) -> None:
    embed_items(make_dataset(TEXTS[:6], name="a"), cache_dir=tmp_path, embedder=CountingEmbedder())
    emb = CountingEmbedder()
    res = embed_items(
        make_dataset([*TEXTS[3:9], TEXTS[8]], name="b"), cache_dir=tmp_path, embedder=emb
    )
    assert emb.n_texts == 3  # TEXTS[6:9]; TEXTS[8] twice but embedded once
    assert res.info["n_from_cache"] == 3 and res.info["n_unique_texts"] == 6
    np.testing.assert_array_equal(res.vectors[6], res.vectors[7])


def test_cache_off_and_default_dir(tmp_path, monkeypatch) -> None:
    ds = make_dataset(TEXTS[:3])
    embed_items(ds, EmbedConfig(cache=False), embedder=CountingEmbedder())
    emb = CountingEmbedder()
    embed_items(ds, EmbedConfig(cache=False), embedder=emb)
    assert emb.n_texts == 3
    monkeypatch.setenv("H2REC_CACHE_DIR", str(tmp_path / "root"))
    assert default_cache_dir() == tmp_path / "root" / "embeddings"
    embed_items(ds, embedder=CountingEmbedder())
    assert (store_dir(tmp_path / "root" / "embeddings", "fake:v1") / "meta.json").is_file()


def test_store_survives_reopen_compaction_and_bad_shards(tmp_path) -> None:
    store = TextVectorStore(tmp_path, "k")
    for k in range(9):  # nine runs -> nine shards -> compacted into one
        store.add([text_digest(f"t{k}")], np.full((1, 3), k, np.float32))
        store.flush()
    store.compact()
    assert len(list(store.path.glob("shard-*.npz"))) == 1
    (store.path / "shard-zzz.npz").write_bytes(b"not a zip")  # e.g. copied by hand, truncated
    again = TextVectorStore(tmp_path, "k")
    assert len(again) == 9 and again.dim == 3
    np.testing.assert_array_equal(again.get_many([text_digest("t4")]), [[4, 4, 4]])
    with pytest.raises(EmbeddingError, match="size 5"):
        again.add([text_digest("x")], np.zeros((1, 5), np.float32))


def test_embedder_returning_another_size_than_the_cache_is_refused(tmp_path) -> None:
    embed_texts(["a", "b"], CountingEmbedder(dim=4), store=TextVectorStore(tmp_path, "fake:v1"))
    with pytest.raises(EmbeddingError, match="size"):
        embed_texts(["a", "c"], CountingEmbedder(dim=6), store=TextVectorStore(tmp_path, "fake:v1"))


def test_interrupted_run_keeps_flushed_work(tmp_path) -> None:
    class Boom(CountingEmbedder):
        def embed(self, texts):
            if self.calls == 2:
                raise KeyboardInterrupt
            return super().embed(texts)

    texts = [f"x{k}" for k in range(20)]
    with pytest.raises(KeyboardInterrupt):
        embed_texts(texts, Boom(), store=TextVectorStore(tmp_path, "fake:v1"))
    emb = CountingEmbedder()
    _, info = embed_texts(texts, emb, store=TextVectorStore(tmp_path, "fake:v1"))
    assert info["n_from_cache"] == 16 and emb.n_texts == 4  # two chunks of 8 were kept
