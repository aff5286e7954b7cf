"""PQ: power-of-two K, padding, OPQ, and agreement with faiss's own encoder."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from h2rec.sid import PQTokenizer, TokenizerConfig, TokenizerError, build_tokenizer


def test_non_power_of_two_k_is_a_clear_error() -> None:
    with pytest.raises(
        ValueError, match=r"power of two .* K = 2\*\*nbits.*got 100\. Use 64 or 128"
    ):
        build_tokenizer(method="pq", codebook_size=100)
    with pytest.raises(TokenizerError, match="power of two"):
        PQTokenizer(
            TokenizerConfig.model_construct(
                **{**TokenizerConfig(method="pq").model_dump(), "codebook_size": 12}
            )
        )


def test_codes_match_faiss_compute_codes(mixture: np.ndarray) -> None:
    tok = build_tokenizer(method="pq", levels=4, codebook_size=256, distance="euclidean").fit(
        mixture
    )
    pq = faiss.ProductQuantizer(16, 4, 8)
    faiss.copy_array_to_vector(np.stack(tok.codebooks()).ravel(), pq.centroids)
    np.testing.assert_array_equal(tok.encode(mixture), pq.compute_codes(mixture).astype(np.int64))
    np.testing.assert_allclose(
        tok.decode(tok.encode(mixture)), pq.decode(pq.compute_codes(mixture)), atol=1e-5
    )


def test_dimension_not_divisible_is_padded(mixture: np.ndarray) -> None:
    x = mixture[:, :14]  # 14 dims, 4 sub-vectors -> padded to 16
    tok = build_tokenizer(method="pq", levels=4, codebook_size=16, distance="euclidean").fit(x)
    assert isinstance(tok, PQTokenizer) and tok.pad == 2
    assert tok.decode(tok.encode(x)).shape == x.shape
    assert [b.shape for b in tok.codebooks()] == [(16, 4)] * 4


def test_opq_rotation(mixture: np.ndarray) -> None:
    rng = np.random.default_rng(5)
    # correlated dimensions: a random mixing makes sub-vectors dependent, where OPQ helps
    x = (mixture @ rng.normal(size=(16, 16))).astype(np.float32)
    cfg = {"method": "pq", "levels": 4, "codebook_size": 16, "distance": "euclidean"}
    plain = build_tokenizer(**cfg).fit(x)
    opq = build_tokenizer(**cfg, opq=True).fit(x)
    assert isinstance(opq, PQTokenizer) and opq._rotation is not None
    rot = opq._rotation
    np.testing.assert_allclose(rot @ rot.T, np.eye(16), atol=1e-4)

    def err(tok: PQTokenizer) -> float:
        return float(((tok.reconstruct(x) - x) ** 2).mean())

    assert err(opq) < 1.05 * err(plain)
    again = build_tokenizer(**cfg, opq=True).fit(x)
    np.testing.assert_array_equal(again.encode(x), opq.encode(x))


def test_too_few_points(mixture: np.ndarray) -> None:
    with pytest.raises(TokenizerError, match="at least that many training vectors"):
        build_tokenizer(method="pq", codebook_size=256).fit(mixture[:100])
