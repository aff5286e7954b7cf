"""Semantic-ID item parts: per-level code embeddings, initialised from a tokenizer's codebooks.

Codes are `[n_items + 1, L]` (row 0 = padding, -1). All levels live in ONE flat embedding table
with per-level offsets (row 0 = padding, kept at zero), so looking up every level of every item
is one gather, and the per-level item tables used for scoring are a single `[n_items + 1, L, d]`
gather too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from h2rec.models.parts.pca import pca_basis


def project_codebooks(codebooks: Sequence[np.ndarray], d: int) -> list[np.ndarray]:
    """Bring codebooks `[K_l, d_c]` to width `d`.

    d_c > d: PCA fitted on all levels' codewords together (one shared basis, so the residual
    structure — coarse codewords larger than fine ones — survives); d_c < d: zero-padded;
    d_c == d: unchanged. PCA is centred on the pooled mean, which is subtracted from every level.
    """
    books = [np.asarray(b, dtype=np.float64) for b in codebooks]
    widths = {b.shape[1] for b in books}
    if len(widths) != 1:
        raise ValueError(f"codebooks of different widths: {sorted(widths)}")
    d_c = widths.pop()
    if d_c == d:
        return [b.astype(np.float32) for b in books]
    if d_c < d:
        return [np.pad(b, ((0, 0), (0, d - d_c))).astype(np.float32) for b in books]
    mean, basis = pca_basis(np.concatenate(books), d)
    if basis.shape[1] < d:  # fewer codewords than d: pad the remaining axes with zeros
        basis = np.pad(basis, ((0, 0), (0, d - basis.shape[1])))
    return [((b - mean) @ basis).astype(np.float32) for b in books]


class CodeEmbedding(nn.Module):
    """Learnable per-level code embeddings E^l, looked up by item id.

    `levels(ids)` -> `[*ids.shape, L, d]`: e^1_{c_i}, ..., e^L_{c_i} for each id (zeros for
    padding). Ids above n_items (special tokens such as BERT4Rec's [MASK]) get their own learnable
    row per level. `item_levels()` -> `[n_items + 1, L, d]`, the per-level item tables for scoring.

    Init: from `codebooks` (projected with `project_codebooks`, the first len(codebooks) levels)
    rescaled by ONE factor so that their RMS equals `target_rms`; levels without a codebook and
    special tokens draw N(0, target_rms²).
    """

    def __init__(
        self,
        codes: np.ndarray,
        sizes: Sequence[int],
        d: int,
        *,
        codebooks: Sequence[np.ndarray] | None = None,
        target_rms: float = 0.02,
        extra_tokens: int = 0,
    ) -> None:
        super().__init__()
        codes = np.asarray(codes, dtype=np.int64)
        n_rows, n_levels = codes.shape
        self.n_items = n_rows - 1
        self.n_levels = n_levels
        self.dim = d
        self.sizes = [int(k) for k in sizes]
        if len(self.sizes) != n_levels:
            raise ValueError(f"{len(self.sizes)} codebook sizes for {n_levels} levels")
        offsets = np.concatenate([[1], 1 + np.cumsum(self.sizes)])[:-1]
        n_code_rows = 1 + sum(self.sizes)
        rows = np.zeros((n_rows + extra_tokens, n_levels), dtype=np.int64)
        rows[1:n_rows] = codes[1:] + offsets[None, :]
        for e in range(extra_tokens):
            rows[n_rows + e] = n_code_rows + e * n_levels + np.arange(n_levels)
        self.register_buffer("item_rows", torch.from_numpy(rows), persistent=False)
        self.table = nn.Embedding(n_code_rows + extra_tokens * n_levels, d, padding_idx=0)
        with torch.no_grad():
            nn.init.normal_(self.table.weight, std=target_rms)
            if codebooks:
                books = project_codebooks(codebooks, d)
                pooled = np.concatenate(books)
                rms = float(np.sqrt(np.mean(pooled.astype(np.float64) ** 2)))
                scale = target_rms / rms if rms > 0 else 1.0
                for level, book in enumerate(books):
                    if book.shape[0] != self.sizes[level]:
                        raise ValueError(
                            f"codebook {level} has {book.shape[0]} codewords, expected "
                            f"{self.sizes[level]}"
                        )
                    start = int(offsets[level])
                    self.table.weight[start : start + book.shape[0]] = torch.from_numpy(
                        book * scale
                    )
            self.table.weight[0].zero_()

    def levels(self, ids: Tensor, table: Tensor | None = None) -> Tensor:
        """`[*ids.shape, L, d]`; `table` (default: the embedding weights) may be any per-row map
        of them, e.g. a projection of the whole table, looked up the same way."""
        rows = self.code_rows(ids)
        return self.table(rows) if table is None else torch.nn.functional.embedding(rows, table)

    def code_rows(self, ids: Tensor) -> Tensor:
        """`[*ids.shape, G]` table rows of the ids' codes. A lookup (`embedding` on the integer
        table), not `item_rows[ids]`: advanced indexing was 3x slower on CPU."""
        return torch.nn.functional.embedding(ids, self.item_rows)

    def weighted(self, ids: Tensor, weights: Tensor) -> Tensor:
        """sum_l w_l E^l[c^l] for every id: `ids [*S]`, `weights [*S, G]` (or broadcastable to
        it) -> `[*S, d]`, zeros for padding.

        One `embedding_bag` with per-sample weights: no `[*S, G, d]` level tensor exists, so the
        backward is one scatter into the table instead of a zero-filled level tensor per level
        (the level-by-level sum cost 2-3x more in H2Rec's training step, mostly in backward)."""
        g = self.n_levels
        rows = self.code_rows(ids).reshape(-1, g)
        w = weights.expand(*ids.shape, g).reshape(-1, g).to(self.table.weight.dtype)
        out = torch.nn.functional.embedding_bag(
            rows, self.table.weight, per_sample_weights=w, mode="sum", padding_idx=0
        )
        return out.view(*ids.shape, out.shape[-1])

    def levels_by_level(self, ids: Tensor, table: Tensor) -> Tensor:
        """`levels(ids, table)` for `ids [B, L]` laid out level-major, `[B, G, L, w]` (contiguous):
        a consumer that treats the G levels' L slots as one axis of G L (H2Rec's cross attention)
        then reads a view instead of permuting and copying `[B, L, G, w]`."""
        return torch.nn.functional.embedding(self.code_rows(ids).transpose(1, 2), table)

    def item_levels(self) -> Tensor:
        return self.table(self.item_rows[: self.n_items + 1])

    def code_table(self, level: int) -> Tensor:
        """`[K_level, d]`: the embeddings of one level's codewords."""
        start = 1 + sum(self.sizes[:level])
        return self.table.weight[start : start + self.sizes[level]]


class PrefixEmbedding(nn.Module):
    """Prefix-n-gram SID item representation (PG-SID style): an item IS its semantic ID.

    item vector = sum over l = 1..L of E_l[(c_1, ..., c_l)]: every distinct code prefix of length
    l has its own learnable row, so items sharing a coarse prefix share that part of their vector
    and each finer level refines it. Items with the SAME full code tuple (SID collisions) get
    IDENTICAL vectors and cannot be told apart by the scorer: that is what a pure-SID control
    measures; appending a collision-breaking level to the codes makes every item distinct.

    Layout: one flat `nn.Embedding` (row 0 = padding, kept at zero), then the prefixes of level 1,
    level 2, ... each in lexicographic order of their code tuples (`np.unique` over the first l
    columns), then one row per special token (ids n_items + 1, ...; BERT4Rec's [MASK]) whose other
    levels point at the zero padding row. Rows: 1 + sum_l #distinct prefixes of length l +
    `extra_tokens`. Init N(0, init_std²).

    Implements `ItemRepresentation`: `embed(ids)` is one gather and a sum over levels, and so is
    `weight_for_scoring()`, which makes the scoring table cheap to recompute every forward.
    """

    def __init__(
        self, codes: np.ndarray, d: int, *, extra_tokens: int = 0, init_std: float = 0.02
    ) -> None:
        super().__init__()
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[0] < 2 or codes.shape[1] < 1:
            raise ValueError(
                f"codes must be [n_items + 1, L] with n_items, L >= 1, got {codes.shape}"
            )
        if (codes[1:] < 0).any():
            raise ValueError("codes: every item needs a code at every level (found -1)")
        if extra_tokens < 0:
            raise ValueError(f"extra_tokens must be >= 0, got {extra_tokens}")
        n_rows, n_levels = codes.shape
        self.n_items = n_rows - 1
        self.n_levels = n_levels
        self.dim = d
        self.extra_tokens = extra_tokens
        rows = np.zeros((n_rows + extra_tokens, n_levels), dtype=np.int64)
        self.prefix_counts: list[int] = []
        offset = 1
        for level in range(n_levels):
            _, inverse = np.unique(codes[1:, : level + 1], axis=0, return_inverse=True)
            inverse = inverse.reshape(-1)  # numpy 2.0.0 returned a 2-d inverse for axis=0
            count = int(inverse.max()) + 1
            rows[1:n_rows, level] = offset + inverse
            self.prefix_counts.append(count)
            offset += count
        rows[n_rows:, 0] = offset + np.arange(extra_tokens)  # other levels: the zero row
        self.register_buffer("item_rows", torch.from_numpy(rows), persistent=False)
        self.table = nn.Embedding(offset + extra_tokens, d, padding_idx=0)
        with torch.no_grad():
            nn.init.normal_(self.table.weight, std=init_std)
            self.table.weight[0].zero_()

    def level_offsets(self) -> list[int]:
        """First table row of each level's prefixes."""
        return [1 + sum(self.prefix_counts[:level]) for level in range(self.n_levels)]

    def levels(self, ids: Tensor) -> Tensor:
        """`[*ids.shape, L, d]`: the prefix rows of each id (zeros for padding). The rows are
        looked up with `embedding` on the integer table (3x faster than `item_rows[ids]`)."""
        return self.table(torch.nn.functional.embedding(ids, self.item_rows))

    def embed(self, ids: Tensor) -> Tensor:
        return self.levels(ids).sum(dim=-2)

    def forward(self, ids: Tensor) -> Tensor:
        return self.embed(ids)

    def weight_for_scoring(self) -> Tensor:
        return self.table(self.item_rows[: self.n_items + 1]).sum(dim=-2)
