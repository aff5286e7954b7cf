"""RQ-VAE training: loss goes down, codes do not collapse, dead codes come back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from h2rec.sid import RQVAETokenizer, TokenizerConfig, TokenizerError, build_tokenizer

BASE = {
    "method": "rqvae",
    "levels": 3,
    "codebook_size": 16,
    "hidden": [64, 32],
    "latent_dim": 8,
    "lr": 3e-3,
    "batch_size": 250,
}


def make(**kw: object) -> RQVAETokenizer:
    tok = build_tokenizer(TokenizerConfig(**{**BASE, **kw}))
    assert isinstance(tok, RQVAETokenizer)
    return tok


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_trains_and_does_not_collapse(distance: str, mixture: np.ndarray) -> None:
    tok = make(distance=distance, epochs=25).fit(mixture)
    losses = [h["loss"] for h in tok.history]
    recon = [h["recon"] for h in tok.history]
    assert len(losses) == 25
    assert losses[-1] < 0.7 * losses[0], losses
    assert recon[-1] < recon[0]
    codes = tok.encode(mixture)
    used = [len(np.unique(codes[:, level])) for level in range(3)]
    assert min(used) >= 8, used  # every level uses at least half its K = 16 codes


def test_full_batch_and_no_kmeans_init(mixture: np.ndarray) -> None:
    tok = make(batch_size=None, kmeans_init=False, epochs=15, distance="euclidean").fit(mixture)
    assert tok.history[-1]["loss"] < tok.history[0]["loss"]
    assert tok.history[0]["restarted"] > 0  # U(-1/K, 1/K) codewords start mostly dead
    assert len(np.unique(tok.encode(mixture)[:, 0])) >= 8


def test_dead_code_restart_revives_dead_codes(mixture: np.ndarray) -> None:
    def killed(restart: bool) -> RQVAETokenizer:
        tok = make(distance="euclidean", epochs=2, dead_code_restart=restart).fit(mixture)
        assert tok.module is not None
        with torch.no_grad():
            tok.module.codebooks[0, :4] = 1e4  # far from every latent: never chosen
        assert not np.isin(np.arange(4), tok.encode(mixture)[:, 0]).any()
        return tok.fit(mixture, warm_start=True, epochs=3)

    revived = killed(True)
    first, last = revived.history[-3], revived.history[-1]
    assert first["dead_per_level"][0] >= 4 and first["restarted"] >= 4
    assert last["dead_per_level"][0] < first["dead_per_level"][0]
    assert float(np.abs(revived.codebooks()[0][:4]).max()) < 1e3  # re-seeded from residuals
    assert np.isin(np.arange(4), revived.encode(mixture)[:, 0]).sum() >= 3

    dead = killed(False)
    assert dead.history[-1]["restarted"] == 0
    assert not np.isin(np.arange(4), dead.encode(mixture)[:, 0]).any()


def test_leaves_global_torch_rng_alone(mixture: np.ndarray) -> None:
    state = torch.random.get_rng_state()
    make(epochs=1).fit(mixture)
    assert torch.equal(state, torch.random.get_rng_state())


def test_encode_latent_and_commitment(mixture: np.ndarray) -> None:
    tok = make(epochs=2, distance="euclidean").fit(mixture)
    z = tok.encode_latent(mixture)
    assert z.shape == (len(mixture), 8)
    # the quantised latent is the sum of the chosen codewords
    codes = tok.encode(mixture)
    zq = sum(b[codes[:, i]] for i, b in enumerate(tok.codebooks()))
    assert np.isfinite(zq).all() and zq.shape == z.shape


def test_warm_start_needs_a_fitted_model(mixture: np.ndarray) -> None:
    with pytest.raises(TokenizerError, match="not fitted"):
        make(epochs=1).fit(mixture, warm_start=True)
