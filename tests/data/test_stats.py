from __future__ import annotations

import numpy as np
import pytest

from h2rec.data.popularity import count_groups, head_mask, threshold_head_mask
from h2rec.data.preprocess import build_dataset
from h2rec.data.stats import compute_stats, gini, plot_popularity

from .helpers import config, raw_from_rows


def test_gini_by_hand() -> None:
    assert gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    # one item has everything among n=4: G = (n-1)/n
    assert gini(np.array([0, 0, 0, 8])) == pytest.approx(0.75)
    # [1, 3]: mean abs difference / (2 * mean) = (2*|1-3|/4) / (2*2) = 0.25
    assert gini(np.array([1, 3])) == pytest.approx(0.25)


def test_head_is_top_20_percent_with_id_tie_break() -> None:
    pop = np.array([0, 5, 9, 1, 9, 0, 2, 3, 3, 3, 4])  # index 0 = padding; 10 items -> 2 head
    mask = head_mask(pop, 0.2)
    assert np.flatnonzero(mask).tolist() == [2, 4]
    # 11 items -> ceil(2.2) = 3 head items; ties at 3 broken by smaller id
    pop2 = np.array([0, 3, 9, 3, 3, 1, 1, 1, 1, 1, 1, 9])
    assert np.flatnonzero(head_mask(pop2, 0.2)).tolist() == [1, 2, 11]
    assert np.flatnonzero(threshold_head_mask(pop, 4)).tolist() == [1, 2, 4, 10]
    np.testing.assert_array_equal(
        count_groups(np.array([0, 9, 10, 29, 30, 60, 99, 100, 500])), [0, 0, 1, 1, 2, 3, 3, 4, 4]
    )


def test_stats_on_a_small_dataset_by_hand() -> None:
    # 5 items; training popularity: a 3, b 2, c 1, d 1, e 0 -> head (top 20% = 1 item) = a
    rows = (
        [("u1", i, t) for t, i in enumerate(["a", "b", "c", "a", "e"])]
        + [("u2", i, t) for t, i in enumerate(["a", "b", "d", "b", "a"])]
        + [("u3", i, t) for t, i in enumerate(["a", "d", "c"])]
    )
    ds = build_dataset(raw_from_rows(rows), config())
    s = compute_stats(ds)
    assert (s["users"], s["items"], s["interactions"]) == (3, 5, 13)
    assert s["sparsity"] == pytest.approx(1 - 13 / 15)
    assert s["avg_seq_len"] == pytest.approx(13 / 3)
    assert s["seq_len"]["max"] == 5 and s["seq_len"]["min"] == 3
    # train: u1 a b c, u2 a b d, u3 a -> a 3, b 2, c 1, d 1
    ht = s["head_tail"]
    assert ht["head_items"] == 1 and ht["tail_items"] == 4
    assert ht["head_min_train_count"] == 3
    assert ht["head_share_of_train_interactions"] == pytest.approx(3 / 7)
    # valid targets: u1 a, u2 b, u3 d -> 1/3 head; test targets: e, a, c -> 1/3 head
    assert ht["head_share_of_valid_targets"] == pytest.approx(1 / 3)
    assert ht["head_share_of_test_targets"] == pytest.approx(1 / 3)
    # repeats: u1 re-consumes a once, u2 re-consumes b and a
    assert s["repeat_interactions"] == 3
    assert s["split"] == {"kind": "loo", "train": 7, "valid": 3, "test": 3}


def test_popularity_plot_is_a_png(tmp_path) -> None:
    ds = build_dataset(raw_from_rows([("u", "a", 1), ("u", "b", 2), ("v", "a", 1)]), config())
    out = plot_popularity(ds, tmp_path / "pop.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
