"""Item representations: map item ids to vectors at the input and give the table used for scoring.

An item representation has two duties, kept apart so that hybrid representations (SID, HID+SID)
can implement them differently: `embed(ids)` for any id tensor (padding, items, special tokens)
and `weight_for_scoring()`, the `[n_items + 1, d]` table that the scorer dots user vectors with
(row 0 is padding and is never a valid recommendation; special tokens are not scored).
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

ItemInit = Literal["normal", "xavier"]


@runtime_checkable
class ItemRepresentation(Protocol):
    """What encoders and scorers need from an item representation."""

    n_items: int
    dim: int

    def embed(self, ids: Tensor) -> Tensor:
        """`ids` of any shape -> `[*ids.shape, dim]`; id 0 (padding) maps to a zero vector."""
        ...

    def weight_for_scoring(self) -> Tensor:
        """`[n_items + 1, dim]` output table, row i = item i, row 0 = padding."""
        ...


class HashItemEmbedding(nn.Module):
    """A plain learnable id table (the paper's "Hash ID", HID).

    Rows: 0 = padding (kept at zero by `padding_idx`), 1..n_items = items, then `extra_tokens`
    special rows (BERT4Rec's [MASK] is row n_items + 1). Special rows are embedded but never scored.

    Init: `normal` draws N(0, std²) with std 0.02 (BERT/gSASRec practice); its scale does not
    depend on the catalogue size. `xavier` is xavier_normal_ over the whole table, as in
    pmixer's SASRec.pytorch and LLM-ESR; its std sqrt(2/(rows+d)) shrinks as the catalogue grows,
    which is why it is not the default.
    """

    def __init__(
        self,
        n_items: int,
        d: int,
        extra_tokens: int = 1,
        init: ItemInit = "normal",
        std: float = 0.02,
    ) -> None:
        super().__init__()
        if n_items < 1:
            raise ValueError(f"n_items must be >= 1, got {n_items}")
        if extra_tokens < 0:
            raise ValueError(f"extra_tokens must be >= 0, got {extra_tokens}")
        self.n_items = n_items
        self.dim = d
        self.extra_tokens = extra_tokens
        self.embedding = nn.Embedding(n_items + 1 + extra_tokens, d, padding_idx=0)
        self.reset_parameters(init, std)

    def reset_parameters(self, init: ItemInit = "normal", std: float = 0.02) -> None:
        with torch.no_grad():
            if init == "normal":
                nn.init.normal_(self.embedding.weight, mean=0.0, std=std)
            elif init == "xavier":
                nn.init.xavier_normal_(self.embedding.weight)
            else:
                raise ValueError(f"unknown item init '{init}' (expected 'normal' or 'xavier')")
            self.embedding.weight[0].zero_()

    def load_item_vectors(self, vectors: Tensor) -> None:
        """Initialise items from pretrained vectors (e.g. PCA of LLM embeddings, as H2Rec/LLM-ESR).

        `vectors` is `[n_items, d]` (rows = items 1..n_items) or `[n_items + 1, d]` (row 0 ignored);
        padding stays zero and special tokens keep their random init.
        """
        rows = vectors.shape[0]
        if (
            vectors.dim() != 2
            or vectors.shape[1] != self.dim
            or rows
            not in (
                self.n_items,
                self.n_items + 1,
            )
        ):
            raise ValueError(
                f"expected [{self.n_items}(+1), {self.dim}] item vectors, got {tuple(vectors.shape)}"
            )
        items = vectors if rows == self.n_items else vectors[1:]
        with torch.no_grad():
            self.embedding.weight[1 : self.n_items + 1].copy_(items)

    def embed(self, ids: Tensor) -> Tensor:
        return self.embedding(ids)

    def forward(self, ids: Tensor) -> Tensor:
        return self.embed(ids)

    def weight_for_scoring(self) -> Tensor:
        weight = self.embedding.weight
        # the whole table when there are no special rows: a slice's backward zero-fills a copy
        return weight if self.extra_tokens == 0 else weight[: self.n_items + 1]
