"""The real datasets in ../shared/data, prepared without filtering, give the published counts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from h2rec.config import load_config
from h2rec.data import PrepareConfig, compute_stats, prepare

pytestmark = pytest.mark.shared_data

# ../shared/data/README.md
EXPECTED = {
    "yelp": (30_431, 20_033, 316_354),
    "beauty": (22_363, 12_101, 198_502),
    "instruments": (24_772, 9_922, 206_153),
    "ml-100k": (943, 1_682, 100_000),
}


@pytest.fixture(scope="module")
def prepared(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    result = {}
    for name in EXPECTED:
        cfg = load_config(PrepareConfig, f"data/{name}", [f"source.path={shared_data / name}"])
        result[name] = prepare(cfg, out / name)
    return result


@pytest.mark.parametrize("name", list(EXPECTED))
def test_counts_match_the_published_readme(prepared, name) -> None:
    ds = prepared[name]
    assert (ds.n_users, ds.n_items, ds.n_interactions) == EXPECTED[name]
    # leave-one-out: every user of these 5-core (ml-100k: 20-core) sets has one valid + one test
    assert ds.counts()["valid"] == ds.counts()["test"] == ds.n_users


def test_sequences_equal_the_raw_json(prepared, shared_data) -> None:
    """Independent check: our sequences are the LETTER JSON lists, element by element."""
    raw = json.loads((shared_data / "beauty" / "Beauty.inter.json").read_text())
    ds = prepared["beauty"]
    for user in ("0", "1", "77", str(len(raw) - 1)):
        u = ds.user_index[user]
        assert [int(ds.item_ids[i]) for i in ds.sequence(u)] == raw[user]
    assert ds.manifest["counts"]["interactions"] == sum(len(v) for v in raw.values())


def test_sasrec_text_file_agrees_with_lcrec_json(prepared, shared_data, tmp_path) -> None:
    """Beauty.txt holds the same interactions with ids shifted by one (data README)."""
    cfg = PrepareConfig.model_validate(
        {
            "name": "beauty-txt",
            "source": {
                "format": "sasrec",
                "path": str(shared_data / "beauty" / "Beauty.txt"),
                "items_path": str(shared_data / "beauty" / "Beauty.item.json"),
                "items_id_offset": 1,
            },
        }
    )
    txt = prepare(cfg, tmp_path / "txt")
    js = prepared["beauty"]
    assert (txt.n_users, txt.n_items, txt.n_interactions) == EXPECTED["beauty"]
    np.testing.assert_array_equal(txt.inter_item, js.inter_item)  # same first-seen numbering
    np.testing.assert_array_equal(txt.inter_user, js.inter_user)
    assert [int(e) - 1 for e in txt.item_ids[1:]] == [int(e) for e in js.item_ids[1:]]
    assert txt.item_text == js.item_text


def test_published_sids_and_text(prepared) -> None:
    for name in ("yelp", "beauty", "instruments"):
        ds = prepared[name]
        assert ds.codes is not None and ds.codes.shape == (ds.n_items + 1, 4)
        assert ds.codes[1:].min() >= 0 and ds.codes[1:].max() < 256
    beauty = prepared["beauty"]
    assert beauty.item_text[beauty.item_index["0"] - 1] == "nail lacquer simmer and shimmer"
    yelp = prepared["yelp"]
    assert yelp.item_text[yelp.item_index["0"] - 1] == (
        "The point of interest has following attributes: \n name is The Great Greek; "
        "category is Diners, Greek, Mediterranean, Restaurants."
    )
    ml = prepared["ml-100k"]
    assert ml.has_timestamps
    assert (
        ml.item_text[ml.item_index["1"] - 1]
        == "Toy Story (1995). Genres: Animation Children's Comedy."
    )


def test_head_tail_statistics_on_yelp(prepared) -> None:
    ds = prepared["yelp"]
    s = compute_stats(ds)
    pop = ds.item_popularity("train")[1:]
    n_head = int(np.ceil(0.2 * ds.n_items))
    top = np.sort(pop)[::-1][:n_head]
    assert s["head_tail"]["head_items"] == n_head == 4007
    assert s["head_tail"]["head_share_of_train_interactions"] == pytest.approx(
        top.sum() / pop.sum()
    )
    assert s["repeat_interactions"] > 0  # Yelp users revisit businesses
