"""RecBole side of benchmarks/bench_recbole.py; runs in the RecBole virtual environment only.

Usage (by bench_recbole.py, never by hand): recbole_driver.py SPEC.json
SPEC holds the work folder (RecBole atomic files in data/beauty/, the expected split in
expected.tsv), the result path, threads, seed, the time budget and the target. RecBole's own
training loop (`Trainer.fit`) is reproduced step by step so that after every epoch whose
validation improves, the validation-selected model (the current weights, which RecBole has just
saved as its best checkpoint) is evaluated on test; those test passes are timed separately and
are not part of the time to quality.
"""

from __future__ import annotations

import json
import logging
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

# RecBole 1.2.1 under pandas 2.3 (chained fillna) and ray under setuptools 80 (pkg_resources).
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

T_START = time.perf_counter()
SPEC = json.loads(Path(sys.argv[1]).read_text())
sys.argv = sys.argv[:1]  # RecBole's Config parses `--key=value` arguments from sys.argv

import torch  # noqa: E402

_torch_load = torch.load


def _load_full(*args, **kwargs):  # type: ignore[no-untyped-def]
    # torch >= 2.6 defaults to weights_only=True; RecBole's checkpoints hold its Config object.
    kwargs.setdefault("weights_only", False)
    return _torch_load(*args, **kwargs)


torch.load = _load_full

import recbole  # noqa: E402
from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.trainer.trainer import Trainer  # noqa: E402
from recbole.utils import early_stopping, get_model, init_seed  # noqa: E402

# Importing RecBole's models runs torch.autograd.set_detect_anomaly(True) (sine.py) for the
# whole process; left on, every backward pass is 1.2-1.6x slower.
torch.autograd.set_detect_anomaly(False)

log = logging.getLogger("recbole-driver")


def recbole_config(spec: dict) -> dict:
    return {
        "data_path": str(Path(spec["work"]) / "data"),
        "checkpoint_dir": str(Path(spec["work"]) / "recbole-saved"),
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "MAX_ITEM_LIST_LENGTH": spec["max_len"],
        "n_layers": 2,
        "n_heads": 2,
        "hidden_size": 64,
        "inner_size": 256,
        "hidden_dropout_prob": 0.5,
        "attn_dropout_prob": 0.5,
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "epochs": spec["epochs"],
        "train_batch_size": 256,
        "learner": "adam",
        "learning_rate": 1e-3,
        "stopping_step": spec["patience"],
        "eval_step": 1,
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "order": "TO",
            "group_by": "user",
            "mode": "full",
        },
        "metrics": ["Hit", "NDCG"],
        "metric_decimal_place": 6,  # RecBole rounds to 4 places by default: 0.03995 -> 0.0400
        "topk": [10],
        "valid_metric": "NDCG@10",
        "use_gpu": False,
        "device": "cpu",
        "worker": 0,
        "seed": spec["seed"],
        "reproducibility": True,
        "show_progress": False,
        "state": "WARNING",
    }


def check_split(dataset, valid_ds, test_ds, expected_path: Path, max_len: int) -> dict:  # type: ignore[no-untyped-def]
    """RecBole's leave-one-out against h2rec's stored split: users, targets and histories."""
    expected = {}
    for line in expected_path.read_text().splitlines():
        user, valid_item, test_item, history = line.split("\t")
        expected[user] = (valid_item, test_item, history.split(" "))
    uid, iid = dataset.uid_field, dataset.iid_field
    list_field, len_field = dataset.item_id_list_field, dataset.item_list_length_field
    out: dict = {"expected_users": len(expected)}
    for name, ds in (("valid", valid_ds), ("test", test_ds)):
        feat = ds.inter_feat
        users = dataset.id2token(uid, feat[uid].numpy())
        targets = dataset.id2token(iid, feat[iid].numpy())
        hists = feat[list_field].numpy()
        lengths = feat[len_field].numpy()
        bad_target = bad_history = missing = 0
        for u, t, h, n in zip(users, targets, hists, lengths, strict=True):
            if u not in expected:
                missing += 1
                continue
            v_item, t_item, full_hist = expected[u]
            want_target = t_item if name == "test" else v_item
            want_hist = full_hist if name == "test" else full_hist[:-1]
            if t != want_target:
                bad_target += 1
            if list(dataset.id2token(iid, h[:n])) != want_hist[-max_len:]:
                bad_history += 1
        out[name] = {
            "users": len(set(users.tolist())),
            "rows": len(users),
            "target_mismatches": bad_target,
            "history_mismatches": bad_history,
            "unknown_users": missing,
        }
    out["ok"] = all(
        out[s]["users"] == out[s]["rows"] == len(expected)
        and out[s]["target_mismatches"] == out[s]["history_mismatches"] == 0
        and out[s]["unknown_users"] == 0
        for s in ("valid", "test")
    )
    return out


def main() -> None:
    spec = SPEC
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="[recbole] %(message)s", force=True
    )
    log.setLevel(logging.INFO)
    torch.set_num_threads(spec["threads"])
    t_import = time.perf_counter() - T_START

    t0 = time.perf_counter()
    config = Config(model="SASRec", dataset="beauty", config_dict=recbole_config(spec))
    init_seed(config["seed"], config["reproducibility"])
    torch.set_num_threads(spec["threads"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    t_data = time.perf_counter() - t0
    split = check_split(
        dataset,
        valid_data._dataset,
        test_data._dataset,
        Path(spec["work"]) / "expected.tsv",
        spec["max_len"],
    )
    log.info("split check: %s", json.dumps(split))
    if not split["ok"]:
        raise SystemExit(f"RecBole's split differs from h2rec's: {split}")

    t0 = time.perf_counter()
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = Trainer(config, model)
    trainer.eval_collector.data_collect(train_data)  # what Trainer.fit does first
    t_model = time.perf_counter() - t0
    torch.autograd.set_detect_anomaly(False)
    assert not torch.is_anomaly_enabled()

    budget = spec["budget_seconds"]
    target = spec["target"]
    epochs: list[dict] = []
    elapsed = 0.0
    best_test: dict | None = None
    reached_at = reached_epoch = None
    stop_reason = "epochs"
    for epoch in range(spec["max_epochs"]):
        if epochs:
            est = statistics.median(e["wall_s"] for e in epochs)
            if elapsed >= budget or elapsed + est > budget:
                stop_reason = "budget"
                break
        t_epoch = time.perf_counter()
        loss = trainer._train_epoch(train_data, epoch, show_progress=False)
        train_s = time.perf_counter() - t_epoch
        t1 = time.perf_counter()
        valid_score, valid_result = trainer._valid_epoch(valid_data, show_progress=False)
        valid_s = time.perf_counter() - t1
        trainer.best_valid_score, trainer.cur_step, stop_flag, update_flag = early_stopping(
            valid_score,
            trainer.best_valid_score,
            trainer.cur_step,
            max_step=trainer.stopping_step,
            bigger=trainer.valid_metric_bigger,
        )
        if update_flag:
            trainer._save_checkpoint(epoch, verbose=False)
            trainer.best_valid_result = valid_result
        wall_s = time.perf_counter() - t_epoch
        elapsed += wall_s
        row = {
            "epoch": epoch + 1,
            "loss_sum": float(sum(loss) if isinstance(loss, tuple) else loss),  # over batches
            "train_s": train_s,
            "valid_s": valid_s,
            "wall_s": wall_s,
            "cum_wall_s": elapsed,
            "valid_ndcg10": float(valid_result["ndcg@10"]),
            "valid_hr10": float(valid_result["hit@10"]),
            "improved": bool(update_flag),
        }
        if update_flag:  # the current weights are the validation-selected model
            t2 = time.perf_counter()
            res = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
            best_test = {
                "epoch": epoch + 1,
                "ndcg10": float(res["ndcg@10"]),
                "hr10": float(res["hit@10"]),
                "seconds": time.perf_counter() - t2,
            }
        row["best_test"] = best_test
        epochs.append(row)
        log.info(
            "epoch %d  train %.1fs  valid %.1fs  valid NDCG@10 %.4f  test NDCG@10 of best %.4f",
            epoch + 1,
            train_s,
            valid_s,
            row["valid_ndcg10"],
            best_test["ndcg10"] if best_test else float("nan"),
        )
        if reached_at is None and best_test is not None and best_test["ndcg10"] >= target:
            reached_at, reached_epoch = elapsed, epoch + 1
            if spec["stop_at_target"]:
                stop_reason = "target reached"
                break
        if stop_flag:
            stop_reason = "early stopping"
            break

    # Full-ranking evaluation of every test user with the validation-selected weights.
    eval_times = []
    final = None
    if epochs:
        trainer.evaluate(test_data, load_best_model=True, show_progress=False)  # loads best
        for _ in range(spec["eval_repeats"]):
            t0 = time.perf_counter()
            final = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
            eval_times.append(time.perf_counter() - t0)
    n_test = split["test"]["users"]
    result = {
        "library": "recbole",
        "version": recbole.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "anomaly_detection": torch.is_anomaly_enabled(),
        "setup_s": {
            "imports": t_import,
            "dataset": t_data,
            "model": t_model,
            "total": t_import + t_data + t_model,
        },
        "train_sequences": len(train_data._dataset),
        "split_check": split,
        "test_users": n_test,
        "epochs": epochs,
        "stop_reason": stop_reason,
        "time_to_quality_s": reached_at,
        "reached_epoch": reached_epoch,
        "eval_test_full": {
            "seconds": eval_times,
            "best_s": min(eval_times) if eval_times else None,
            "users": n_test,
            "users_per_s": n_test / min(eval_times) if eval_times else None,
        },
        "final_test": None
        if final is None
        else {"ndcg10": float(final["ndcg@10"]), "hr10": float(final["hit@10"])},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    Path(spec["out"]).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
