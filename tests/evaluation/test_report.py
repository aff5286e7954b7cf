from __future__ import annotations

import pytest
from rich.console import Console

from h2rec.errors import H2RecError
from h2rec.evaluation import (
    Evaluator,
    MixedProtocolError,
    MixedProtocolWarning,
    build_table,
    print_results,
    render_results,
)

from .helpers import hashed_score_fn, popularity_score_fn, random_dataset


@pytest.fixture(scope="module")
def results():
    ds = random_dataset(20, n_users=80)
    full = Evaluator(ds, ks=(10,))
    uni = Evaluator(ds, protocol="uni10", ks=(10,), negatives_seed=4)
    return {
        "full": [
            full.evaluate(popularity_score_fn(ds), model_name="mostpop"),
            full.evaluate(hashed_score_fn(ds.n_items), model_name="hashrec"),
        ],
        "uni": [uni.evaluate(popularity_score_fn(ds), model_name="mostpop")],
        "hash": ds.content_hash(),
    }


def console() -> Console:
    return Console(record=True, width=250, color_system=None)


def test_one_table_per_protocol_with_stamp_caption(results) -> None:
    con = console()
    tables = render_results(results["full"])  # returned, not printed
    assert len(tables) == 1 and con.export_text() == ""
    print_results(results["full"], console=con)
    text = con.export_text()
    for word in ["mostpop", "hashrec", "overall", "head", "tail", "pop Q5", "short", "long"]:
        assert word in text
    for word in ["n_users", "HR@10", "NDCG@10", "MRR@10"]:
        assert word in text
    caption = str(tables[0].caption)
    assert "protocol full" in caption and "split test" in caption
    assert "ties pessimistic" in caption and "exclude_history false" in caption
    assert "negatives seed -" in caption and results["hash"][:12] in caption
    uni_caption = str(build_table(results["uni"]).caption)
    assert "protocol uni10" in uni_caption and "negatives seed 4" in uni_caption


def test_sampled_and_full_results_are_refused_together(results) -> None:
    mixed = [*results["full"], *results["uni"]]
    with pytest.raises(MixedProtocolError, match="allow_mixed") as err:
        render_results(mixed, console=console())
    assert isinstance(err.value, H2RecError)  # the CLI shows it as a one-line user error
    con = console()
    with pytest.warns(MixedProtocolWarning):
        tables = render_results(mixed, allow_mixed=True, console=con)
    assert len(tables) == 3  # the warning panel, then still one table per protocol
    text = con.export_text()
    assert "WARNING" in text and "NOT comparable" in text
    with pytest.raises(MixedProtocolError):
        build_table(mixed)


def test_empty_group_shows_a_dash(results) -> None:
    ds = random_dataset(21)
    res = Evaluator(ds, head_threshold=10_000, ks=(10,)).evaluate(
        popularity_score_fn(ds), model_name="m"
    )
    con = console()
    render_results([res], console=con)
    head_line = next(line for line in con.export_text().splitlines() if " head " in line)
    assert " 0 " in head_line and "-" in head_line
