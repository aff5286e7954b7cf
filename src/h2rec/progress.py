"""Progress bars for long steps, shown by the CLI and silent in library use unless enabled."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

_enabled: ContextVar[bool] = ContextVar("h2rec_progress", default=False)


def set_progress(enabled: bool) -> None:
    """Turn progress bars on (the CLI does) or off (the default for library calls and tests)."""
    _enabled.set(enabled)


def progress_enabled() -> bool:
    return _enabled.get()


class _Bar:
    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._p, self._t = progress, task

    def update(self, completed: float) -> None:
        if self._p is not None and self._t is not None:
            self._p.update(self._t, completed=completed)


@contextlib.contextmanager
def byte_progress(description: str, total: int, *, min_total: int = 8 << 20) -> Iterator[_Bar]:
    """A bar over bytes read; shown only when enabled and the file is large enough to matter."""
    if not progress_enabled() or total < min_total:
        yield _Bar(None, None)
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    ) as p:
        task = p.add_task(description, total=total)
        yield _Bar(p, task)
        p.update(task, completed=total)
