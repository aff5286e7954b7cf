"""The OpenAI-compatible client against a fake server on loopback: batching, retries, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from h2rec.config import load_config
from h2rec.text import (
    ApiEmbedder,
    EmbedConfig,
    EmbeddingAPIError,
    EmbeddingAuthError,
    embed_items,
    make_embedder,
)
from h2rec.text.api import parse_retry_after

from .conftest import FakeEmbeddingServer, fake_vector, make_dataset

SECRET = "sk-test-DO-NOT-PRINT-1234567890"


def client(server: FakeEmbeddingServer, sleeps: list[float] | None = None, **kw) -> ApiEmbedder:
    kw.setdefault("timeout", 5.0)
    return ApiEmbedder(
        server.url,
        "text-embedding-ada-002",
        api_key_env="H2REC_TEST_KEY",
        backoff=0.5,
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
        **kw,
    )


def test_batches_sorts_by_index_and_sends_the_key(fake_api, monkeypatch) -> None:
    monkeypatch.setenv("H2REC_TEST_KEY", SECRET)
    texts = [f"item {k}" for k in range(7)]
    emb = client(fake_api, batch_size=3, normalize=False)
    out = emb.embed(texts)
    assert len(fake_api.requests) == 3  # 3 + 3 + 1
    assert [len(r["input"]) for r in fake_api.requests] == [3, 3, 1]
    assert fake_api.requests[0] == {"model": "text-embedding-ada-002", "input": texts[:3]}
    assert fake_api.auth == [f"Bearer {SECRET}"] * 3
    np.testing.assert_allclose(out, [fake_vector(t, 8) for t in texts], rtol=1e-6)
    assert emb.dim == 8 and out.dtype == np.float32
    assert emb.key == f"api:{fake_api.url}:text-embedding-ada-002:raw"
    normed = client(fake_api).embed(texts[:2])
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, rtol=1e-6)


def test_429_with_retry_after_then_success(fake_api) -> None:
    fake_api.script = [("status", 429, {"Retry-After": "3"}, '{"error": "slow down"}')]
    sleeps: list[float] = []
    out = client(fake_api, sleeps).embed(["a", "b"])
    assert out.shape == (2, 8) and len(fake_api.requests) == 2
    assert sleeps == [3.0]  # the server's Retry-After, not the backoff


def test_500_twice_then_success_with_exponential_backoff(fake_api) -> None:
    fake_api.script = [("status", 500, {}, "oops"), ("status", 503, {}, "busy")]
    sleeps: list[float] = []
    client(fake_api, sleeps).embed(["a"])
    assert len(fake_api.requests) == 3 and sleeps == [0.5, 1.0]


def test_gives_up_after_max_retries(fake_api) -> None:
    fake_api.script = [("status", 502, {}, "bad gateway")] * 3
    with pytest.raises(EmbeddingAPIError, match=r"gave up after 3 attempts.*HTTP 502"):
        client(fake_api, max_retries=2).embed(["a"])


@pytest.mark.parametrize("code", [401, 403])
def test_auth_failure_is_immediate_and_never_shows_the_key(fake_api, monkeypatch, code) -> None:
    monkeypatch.setenv("H2REC_TEST_KEY", SECRET)
    fake_api.script = [("status", code, {}, json.dumps({"error": f"bad key {SECRET}"}))] * 5
    sleeps: list[float] = []
    with pytest.raises(EmbeddingAuthError) as info:
        client(fake_api, sleeps).embed(["a"])
    msg = str(info.value)
    assert len(fake_api.requests) == 1 and sleeps == []  # no retries
    assert "H2REC_TEST_KEY" in msg and fake_api.url in msg and f"HTTP {code}" in msg
    assert SECRET not in msg and "sk-" not in msg


def test_missing_key_is_named_in_the_auth_error(fake_api, monkeypatch) -> None:
    monkeypatch.delenv("H2REC_TEST_KEY", raising=False)
    fake_api.script = [("status", 401, {}, "{}")]
    with pytest.raises(EmbeddingAuthError, match="H2REC_TEST_KEY is not set"):
        client(fake_api).embed(["a"])
    assert fake_api.auth == [None]


def test_other_4xx_is_not_retried_and_shows_the_reason(fake_api, monkeypatch) -> None:
    monkeypatch.setenv("H2REC_TEST_KEY", SECRET)
    fake_api.script = [("status", 400, {}, f'{{"error": "input too long for {SECRET}"}}')]
    with pytest.raises(EmbeddingAPIError, match=r"HTTP 400.*input too long") as info:
        client(fake_api).embed(["a"])
    assert SECRET not in str(info.value) and len(fake_api.requests) == 1


def test_malformed_json_reply(fake_api) -> None:
    fake_api.script = [("raw", b"<html>gateway</html>")]
    with pytest.raises(EmbeddingAPIError, match=r"not valid JSON.*<html>"):
        client(fake_api).embed(["a"])
    fake_api.script = [("raw", b'{"result": []}')]
    with pytest.raises(EmbeddingAPIError, match="no 'data' list"):
        client(fake_api).embed(["a"])


def test_wrong_number_of_vectors(fake_api) -> None:
    fake_api.script = [("drop_one",)]
    with pytest.raises(EmbeddingAPIError, match="sent 3 texts but the reply has 2 vectors"):
        client(fake_api).embed(["a", "b", "c"])


def test_timeout_is_retried(fake_api) -> None:
    fake_api.script = [("sleep", 0.8)]
    sleeps: list[float] = []
    out = client(fake_api, sleeps, timeout=0.25).embed(["a", "b"])
    assert out.shape == (2, 8) and len(fake_api.requests) == 2 and sleeps == [0.5]


def test_connection_refused_is_retried_then_reported() -> None:
    server = FakeEmbeddingServer()
    url = server.url
    server.close()
    emb = ApiEmbedder(url, "m", max_retries=1, sleep=lambda s: None, timeout=2)
    with pytest.raises(EmbeddingAPIError, match=r"gave up after 2 attempts.*connection"):
        emb.embed(["a"])


def test_empty_text_is_sent_as_a_space(fake_api) -> None:
    client(fake_api).embed(["", "x"])
    assert fake_api.requests[0]["input"] == [" ", "x"]


def test_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470) == 10
    assert parse_retry_after({}) is None


def test_from_config_and_pipeline_with_cache(fake_api, tmp_path) -> None:
    cfg = load_config(
        EmbedConfig,
        None,
        ["kind=api", f"api.base_url={fake_api.url}", "api.model=m1", "batch_size=4"],
    )
    assert isinstance(make_embedder(cfg), ApiEmbedder)
    ds = make_dataset([f"text {k}" for k in range(10)])
    first = embed_items(ds, cfg, cache_dir=tmp_path)
    assert first.vectors.shape == (11, 8) and first.info["n_embedded"] == 10
    n = len(fake_api.requests)
    again = embed_items(ds, cfg, cache_dir=tmp_path)
    assert len(fake_api.requests) == n and again.info["n_from_cache"] == 10  # no HTTP at all
    np.testing.assert_array_equal(again.vectors, first.vectors)


def test_base_url_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert EmbedConfig(kind="api").api.base_url == "http://127.0.0.1:9/v1"
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert EmbedConfig(kind="api").api.base_url == "https://api.openai.com/v1"
