"""embed_items policies, the saved artefacts (round trip, stale refusal) and the config."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from h2rec.config import load_config, validate
from h2rec.errors import ConfigError
from h2rec.progress import set_progress
from h2rec.text import (
    EmbedConfig,
    EmbeddingError,
    StaleEmbeddingsError,
    default_name,
    embed_items,
    list_item_embeddings,
    load_item_embeddings,
    save_item_embeddings,
)

from .conftest import CountingEmbedder, make_dataset, with_texts

TEXTS = ["red lipstick", "car battery", "face cream", "hair dryer"]


def test_save_load_round_trip(tmp_path) -> None:
    ds = make_dataset(TEXTS)
    ds.path = tmp_path / "prepared"
    res = embed_items(ds, cache_dir=tmp_path / "c", embedder=CountingEmbedder())
    npy = save_item_embeddings(res, ds, "fake")
    assert npy == tmp_path / "prepared" / "embeddings" / "fake.npy"
    meta = json.loads(npy.with_suffix(".json").read_text())
    assert meta["embedder_key"] == "fake:v1" and meta["dim"] == 4
    assert meta["dataset_content_hash"] == ds.content_hash()
    assert meta["texts_sha256"] == res.texts_sha256 and meta["created"]
    assert meta["info"]["n_embedded"] == 4 and meta["config"]["kind"] == "sentence-transformers"
    back = load_item_embeddings(ds, "fake")
    np.testing.assert_array_equal(back.vectors, res.vectors)
    assert back.key == res.key and back.dim == 4 and back.meta is not None
    assert list_item_embeddings(ds) == ["fake"]
    assert not list(npy.parent.glob(".*"))  # no temp files left behind


def test_load_refuses_stale_files(tmp_path) -> None:
    ds = make_dataset(TEXTS)
    ds.path = tmp_path
    save_item_embeddings(embed_items(ds, embedder=CountingEmbedder()), ds, "e")
    edited = with_texts(ds, [*TEXTS[:3], "hair straightener"])
    with pytest.raises(StaleEmbeddingsError, match=r"e\.npy is stale: the item texts .* changed"):
        load_item_embeddings(edited, "e")
    moved = dataclasses.replace(ds, inter_split=ds.inter_split[::-1].copy())
    with pytest.raises(
        StaleEmbeddingsError, match="item texts are the same, but ids, interactions"
    ):
        load_item_embeddings(moved, "e")
    with pytest.raises(EmbeddingError, match="no saved embeddings named 'nope' \\(saved: e\\)"):
        load_item_embeddings(ds, "nope")
    # a .npy replaced behind the JSON's back (half-finished update) is refused too
    np.save(tmp_path / "embeddings" / "e.npy", np.zeros((5, 4), np.float32))
    with pytest.raises(StaleEmbeddingsError, match=r"does not match e\.json"):
        load_item_embeddings(ds, "e")


def test_save_needs_a_folder_and_matching_size(tmp_path) -> None:
    ds = make_dataset(TEXTS)
    res = embed_items(ds, embedder=CountingEmbedder())
    with pytest.raises(EmbeddingError, match="has no folder"):
        save_item_embeddings(res, ds)
    other = make_dataset(TEXTS[:3])
    other.path = tmp_path
    with pytest.raises(EmbeddingError, match="embeddings have 4 items"):
        save_item_embeddings(res, other)


def test_empty_texts_share_a_vector_and_all_empty_is_refused(caplog) -> None:
    ds = make_dataset(["red lipstick", "", "car battery", "  "])
    res = embed_items(ds, embedder=CountingEmbedder())
    assert res.info["n_empty"] == 2 and "2 of 4 items have empty text" in caplog.text
    np.testing.assert_array_equal(res.vectors[2], CountingEmbedder().embed([""])[0])
    with pytest.raises(
        EmbeddingError, match=r"no item text \(all 4 items are empty\).*precomputed"
    ):
        embed_items(with_texts(ds, [""] * 4), embedder=CountingEmbedder())


def test_progress_bar_path_runs(capsys) -> None:
    set_progress(True)
    res = embed_items(make_dataset(TEXTS), EmbedConfig(cache=False), embedder=CountingEmbedder())
    assert res.info["items_per_s"] > 0 and res.info["n_embedded"] == 4
    assert "items/s" in capsys.readouterr().out


def test_config_validation_and_names() -> None:
    cfg = load_config(EmbedConfig, None, ["kind=tfidf", "tfidf.dim=32", "normalize=false"])
    assert cfg.tfidf.dim == 32 and default_name(cfg) == "tfidf-svd-32-raw"
    assert default_name(EmbedConfig()) == "st-all-minilm-l6-v2"
    assert default_name(EmbedConfig(kind="api")) == "api-text-embedding-ada-002"
    assert default_name(EmbedConfig(name="mine")) == "mine"
    with pytest.raises(ConfigError, match="kind: Input should be"):
        validate(EmbedConfig, {"kind": "word2vec"})
    with pytest.raises(ConfigError, match=r"api\.api_key: Extra inputs"):
        validate(EmbedConfig, {"api": {"api_key": "sk-..."}})  # keys never go in configs
    with pytest.raises(ConfigError, match=r"needs precomputed\.path"):
        validate(EmbedConfig, {"kind": "precomputed"})
    with pytest.raises(ConfigError, match="plain file name"):
        validate(EmbedConfig, {"name": "../x"})
