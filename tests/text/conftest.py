"""Fixtures for the text tests: one torch thread, a private cache dir, small datasets, a fake API."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from h2rec.data.dataset import Dataset
from h2rec.data.preprocess import build_dataset
from h2rec.text import Embedder

from ..data.helpers import config, raw_from_rows

# the hub library reads this when first imported (test collection may import it): no network, ever
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _one_thread_private_cache(monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> None:
    """Other jobs share the CPUs; and no test may write to the user's real ~/.cache."""
    torch.set_num_threads(1)
    monkeypatch.setenv("H2REC_CACHE_DIR", str(tmp_path_factory.mktemp("h2rec-cache")))


def make_dataset(texts: Sequence[str], name: str = "t") -> Dataset:
    """A dataset whose internal items 1..n have exactly `texts` (in that order)."""
    ids = [f"i{k:03d}" for k in range(len(texts))]
    rows = [("u0", item, k) for k, item in enumerate(ids)] + [
        ("u1", ids[0], 99),
        ("u1", ids[-1], 100),
    ]
    raw = raw_from_rows(rows, items={i: {"title": f"t{k}"} for k, i in enumerate(ids)})
    ds = build_dataset(raw, config(name=name, text={"template": "{title}"}))
    assert list(ds.item_ids[1:]) == ids
    return with_texts(ds, texts)


def with_texts(ds: Dataset, texts: Sequence[str]) -> Dataset:
    """The same dataset with other item texts (a copy; the original is unchanged)."""
    assert ds.items is not None
    items = ds.items.with_columns(pl.Series("text", list(texts), dtype=pl.String))
    return dataclasses.replace(ds, items=items)


def fake_vector(text: str, dim: int) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).normal(size=dim).round(6).tolist()


class CountingEmbedder(Embedder):
    """Deterministic per-text vectors; counts how many texts it was asked to embed."""

    def __init__(self, key: str = "fake:v1", dim: int = 4) -> None:
        self._key, self._dim = key, dim
        self.calls = 0
        self.n_texts = 0
        self.batch_size = 2  # small chunks, so chunking and flushing are exercised

    @property
    def key(self) -> str:
        return self._key

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.n_texts += len(texts)
        return np.array([fake_vector(t, self._dim) for t in texts], dtype=np.float32)


class FakeEmbeddingServer:
    """OpenAI-style `/embeddings` on 127.0.0.1; `script` holds one action per coming request.

    Actions: ("status", code, headers, body), ("sleep", seconds) (then a normal reply),
    ("raw", bytes), ("drop_one",) (one vector too few). An empty script means a normal reply.
    """

    dim = 8

    def __init__(self) -> None:
        self.script: list[tuple[Any, ...]] = []
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                server.auth.append(self.headers.get("Authorization"))
                action = server.script.pop(0) if server.script else ("ok",)
                # the client may have timed out and left
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    server.respond(self, body, action)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def respond(self, h: BaseHTTPRequestHandler, body: dict[str, Any], action: tuple) -> None:
        kind = action[0]
        if kind == "status":
            _, code, headers, payload = action
            self._send(h, code, payload, headers)
            return
        if kind == "raw":
            self._send(h, 200, action[1])
            return
        if kind == "sleep":
            time.sleep(action[1])
        texts = body["input"]
        data = [
            {"object": "embedding", "index": i, "embedding": fake_vector(t, self.dim)}
            for i, t in enumerate(texts)
        ]
        if kind == "drop_one":
            data = data[:-1]
        data.reverse()  # clients must order by "index", not by position
        self._send(h, 200, json.dumps({"object": "list", "data": data, "model": body["model"]}))

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler, code: int, payload: str | bytes, headers: dict | None = None
    ) -> None:
        raw = payload.encode() if isinstance(payload, str) else payload
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(raw)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_api() -> Iterator[FakeEmbeddingServer]:
    server = FakeEmbeddingServer()
    try:
        yield server
    finally:
        server.close()
