"""Raw source data -> canonical Dataset: filters, stable time order, k-core, id remap, split, text.

Every stage's surviving counts are recorded in the manifest, so a user can see what each filter
removed; if a stage removes everything the error lists the whole trail.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import polars as pl

from h2rec.data import split as splits
from h2rec.data.config import PrepareConfig, PreprocessConfig
from h2rec.data.dataset import Dataset
from h2rec.data.raw import RawData
from h2rec.data.templates import resolve_template
from h2rec.errors import ConfigError, DataFormatError, EmptyDatasetError

log = logging.getLogger("h2rec")


def _counts(stage: str, df: pl.DataFrame) -> dict[str, Any]:
    return {
        "stage": stage,
        "users": df["user_id"].n_unique(),
        "items": df["item_id"].n_unique(),
        "interactions": df.height,
    }


def _trail(trail: list[dict[str, Any]]) -> str:
    return "; ".join(f"{t['stage']}: {t['interactions']} interactions" for t in trail)


def kcore_mask(
    users: np.ndarray, items: np.ndarray, user_min: int, item_min: int, mode: str = "iterative"
) -> np.ndarray:
    """Rows that survive k-core filtering on dense integer user/item codes.

    `iterative` repeats until every remaining user has >= user_min and every item >= item_min
    interactions (a fixed point); `single-pass` counts once on the input (LLM-ESR's filter_common).
    """
    keep = np.ones(len(users), dtype=bool)
    if user_min <= 1 and item_min <= 1:
        return keep
    nu, ni = int(users.max(initial=-1)) + 1, int(items.max(initial=-1)) + 1
    while True:
        uc = np.bincount(users[keep], minlength=nu)
        ic = np.bincount(items[keep], minlength=ni)
        new = keep & (uc[users] >= user_min) & (ic[items] >= item_min)
        if mode == "single-pass" or new.sum() == keep.sum():
            return new
        keep = new


def _first_seen_codes(values: np.ndarray) -> np.ndarray:
    """Dense 0-based codes numbered in order of first appearance."""
    _, first, inv = np.unique(values, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inv.ravel()]


def filter_and_order(
    raw: RawData, cfg: PreprocessConfig
) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """Apply rating/time filters, stable time ordering, repeat removal and k-core; keep file order ties."""
    df = raw.interactions.with_row_index("_row")
    trail = [_counts("read", df)]
    paths = raw.source.get("paths", ["<source>"])

    def check(stage: str) -> None:
        trail.append(_counts(stage, df))
        if df.height == 0:
            raise EmptyDatasetError(f"no interactions left after '{stage}' ({_trail(trail)})")

    n_ts_null = df["timestamp"].null_count()
    has_ts = n_ts_null == 0
    if 0 < n_ts_null < df.height:
        row = int(df["timestamp"].is_null().arg_true()[0])
        raise DataFormatError(
            f"{n_ts_null} of {df.height} interactions have no timestamp (first: row {row + 1})",
            path=paths[0],
            field="timestamp",
        )
    if cfg.min_rating is not None:
        if df["rating"].null_count() == df.height:
            raise ConfigError("preprocess.min_rating is set but the source has no ratings")
        dropped_null = df["rating"].null_count()
        if dropped_null:
            log.warning("min_rating: dropping %d interactions without a rating", dropped_null)
        df = df.filter(pl.col("rating") >= cfg.min_rating)
        check(f"rating >= {cfg.min_rating}")
    if cfg.min_time is not None or cfg.max_time is not None:
        if not has_ts:
            raise ConfigError(
                "preprocess.min_time/max_time need timestamps, which the source lacks"
            )
        if cfg.min_time is not None:
            df = df.filter(
                pl.col("timestamp") >= splits.to_unix(cfg.min_time, "preprocess.min_time")
            )
        if cfg.max_time is not None:
            df = df.filter(
                pl.col("timestamp") <= splits.to_unix(cfg.max_time, "preprocess.max_time")
            )
        check("time window")
    # Users keep their order of first appearance; within a user, time then file order.
    df = df.with_columns(pl.col("_row").min().over("user_id").alias("_ufirst"))
    df = df.sort(["_ufirst", "timestamp", "_row"] if has_ts else ["_ufirst", "_row"])
    if cfg.remove_consecutive_repeats:
        repeat = (pl.col("item_id") == pl.col("item_id").shift(1).over("_ufirst")).fill_null(False)
        df = df.filter(~repeat)
        check("remove consecutive repeats")
    user_min = max(cfg.user_core, cfg.min_seq_len) if cfg.kcore == "iterative" else cfg.user_core
    if user_min > 1 or cfg.item_core > 1:
        u = _first_seen_codes(df["_ufirst"].to_numpy())
        i = _first_seen_codes(df["item_id"].to_numpy())
        df = df.filter(pl.Series(kcore_mask(u, i, user_min, cfg.item_core, cfg.kcore)))
        check(f"{cfg.kcore} k-core (user >= {user_min}, item >= {cfg.item_core})")
    if cfg.kcore == "single-pass" and cfg.min_seq_len > 1:
        df = df.filter(pl.len().over("_ufirst") >= cfg.min_seq_len)
        check(f"min sequence length {cfg.min_seq_len}")
    return df, trail


def build_dataset(raw: RawData, cfg: PrepareConfig) -> Dataset:
    """Run the whole preprocessing pipeline and return the canonical dataset."""
    df, trail = filter_and_order(raw, cfg.preprocess)
    has_ts = df["timestamp"].null_count() == 0
    user_code = _first_seen_codes(df["_ufirst"].to_numpy())
    item_code = _first_seen_codes(df["item_id"].to_numpy())
    inter_user = (user_code + 1).astype(np.int32)
    inter_item = (item_code + 1).astype(np.int32)
    n_users, n_items = int(inter_user.max()), int(inter_item.max())
    user_ids = np.empty(n_users + 1, dtype=object)
    user_ids[0] = ""
    user_ids[inter_user] = df["user_id"].to_numpy()
    item_ids = np.empty(n_items + 1, dtype=object)
    item_ids[0] = ""
    item_ids[inter_item] = df["item_id"].to_numpy()
    times = df["timestamp"].to_numpy().astype(np.float64) if has_ts else None
    ratings = None
    if df["rating"].null_count() < df.height:
        ratings = df["rating"].fill_null(float("nan")).to_numpy().astype(np.float32)

    counts = np.bincount(inter_user, minlength=n_users + 1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    split_info: dict[str, Any]
    if cfg.split.kind == "loo":
        split_arr, split_info = splits.leave_one_out(inter_user, offsets)
    else:
        if times is None:
            raise ConfigError("split.kind=temporal needs timestamps, which the source lacks")
        split_arr, split_info = splits.temporal(
            times,
            valid_time=cfg.split.valid_time,
            test_time=cfg.split.test_time,
            valid_frac=cfg.split.valid_frac,
            test_frac=cfg.split.test_frac,
        )

    items, template = _item_table(raw, cfg, item_ids)
    users = _user_table(raw, user_ids)
    codes = _codes(raw, item_ids)
    ds = Dataset(
        name=cfg.name,
        user_ids=user_ids,
        item_ids=item_ids,
        inter_user=inter_user,
        inter_item=inter_item,
        inter_split=split_arr,
        inter_time=times,
        inter_rating=ratings,
        items=items,
        users=users,
        codes=codes,
        code_source=raw.code_source,
    )
    ds.manifest = {
        "preprocessing_trail": trail,
        "split_info": {"kind": cfg.split.kind, **split_info},
        "item_text_template": template,
    }
    return ds


def _item_table(
    raw: RawData, cfg: PrepareConfig, item_ids: np.ndarray
) -> tuple[pl.DataFrame, str | None]:
    """Item attributes joined onto internal ids, plus the assembled text (and its template)."""
    base = pl.DataFrame(
        {"item": np.arange(1, len(item_ids), dtype=np.int32), "item_id": item_ids[1:].astype(str)},
        schema={"item": pl.Int32, "item_id": pl.String},
    )
    if raw.items is not None:
        attrs = raw.items.with_columns(pl.exclude("item_id").cast(pl.String))
        reserved = {"item", "text"} & set(attrs.columns)
        if reserved:
            attrs = attrs.rename({c: f"{c}_" for c in reserved})
        table = base.join(attrs, on="item_id", how="left", maintain_order="left")
        missing = base.height - table.join(attrs.select("item_id"), on="item_id", how="semi").height
        if missing:
            log.warning(
                "%d of %d items have no attributes in the item file; their text uses '%s'",
                missing,
                base.height,
                cfg.text.missing,
            )
    else:
        table = base
    fields = [c for c in table.columns if c not in ("item", "item_id")]
    variables = {**raw.template_variables, **cfg.text.variables}
    source = None
    if not fields and cfg.text.template is None:
        text = [""] * table.height  # no text at all (e.g. Instruments): later stages need codes
    else:
        tpl = resolve_template(
            cfg.text.template,
            raw.default_template,
            fields,
            missing=cfg.text.missing,
            max_chars=cfg.text.max_chars,
            variables=variables,
        )
        text = [tpl.render(row) for row in table.select(fields).iter_rows(named=True)]
        source = tpl.source
    return table.with_columns(pl.Series("text", text, dtype=pl.String)), source


def _user_table(raw: RawData, user_ids: np.ndarray) -> pl.DataFrame:
    base = pl.DataFrame(
        {"user": np.arange(1, len(user_ids), dtype=np.int32), "user_id": user_ids[1:].astype(str)},
        schema={"user": pl.Int32, "user_id": pl.String},
    )
    if raw.users is None:
        return base
    attrs = raw.users.with_columns(pl.exclude("user_id").cast(pl.String))
    attrs = attrs.rename({c: f"{c}_" for c in {"user"} & set(attrs.columns)})
    return base.join(attrs, on="user_id", how="left", maintain_order="left")


def _codes(raw: RawData, item_ids: np.ndarray) -> np.ndarray | None:
    if raw.codes is None:
        return None
    lookup = dict(zip(raw.codes["item_id"].to_list(), raw.codes["codes"].to_list(), strict=True))
    missing = [str(e) for e in item_ids[1:] if str(e) not in lookup]
    if missing:
        raise DataFormatError(
            f"{len(missing)} items have no semantic ID (e.g. {', '.join(missing[:5])})",
            path=raw.code_source,
        )
    n_levels = len(next(iter(lookup.values())))
    codes = np.full((len(item_ids), n_levels), -1, dtype=np.int64)
    codes[1:] = np.asarray([lookup[str(e)] for e in item_ids[1:]], dtype=np.int64)
    return codes
