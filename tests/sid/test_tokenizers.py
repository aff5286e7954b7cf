"""Behaviour every tokenizer shares: determinism, save/load, cold-start encoding, bad input."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from h2rec.sid import (
    NotFittedError,
    Tokenizer,
    TokenizerConfig,
    TokenizerError,
    build_tokenizer,
    load_tokenizer,
)

SMALL_RQVAE = {"hidden": [32], "latent_dim": 8, "epochs": 3, "batch_size": 256}
CONFIGS: dict[str, dict[str, Any]] = {
    "rqvae-cos": {"method": "rqvae", "levels": 3, "codebook_size": 16, **SMALL_RQVAE},
    "rqvae-l2": {
        "method": "rqvae",
        "levels": 3,
        "codebook_size": 16,
        "distance": "euclidean",
        **SMALL_RQVAE,
    },
    "rqkmeans-cos": {"method": "rqkmeans", "levels": 3, "codebook_size": 16},
    "rqkmeans-l2": {
        "method": "rqkmeans",
        "levels": 3,
        "codebook_size": 16,
        "distance": "euclidean",
    },
    "pq": {"method": "pq", "levels": 4, "codebook_size": 16, "distance": "euclidean"},
    "pq-opq-pad": {"method": "pq", "levels": 3, "codebook_size": 16, "opq": True},
    "vq": {"method": "vq", "codebook_size": 32},
}
IDS = list(CONFIGS)

_cache: dict[str, tuple[Tokenizer, np.ndarray]] = {}


def fitted(name: str, x: np.ndarray) -> tuple[Tokenizer, np.ndarray]:
    """One fit per config for the whole module (RQ-VAE training is the slow part)."""
    if name not in _cache:
        tok = build_tokenizer(TokenizerConfig(**CONFIGS[name])).fit(x)
        _cache[name] = (tok, tok.encode(x))
    return _cache[name]


@pytest.mark.parametrize("name", IDS)
def test_shapes_ranges_and_codebooks(name: str, mixture: np.ndarray) -> None:
    tok, codes = fitted(name, mixture)
    assert codes.dtype == np.int64 and codes.shape == (len(mixture), tok.levels)
    assert codes.min() >= 0 and (codes.max(axis=0) < tok.codebook_sizes).all()
    books = tok.codebooks()
    assert len(books) == tok.levels
    assert all(
        b.shape[0] == k and b.dtype == np.float32
        for b, k in zip(books, tok.codebook_sizes, strict=True)
    )
    dims = {b.shape[1] for b in books}
    if tok.method == "rqvae":
        assert dims == {8}
    elif tok.method == "pq":
        assert dims == {-(-16 // tok.levels)}  # padded to a multiple of M
    else:
        assert dims == {16}
    assert tok.decode(codes).shape == mixture.shape


@pytest.mark.parametrize("name", IDS)
def test_same_seed_same_codes(name: str, mixture: np.ndarray) -> None:
    _, codes = fitted(name, mixture)
    again = build_tokenizer(TokenizerConfig(**CONFIGS[name])).fit(mixture)
    np.testing.assert_array_equal(again.encode(mixture), codes)
    for a, b in zip(again.codebooks(), fitted(name, mixture)[0].codebooks(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["rqkmeans-l2", "rqvae-cos", "pq"])
def test_other_seed_other_codebooks(name: str, mixture: np.ndarray) -> None:
    tok, _ = fitted(name, mixture)
    other = build_tokenizer(TokenizerConfig(**{**CONFIGS[name], "seed": 7})).fit(mixture)
    assert not np.array_equal(other.codebooks()[0], tok.codebooks()[0])


@pytest.mark.parametrize("name", IDS)
def test_save_load_gives_identical_codes(
    name: str, mixture: np.ndarray, mixture_new: np.ndarray, tmp_path: Path
) -> None:
    tok, codes = fitted(name, mixture)
    tok.save(tmp_path / "tok")
    back = load_tokenizer(tmp_path / "tok")
    assert type(back) is type(tok) and back.cfg == tok.cfg and back.input_dim == tok.input_dim
    np.testing.assert_array_equal(back.encode(mixture), codes)
    np.testing.assert_array_equal(back.encode(mixture_new), tok.encode(mixture_new))
    np.testing.assert_array_equal(back.decode(codes), tok.decode(codes))
    assert type(tok).load(tmp_path / "tok").method == tok.method
    tok.save(tmp_path / "tok")  # replacing an older save is fine


def test_load_rejects_missing_and_corrupt(mixture: np.ndarray, tmp_path: Path) -> None:
    tok, _ = fitted("rqkmeans-l2", mixture)
    with pytest.raises(TokenizerError, match="not a saved tokenizer"):
        load_tokenizer(tmp_path / "nothing")
    tok.save(tmp_path / "tok")
    blob = (tmp_path / "tok" / "arrays.safetensors").read_bytes()
    (tmp_path / "tok" / "arrays.safetensors").write_bytes(blob[:-4] + b"\0\0\0\0")
    with pytest.raises(TokenizerError, match="corrupted"):
        load_tokenizer(tmp_path / "tok")
    other = tmp_path / "not-a-tokenizer"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    with pytest.raises(TokenizerError, match="refusing"):
        tok.save(other)
    assert (other / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("name", IDS)
def test_new_points_encode_without_refitting(
    name: str, mixture: np.ndarray, mixture_new: np.ndarray
) -> None:
    tok, codes = fitted(name, mixture)
    before = [b.copy() for b in tok.codebooks()]
    new = tok.encode(mixture_new)
    assert new.shape == (len(mixture_new), tok.levels)
    assert (new.max(axis=0) < tok.codebook_sizes).all()
    for a, b in zip(before, tok.codebooks(), strict=True):
        np.testing.assert_array_equal(a, b)
    # encoding is row-wise: one point alone, or in small batches, gives the same codes
    np.testing.assert_array_equal(tok.encode(mixture_new[3:4])[0], new[3])
    np.testing.assert_array_equal(tok.encode(mixture, batch_size=97), codes)


def test_rqkmeans_codes_are_greedy_nearest_codewords(mixture: np.ndarray) -> None:
    tok, codes = fitted("rqkmeans-l2", mixture)
    r = mixture.astype(np.float64)
    for level, cb in enumerate(tok.codebooks()):
        d = ((r[:, None, :] - cb[None].astype(np.float64)) ** 2).sum(-1)
        np.testing.assert_array_equal(codes[:, level], d.argmin(1))
        r = r - cb[codes[:, level]]


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_rqkmeans_reconstructs_exactly_when_k_exceeds_points(distance: str) -> None:
    x = np.random.default_rng(3).normal(size=(50, 16)).astype(np.float32)
    tok = build_tokenizer(method="rqkmeans", levels=2, codebook_size=64, distance=distance).fit(x)
    codes = tok.encode(x)
    assert len(np.unique(codes[:, 0])) == 50  # every point is its own first-level code
    target = tok.preprocess(x)
    if distance == "euclidean":
        np.testing.assert_array_equal(tok.decode(codes), target)
    else:
        np.testing.assert_allclose(tok.decode(codes), target, atol=1e-6)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_reconstruction_error_decreases_with_levels(distance: str, mixture: np.ndarray) -> None:
    errors = []
    for levels in (1, 2, 3, 4):
        tok = build_tokenizer(method="rqkmeans", levels=levels, codebook_size=16, distance=distance)
        x = tok.fit(mixture).preprocess(mixture)
        errors.append(float(((tok.reconstruct(mixture) - x) ** 2).mean()))
    assert all(b < a for a, b in itertools.pairwise(errors)), errors


def test_cosine_is_scale_invariant(mixture: np.ndarray) -> None:
    tok, codes = fitted("rqkmeans-cos", mixture)
    np.testing.assert_array_equal(tok.encode(mixture * 3.5), codes)
    np.testing.assert_allclose(np.linalg.norm(tok.preprocess(mixture), axis=1), 1.0, rtol=1e-6)


def _with(x: np.ndarray, row: int, value: float) -> np.ndarray:
    y = x.copy()
    y[row, 2] = value
    return y


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_vectors_are_rejected(value: float, mixture: np.ndarray) -> None:
    with pytest.raises(TokenizerError, match=r"NaN or inf \(first rows: \[5\]\)"):
        build_tokenizer(method="rqkmeans", codebook_size=8).fit(_with(mixture, 5, value))
    tok, _ = fitted("rqkmeans-l2", mixture)
    with pytest.raises(TokenizerError, match="NaN or inf"):
        tok.encode(_with(mixture[:10], 5, value))


def test_bad_shapes_and_states(mixture: np.ndarray) -> None:
    tok, codes = fitted("rqkmeans-l2", mixture)
    with pytest.raises(TokenizerError, match="expected 16 columns"):
        tok.encode(mixture[:, :10])
    with pytest.raises(TokenizerError, match="2-D"):
        tok.encode(mixture[0])
    with pytest.raises(TokenizerError, match="empty"):
        tok.encode(np.zeros((0, 16)))
    with pytest.raises(TokenizerError, match="numbers"):
        tok.encode(np.array([["a"] * 16]))
    with pytest.raises(TokenizerError, match=r"level 2 has codes in \[0, 16\]"):
        bad = codes.copy()
        bad[0, 1] = 16
        tok.decode(bad)
    with pytest.raises(TokenizerError, match="shape"):
        tok.decode(codes[:, :2])
    with pytest.raises(NotFittedError, match="not fitted"):
        build_tokenizer(method="vq").encode(mixture)
    with pytest.raises(TokenizerError, match="zero norm"):
        build_tokenizer(method="vq", codebook_size=4).fit(np.zeros((10, 4)))
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        build_tokenizer(method="rqkmeans", levels=0)
