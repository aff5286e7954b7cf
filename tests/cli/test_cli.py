"""The CLI end to end on small synthetic data: synth -> prepare (with overrides) -> stats."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from h2rec.cli.main import app
from h2rec.data import load_dataset

runner = CliRunner()


def _ok(args: list[str]):
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture()
def synth_dir(tmp_path):
    out = tmp_path / "raw"
    _ok(["synth", "--out", str(out), "n_users=300", "n_items=150", "n_categories=2", "seed=3"])
    return out


def test_synth_prepare_stats(tmp_path, synth_dir) -> None:
    prep = tmp_path / "prep"
    res = _ok(
        [
            "-q",
            "prepare",
            "-c",
            "data/synth",
            "--out",
            str(prep),
            f"source.path={synth_dir}",
            "preprocess.user_core=0",
            "preprocess.item_core=0",
        ]
    )
    assert "users" in res.output
    ds = load_dataset(prep)
    assert ds.n_users == 300 and ds.n_items == 150  # no filtering: every synthetic item is used
    saved = (prep / "config.yaml").read_text()
    assert "user_core: 0" in saved and str(synth_dir) in saved  # the resolved config is saved
    js = tmp_path / "s.json"
    png = tmp_path / "p.png"
    res = _ok(["stats", str(prep), "--json", str(js), "--plot", str(png)])
    stats = json.loads(js.read_text())
    assert stats["users"] == 300 and stats["interactions"] == ds.n_interactions
    assert f"{ds.n_interactions:,}" in res.output
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_prepare_reuses_fresh_cache_and_rebuilds_on_change(tmp_path, synth_dir) -> None:
    prep = tmp_path / "prep"
    base = ["prepare", "-c", "data/synth", "--out", str(prep), f"source.path={synth_dir}"]
    _ok(base)
    first = (prep / "manifest.json").stat().st_mtime_ns
    _ok(base)
    assert (prep / "manifest.json").stat().st_mtime_ns == first  # reused
    _ok([*base, "preprocess.user_core=6"])
    assert (
        json.loads((prep / "manifest.json").read_text())["config"]["preprocess"]["user_core"] == 6
    )


def test_user_errors_are_one_line_with_exit_code_2(tmp_path) -> None:
    res = runner.invoke(app, ["prepare", "-c", "data/synth", f"source.path={tmp_path / 'nope'}"])
    assert res.exit_code == 2
    assert "error:" in res.output and "nope" in res.output
    res = runner.invoke(app, ["prepare", "-c", "data/synth", "preprocess.user_core=-3"])
    assert res.exit_code == 2 and "preprocess.user_core" in res.output
    res = runner.invoke(app, ["stats", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "no prepared dataset" in res.output
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.inter").write_text("user_id:token\titem_id:tokn\nu\ti\n")
    res = runner.invoke(app, ["prepare", "name=x", "source.format=recbole", f"source.path={bad}"])
    assert res.exit_code == 2 and "x.inter, line 1, field 'item_id'" in res.output


def test_pipeline_main_job(tmp_path) -> None:
    res = _ok(
        [
            "-q",
            "pipeline",
            f"workdir={tmp_path / 'w'}",
            "synth.n_users=400",
            "synth.n_items=200",
            "synth.n_categories=2",
            "tokenize_overrides=[epochs=3, codebook_size=16]",
            "train_overrides=[epochs=2, model.hidden_size=16]",
        ]
    )
    assert "prepared dataset" in res.output
    ds = load_dataset(tmp_path / "w" / "prepared" / "synth")
    assert ds.n_users == 400
    assert (tmp_path / "w" / "prepared" / "synth" / "stats.json").is_file()
    assert (tmp_path / "w" / "pipeline.yaml").is_file()
    prepared = tmp_path / "w" / "prepared" / "synth"
    assert (prepared / "embeddings" / "st-all-minilm-l6-v2.npy").is_file()
    codes = np.load(prepared / "sids" / "rqvae-4x16" / "codes.npy")
    assert codes.shape == (ds.n_items + 1, 4) and (codes[0] == -1).all() and codes[1:].max() < 16
    assert "semantic IDs" in res.output and "test / full" in res.output


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("name", "counts"),
    [("yelp", ("30,431", "20,033", "316,354")), ("beauty", ("22,363", "12,101", "198,502"))],
)
def test_stats_on_real_data_prints_published_counts(tmp_path, shared_data, name, counts) -> None:
    prep = tmp_path / name
    _ok(
        [
            "-q",
            "prepare",
            "-c",
            f"data/{name}",
            "--out",
            str(prep),
            f"source.path={shared_data / name}",
        ]
    )
    res = _ok(["stats", str(prep)])
    for value, label in zip(counts, ("users", "items", "interactions"), strict=True):
        line = next(ln for ln in res.output.splitlines() if f" {label} " in ln)
        assert value in line, line


def test_train_then_evaluate(tmp_path, synth_dir) -> None:
    prep = tmp_path / "prep"
    _ok(["-q", "prepare", "-c", "data/synth", "--out", str(prep), f"source.path={synth_dir}"])
    runs = tmp_path / "runs"
    res = _ok(
        [
            "-q",
            "train",
            "train/sasrec-synth",
            f"data={prep}",
            f"runs_dir={runs}",
            "name=r",
            "epochs=2",
            "model.hidden_size=16",
            "max_len=10",
        ]
    )
    assert "test / full" in res.output and "test / uni100" in res.output
    summary = json.loads((runs / "r" / "summary.json").read_text())
    assert summary["epochs_run"] == 2 and set(summary["test"]) == {"full", "uni100"}
    # training again without --resume/--overwrite is refused, with exit code 2
    again = runner.invoke(
        app,
        [
            "train",
            "train/sasrec-synth",
            f"data={prep}",
            f"runs_dir={runs}",
            "name=r",
            "epochs=2",
            "model.hidden_size=16",
            "max_len=10",
        ],
    )
    assert again.exit_code == 2 and "--resume" in again.output
    res = _ok(
        ["-q", "evaluate", str(runs / "r"), "--protocol", "full,pop100", "--tie", "optimistic"]
    )
    assert "test / pop100" in res.output
    saved = json.loads((runs / "r" / "results" / "test-pop100-tie=optimistic.json").read_text())
    assert saved["stamp"]["protocol"] == "pop100" and saved["stamp"]["tie_policy"] == "optimistic"
    # the re-evaluated full result equals the one written at the end of training
    full_train = json.loads((runs / "r" / "results" / "test-full.json").read_text())
    full_again = json.loads((runs / "r" / "results" / "test-full-tie=optimistic.json").read_text())
    assert (
        full_again["overall"]["HR@10"] >= full_train["overall"]["HR@10"]
    )  # optimistic >= pessimistic
    bad = runner.invoke(app, ["evaluate", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "not a run folder" in bad.output
    res = _ok(["-q", "evaluate", str(runs / "r"), "--protocol", "full", "--exposure", "5,10"])
    assert "head_share@5" in res.output and "gini@10" in res.output
    exposure = json.loads((runs / "r" / "results" / "test-exposure.json").read_text())
    assert set(exposure) >= {"head_share@5", "arp@10", "coverage@10", "gini@5"}
    assert 0.0 < exposure["coverage@5"] <= exposure["coverage@10"] <= 1.0
    res = _ok(["-q", "evaluate", str(runs / "r"), "--protocol", "full", "--revisits"])
    assert "revisit targets" in res.output
    split = json.loads((runs / "r" / "results" / "test-full-revisits.json").read_text())
    o, share = split["overall"], split["overall"]["revisit_share"]
    assert o["all NDCG@10"] == pytest.approx(full_train["overall"]["NDCG@10"])
    parts = [(share, o["revisits NDCG@10"]), (1 - share, o["new NDCG@10"])]
    assert o["all NDCG@10"] == pytest.approx(sum(w * v for w, v in parts if w > 0))


def test_embed_and_tokenize(tmp_path, synth_dir) -> None:
    prep = tmp_path / "prep"
    _ok(["-q", "prepare", "-c", "data/synth", "--out", str(prep), f"source.path={synth_dir}"])
    res = _ok(["-q", "embed", str(prep), "-c", "embed/tfidf", "tfidf.dim=32"])
    assert "32-d" in res.output
    res = _ok(
        [
            "-q",
            "tokenize",
            str(prep),
            "-c",
            "tokenize/rqkmeans-4x128",
            "codebook_size=8",
            "levels=2",
        ]
    )
    assert "collision rate" in res.output
    meta = json.loads((prep / "sids" / "rqkmeans-2x8" / "meta.json").read_text())
    assert meta["embeddings"]["name"] == "tfidf-svd-32" and meta["levels"] == 2
    # a second embedding makes the choice ambiguous: the error says so and lists them
    _ok(["-q", "embed", str(prep), "-c", "embed/tfidf", "tfidf.dim=16"])
    bad = runner.invoke(app, ["tokenize", str(prep), "-c", "tokenize/vq-512", "codebook_size=8"])
    assert bad.exit_code == 2 and "several embeddings" in bad.output
    _ok(
        [
            "-q",
            "tokenize",
            str(prep),
            "-c",
            "tokenize/vq-512",
            "codebook_size=8",
            "--embeddings",
            "tfidf-svd-16",
        ]
    )
    assert (prep / "sids" / "vq-8" / "usage.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.shared_data
def test_published_sid_diagnostics_on_beauty(tmp_path, shared_data) -> None:
    prep = tmp_path / "beauty"
    _ok(
        [
            "-q",
            "prepare",
            "-c",
            "data/beauty",
            "--out",
            str(prep),
            f"source.path={shared_data / 'beauty'}",
        ]
    )
    res = _ok(["tokenize", str(prep), "--published"])
    diag = json.loads((prep / "sids" / "published" / "diagnostics.json").read_text())
    # 12,101 items, 12,088 distinct published SIDs (LETTER, 4 x 256)
    assert diag["n_items"] == 12101
    assert abs(diag["collision"]["rate"] - (1 - 12088 / 12101)) < 1e-12
    assert "collision rate" in res.output


def test_experiment_status_totals_shared_cells_once(tmp_path) -> None:
    """`h2rec experiment status A B`: both files list one cell; its 720 s count once (0.2 h)."""
    from h2rec.experiments import cells, load_experiment
    from h2rec.experiments.runner import CELL_FORMAT
    from h2rec.io import atomic_write_json

    files = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            f"name: {name}\nbase: train/sasrec-synth\ndatasets: {{synth: {{data: nowhere}}}}\n"
            f"seeds: [1]\nmodels: {{SASRec: {{}}}}\nresults_dir: {tmp_path / 'results'}\n"
            f"runs_dir: {tmp_path / 'runs'}\n"
        )
        files.append(str(path))
    spec = load_experiment(files[0])
    (cell,) = cells(spec)
    config = cell.train_config().model_dump(mode="json")
    record = {"format": CELL_FORMAT, "config": config, "wall_seconds": 720.0, "device": "cpu"}
    atomic_write_json(cell.result_file(spec.results_path), record)
    out = _ok(["experiment", "status", *files]).output
    assert out.count("done  synth/sasrec/s1") == 2
    assert "1 finished cells (each counted once): 0.2 h of training (0.2 h on cpu)" in out
