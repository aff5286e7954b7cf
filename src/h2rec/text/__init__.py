"""Text -> embedding: item text to one vector per item (sentence-transformers, an OpenAI-compatible
API, TF-IDF + SVD, or precomputed vectors), with a per-text cache and stamped saved artefacts."""

from __future__ import annotations

from h2rec.text.api import ApiEmbedder, EmbeddingAPIError, EmbeddingAuthError
from h2rec.text.base import Embedder, EmbeddingError, StaleEmbeddingsError, l2_normalize
from h2rec.text.cache import TextVectorStore, default_cache_dir
from h2rec.text.config import ApiConfig, EmbedConfig, PrecomputedConfig, TfidfConfig
from h2rec.text.pipeline import (
    ItemEmbeddings,
    default_name,
    embed_items,
    embed_texts,
    list_item_embeddings,
    load_item_embeddings,
    make_embedder,
    save_item_embeddings,
)
from h2rec.text.precomputed import load_precomputed
from h2rec.text.sentence import SentenceTransformerEmbedder, bundled_model_path
from h2rec.text.tfidf import TfidfSvdEmbedder

__all__ = [
    "ApiConfig",
    "ApiEmbedder",
    "EmbedConfig",
    "Embedder",
    "EmbeddingAPIError",
    "EmbeddingAuthError",
    "EmbeddingError",
    "ItemEmbeddings",
    "PrecomputedConfig",
    "SentenceTransformerEmbedder",
    "StaleEmbeddingsError",
    "TextVectorStore",
    "TfidfConfig",
    "TfidfSvdEmbedder",
    "bundled_model_path",
    "default_cache_dir",
    "default_name",
    "embed_items",
    "embed_texts",
    "l2_normalize",
    "list_item_embeddings",
    "load_item_embeddings",
    "load_precomputed",
    "make_embedder",
    "save_item_embeddings",
]
