"""Shared fixtures: the real datasets in ../shared/data (skip when absent, fail under CI=true)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from h2rec.progress import set_progress

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


@pytest.fixture(autouse=True)
def _no_progress() -> None:
    set_progress(False)
