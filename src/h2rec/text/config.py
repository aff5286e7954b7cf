"""Configuration of the embed stage: which backend turns item text into vectors, and its settings.

Secrets never live here: the API key is read from the environment variable `api.api_key_env`
names, so a config (which is saved next to every artefact) can be shared safely.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, model_validator

from h2rec.config import StrictModel


class ApiConfig(StrictModel):
    # OpenAI-compatible endpoint (`/embeddings` is appended); default $OPENAI_BASE_URL or OpenAI's
    base_url: str = Field(
        default_factory=lambda: os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    )
    # embedding model name on that endpoint (the H2Rec paper used text-embedding-ada-002)
    model: str = "text-embedding-ada-002"
    # environment variable holding the key; unset means no Authorization header (local servers)
    api_key_env: str = "OPENAI_API_KEY"
    # seconds to wait for one reply before the request counts as failed (and is retried)
    timeout: float = Field(60.0, gt=0)
    # retries after 429, 5xx, 408, timeouts and dropped connections (401/403/other 4xx: none)
    max_retries: int = Field(6, ge=0)
    # first wait in seconds when the server sends no Retry-After; doubles on each retry
    backoff: float = Field(1.0, ge=0)
    # cap in seconds on any single wait, Retry-After included
    max_backoff: float = Field(60.0, ge=0)


class TfidfConfig(StrictModel):
    # SVD components; capped by the vocabulary size and the number of items
    dim: int = Field(256, ge=1)
    # randomized-SVD seed: same seed and same texts give the same vectors
    seed: int = 0
    # vocabulary cap (most frequent terms); null keeps every term
    max_features: int | None = Field(50_000, ge=2)
    # longest word n-gram (2 adds bigrams)
    ngram_max: int = Field(1, ge=1, le=3)


class PrecomputedConfig(StrictModel):
    # .npy (rows = internal items 1..n, optional padding row 0) or .parquet (matched by item id)
    path: str | None = None
    # Parquet: column of external item ids (the dataset's `item_id`)
    id_column: str = "item_id"
    # Parquet: list/array column holding one vector per item
    vector_column: str = "embedding"


class EmbedConfig(StrictModel):
    # which backend turns item text into vectors (precomputed: vectors the user brings)
    kind: Literal["sentence-transformers", "api", "tfidf", "precomputed"] = "sentence-transformers"
    # sentence-transformers: local folder or hub name; null: bundled offline all-MiniLM-L6-v2
    model: str | None = None
    # texts per forward pass (sentence-transformers) or per HTTP request (api)
    batch_size: int = Field(64, ge=1)
    # scale every vector to unit length (all kinds; part of the embedder key)
    normalize: bool = True
    # sentence-transformers device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, ...
    device: str = "auto"
    # settings for kind=api
    api: ApiConfig = Field(default_factory=ApiConfig)
    # settings for kind=tfidf
    tfidf: TfidfConfig = Field(default_factory=TfidfConfig)
    # settings for kind=precomputed
    precomputed: PrecomputedConfig = Field(default_factory=PrecomputedConfig)
    # reuse vectors of unchanged texts from the per-model store (sentence-transformers, api)
    cache: bool = True
    # folder of per-model stores; null: $H2REC_CACHE_DIR/embeddings or ~/.cache/h2rec/embeddings
    cache_dir: str | None = None
    # file name under <dataset>/embeddings/; null: derived from kind and model (see default_name)
    name: str | None = None

    @model_validator(mode="after")
    def _check(self) -> EmbedConfig:
        if self.kind == "precomputed" and not self.precomputed.path:
            raise ValueError("kind=precomputed needs precomputed.path (a .npy or .parquet file)")
        if self.name is not None and (
            not self.name or "/" in self.name or self.name.startswith(".")
        ):
            raise ValueError("name must be a plain file name (no '/', not starting with '.')")
        return self
