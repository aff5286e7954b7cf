"""Data stage: readers, preprocessing, splits, the prepared-dataset cache and the synthetic default."""

from __future__ import annotations

from h2rec.data.cache import load as load_dataset
from h2rec.data.config import PrepareConfig
from h2rec.data.dataset import Dataset
from h2rec.data.prepare import prepare
from h2rec.data.readers import read_source
from h2rec.data.stats import compute_stats

__all__ = ["Dataset", "PrepareConfig", "compute_stats", "load_dataset", "prepare", "read_source"]
