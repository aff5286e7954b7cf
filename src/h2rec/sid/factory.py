"""Method name -> tokenizer class, so configs and saved folders can name their method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from h2rec.sid.base import Tokenizer
from h2rec.sid.config import TokenizerConfig


def tokenizer_classes() -> dict[str, type[Tokenizer]]:
    from h2rec.sid.pq import PQTokenizer
    from h2rec.sid.rqkmeans import RQKMeansTokenizer, VQTokenizer
    from h2rec.sid.rqvae import RQVAETokenizer

    return {
        "rqvae": RQVAETokenizer,
        "rqkmeans": RQKMeansTokenizer,
        "pq": PQTokenizer,
        "vq": VQTokenizer,
    }


def build_tokenizer(
    cfg: TokenizerConfig | dict[str, Any] | None = None, **overrides: Any
) -> Tokenizer:
    """An unfitted tokenizer for `cfg` (a TokenizerConfig or a plain mapping; keywords override)."""
    if cfg is None:
        data: dict[str, Any] = {}
    elif isinstance(cfg, TokenizerConfig):
        data = cfg.model_dump()
    else:
        data = dict(cfg)
    if overrides or not isinstance(cfg, TokenizerConfig):
        if overrides.get("method", data.get("method")) != data.get("method"):
            data.pop("levels", None)  # let the new method pick its default
        data.update(overrides)
        cfg = TokenizerConfig.model_validate(data)
    return tokenizer_classes()[cfg.method](cfg)


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A tokenizer saved with `Tokenizer.save` (any method)."""
    return Tokenizer.load(path)
