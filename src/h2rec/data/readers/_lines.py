"""Streaming line access to (optionally gzip-compressed) raw files, with precise error locations."""

from __future__ import annotations

import ast
import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from h2rec.errors import DataFormatError
from h2rec.progress import byte_progress

# what a truncated or corrupt gzip stream raises while being read
GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def _gzip_error(path: str | Path, exc: BaseException, line: int | None = None) -> DataFormatError:
    return DataFormatError(f"corrupt or truncated gzip data ({exc})", path=path, line=line)


def _is_gzip(fh: IO[bytes]) -> bool:
    pos = fh.tell()
    magic = fh.read(2)
    fh.seek(pos)
    return magic == b"\x1f\x8b"


def open_binary(path: str | Path, raw: IO[bytes] | None = None) -> IO[bytes]:
    """Open a file for binary reading, transparently decompressing gzip (by magic bytes).

    `raw`, when given, is the already-open underlying file (so callers can watch its position);
    it stays owned by the caller.
    """
    path = Path(path)
    if raw is not None:
        return gzip.GzipFile(fileobj=raw, mode="rb") if _is_gzip(raw) else raw
    if not path.is_file():
        raise DataFormatError("file not found", path=path)
    with open(path, "rb") as fh:
        compressed = _is_gzip(fh)
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def iter_text_lines(path: str | Path, *, skip_blank: bool = True) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, decoded line without newline); non-UTF-8 names the line."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError("file not found", path=path)
    with (
        open(path, "rb") as under,
        open_binary(path, under) as fh,
        byte_progress(f"reading {path.name}", path.stat().st_size) as bar,
    ):
        lineno = 0
        lines = iter(fh)
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                break
            except GZIP_ERRORS as exc:
                raise _gzip_error(path, exc, lineno + 1) from exc
            lineno += 1
            if lineno % 20000 == 0:
                bar.update(under.tell())
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataFormatError(
                    f"not valid UTF-8 (byte {exc.start}: {raw[exc.start : exc.start + 4]!r})",
                    path=path,
                    line=lineno,
                ) from exc
            if lineno == 1 and line.startswith("\ufeff"):
                line = line[1:]
            line = line.rstrip("\r\n")
            if skip_blank and not line.strip():
                continue
            yield lineno, line


def iter_records(
    path: str | Path, *, allow_python_literals: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, dict) from JSON lines; optionally Python-literal lines (Amazon 2014 meta).

    Python literals are parsed with `ast.literal_eval`, which evaluates no code.
    """
    for lineno, line in iter_text_lines(path):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if not allow_python_literals:
                raise DataFormatError(
                    f"invalid JSON ({exc.msg} at column {exc.colno})", path=path, line=lineno
                ) from exc
            try:
                rec = ast.literal_eval(line)
            except (ValueError, SyntaxError, MemoryError, RecursionError) as exc2:
                raise DataFormatError(
                    f"neither JSON nor a Python literal ({type(exc2).__name__}: {exc2})",
                    path=path,
                    line=lineno,
                ) from exc2
        if not isinstance(rec, dict):
            raise DataFormatError(
                f"expected an object per line, got {type(rec).__name__}", path=path, line=lineno
            )
        yield lineno, rec


def read_bytes(path: str | Path) -> bytes:
    """The whole (decompressed) content of a file; a corrupt gzip stream names the file."""
    with open_binary(path) as fh:
        try:
            return fh.read()
        except GZIP_ERRORS as exc:
            raise _gzip_error(path, exc) from exc


def load_json(path: str | Path) -> Any:
    """Load a whole JSON document (for small/medium files such as LC-Rec's), naming line on error."""
    raw = read_bytes(path)
    if not raw.strip():
        raise DataFormatError("file is empty", path=path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataFormatError("not valid UTF-8", path=path, line=line) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(
            f"invalid JSON ({exc.msg}, column {exc.colno})", path=path, line=exc.lineno
        ) from exc


def required_text(rec: dict[str, Any], key: str, path: str | Path, line: int) -> str:
    """A record field that must be a non-empty value (an id, a date), as a string."""
    value = rec.get(key)
    if value is None or str(value).strip() == "":
        raise DataFormatError("missing or empty", path=path, line=line, field=key)
    return str(value)


def optional_number(
    rec: dict[str, Any], key: str, path: str | Path, line: int, *, required: bool = False
) -> float | None:
    """A numeric record field (rating, unix time); absent is None unless `required`."""
    value = rec.get(key)
    if value is None:
        if required:
            raise DataFormatError("missing", path=path, line=line, field=key)
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataFormatError(
            f"{value!r} is not a number", path=path, line=line, field=key
        ) from None
