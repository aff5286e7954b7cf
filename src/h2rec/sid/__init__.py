"""Semantic IDs: tokenizers, collision policies, diagnostics and code neighbourhoods.

Tokenizers (`build_tokenizer(TokenizerConfig(...))`, all with fit / encode / decode /
codebooks / save / load, seeded, encoding new items without refitting):

* ``rqvae`` — RQ-VAE as in TIGER and H2Rec (MLP autoencoder, residual quantisation with the
  straight-through estimator, k-means init, commitment weight beta, dead-code restarts).
* ``rqkmeans`` — residual k-means with faiss.
* ``pq`` — faiss product quantisation (M sub-vectors = levels, K a power of two), optional OPQ.
* ``vq`` — one k-means codebook.

What ``distance="cosine"`` means, exactly, per method (every method first L2-normalises its
input vectors; decode and reconstruction errors are then in that unit-vector space):

* ``rqkmeans`` / ``vq``: each level assigns by cosine similarity between the residual and the
  codeword (the codeword's direction only); codewords are clustered by spherical k-means and set
  to the mean raw residual of their cluster, so residuals still shrink level by level.
* ``rqvae``: the same assignment rule on latent residuals; the latent itself is not normalised.
* ``pq``: only the input normalisation; sub-vectors are assigned by Euclidean distance.

``distance="euclidean"`` uses squared L2 throughout and leaves the inputs as they are.
"""

from __future__ import annotations

from h2rec.sid.artifacts import (
    PUBLISHED,
    ItemSIDs,
    default_sids_name,
    diagnose_published,
    load_sids,
    save_sids,
    tokenize_dataset,
)
from h2rec.sid.base import NotFittedError, Tokenizer, TokenizerError
from h2rec.sid.collisions import (
    CollisionResult,
    add_extra_level,
    apply_collision_policy,
    collision_stats,
    sinkhorn_dedup,
)
from h2rec.sid.config import TokenizerConfig
from h2rec.sid.diagnostics import (
    diagnose_codes,
    diagnose_dataset,
    diagnose_tokenizer,
    plot_code_usage,
    print_diagnostics,
    render_diagnostics,
    save_diagnostics,
)
from h2rec.sid.factory import build_tokenizer, load_tokenizer
from h2rec.sid.fit import fit_tokenizer
from h2rec.sid.neighbours import PrefixIndex
from h2rec.sid.pq import PQTokenizer
from h2rec.sid.rqkmeans import RQKMeansTokenizer, VQTokenizer
from h2rec.sid.rqvae import RQVAETokenizer

__all__ = [
    "PUBLISHED",
    "CollisionResult",
    "ItemSIDs",
    "NotFittedError",
    "PQTokenizer",
    "PrefixIndex",
    "RQKMeansTokenizer",
    "RQVAETokenizer",
    "Tokenizer",
    "TokenizerConfig",
    "TokenizerError",
    "VQTokenizer",
    "add_extra_level",
    "apply_collision_policy",
    "build_tokenizer",
    "collision_stats",
    "default_sids_name",
    "diagnose_codes",
    "diagnose_dataset",
    "diagnose_published",
    "diagnose_tokenizer",
    "fit_tokenizer",
    "load_sids",
    "load_tokenizer",
    "plot_code_usage",
    "print_diagnostics",
    "render_diagnostics",
    "save_diagnostics",
    "save_sids",
    "sinkhorn_dedup",
    "tokenize_dataset",
]
