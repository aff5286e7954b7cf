"""What a model is built from: only training-split interactions reach it, so H2Rec's co-occurrence
positives can never contain a validation or test item's neighbourhood."""

from __future__ import annotations

import numpy as np

from h2rec.data.preprocess import build_dataset
from h2rec.models.h2rec.positives import PositiveSets
from h2rec.training.inputs import load_model_inputs, training_csr

from ..data.helpers import config, raw_from_rows


def _dataset():
    # leave-one-out: the last item of each user is test, the one before it validation
    rows = [("u1", i, t) for t, i in enumerate(["a", "b", "c", "d", "e"])]
    rows += [("u2", i, t) for t, i in enumerate(["c", "a", "f", "e"])]
    rows += [("u3", i, t) for t, i in enumerate(["f", "b", "d"])]
    return build_dataset(raw_from_rows(rows), config())


def test_training_csr_holds_only_training_items_in_time_order() -> None:
    ds = _dataset()
    offsets, items = training_csr(ds)
    ext = ds.item_ids
    got = {
        ds.user_ids[u]: [str(ext[i]) for i in items[offsets[u] : offsets[u + 1]]]
        for u in range(1, ds.n_users + 1)
    }
    assert got == {"u1": ["a", "b", "c"], "u2": ["c", "a"], "u3": ["f"]}


def test_cooccurrence_positives_never_use_validation_or_test_items() -> None:
    ds = _dataset()
    inputs = load_model_inputs(ds, "sasrec", {})
    assert inputs.codes is None and inputs.text_vectors is None  # nothing named, nothing loaded
    pos = PositiveSets(
        None,
        inputs.train_offsets,
        inputs.train_items,
        ds.n_items,
        window=5,
        use_codes=False,
    )
    idx = ds.item_index
    names = {v: k for k, v in idx.items()}

    def positives(item: str) -> set[str]:
        return {names[int(i)] for i in pos.positive_set(idx[item])}

    # training sequences: u1 a b c, u2 c a, u3 f (d, e are only ever validation/test items)
    assert positives("a") == {"a", "b", "c"}
    assert positives("c") == {"a", "b", "c"}
    assert positives("f") == {"f"}  # f is u2's validation item and u3's only training item
    assert positives("d") == {"d"}
    assert positives("e") == {"e"}
    assert np.all(inputs.popularity == ds.item_popularity("train"))
