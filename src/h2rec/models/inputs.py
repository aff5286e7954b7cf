"""Data a model is built from that is not a hyperparameter: popularity, semantic IDs, codebooks,
text vectors and the training sequences.

Configs stay small and hashable (they name artefacts, e.g. `sids: rqvae-4x128`); the arrays they
name are loaded by the training stage (`h2rec.training.inputs`) and handed to the factory here,
so models never read files and never see validation or test interactions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from h2rec.errors import ConfigError


@dataclass
class ModelInputs:
    """Everything optional; a factory asks for what it needs with `require`.

    - `popularity`: training interaction counts per id, `[n_items + 1]` (index 0 = padding).
    - `codes`: semantic IDs `[n_items + 1, L]` int64, row 0 = -1 (padding).
    - `codebooks`: the tokenizer's per-level codebooks, each `[K_l, d_c]`, or None when the codes
      came without a tokenizer (published codes); an appended collision level has none.
    - `codebook_sizes`: K_l per level (from the tokenizer, or max code + 1 for published codes).
    - `text_vectors`: item text embeddings `[n_items + 1, d_text]`, row 0 = zeros.
    - `train_offsets`, `train_items`: each user's TRAINING-split items in time order as CSR
      (user u's items are `train_items[train_offsets[u]:train_offsets[u + 1]]`).
    - `names`: which artefacts these came from (for error messages and run stamps).
    """

    popularity: np.ndarray | None = None
    codes: np.ndarray | None = None
    codebooks: list[np.ndarray] | None = None
    codebook_sizes: list[int] | None = None
    text_vectors: np.ndarray | None = None
    train_offsets: np.ndarray | None = None
    train_items: np.ndarray | None = None
    names: dict[str, str] = field(default_factory=dict)

    def require(self, model: str, *fields: str) -> None:
        """Raise a ConfigError naming the model and the missing inputs."""
        missing = [f for f in fields if getattr(self, f) is None]
        if missing:
            raise ConfigError(
                f"model '{model}' needs {', '.join(missing)}; the trainer loads them from the "
                "dataset folder (SIDs: `h2rec tokenize`, text vectors: `h2rec embed`)"
            )

    def check(self, n_items: int) -> None:
        """Validate shapes against the catalogue size (a clear error instead of an index crash)."""
        if self.popularity is not None and self.popularity.shape != (n_items + 1,):
            raise ConfigError(
                f"popularity must have length n_items + 1 = {n_items + 1}, "
                f"got shape {self.popularity.shape}"
            )
        if self.codes is not None:
            if self.codes.ndim != 2 or self.codes.shape[0] != n_items + 1:
                raise ConfigError(
                    f"codes must be [n_items + 1 = {n_items + 1}, L], got {self.codes.shape}"
                )
            if (self.codes[1:] < 0).any():
                raise ConfigError("codes: every item needs a code at every level (found -1)")
            if self.codebook_sizes is None:
                self.codebook_sizes = [int(m) + 1 for m in self.codes[1:].max(axis=0)]
            if len(self.codebook_sizes) != self.codes.shape[1]:
                raise ConfigError("codebook_sizes must list one size per code level")
            if (self.codes[1:] >= np.asarray(self.codebook_sizes)).any():
                raise ConfigError("codes exceed their codebook sizes")
        # A collision-breaking level appended after tokenizing has no codebook: fewer books
        # than levels is allowed (those levels start random), more is an error.
        if (
            self.codebooks is not None
            and self.codes is not None
            and len(self.codebooks) > self.codes.shape[1]
        ):
            raise ConfigError(
                f"{len(self.codebooks)} codebooks for {self.codes.shape[1]} code levels"
            )
        if self.text_vectors is not None and self.text_vectors.shape[0] != n_items + 1:
            raise ConfigError(
                f"text_vectors must have n_items + 1 = {n_items + 1} rows, "
                f"got {self.text_vectors.shape[0]}"
            )
