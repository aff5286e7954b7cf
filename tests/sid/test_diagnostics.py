"""Diagnostics equal hand-computed values; presentation and bring-your-own SIDs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from h2rec.data.dataset import Dataset
from h2rec.sid import (
    TokenizerError,
    build_tokenizer,
    diagnose_codes,
    diagnose_dataset,
    diagnose_tokenizer,
    plot_code_usage,
    print_diagnostics,
    save_diagnostics,
)

CODES = np.array([[0, 0], [0, 0], [0, 1], [1, 2], [1, 2], [1, 2]])
# item 0 <-> 1 (same level-1 code), 2 <-> 3 (different), 4 <-> 5 (same)
EMB = np.array([[1, 0], [0.99, 0.1], [0, 1], [0.1, 0.99], [-1, 0], [-0.99, -0.1]])


def test_hand_computed_values() -> None:
    d = diagnose_codes(CODES, [2, 4], embeddings=EMB)
    assert d["n_items"] == 6 and d["levels"] == 2 and d["codebook_sizes"] == [2, 4]
    assert d["collision"] == {
        "rate": 0.5,  # 3 distinct SIDs for 6 items
        "n_unique_sids": 3,
        "largest_group": 3,
        "n_colliding_items": 5,
        "n_collision_groups": 2,
    }
    assert d["occupancy"] == pytest.approx(6 / 8)
    l1, l2 = d["per_level"]
    assert (l1["used"], l1["utilisation"], l1["counts"]) == (2, 1.0, [3, 3])
    assert l1["perplexity"] == pytest.approx(2.0) and l1["normalised_entropy"] == pytest.approx(1.0)
    assert (l2["used"], l2["utilisation"], l2["counts"]) == (3, 0.75, [2, 1, 3, 0])
    p = np.array([2, 1, 3]) / 6
    h = -(p * np.log(p)).sum()
    assert l2["perplexity"] == pytest.approx(math.exp(h))
    assert l2["normalised_entropy"] == pytest.approx(h / math.log(4))
    sem = d["semantic"]
    assert sem["nn_share_level1"] == pytest.approx(4 / 6)
    assert sem["chance"] == pytest.approx(0.5)  # (3/6)^2 + (3/6)^2
    assert sem["chance_other"] == pytest.approx(12 / 30)  # (3*2 + 3*2) / (6*5)
    assert sem["lift"] == pytest.approx((4 / 6) / 0.5)
    assert sem["n_queries"] == 6
    assert d["reconstruction"] is None
    json.dumps(d, allow_nan=False)  # JSON-ready


def test_sizes_are_inferred_and_checked() -> None:
    d = diagnose_codes(CODES)
    assert d["codebook_sizes"] == [2, 3] and d["codebook_sizes_inferred"]
    assert d["occupancy"] == pytest.approx(1.0)
    with pytest.raises(TokenizerError, match="uses code 2 >= codebook size 2"):
        diagnose_codes(CODES, [2, 2])
    with pytest.raises(TokenizerError, match="2 levels"):
        diagnose_codes(CODES, [2])


def test_duplicate_embeddings_never_count_an_item_as_its_own_neighbour() -> None:
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    d = diagnose_codes(np.array([[0], [1], [2], [2]]), embeddings=emb)
    assert d["semantic"]["nn_share_level1"] == pytest.approx(0.5)


def test_semantic_check_can_subsample_queries() -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, size=(50, 1))
    d = diagnose_codes(codes, embeddings=rng.normal(size=(50, 3)), max_queries=20)
    assert d["semantic"]["n_queries"] == 20


def test_bring_your_own_sids_letter_style() -> None:
    """Published LETTER codes: 4 levels x 256, parsed to ints (Dataset.codes rows 1..n)."""
    published = np.array(
        [
            [183, 70, 232, 6],
            [183, 122, 96, 235],
            [52, 170, 54, 27],
            [183, 70, 232, 6],
            [9, 135, 195, 111],
        ]
    )
    d = diagnose_codes(published, [256] * 4)
    assert d["collision"]["rate"] == pytest.approx(1 - 4 / 5)
    assert d["collision"]["largest_group"] == 2
    assert d["occupancy"] == pytest.approx(5 / 256**4)
    assert [lv["used"] for lv in d["per_level"]] == [3, 4, 4, 4]
    with_pad = np.vstack([np.full((1, 4), -1), published])
    with pytest.raises(TokenizerError, match=r"Dataset\.codes\[1:\]"):
        diagnose_codes(with_pad)


def test_diagnose_dataset_strips_the_padding_row() -> None:
    n = 5
    codes = np.vstack([np.full((1, 2), -1), np.array([[0, 1], [0, 1], [1, 0], [1, 1], [2, 0]])])
    ds = Dataset(
        name="toy",
        user_ids=np.array(["", "u1"]),
        item_ids=np.array(["", *[f"i{k}" for k in range(n)]]),
        inter_user=np.ones(n, dtype=np.int32),
        inter_item=np.arange(1, n + 1, dtype=np.int32),
        inter_split=np.zeros(n, dtype=np.int8),
        codes=codes,
        code_source="hand-made",
    )
    d = diagnose_dataset(ds)
    assert d["n_items"] == 5 and d["collision"]["n_unique_sids"] == 4
    assert d["code_source"] == "hand-made"


def test_reconstruction_from_a_tokenizer(mixture: np.ndarray) -> None:
    tok = build_tokenizer(method="rqkmeans", levels=2, codebook_size=16, distance="euclidean").fit(
        mixture
    )
    d = diagnose_tokenizer(tok, mixture)
    xh = tok.reconstruct(mixture).astype(np.float64)
    x = mixture.astype(np.float64)
    mse = ((x - xh) ** 2).mean()
    assert d["reconstruction"]["mse"] == pytest.approx(mse, rel=1e-6)
    assert d["reconstruction"]["relative_mse"] == pytest.approx(
        mse / x.var(axis=0).sum() * 16, rel=1e-6
    )
    assert 0 < d["reconstruction"]["relative_mse"] < 1
    assert d["method"] == "rqkmeans" and d["semantic"]["lift"] > 1  # level 1 tracks clusters


def test_table_json_and_png(tmp_path: Path, mixture: np.ndarray) -> None:
    tok = build_tokenizer(method="rqkmeans", levels=3, codebook_size=16).fit(mixture)
    d = diagnose_tokenizer(tok, mixture)
    console = Console(record=True, width=140)
    print_diagnostics(d, console=console)
    text = console.export_text()
    for needle in ("collision rate", "occupancy", "perplexity", "recon. MSE", "NN shares level-1"):
        assert needle in text
    save_diagnostics(d, tmp_path / "diag.json")
    assert json.loads((tmp_path / "diag.json").read_text()) == json.loads(json.dumps(d))
    png = plot_code_usage(d, tmp_path / "usage.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_code_usage(CODES, tmp_path / "byo.png")  # straight from codes
    assert (tmp_path / "byo.png").stat().st_size > 1000
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temp files
