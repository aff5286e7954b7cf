from __future__ import annotations

from pathlib import Path

import pytest

from h2rec.config import load_config, validate
from h2rec.errors import ConfigError
from h2rec.sid import (
    PQTokenizer,
    RQKMeansTokenizer,
    RQVAETokenizer,
    TokenizerConfig,
    VQTokenizer,
    build_tokenizer,
)


def test_defaults_follow_the_paper() -> None:
    cfg = TokenizerConfig()
    assert (cfg.method, cfg.levels, cfg.codebook_size) == ("rqvae", 4, 128)
    assert cfg.distance == "cosine" and cfg.collision == "keep"
    assert cfg.beta == 0.25 and cfg.kmeans_init and cfg.dead_code_restart
    assert TokenizerConfig(method="vq").levels == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "pq", "codebook_size": 100}, "power of two"),
        ({"method": "vq", "levels": 2}, "levels must be 1"),
        ({"levels": 0}, "greater than or equal to 1"),
        ({"opq": True}, "method=pq only"),
        ({"hidden": []}, "hidden"),
        ({"method": "lsh"}, "method"),
        ({"bogus": 1}, "Extra inputs"),
    ],
)
def test_bad_configs_are_rejected_clearly(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TokenizerConfig(**kwargs)


def test_pq_message_suggests_powers_of_two() -> None:
    with pytest.raises(ConfigError, match=r"got 100\. Use 64 or 128"):
        validate(TokenizerConfig, {"method": "pq", "codebook_size": 100})


def test_build_tokenizer_picks_the_class() -> None:
    assert isinstance(build_tokenizer(), RQVAETokenizer)
    assert isinstance(build_tokenizer({"method": "rqkmeans"}), RQKMeansTokenizer)
    assert isinstance(build_tokenizer(TokenizerConfig(method="pq")), PQTokenizer)
    tok = build_tokenizer(TokenizerConfig(), method="vq")  # switching method re-defaults levels
    assert isinstance(tok, VQTokenizer) and tok.levels == 1
    assert build_tokenizer(method="rqkmeans", levels=3).codebook_sizes == [128] * 3


def test_yaml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "sid.yaml"
    path.write_text("method: rqkmeans\ncodebook_size: 256\n")
    cfg = load_config(TokenizerConfig, path, ["levels=3", "distance=euclidean"])
    assert (cfg.method, cfg.levels, cfg.codebook_size, cfg.distance) == (
        "rqkmeans",
        3,
        256,
        "euclidean",
    )
