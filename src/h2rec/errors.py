"""Errors that tell the user which file, line or field is wrong."""

from __future__ import annotations

from pathlib import Path


class H2RecError(Exception):
    """Base class for errors meant to be shown to users without a traceback."""


class DataFormatError(H2RecError):
    """Input data that cannot be read; the message names the file and, when known, line/field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        where = []
        if self.path is not None:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.reason = message


class EmptyDatasetError(H2RecError):
    """Filtering removed everything; the message lists what each stage kept."""


class CacheError(H2RecError):
    """A prepared-dataset cache is missing, incomplete, stale or corrupted."""


class ConfigError(H2RecError):
    """A configuration file or override is invalid."""
