"""The files a scoring run leaves (design.md section 7): predictions JSONL plus an errors JSONL.

Re-running with the same output resumes: no duplicate and no missing row.

- A line is a row only once its newline is written; a last line without one is the partial write
  of a killed run and is cut off on reopening. Any other unreadable line is an error, not skipped.
- An id is done once it has a prediction. An id with only an error is retried on the next run
  (the cause may have been fixed); the errors file keeps the latest attempt per id and drops ids
  that have since been predicted (compacted when a writer opens and closes, and on merge).

Under accelerate, each rank writes its own part file and rank 0 merges them:

    if rank == 0: merge_shards(out, world_size)   # fold in parts a killed run left
    barrier()
    done = {row["id"] for row in read_predictions(out)} if out.exists() else set()
    with PredictionWriter(part_path(out, rank)) as writer:
        for sample_id in shard_ids([i for i in ids if i not in done], rank, world_size): ...
    barrier()
    if rank == 0: merge_shards(out, world_size)
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from omni_msa.data.record import DataError
from omni_msa.files import drop_partial_line, dumps, read_jsonl, write_jsonl

REQUIRED_KEYS = ("id", "split", "label", "pred", "readout", "status", "latency_ms", "present", "intra")
# What two rows for one id must agree on (latency and extra keys may differ between runs).
RESULT_KEYS = ("split", "label", "pred", "readout", "status", "present", "intra")


def _stem(path: Path) -> str:
    return path.name.removesuffix(".jsonl")


def metrics_path_for(path: str | Path) -> Path:
    """`preds.jsonl` -> `preds.metrics.json`, the summary of a scoring run."""
    path = Path(path)
    return path.with_name(f"{_stem(path)}.metrics.json")


def errors_path_for(path: str | Path) -> Path:
    """`preds.jsonl` -> `preds.errors.jsonl`."""
    path = Path(path)
    return path.with_name(f"{_stem(path)}.errors.jsonl")


def part_path(out_path: str | Path, rank: int) -> Path:
    """`preds.jsonl` -> `preds.rank{rank}.jsonl`, the file one rank writes."""
    out_path = Path(out_path)
    return out_path.with_name(f"{_stem(out_path)}.rank{rank}.jsonl")


def _read_rows(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """The complete rows of a JSONL file, each with a string `id`; with `repair`, cut off a
    partial last line first."""
    if repair:
        drop_partial_line(path)
    rows = read_jsonl(path)
    for number, row in enumerate(rows, 1):
        if not isinstance(row.get("id"), str):
            raise DataError(f"row {number} has no string 'id'", source=path)
    return rows


def _by_id(rows: list[dict[str, Any]], path: Path) -> dict[str, dict[str, Any]]:
    indexed: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["id"] in indexed:
            raise DataError("two rows for one id", sample_id=row["id"], field="id", source=path)
        indexed[row["id"]] = row
    return indexed


def _latest_errors(rows: Iterable[dict[str, Any]], done: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The last error row per id, for ids without a prediction."""
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        latest.pop(row["id"], None)
        latest[row["id"]] = row
    for sample_id in done:
        latest.pop(sample_id, None)
    return latest


def _save_errors(path: Path, rows: list[dict[str, Any]]) -> None:
    """No errors, no errors file."""
    if rows:
        write_jsonl(path, rows)
    else:
        path.unlink(missing_ok=True)


class PredictionWriter:
    """Appends prediction and error rows, resuming what an earlier run left in the same files."""

    def __init__(self, out_path: str | Path, errors_path: str | Path | None = None, *,
                 fsync: bool = False) -> None:
        self.path = Path(out_path)
        self.errors_path = Path(errors_path) if errors_path is not None else errors_path_for(self.path)
        self.fsync = fsync  # flush alone survives a killed process; fsync also survives a crashed machine
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._done = set(_by_id(_read_rows(self.path, repair=True), self.path)) if self.path.exists() else set()
        self._compact_errors()
        self._out: IO[str] | None = open(self.path, "a", encoding="utf-8")
        self._errors: IO[str] | None = None

    @property
    def done_ids(self) -> frozenset[str]:
        """Ids with a prediction; ids with only an error are not done and get retried."""
        return frozenset(self._done)

    def write(self, row: Mapping[str, Any]) -> None:
        missing = [key for key in REQUIRED_KEYS if key not in row]
        if missing:
            raise ValueError(f"prediction row {row.get('id')!r} lacks {missing}")
        pred = row["pred"]
        if not isinstance(pred, numbers.Real) or not math.isfinite(pred):
            # NaN is not JSON; a sample without a finite prediction belongs in the errors file.
            raise ValueError(f"prediction row {row['id']!r}: pred {pred!r} is not a finite number")
        sample_id = row["id"]
        if not isinstance(sample_id, str):
            raise TypeError(f"id must be a str, got {type(sample_id).__name__}")
        if sample_id in self._done:
            raise DataError("already has a prediction", sample_id=sample_id, field="id", source=self.path)
        self._append(self._out, dumps(dict(row)) + "\n")
        self._done.add(sample_id)

    def write_error(self, sample_id: str, reason: str | BaseException, *, field: str | None = None,
                    **extra: Any) -> None:
        """Record a failed sample; a DataError gives its own reason, field and source."""
        if sample_id in self._done:
            raise DataError("has a prediction; cannot also fail", sample_id=sample_id, field="id",
                            source=self.errors_path)
        if isinstance(reason, DataError):
            field = field or reason.field
            if reason.source is not None:
                extra.setdefault("source", reason.source)
            reason = reason.reason
        elif isinstance(reason, BaseException):
            reason = f"{type(reason).__name__}: {reason}"
        row = {"id": sample_id, "reason": reason, **({"field": field} if field else {}), **extra}
        if self._errors is None:
            self._errors = open(self.errors_path, "a", encoding="utf-8")
        self._append(self._errors, dumps(row) + "\n")

    def _append(self, handle: IO[str] | None, line: str) -> None:
        if handle is None:
            raise ValueError(f"writer for {self.path} is closed")
        handle.write(line)
        handle.flush()
        if self.fsync:
            os.fsync(handle.fileno())

    def _compact_errors(self) -> None:
        if self.errors_path.exists():
            rows = _read_rows(self.errors_path, repair=True)
            _save_errors(self.errors_path, list(_latest_errors(rows, self._done).values()))

    def close(self) -> None:
        for handle in (self._out, self._errors):
            if handle is not None:
                handle.close()
        if self._out is not None:
            self._compact_errors()
        self._out = self._errors = None

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a predictions file (a partial last line is not a row); duplicate ids raise."""
    path = Path(path)
    return list(_by_id(_read_rows(path), path).values())


def _rank_of(sample_id: str, world_size: int) -> int:
    digest = hashlib.blake2b(sample_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % world_size


def shard_ids(ids: Iterable[str], rank: int, world_size: int) -> list[str]:
    """This rank's ids, sorted.

    An id's rank is a hash of the id modulo the world size, not its position: the order of `ids`,
    and whether done ids were dropped before sharding, never moves an id to another rank.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world size {world_size}")
    ids = list(ids)
    repeated = [sample_id for sample_id, count in Counter(ids).items() if count > 1]
    if repeated:
        raise DataError("listed twice for sharding", sample_id=repeated[0], field="id")
    return sorted(sample_id for sample_id in ids if _rank_of(sample_id, world_size) == rank)


@dataclass(frozen=True)
class MergeReport:
    rows: int
    errors: int
    parts: tuple[int, ...]  # ranks whose part files were merged
    missing_parts: tuple[int, ...]  # ranks below world_size without a part file (never started)
    duplicate_rows: int  # identical rows for one id, kept once
    resolved_errors: int  # error rows dropped because the id now has a prediction


def merge_shards(out_path: str | Path, world_size: int, errors_path: str | Path | None = None) -> MergeReport:
    """Fold the part files (and any rows already in `out_path`) into `out_path`, sorted by id.

    Run by rank 0 after a barrier. Every part file found is merged, also those of ranks at or above
    `world_size` that a killed run with more processes left. An id with two different results
    raises before anything is written; the part files are removed only after the merged files are
    in place, so a kill during the merge loses nothing.
    """
    out_path = Path(out_path)
    errors_path = Path(errors_path) if errors_path is not None else errors_path_for(out_path)
    pattern = re.compile(rf"{re.escape(_stem(out_path))}\.rank(\d+)\.jsonl")
    ranks = sorted(int(m.group(1)) for p in out_path.parent.iterdir() if (m := pattern.fullmatch(p.name)))
    parts = [part_path(out_path, rank) for rank in ranks]

    merged: dict[str, dict[str, Any]] = {}
    duplicates = 0
    for path in [out_path, *parts] if out_path.exists() else parts:
        for sample_id, row in _by_id(_read_rows(path), path).items():
            seen = merged.setdefault(sample_id, row)
            if seen is row:
                continue
            if {k: seen.get(k) for k in RESULT_KEYS} != {k: row.get(k) for k in RESULT_KEYS}:
                raise DataError(f"two different predictions ({seen.get('pred')!r} and {row.get('pred')!r})",
                                sample_id=sample_id, field="pred", source=path)
            duplicates += 1

    error_files = [p for p in [errors_path, *map(errors_path_for, parts)] if p.exists()]
    error_rows = [row for path in error_files for row in _read_rows(path)]
    errors = _latest_errors(error_rows, ())
    kept = _latest_errors(error_rows, merged)

    write_jsonl(out_path, [merged[i] for i in sorted(merged)])
    _save_errors(errors_path, [kept[i] for i in sorted(kept)])
    for path in parts:
        errors_path_for(path).unlink(missing_ok=True)  # errors first: a part is found by its rows file
        path.unlink()
    return MergeReport(rows=len(merged), errors=len(kept), parts=tuple(ranks),
                       missing_parts=tuple(r for r in range(world_size) if r not in ranks),
                       duplicate_rows=duplicates, resolved_errors=len(errors) - len(kept))
