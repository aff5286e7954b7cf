"""The trainer end to end on small synthetic data: exact resume, and SASRec beats popularity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from h2rec.config import apply_overrides, read_yaml, validate
from h2rec.training import TrainConfig, Trainer

from ..synth_data import prepare_synth


@pytest.fixture(scope="module")
def synth_ds(tmp_path_factory):
    return prepare_synth(
        tmp_path_factory.mktemp("synth"), n_users=800, n_items=300, n_categories=2, seed=5
    )


def _cfg(tmp_path, ds, *overrides: str) -> TrainConfig:
    base = apply_overrides(
        read_yaml("train/sasrec-synth"),
        [
            f"data={ds.path}",
            f"runs_dir={tmp_path}",
            "eval.test_protocols=[full]",
            "batch_size=64",
            "max_len=20",
            "model.hidden_size=32",
            *overrides,
        ],
    )
    return validate(TrainConfig, base)


def _metrics(run_dir) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, synth_ds) -> None:
    cfg = _cfg(tmp_path, synth_ds, "name=straight", "epochs=4", "eval.patience=10")
    straight = Trainer(cfg, synth_ds).fit()
    cfg2 = _cfg(tmp_path, synth_ds, "name=resumed", "epochs=4", "eval.patience=10")
    first = Trainer(cfg2, synth_ds).fit(max_epochs=2)
    assert first["interrupted"] and first["epoch"] == 2
    # a new process would build a fresh trainer (fresh RNG state) and resume from disk
    resumed = Trainer(cfg2, synth_ds).fit(resume=True)
    a, b = _metrics(tmp_path / "straight"), _metrics(tmp_path / "resumed")
    assert [r["epoch"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b, strict=True):
        assert ra["loss"] == rb["loss"]
        assert ra["valid"] == rb["valid"]
    assert straight["summary"]["test"] == resumed["summary"]["test"]
    ranks_a = np.load(tmp_path / "straight" / "results" / "test-full.ranks.npy")
    ranks_b = np.load(tmp_path / "resumed" / "results" / "test-full.ranks.npy")
    np.testing.assert_array_equal(ranks_a, ranks_b)


def test_on_epoch_sees_every_epoch_and_can_stop_the_run(tmp_path, synth_ds) -> None:
    """The hook gets each finished epoch's state (its best epoch agrees with the validation
    metric in metrics.jsonl); returning True interrupts like max_epochs, and the run resumes to
    the same end as an uninterrupted one."""
    cfg = _cfg(tmp_path, synth_ds, "name=hooked", "epochs=3", "eval.patience=10")
    seen: list[dict] = []

    def hook(state: dict) -> bool:
        seen.append(state)
        state["epoch"] = -1  # a copy: the trainer's own state must not change
        return len(seen) == 2

    first = Trainer(cfg, synth_ds).fit(on_epoch=hook)
    assert first["interrupted"] and first["epoch"] == 2
    assert not (tmp_path / "hooked" / "summary.json").exists()  # no test pass when interrupted
    rows = _metrics(tmp_path / "hooked")
    assert [r["epoch"] for r in rows] == [1, 2]
    valid = [r["valid"]["NDCG@10"] for r in rows]
    for k in range(2):
        best = int(np.argmax(valid[: k + 1])) + 1  # first maximum, as the trainer keeps it
        assert seen[k]["best_epoch"] == best
        assert seen[k]["best_metric"] == pytest.approx(valid[best - 1])
    resumed = Trainer(cfg, synth_ds).fit(resume=True, on_epoch=lambda st: False)
    straight = Trainer(
        _cfg(tmp_path, synth_ds, "name=plain", "epochs=3", "eval.patience=10"), synth_ds
    ).fit()
    assert resumed["summary"]["test"] == straight["summary"]["test"]


def test_resume_accepts_a_config_saved_before_a_field_existed(tmp_path, synth_ds) -> None:
    """Adding a TrainConfig field (at its default) must not strand existing checkpoints; a real
    change of the config still refuses to resume."""
    from h2rec.errors import ConfigError

    cfg = _cfg(tmp_path, synth_ds, "name=old", "epochs=2", "eval.patience=10")
    Trainer(cfg, synth_ds).fit(max_epochs=1)
    saved = tmp_path / "old" / "config.yaml"
    text = saved.read_text()
    assert "deterministic: false\n" in text
    saved.write_text(text.replace("deterministic: false\n", ""))  # "written by an older version"
    out = Trainer(cfg, synth_ds).fit(resume=True)
    assert out["summary"]["epochs_run"] == 2
    changed = _cfg(tmp_path, synth_ds, "name=old", "epochs=3", "eval.patience=10", "optim.lr=0.01")
    with pytest.raises(ConfigError, match="different config"):
        Trainer(changed, synth_ds).fit(resume=True)


def test_selection_on_new_targets_leaves_revisits_out(tmp_path, synth_ds) -> None:
    """`eval.valid_targets=new`: the best epoch maximises validation NDCG@10 over the users whose
    validation target is not already in their history, checked against a naive scan."""
    cfg = _cfg(
        tmp_path, synth_ds, "name=new", "epochs=3", "eval.patience=10", "eval.valid_targets=new"
    )
    trainer = Trainer(cfg, synth_ds)
    out = trainer.fit()
    rows = _metrics(tmp_path / "new")
    best = int(np.argmax([r["valid_new"]["NDCG@10"] for r in rows])) + 1
    assert out["summary"]["best_epoch"] == best
    # the trainer holds the best weights after fit; rank validation again and score by hand
    res = trainer.evaluate("valid", "full")
    new = []
    for u in res.users:
        seq = synth_ds.inter_item[synth_ds.offsets[u] : synth_ds.offsets[u + 1]].tolist()
        new.append(seq[-2] not in seq[:-2])  # leave-one-out: the validation target is 2nd last
    new = np.array(new)
    assert 0 < (~new).sum() < len(new)
    gains = np.where(res.ranks < 10, 1.0 / np.log2(res.ranks + 2.0), 0.0)
    assert rows[best - 1]["valid_new"]["NDCG@10"] == pytest.approx(gains[new].mean())
    assert rows[best - 1]["valid"]["NDCG@10"] == pytest.approx(gains.mean())  # still logged


def test_resume_ignores_how_the_run_executes(tmp_path, synth_ds) -> None:
    """Threads, checkpoint cadence and evaluation batch size change how a run executes, not
    what it computes: a run interrupted under one setting resumes under another, and ends where
    the uninterrupted run ends."""
    from h2rec.errors import ConfigError

    common = ("epochs=3", "eval.patience=10")
    threads = torch.get_num_threads()  # the trainer sets the process-wide count
    try:
        Trainer(_cfg(tmp_path, synth_ds, "name=whole", *common), synth_ds).fit()
        first = _cfg(tmp_path, synth_ds, "name=cut", *common, "threads=2", "eval.batch_size=64")
        Trainer(first, synth_ds).fit(max_epochs=1)
        second = _cfg(tmp_path, synth_ds, "name=cut", *common, "threads=1", "eval.batch_size=7")
        out = Trainer(second, synth_ds).fit(resume=True)
    finally:
        torch.set_num_threads(threads)
    assert out["summary"]["epochs_run"] == 3
    a, b = _metrics(tmp_path / "whole"), _metrics(tmp_path / "cut")
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a], rel=1e-5)
    other_seed = _cfg(tmp_path, synth_ds, "name=cut", *common, "seed=7")
    with pytest.raises(ConfigError, match="different config"):
        Trainer(other_seed, synth_ds).fit(resume=True)


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_adam_implementations_compute_the_same_update(tmp_path, synth_ds, optimizer) -> None:
    """fused (the default), foreach and the for-loop reference are three executions of one
    algorithm: same losses and weights after two epochs, up to float rounding."""
    common = ("epochs=2", "eval.patience=10", f"optim.optimizer={optimizer}")
    if optimizer == "adamw":
        common = (*common, "optim.weight_decay=0.01")
    weights = {}
    losses = {}
    for impl in ("for-loop", "fused", "foreach"):
        cfg = _cfg(tmp_path, synth_ds, f"name={impl}-{optimizer}", *common)
        cfg.optim.implementation = impl  # type: ignore[assignment]
        trainer = Trainer(cfg, synth_ds)
        assert trainer.optimizer is not None
        assert trainer.optimizer.defaults["fused"] is (True if impl == "fused" else None)
        trainer.fit()
        weights[impl] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        losses[impl] = [r["loss"] for r in _metrics(tmp_path / f"{impl}-{optimizer}")]
    for impl in ("fused", "foreach"):
        assert losses[impl] == pytest.approx(losses["for-loop"], rel=1e-4)
        for key, ref in weights["for-loop"].items():
            torch.testing.assert_close(weights[impl][key], ref, rtol=1e-3, atol=1e-5, msg=key)


def test_run_folder_is_protected(tmp_path, synth_ds) -> None:
    from h2rec.training.trainer import RunExistsError

    cfg = _cfg(tmp_path, synth_ds, "name=p", "epochs=1")
    Trainer(cfg, synth_ds).fit()
    with pytest.raises(RunExistsError):
        Trainer(cfg, synth_ds).fit()
    Trainer(cfg, synth_ds).fit(overwrite=True)
    saved = (tmp_path / "p" / "config.yaml").read_text()
    assert "epochs: 1" in saved


def test_short_sasrec_run_beats_most_popular(tmp_path, synth_ds) -> None:
    sas = Trainer(_cfg(tmp_path, synth_ds, "name=sas", "epochs=15"), synth_ds).fit()
    pop = Trainer(_cfg(tmp_path, synth_ds, "name=pop", "model={name: mostpop}"), synth_ds).fit()
    s, p = sas["summary"]["test"]["full"], pop["summary"]["test"]["full"]
    assert s["NDCG@10"] > 1.5 * p["NDCG@10"], (s, p)
    assert s["HR@10"] > p["HR@10"]


def test_tensorboard_logging(tmp_path, synth_ds) -> None:
    pytest.importorskip("tensorboard")
    Trainer(_cfg(tmp_path, synth_ds, "name=tb", "epochs=1", "tensorboard=true"), synth_ds).fit()
    events = list((tmp_path / "tb" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


@pytest.mark.parametrize("model", ["sasrec", "bert4rec", "gru4rec"])
def test_trimmed_padding_leaves_scores_unchanged(tmp_path, synth_ds, model) -> None:
    import torch

    from h2rec.evaluation import build_examples

    tr = Trainer(
        _cfg(tmp_path, synth_ds, "name=trim", f"model={{name: {model}, hidden_size: 16}}"), synth_ds
    )
    tr.model.eval()
    ex = build_examples(synth_ds, "test", 20)
    short = np.argsort(ex.history_lengths)[:64]  # a batch of short histories: mostly padding
    hist = torch.from_numpy(ex.histories[short])
    assert (hist[:, :5] == 0).all()
    with torch.no_grad():
        full_width = tr.model.score(hist)
        trimmed = tr.score_fn(hist, None)
        cand = torch.randint(1, synth_ds.n_items + 1, (64, 8))
        torch.testing.assert_close(trimmed, full_width)
        torch.testing.assert_close(tr.score_fn(hist, cand), tr.model.score(hist, cand))


def test_length_buckets_pad_only_to_the_batch_longest(synth_ds) -> None:
    from h2rec.training.batching import BatchIterator, TrainSequences

    seqs = TrainSequences(synth_ds)
    it = BatchIterator(seqs, batch_size=32, max_len=20, seed=0)
    lengths = np.diff(seqs.offsets)
    widths = []
    for b in it.epoch(0):
        longest = int(lengths[b.users.numpy()].max())
        assert b.inputs.shape[1] == min(20, longest)  # window of min(21, longest + 1), minus target
        widths.append(b.inputs.shape[1])
    assert min(widths) < 20  # bucketing produced narrow batches


def test_cloze_settings_reach_the_objective() -> None:
    """`objective.last_item_prob` (and mask_ratio) from a config reach BERT4Rec's cloze
    objective: at 1.0 every non-empty row predicts only its last item, masked."""
    from h2rec.models import ClozeObjective, build_model
    from h2rec.training.config import ObjectiveSection
    from h2rec.training.trainer import build_objective

    model = build_model("bert4rec", 30, hidden_size=8, max_len=6)
    inputs = torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 9]])
    obj = build_objective(ObjectiveSection(last_item_prob=1.0, mask_ratio=0.3), model, 30)
    assert isinstance(obj, ClozeObjective) and obj.mask_ratio == 0.3
    torch.manual_seed(0)
    corrupted, labels = obj.mask(inputs, 30, 31)
    assert (labels[:, :-1] == 0).all() and torch.equal(labels[:, -1], inputs[:, -1])
    assert (corrupted[:, -1] == 31).all()
    plain = build_objective(ObjectiveSection(), model, 30)
    assert isinstance(plain, ClozeObjective) and plain.last_item_prob == 0.0


def test_epoch_losses_are_the_means_of_the_steps_losses(tmp_path, synth_ds) -> None:
    """The epoch row's loss and loss parts (summed on the device, read once per epoch) equal the
    mean over the epoch's steps of the objective's own values, recorded independently."""
    cfg = _cfg(
        tmp_path, synth_ds, "name=means", "epochs=1", "objective.loss=bpr", "model.name=sasrec"
    )
    trainer = Trainer(cfg, synth_ds)
    objective = trainer.objective
    seen: list[tuple[float, float]] = []

    def recording(model, batch, target_norm=None):
        loss, logs = objective(model, batch, target_norm=target_norm)
        seen.append((loss.item(), logs["loss_rec"].item()))
        return loss, logs

    trainer.objective = recording  # type: ignore[assignment]
    trainer.fit()
    row = _metrics(tmp_path / "means")[0]
    assert len(seen) == trainer.batches.steps(1)
    assert row["loss"] == pytest.approx(sum(s[0] for s in seen) / len(seen), rel=1e-12)
    assert row["loss_rec"] == pytest.approx(sum(s[1] for s in seen) / len(seen), rel=1e-12)
