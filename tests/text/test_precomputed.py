"""Precomputed vectors from .npy / Parquet: shape, NaN and infinity checks naming file and row."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from h2rec.text import EmbedConfig, EmbeddingError, embed_items, load_precomputed

from .conftest import make_dataset


@pytest.fixture
def ds():
    return make_dataset(["a", "b", "c", "d"])  # external ids i000..i003


def test_npy_with_and_without_padding_row(ds, tmp_path) -> None:
    vec = np.arange(12, dtype=np.float64).reshape(4, 3) + 1
    np.save(tmp_path / "v.npy", vec)
    out = load_precomputed(tmp_path / "v.npy", ds)
    assert out.dtype == np.float32 and out.shape == (5, 3)
    assert not out[0].any()
    np.testing.assert_array_equal(out[1:], vec)
    np.save(tmp_path / "p.npy", np.vstack([np.full((1, 3), np.nan), vec]))  # padding row ignored
    np.testing.assert_array_equal(load_precomputed(tmp_path / "p.npy", ds), out)


def test_npy_wrong_shape(ds, tmp_path) -> None:
    np.save(tmp_path / "v.npy", np.zeros((3, 8)))
    with pytest.raises(EmbeddingError, match=r"v\.npy: expected shape \[n_items, dim\] = \[4, d\]"):
        load_precomputed(tmp_path / "v.npy", ds)
    np.save(tmp_path / "w.npy", np.zeros(4))
    with pytest.raises(EmbeddingError, match=r"w\.npy.*got \[4\]"):
        load_precomputed(tmp_path / "w.npy", ds)


@pytest.mark.parametrize(("bad", "word"), [(np.nan, "NaN"), (np.inf, "infinity")])
def test_npy_non_finite_row_named(ds, tmp_path, bad, word) -> None:
    vec = np.ones((4, 3))
    vec[2, 1] = bad
    np.save(tmp_path / "v.npy", vec)
    with pytest.raises(EmbeddingError, match=rf"v\.npy: row 2 \(item i002\) contains {word}"):
        load_precomputed(tmp_path / "v.npy", ds)


def test_parquet_mapped_by_external_id(ds, tmp_path) -> None:
    ids = ["i003", "zzz-not-in-dataset", "i001", "i000", "i002"]
    vecs = [[float(k), 1.0] for k in range(5)]
    pq.write_table(pa.table({"item_id": ids, "embedding": vecs}), tmp_path / "v.parquet")
    out = load_precomputed(tmp_path / "v.parquet", ds)
    np.testing.assert_array_equal(out, [[0, 0], [3, 1], [2, 1], [4, 1], [0, 1]])
    # fixed-size lists, other column names, through the pipeline (normalised by default)
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(np.ravel(vecs), pa.float32()), 2)
    pq.write_table(pa.table({"asin": ids, "vec": fixed}), tmp_path / "f.parquet")
    cfg = EmbedConfig(
        kind="precomputed",
        precomputed={
            "path": str(tmp_path / "f.parquet"),
            "id_column": "asin",
            "vector_column": "vec",
        },
    )
    res = embed_items(ds, cfg)
    assert res.name == "precomputed-f" and res.key.startswith("precomputed:f.parquet@")
    np.testing.assert_allclose(np.linalg.norm(res.vectors[1:], axis=1), 1.0, rtol=1e-6)
    assert not res.vectors[0].any()


def test_parquet_missing_item_named(ds, tmp_path) -> None:
    pq.write_table(
        pa.table({"item_id": ["i000", "i001", "i003"], "embedding": [[1.0], [2.0], [3.0]]}),
        tmp_path / "v.parquet",
    )
    with pytest.raises(EmbeddingError, match=r"v\.parquet: no vector for 1 of .* item i002"):
        load_precomputed(tmp_path / "v.parquet", ds)


def test_parquet_bad_rows_named(ds, tmp_path) -> None:
    ids = ["i000", "i001", "i002", "i003"]
    p = tmp_path / "v.parquet"
    pq.write_table(
        pa.table({"item_id": ids, "embedding": [[1.0, 2], [1, 2], [1, float("nan")], [1, 2]]}), p
    )
    with pytest.raises(EmbeddingError, match=r"v\.parquet: row 2 \(item i002\) contains NaN"):
        load_precomputed(p, ds)
    pq.write_table(pa.table({"item_id": ids, "embedding": [[1.0, 2], [1, 2], [1, 2], [1.0]]}), p)
    with pytest.raises(EmbeddingError, match=r"row 3 \(item i003\) has a vector of size 1"):
        load_precomputed(p, ds)
    pq.write_table(pa.table({"item_id": [*ids, "i001"], "embedding": [[1.0]] * 5}), p)
    with pytest.raises(EmbeddingError, match="item i001 appears twice"):
        load_precomputed(p, ds)
    with pytest.raises(EmbeddingError, match=r"missing column\(s\) \['vec'\]"):
        load_precomputed(p, ds, vector_column="vec")
