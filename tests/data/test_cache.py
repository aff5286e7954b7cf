from __future__ import annotations

import os

import numpy as np
import polars as pl
import pytest

from h2rec.data import cache
from h2rec.data.preprocess import build_dataset
from h2rec.errors import CacheError
from h2rec.io import atomic_directory

from .helpers import config, raw_from_rows


def _dataset():
    raw = raw_from_rows(
        [
            ("u1", "a", 1, 5),
            ("u1", "b", 2, 4),
            ("u1", "c", 3, 3),
            ("u2", "b", 1, 2),
            ("u2", "c", 5, 1),
            ("u2", "a", 7, 5),
        ],
        items={"a": {"title": "Apple"}, "b": {"title": "Banana"}, "c": {"title": "Cherry"}},
    )
    raw.codes = pl.DataFrame(
        {"item_id": ["a", "b", "c"], "codes": [[0, 1, 2], [0, 1, 3], [4, 5, 6]]}
    )
    raw.code_source = "x.index.json"
    return build_dataset(raw, config(text={"template": "{title}"}))


def test_round_trip_is_exact(tmp_path) -> None:
    ds = _dataset()
    cache.save(ds, tmp_path / "ds", config={"k": 1}, source={"format": "test", "paths": []})
    back = cache.load(tmp_path / "ds")
    for attr in ("inter_user", "inter_item", "inter_split", "inter_time", "inter_rating", "codes"):
        np.testing.assert_array_equal(getattr(back, attr), getattr(ds, attr), err_msg=attr)
    assert list(back.user_ids) == list(ds.user_ids)
    assert list(back.item_ids) == list(ds.item_ids)
    assert back.item_text == ["Apple", "Banana", "Cherry"]
    assert back.content_hash() == ds.content_hash() == back.manifest["content_hash"]
    assert back.manifest["counts"] == {
        "users": 2,
        "items": 3,
        "interactions": 6,
        "train": 2,
        "valid": 2,
        "test": 2,
    }
    assert back.code_source == "x.index.json"
    np.testing.assert_array_equal(back.offsets, [0, 0, 3, 6])


def test_content_hash_changes_with_content() -> None:
    a, b = _dataset(), _dataset()
    assert a.content_hash() == b.content_hash()
    b.inter_split = b.inter_split.copy()
    b.inter_split[0] = 2
    assert a.content_hash() != b.content_hash()


def test_half_written_cache_is_never_read(tmp_path) -> None:
    ds = _dataset()
    target = tmp_path / "ds"

    class Boom(RuntimeError):
        pass

    with pytest.raises(Boom), atomic_directory(target) as tmp:
        (tmp / "interactions.parquet").write_bytes(b"partial")
        raise Boom
    assert not target.exists()  # the failed write left nothing under the final name
    assert not list(tmp_path.iterdir())  # and removed its temp folder
    with pytest.raises(CacheError, match="no prepared dataset"):
        cache.load(target)
    # a folder with data but without manifest (e.g. copied by hand, interrupted) is refused
    target.mkdir()
    (target / "interactions.parquet").write_bytes(b"x")
    with pytest.raises(CacheError, match=r"no manifest\.json"):
        cache.load(target)
    # a failed rewrite keeps the previous complete cache intact
    cache.save(ds, tmp_path / "ok", config={}, source={"paths": []})
    with pytest.raises(Boom), atomic_directory(tmp_path / "ok") as tmp:
        raise Boom
    assert cache.load(tmp_path / "ok").content_hash() == ds.content_hash()


def test_corrupted_or_truncated_files_are_detected(tmp_path) -> None:
    ds = _dataset()
    out = cache.save(ds, tmp_path / "ds", config={}, source={"paths": []})
    f = out / "items.parquet"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="does not match the manifest"):
        cache.load(out)
    f.write_bytes(bytes(data[:-10]))
    with pytest.raises(CacheError, match="does not match the manifest"):
        cache.load(out, verify=False)  # size check still runs
    out2 = cache.save(ds, tmp_path / "ds2", config={}, source={"paths": []})
    os.remove(out2 / "users.parquet")
    with pytest.raises(CacheError, match=r"users\.parquet: listed in the manifest but missing"):
        cache.load(out2)


def test_schema_version_mismatch_is_refused(tmp_path) -> None:
    import json

    out = cache.save(_dataset(), tmp_path / "ds", config={}, source={"paths": []})
    m = json.loads((out / "manifest.json").read_text())
    m["schema_version"] = 999
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CacheError, match="schema version 999"):
        cache.load(out)


def test_is_fresh_tracks_config_and_source_files(tmp_path) -> None:
    src = tmp_path / "raw.txt"
    src.write_text("data")
    out = cache.save(_dataset(), tmp_path / "ds", config={"a": 1}, source={"paths": [str(src)]})
    assert cache.is_fresh(out, {"a": 1})
    assert not cache.is_fresh(out, {"a": 2})
    src.write_text("changed data")
    assert not cache.is_fresh(out, {"a": 1})
    assert not cache.is_fresh(tmp_path / "missing", {"a": 1})


def test_resave_of_identical_content_keeps_derived_artifacts(tmp_path) -> None:
    out = tmp_path / "ds"
    cache.save(_dataset(), out, config={"a": 1}, source={"paths": []})
    (out / "embeddings").mkdir()
    (out / "embeddings" / "e.npy").write_bytes(b"vectors")
    (out / "notes.txt").write_text("kept")
    (out / ".sids.tmp-123").mkdir()  # debris of an interrupted write is not carried
    cache.save(_dataset(), out, config={"a": 1}, source={"paths": []})
    assert (out / "embeddings" / "e.npy").read_bytes() == b"vectors"
    assert (out / "notes.txt").read_text() == "kept"
    assert not (out / ".sids.tmp-123").exists()
    cache.load(out)  # still a valid cache


def test_resave_of_changed_content_drops_derived_artifacts(tmp_path) -> None:
    out = tmp_path / "ds"
    cache.save(_dataset(), out, config={"a": 1}, source={"paths": []})
    (out / "embeddings").mkdir()
    (out / "embeddings" / "e.npy").write_bytes(b"vectors")
    ds = _dataset()
    ds.inter_item = ds.inter_item[::-1].copy()
    cache.save(ds, out, config={"a": 1}, source={"paths": []})
    assert not (out / "embeddings").exists()
