"""Train/validation/test assignment, stored per interaction so every model sees the same split."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import numpy as np

from h2rec.data.dataset import TEST, TRAIN, VALID
from h2rec.errors import ConfigError

log = logging.getLogger("h2rec")


def to_unix(value: float | str, field: str) -> float:
    """A unix time or an ISO date/datetime string (UTC when no zone) -> unix seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    try:
        dt = datetime.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{field}: '{value}' is neither a unix time nor an ISO date") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def leave_one_out(user: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Last item -> test, second-to-last -> validation, rest -> train (interactions sorted by user).

    Users with fewer than 3 interactions keep everything in training (as LLM-ESR does), so they
    are never evaluated; their number is reported.
    """
    lengths = np.diff(offsets)[user]
    pos = np.arange(len(user)) - offsets[user]
    full = lengths >= 3
    split = np.full(len(user), TRAIN, dtype=np.int8)
    split[full & (pos == lengths - 1)] = TEST
    split[full & (pos == lengths - 2)] = VALID
    short = int((np.diff(offsets)[1:] < 3).sum())
    if short:
        log.warning(
            "leave-one-out: %d users have < 3 interactions and are kept in training only", short
        )
    return split, {"users_train_only": short}


def temporal(
    times: np.ndarray,
    *,
    valid_time: float | str | None = None,
    test_time: float | str | None = None,
    valid_frac: float | None = None,
    test_frac: float | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Global time cut-offs: t >= test cut -> test, t >= valid cut -> validation, else train.

    Fractions choose cut-offs at time quantiles of all interactions; ties at a cut-off go to the
    later part so the future never leaks into training.
    """
    if valid_time is not None and test_time is not None:
        t_valid, t_test = (
            to_unix(valid_time, "split.valid_time"),
            to_unix(test_time, "split.test_time"),
        )
    else:
        assert valid_frac is not None and test_frac is not None
        ordered = np.sort(times)
        n = len(ordered)
        t_test = float(ordered[min(n - 1, int(np.floor(n * (1 - test_frac))))])
        t_valid = float(ordered[min(n - 1, int(np.floor(n * (1 - test_frac - valid_frac))))])
    if t_valid > t_test:
        raise ConfigError(f"split: validation cut-off {t_valid} is after the test cut-off {t_test}")
    split = np.full(len(times), TRAIN, dtype=np.int8)
    split[times >= t_valid] = VALID
    split[times >= t_test] = TEST
    return split, {"valid_time": t_valid, "test_time": t_test}
