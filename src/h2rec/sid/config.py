"""Configuration of a Semantic-ID tokenizer: one validated pydantic model for every method.

One flat model (rather than one per method) keeps YAML configs and `key=value` overrides simple;
fields that a method does not use are ignored by it (e.g. `hidden` for RQ-KMeans) and say so in
their description. Defaults follow the H2Rec paper and its reference code: an RQ-VAE with
4 levels x 128 codes (Table 8's default), cosine quantisation (the reference code file name
`...rqvae_orig.4_128.emb1536.Cosine.recon...`) and collisions kept (the HID branch supplies
uniqueness).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Method = Literal["rqvae", "rqkmeans", "pq", "vq"]
Distance = Literal["euclidean", "cosine"]
CollisionPolicy = Literal["keep", "extra-level", "sinkhorn"]

#: Levels used when `levels` is left out: the paper's 4 for hierarchical/product codes, 1 for VQ.
DEFAULT_LEVELS: dict[str, int] = {"rqvae": 4, "rqkmeans": 4, "pq": 4, "vq": 1}


def is_power_of_two(k: int) -> bool:
    return k >= 1 and (k & (k - 1)) == 0


def pq_power_of_two_message(k: int) -> str:
    """The one wording used wherever PQ meets a bad codebook size (config and tokenizer)."""
    lo = 1 << max(k.bit_length() - 1, 0)
    return (
        f"pq needs codebook_size to be a power of two (faiss ProductQuantizer stores each code in "
        f"nbits bits, so K = 2**nbits); got {k}. Use {lo} or {lo * 2}."
    )


class TokenizerConfig(BaseModel):
    """How to turn item-text embeddings into Semantic IDs (codes [n_items, levels]).

    `distance="cosine"` means, for every method, that input vectors are L2-normalised first;
    what else it changes per method is documented in `h2rec.sid` (module docstring).
    """

    model_config = ConfigDict(extra="forbid")

    method: Method = Field(default="rqvae", description="rqvae | rqkmeans | pq | vq")
    levels: int | None = Field(
        default=None,
        ge=1,
        description="code levels L (PQ: number of sub-vectors M); default 4, or 1 for vq",
    )
    codebook_size: int = Field(
        default=128, ge=2, description="codes per level K (PQ: a power of two)"
    )
    latent_dim: int = Field(default=32, ge=1, description="RQ-VAE latent (= codeword) size")
    hidden: list[int] = Field(
        default_factory=lambda: [512, 256, 128],
        description="RQ-VAE encoder hidden widths (decoder mirrors them); TIGER's 512-256-128",
    )
    beta: float = Field(default=0.25, ge=0.0, description="RQ-VAE commitment weight")
    epochs: int = Field(
        default=200, ge=0, description="RQ-VAE training epochs (0 = k-means init only)"
    )
    lr: float = Field(default=1e-3, gt=0.0, description="RQ-VAE Adam learning rate")
    batch_size: int | None = Field(
        default=1024, ge=1, description="RQ-VAE mini-batch size; null = full batch"
    )
    distance: Distance = Field(default="cosine", description="euclidean | cosine")
    kmeans_init: bool = Field(
        default=True, description="RQ-VAE: initialise each level's codebook by k-means"
    )
    kmeans_iters: int = Field(
        default=25, ge=1, description="k-means iterations (faiss niter) for every method"
    )
    dead_code_restart: bool = Field(
        default=True, description="RQ-VAE: re-seed codes unused over an epoch"
    )
    opq: bool = Field(default=False, description="PQ: learn an OPQ rotation first")
    seed: int = Field(default=42, description="seeds k-means, weight init and shuffling")
    collision: CollisionPolicy = Field(
        default="keep", description="keep | extra-level | sinkhorn (see h2rec.sid.collisions)"
    )
    sinkhorn_epsilon: float = Field(
        default=0.003, gt=0.0, description="Sinkhorn entropy weight on centred distances (LC-Rec)"
    )
    sinkhorn_iters: int = Field(default=50, ge=1, description="Sinkhorn-Knopp iterations")
    sinkhorn_rounds: int = Field(
        default=20, ge=1, description="max re-assignment rounds until no collisions"
    )

    @model_validator(mode="after")
    def _resolve_and_check(self) -> TokenizerConfig:
        if self.levels is None:
            self.levels = DEFAULT_LEVELS[self.method]
        if self.method == "vq" and self.levels != 1:
            raise ValueError(
                f"vq is a single k-means codebook, so levels must be 1 (got {self.levels}); "
                "use rqkmeans for several residual levels"
            )
        if self.method == "pq" and not is_power_of_two(self.codebook_size):
            raise ValueError(pq_power_of_two_message(self.codebook_size))
        if self.opq and self.method != "pq":
            raise ValueError(f"opq=true applies to method=pq only (method is {self.method})")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(
                f"hidden must be a non-empty list of positive widths, got {self.hidden}"
            )
        return self

    @property
    def n_levels(self) -> int:
        """`levels` after defaults were resolved (always an int once validated)."""
        assert self.levels is not None
        return self.levels
