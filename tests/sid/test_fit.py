"""fit_tokenizer: fit + collision policy + diagnostics in one call."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from h2rec.sid import TokenizerConfig, fit_tokenizer, load_tokenizer


@pytest.mark.parametrize("policy", ["keep", "extra-level", "sinkhorn"])
def test_fit_tokenizer_applies_the_policy(policy: str, mixture: np.ndarray) -> None:
    cfg = TokenizerConfig(method="rqkmeans", levels=2, codebook_size=64, collision=policy)
    tok, codes, diag = fit_tokenizer(mixture, cfg)
    assert codes.shape == (len(mixture), 3 if policy == "extra-level" else 2)
    np.testing.assert_array_equal(codes[:, :1], tok.encode(mixture)[:, :1])
    assert diag["collision_policy"]["policy"] == policy
    assert diag["collision_policy"]["before"]["rate"] > 0
    if policy == "keep":
        assert diag["collision"]["rate"] == diag["collision_policy"]["before"]["rate"]
    else:
        assert diag["collision"]["rate"] == 0.0
    assert diag["levels"] == codes.shape[1] and diag["reconstruction"]["relative_mse"] < 1
    assert diag["timing"]["fit_seconds"] > 0 and diag["config"]["collision"] == policy
    json.dumps(diag, allow_nan=False)


def test_fit_tokenizer_rqvae_with_overrides(mixture: np.ndarray, tmp_path: Path) -> None:
    tok, codes, diag = fit_tokenizer(
        mixture, method="rqvae", levels=2, codebook_size=16, hidden=[16], latent_dim=4, epochs=2
    )
    assert codes.shape == (len(mixture), 2) and diag["method"] == "rqvae"
    tok.save(tmp_path / "t")
    np.testing.assert_array_equal(load_tokenizer(tmp_path / "t").encode(mixture), codes)
