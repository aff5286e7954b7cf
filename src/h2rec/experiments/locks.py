"""Per-cell locks: several `h2rec experiment run` processes (lanes on one machine, or machines
sharing the runs folder) can work through the same experiments without two of them training one
cell into the same run folder.

Why `flock` on a lock file rather than "create if absent": the kernel drops the lock when its
process ends, however it ends (Ctrl-C, SIGKILL, a session limit), so there are no stale locks to
detect and no race between two processes "breaking" the same stale lock. The file stays in place
(deleting it would race with a process opening it); it records the holder's pid, host and start
time for `h2rec experiment status`. Where `fcntl` does not exist (Windows) locking is a no-op.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS
    fcntl = None  # type: ignore[assignment]


def lock_path(runs_path: Path, run_name: str) -> Path:
    """`<runs_path>/<run_name>.lock`, beside the run folder it guards."""
    return runs_path / f"{run_name}.lock"


def _try_flock(handle: IO[str]) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def cell_lock(path: Path) -> Iterator[bool]:
    """Hold `path`'s lock for the block; yields False (and holds nothing) when another process
    holds it. The holder's details are written into the file once it is ours."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        if not _try_flock(handle):
            yield False
            return
        try:
            handle.seek(0)
            handle.truncate()
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            handle.write(json.dumps(info))
            handle.flush()
            yield True
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def holder(path: Path) -> dict[str, Any] | None:
    """Who holds `path`'s lock now (its recorded pid/host/start), or None when nobody does."""
    if not path.is_file():
        return None
    with open(path, "a+", encoding="utf-8") as handle:
        if _try_flock(handle):  # free: release at once (closing the file releases it too)
            return None
        handle.seek(0)
        text = handle.read()
    try:
        info = json.loads(text)
    except json.JSONDecodeError:  # taken a moment ago, details not written yet
        return {}
    return info if isinstance(info, dict) else {}
