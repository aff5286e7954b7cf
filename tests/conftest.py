"""Shared fixtures: the real datasets in ../shared/data (skip when absent, fail under CI=true)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from h2rec.progress import set_progress

from .synth_data import prepare_synth

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("H2REC_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real datasets; in CI a missing folder is a failure, not a skip."""
    path = shared_data_dir()
    if not (path / "beauty").is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the shared datasets are missing at {path}")
        pytest.skip(f"shared datasets not found at {path} (set H2REC_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def synth_sid_dataset(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A small prepared synthetic dataset (1,500 users, 400 items in 4 categories) with 64-d TF-IDF
    item vectors named "tfidf" and 3x8 RQ-KMeans SIDs named "rqk": everything a SID/text model
    needs, built offline in a few seconds and shared by the whole session."""
    from h2rec.sid.artifacts import tokenize_dataset
    from h2rec.sid.config import TokenizerConfig
    from h2rec.text import EmbedConfig, embed_items, save_item_embeddings

    root = tmp_path_factory.mktemp("h2rec-synth-sid")
    ds = prepare_synth(root, n_users=1500, n_items=400, n_categories=4, seed=7)
    emb = embed_items(ds, EmbedConfig(kind="tfidf", tfidf={"dim": 64}), cache_dir=root / "cache")
    save_item_embeddings(emb, ds, "tfidf")
    tok = TokenizerConfig(method="rqkmeans", levels=3, codebook_size=8, seed=0)
    tokenize_dataset(ds, tok, embeddings="tfidf", name="rqk")
    return ds


@pytest.fixture(autouse=True)
def _no_progress() -> None:
    set_progress(False)
