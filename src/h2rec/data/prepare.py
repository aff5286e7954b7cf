"""The `prepare` stage as one call: read a source, preprocess, split, and cache it."""

from __future__ import annotations

import logging
from pathlib import Path

from h2rec.config import dump_yaml
from h2rec.data import cache
from h2rec.data.config import PrepareConfig
from h2rec.data.dataset import Dataset
from h2rec.data.preprocess import build_dataset
from h2rec.data.readers import read_source
from h2rec.io import atomic_write_text

log = logging.getLogger("h2rec")


def prepare(
    cfg: PrepareConfig, out_dir: str | Path | None = None, *, force: bool = False
) -> Dataset:
    """Prepare a dataset and write it to `out_dir` (default from the config).

    An existing cache made from the same config and unchanged source files is reused unless
    `force` is set.
    """
    out = Path(out_dir or cfg.output_dir())
    resolved = cfg.model_dump(mode="json")
    if not force and cache.is_fresh(out, resolved):
        log.info("%s is up to date; reusing it (use --force to rebuild)", out)
        return cache.load(out)
    raw = read_source(cfg.source)
    ds = build_dataset(raw, cfg)
    cache.save(ds, out, config=resolved, source=raw.source)
    atomic_write_text(out / "config.yaml", dump_yaml(cfg))
    return ds
