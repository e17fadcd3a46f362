"""Raw-media manifests: CSV or JSONL rows of `id, split, label, text` and optional `video`,
`audio` paths relative to the manifest's folder. Other columns (the real MOSI/MOSEI manifests
carry `video_id`, `clip_id`, `transcript`) are ignored.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omni_msa.data.record import (
    DataError,
    ErrorCollector,
    LoadResult,
    Sample,
    check_label,
    check_split,
    check_text,
    check_unique_ids,
    label_range,
)

if TYPE_CHECKING:
    import datasets

REQUIRED_COLUMNS: tuple[str, ...] = ("id", "split", "label", "text")
MEDIA_COLUMNS: tuple[str, ...] = ("video", "audio")
_WAV_SUFFIXES = frozenset({".wav", ".wave"})


def read_manifest(path: str | Path, *, dataset: str, check_media: bool = True, decode_media: bool = False,
                  skip_invalid: bool = False, require_text: bool = True) -> LoadResult:
    """Read a manifest (`.csv`, or JSON lines in `.jsonl`/`.json`) into `Sample`s.

    Media paths are resolved against the manifest's folder and stored absolute; an empty cell
    means no media. A missing required column or duplicate ids always raise `DataError`. A row
    with an empty id or text, a bad label or split, a missing media file (`check_media`) or,
    with `decode_media`, media that does not decode (`check_media_readable`, slow) is raised, or
    with `skip_invalid` recorded in `LoadResult.skipped` and left out. Without `require_text` an
    empty text is kept as "" (the manifest of a feature file, whose samples carry features).
    """
    path = Path(path)
    label_range(dataset)
    base = path.resolve().parent
    collect = ErrorCollector(skip_invalid)
    samples = []
    for line, row in _read_rows(path):
        try:
            sample = _row_to_sample(row, dataset=dataset, base=base, check_media=check_media, require_text=require_text,
                                    source=f"{path}:{line}")
            if decode_media:
                check_media_readable(sample)
        except DataError as error:
            collect(error)
            continue
        samples.append(sample)
    check_unique_ids(samples, source=path)
    return LoadResult(samples=samples, skipped=collect.errors)


def read_manifest_column(path: str | Path, column: str) -> dict[str, Any]:
    """The raw cells of an optional column by row id (rows without the column or an id are left
    out): for columns `read_manifest` ignores, such as word timings."""
    path = Path(path)
    cells = {}
    for _line, row in _read_rows(path):
        sample_id = _optional_str(row.get("id"))
        if sample_id is not None and column in row:
            cells[sample_id] = row[column]
    return cells


def _manifest_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    raise DataError(f"unsupported manifest suffix {suffix!r} (expected .csv, .jsonl or .json lines)",
                    source=path)


def _read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) pairs, after checking that every required column is present."""
    kind = _manifest_format(path)
    if not path.is_file():
        raise DataError("file not found", source=path)
    rows: list[tuple[int, dict[str, Any]]] = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        if kind == "csv":
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            for column in REQUIRED_COLUMNS:
                if column not in columns:
                    raise DataError(f"required column missing (header has {columns})", field=column,
                                    source=path)
            rows = [(reader.line_num, row) for row in reader]
        else:
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise DataError(f"line {number} is not valid JSON: {exc}", source=path) from None
                if not isinstance(row, dict):
                    raise DataError(f"line {number} is a JSON {type(row).__name__}, not an object",
                                    source=path)
                for column in REQUIRED_COLUMNS:
                    if column not in row:
                        raise DataError(f"required column missing on line {number}", field=column,
                                        sample_id=_optional_str(row.get("id")), source=path)
                rows.append((number, row))
    return rows


def _row_to_sample(row: dict[str, Any], *, dataset: str, base: Path, check_media: bool, require_text: bool,
                   source: str) -> Sample:
    sample_id = _optional_str(row["id"])
    if sample_id is None:
        raise DataError("empty id", field="id", source=source)
    split = check_split(row["split"], sample_id=sample_id, source=source)
    label = check_label(row["label"], dataset=dataset, sample_id=sample_id, source=source)
    text = check_text(row["text"], sample_id=sample_id, source=source) if require_text else str(row["text"] or "")
    media: dict[str, Path | None] = {}
    for column in MEDIA_COLUMNS:
        value = row.get(column)
        if value is None or (isinstance(value, str) and not value.strip()):
            media[column] = None
            continue
        if not isinstance(value, str):
            raise DataError(f"media path {value!r} is not a string", sample_id=sample_id, field=column,
                            source=source)
        media_path = (base / value).resolve()
        if check_media and not media_path.is_file():
            raise DataError(f"media file not found: {media_path}", sample_id=sample_id, field=column,
                            source=source)
        media[column] = media_path
    return Sample(id=sample_id, split=split, label=label, text=text, video=media["video"],
                  audio=media["audio"])


def _optional_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if text.strip() else None


def check_media_readable(sample: Sample) -> None:
    """Raise `DataError` (field `audio` or `video`) unless the sample's media decode.

    Audio: soundfile must read a first frame; other containers than wav fall back to PyAV.
    Video: PyAV must open the container, find a video stream and decode its first frame.
    """
    if sample.audio is not None:
        _check_audio(sample.id, Path(sample.audio))
    if sample.video is not None:
        _decode_first_frame(sample.id, Path(sample.video), "video")


def _check_audio(sample_id: str, path: Path) -> None:
    import soundfile

    if not path.is_file():
        raise DataError("media file not found", sample_id=sample_id, field="audio", source=path)
    try:
        with soundfile.SoundFile(path) as audio:
            if audio.frames == 0 or len(audio.read(frames=1)) == 0:
                raise DataError("audio has no samples", sample_id=sample_id, field="audio", source=path)
        return
    except RuntimeError as exc:  # soundfile.LibsndfileError
        if path.suffix.lower() in _WAV_SUFFIXES:
            raise DataError(f"cannot decode audio: {exc}", sample_id=sample_id, field="audio",
                            source=path) from None
    _decode_first_frame(sample_id, path, "audio")


def _decode_first_frame(sample_id: str, path: Path, kind: str) -> None:
    import av

    if not path.is_file():
        raise DataError("media file not found", sample_id=sample_id, field=kind, source=path)
    try:
        with av.open(str(path)) as container:
            streams = container.streams.video if kind == "video" else container.streams.audio
            if not streams:
                raise DataError(f"no {kind} stream", sample_id=sample_id, field=kind, source=path)
            for _frame in container.decode(streams[0]):
                return
    except (av.FFmpegError, OSError) as exc:
        raise DataError(f"cannot decode {kind}: {exc}", sample_id=sample_id, field=kind, source=path) from None
    raise DataError(f"{kind} stream has no decodable frame", sample_id=sample_id, field=kind, source=path)


def write_manifest(samples: Iterable[Sample], path: str | Path) -> None:
    """Write samples as a manifest (CSV or JSON lines by suffix), media paths relative to its folder."""
    path = Path(path)
    kind = _manifest_format(path)
    base = path.resolve().parent
    columns = (*REQUIRED_COLUMNS, *MEDIA_COLUMNS)
    rows = [{"id": sample.id, "split": sample.split, "label": float(sample.label), "text": sample.text,
             "video": _relative(sample.video, base), "audio": _relative(sample.audio, base)}
            for sample in samples]
    with path.open("w", encoding="utf-8", newline="") as handle:
        if kind == "csv":
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows({key: "" if value is None else value for key, value in row.items()}
                             for row in rows)
        else:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _relative(media: Path | None, base: Path) -> str | None:
    if media is None:
        return None
    return Path(os.path.relpath(Path(media).resolve(), base)).as_posix()


def to_hf_dataset(samples: Iterable[Sample]) -> datasets.Dataset:
    """A `datasets.Dataset` with columns id, split, label, text, video, audio (paths or None)."""
    import datasets

    samples = list(samples)
    features = datasets.Features({
        "id": datasets.Value("string"),
        "split": datasets.Value("string"),
        "label": datasets.Value("float64"),
        "text": datasets.Value("string"),
        "video": datasets.Value("string"),
        "audio": datasets.Value("string"),
    })
    return datasets.Dataset.from_dict({
        "id": [sample.id for sample in samples],
        "split": [sample.split for sample in samples],
        "label": [float(sample.label) for sample in samples],
        "text": [sample.text for sample in samples],
        "video": [None if sample.video is None else str(sample.video) for sample in samples],
        "audio": [None if sample.audio is None else str(sample.audio) for sample in samples],
    }, features=features)
