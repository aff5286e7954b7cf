"""OpenAI-compatible embeddings over HTTP (`POST <base_url>/embeddings`), standard library only.

Retries with exponential backoff on 429 (honouring Retry-After), 5xx, 408, timeouts and dropped
connections; stops at once on 401/403 and other 4xx, which retrying cannot fix. The key is read
from an environment variable and never appears in a message, a key, a log or a stamp.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy as np

from h2rec.text.base import Embedder, EmbeddingError, check_vectors, l2_normalize

log = logging.getLogger("h2rec")

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class EmbeddingAPIError(EmbeddingError):
    """The embeddings server refused or garbled a request; `status` is the HTTP code when known."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class EmbeddingAuthError(EmbeddingAPIError):
    """401/403: the key is missing or not accepted. Not retried."""


class _Retryable(Exception):
    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.wait = wait


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` (OpenAI) or `Retry-After` (seconds or HTTP date)."""
    ms = headers.get("retry-after-ms") if headers is not None else None
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class ApiEmbedder(Embedder):
    """Embeds texts with an OpenAI-compatible `/embeddings` endpoint, `batch_size` texts a request."""

    def __init__(
        self,
        base_url: str = "https://api.openai.com/v1",
        model: str = "text-embedding-ada-002",
        *,
        api_key_env: str = "OPENAI_API_KEY",
        batch_size: int = 64,
        normalize: bool = True,
        timeout: float = 60.0,
        max_retries: int = 6,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/embeddings"
        self.model = model
        self.api_key_env = api_key_env
        self.batch_size = batch_size
        self.normalize = normalize
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._dim: int | None = None
        self.n_requests = 0  # HTTP attempts made (retries included), for logs and tests
        host = urllib.parse.urlsplit(self.url).hostname or ""
        # loopback servers (local inference, tests) must not go through an HTTP(S)_PROXY
        handlers = [urllib.request.ProxyHandler({})] if host in _LOOPBACK else []
        self._opener = urllib.request.build_opener(*handlers)

    @property
    def key(self) -> str:
        return f"api:{self.base_url}:{self.model}:{'norm' if self.normalize else 'raw'}"

    @property
    def dim(self) -> int | None:
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        parts = [
            self._embed_batch(texts[i : i + self.batch_size])
            for i in range(0, len(texts), self.batch_size)
        ]
        if not parts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        out = np.concatenate(parts)
        return l2_normalize(out) if self.normalize else out

    # ---- one batch -------------------------------------------------------------------------------
    def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        # OpenAI rejects empty strings; a single space embeds "no text" the same way every time
        payload = {"model": self.model, "input": [t if t.strip() else " " for t in texts]}
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                return self._parse(self._post(body), len(texts))
            except _Retryable as exc:
                last = str(exc)
                if attempt == self.max_retries:
                    break
                wait = exc.wait if exc.wait is not None else self.backoff * 2**attempt
                wait = min(wait, self.max_backoff)
                log.warning(
                    "%s: %s; retry %d/%d in %.1fs",
                    self.url,
                    last,
                    attempt + 1,
                    self.max_retries,
                    wait,
                )
                self._sleep(wait)
        raise EmbeddingAPIError(
            f"{self.url}: gave up after {self.max_retries + 1} attempts; last error: {last}"
        )

    def _post(self, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        self.n_requests += 1
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            self._raise_for_status(exc, key)
        except TimeoutError as exc:  # socket.timeout is TimeoutError since Python 3.10
            raise _Retryable(f"no reply within {self.timeout:g}s") from exc
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise _Retryable(f"no reply within {self.timeout:g}s") from exc
            if isinstance(reason, socket.gaierror):  # a typo in the host: retrying cannot help
                raise EmbeddingAPIError(f"{self.url}: cannot resolve the host ({reason})") from None
            if isinstance(reason, OSError):  # refused, reset, unreachable: often transient
                raise _Retryable(f"connection failed ({reason})") from exc
            raise EmbeddingAPIError(f"{self.url}: request failed ({reason})") from None
        except (ConnectionError, http.client.HTTPException) as exc:
            raise _Retryable(f"connection dropped ({type(exc).__name__}: {exc})") from exc

    def _raise_for_status(self, exc: urllib.error.HTTPError, key: str | None) -> NoReturn:
        status = exc.code
        try:
            text = exc.read(2000).decode("utf-8", "replace")
        except Exception:
            text = ""
        finally:
            exc.close()
        if status in (401, 403):
            # the body is left out: some servers echo part of the key back
            how = (
                f"the environment variable {self.api_key_env} is not set"
                if not key
                else f"check the key in the environment variable {self.api_key_env}"
            )
            raise EmbeddingAuthError(
                f"{self.url}: authentication failed (HTTP {status}); {how}", status=status
            ) from None
        if status == 429:
            raise _Retryable("rate limited (HTTP 429)", parse_retry_after(exc.headers)) from None
        if status >= 500 or status == 408:
            raise _Retryable(
                f"server error (HTTP {status})", parse_retry_after(exc.headers)
            ) from None
        snippet = " ".join(text.split())[:300]
        if key:
            snippet = snippet.replace(key, "***")
        raise EmbeddingAPIError(
            f"{self.url}: HTTP {status} for model '{self.model}': {snippet or exc.reason}",
            status=status,
        ) from None

    def _parse(self, raw: bytes, n: int) -> np.ndarray:
        try:
            reply = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            start = raw[:120].decode("utf-8", "replace")
            raise EmbeddingAPIError(
                f"{self.url}: reply is not valid JSON ({exc}); it starts with {start!r}"
            ) from None
        data = reply.get("data") if isinstance(reply, dict) else None
        if not isinstance(data, list):
            raise EmbeddingAPIError(f"{self.url}: reply has no 'data' list (keys: {_keys(reply)})")
        if len(data) != n:
            raise EmbeddingAPIError(
                f"{self.url}: sent {n} texts but the reply has {len(data)} vectors"
            )
        try:
            items = sorted(data, key=lambda d: int(d["index"]))
            indices = [int(d["index"]) for d in items]
            vectors = [d["embedding"] for d in items]
        except (TypeError, KeyError, ValueError) as exc:
            raise EmbeddingAPIError(
                f"{self.url}: reply entries need 'index' and 'embedding' ({type(exc).__name__}: {exc})"
            ) from None
        if indices != list(range(n)):
            raise EmbeddingAPIError(f"{self.url}: reply indices are not 0..{n - 1}")
        if any(not isinstance(v, list) for v in vectors):
            raise EmbeddingAPIError(
                f"{self.url}: 'embedding' must be a list of floats (base64 replies are not supported)"
            )
        lengths = {len(v) for v in vectors}
        if len(lengths) != 1:
            raise EmbeddingAPIError(
                f"{self.url}: vectors in one reply differ in size {sorted(lengths)}"
            )
        try:
            arr = np.asarray(vectors, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise EmbeddingAPIError(f"{self.url}: vectors are not numbers ({exc})") from None
        arr = check_vectors(arr, source=self.url, dim=self._dim)
        self._dim = arr.shape[1]
        return arr


def _keys(obj: Any) -> str:
    return ", ".join(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
