"""The one file layer both families write through: atomic writes, JSON without NaN, JSONL rows.

An atomic write goes to a temporary sibling that is renamed over the target, so a killed
process leaves the old file or the new one, never half of one. JSON never holds NaN or
infinity (they are not JSON): `json_safe` turns them into null. A JSONL file is read up to its
last newline: the partial last line of a killed writer is not a row.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(temporary_path)`, then rename the temporary file over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    temporary = Path(name)
    try:
        write(temporary)
        with open(temporary, "rb+") as handle:       # on disk before the rename makes it the file
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays, torch tensors
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (recursively)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist"):
        return json_safe(value.tolist())
    return value


def dumps(value: Any, *, indent: int | None = None) -> str:
    """JSON text of `value`; NaN and infinities become null, numpy values plain numbers."""
    return json.dumps(json_safe(value), indent=indent, ensure_ascii=False, allow_nan=False, default=_plain)


def write_json(path: str | Path, value: Any) -> None:
    atomic_write_text(path, dumps(value, indent=2) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_jsonl(paths: str | Path | Iterable[str | Path]) -> list[dict[str, Any]]:
    """The rows of one or more JSONL files, in order; a missing file has none, and a last line
    without its newline (the partial write of a killed run) is not a row. A line that is not a
    JSON object is a `DataError` naming the file and the line."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    rows: list[dict[str, Any]] = []
    for path in map(Path, paths):
        if path.is_file():
            rows += _rows_of(path)
    return rows


def _rows_of(path: Path) -> list[dict[str, Any]]:
    from omni_msa.data.record import DataError

    data = path.read_bytes()
    rows = []
    for number, line in enumerate(data[:data.rfind(b"\n") + 1].split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            raise DataError(f"line {number} is not JSON", source=path) from None
        if not isinstance(row, dict):
            raise DataError(f"line {number} is not a JSON object", source=path)
        rows.append(row)
    return rows


def drop_partial_line(path: str | Path) -> None:
    """Cut a last line without its newline (what a killed writer leaves) off a JSONL file."""
    path = Path(path)
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            os.truncate(path, data.rfind(b"\n") + 1)


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Atomically (re)write a JSONL file."""
    atomic_write_text(path, "".join(dumps(dict(row)) + "\n" for row in rows))


def append_jsonl(path: str | Path, row: Mapping[str, Any]) -> None:
    """Append one row; a partial last line left by a killed writer is dropped first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    drop_partial_line(path)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(dumps(dict(row)) + "\n")
        handle.flush()
