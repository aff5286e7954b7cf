"""Fixtures for the SID tests: single-threaded torch/faiss and small Gaussian-mixture data.

One thread keeps results bit-reproducible (float reductions depend on the thread count) and
keeps the suite from fighting other jobs for the machine's cores.
"""

from __future__ import annotations

from collections.abc import Iterator

import faiss
import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    torch_threads = torch.get_num_threads()
    faiss_threads = faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(torch_threads)
    faiss.omp_set_num_threads(faiss_threads)


def gaussian_mixture(
    n: int = 1000, d: int = 16, clusters: int = 12, seed: int = 0, spread: float = 4.0
) -> np.ndarray:
    """n points in d dims from `clusters` isotropic Gaussians with well-separated means."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(clusters, d)) * spread
    labels = rng.integers(0, clusters, size=n)
    return (means[labels] + rng.normal(size=(n, d))).astype(np.float32)


@pytest.fixture(scope="session")
def mixture() -> np.ndarray:
    return gaussian_mixture()


@pytest.fixture(scope="session")
def mixture_new() -> np.ndarray:
    """Fresh points of the same kind (for encoding without refitting)."""
    return gaussian_mixture(n=200, seed=1)
