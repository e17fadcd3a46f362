"""The one sample record every source produces, and the checks every loader runs on it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

MODALITIES: tuple[str, ...] = ("text", "audio", "vision")
SPLITS: tuple[str, ...] = ("train", "valid", "test")
# MMSA ids are `<video_id>$_$<clip_id>`; an id without the separator is a video of its own.
VIDEO_SEPARATOR = "$_$"


def video_of(sample_id: str) -> str:
    """The video an utterance id belongs to (MMSA's `video_id$_$clip_id`)."""
    return sample_id.split(VIDEO_SEPARATOR, 1)[0]


class DataError(ValueError):
    """Invalid input, naming the sample, the field and (where known) the file at fault."""

    def __init__(self, reason: str, *, sample_id: str | None = None, field: str | None = None,
                 source: str | Path | None = None) -> None:
        self.reason = reason
        self.sample_id = sample_id
        self.field = field
        self.source = str(source) if source is not None else None
        where = []
        if self.sample_id is not None:
            where.append(f"sample {self.sample_id!r}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        if self.source is not None:
            where.append(f"in {self.source}")
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)


@dataclass
class Sample:
    """One utterance, as every reader returns it.

    `features` holds MMSA-layout sequences (`text`: L x 768 BERT features, `audio`, `vision`),
    each padded to a fixed length, with the real lengths in `lengths`. `text_bert` is the 3 x L
    array of input ids, attention mask and segment ids when the source has it. `video` and
    `audio` are media file paths (absolute once loaded). `extra_labels` holds per-modality labels
    where the dataset has them (SIMS `T`, `A`, `V`).
    """

    id: str
    split: str
    label: float
    text: str
    video: Path | None = None
    audio: Path | None = None
    features: dict[str, np.ndarray] = field(default_factory=dict)
    lengths: dict[str, int] = field(default_factory=dict)
    text_bert: np.ndarray | None = None
    extra_labels: dict[str, float] = field(default_factory=dict)

    def with_features(self, features: dict[str, np.ndarray], text_bert: np.ndarray | None) -> Sample:
        return replace(self, features=features, text_bert=text_bert)

    def sequence_length(self, modality: str) -> int:
        """Number of real elements of a feature sequence (excluding padding)."""
        if modality in self.lengths:
            return int(self.lengths[modality])
        return int(self.features[modality].shape[0])


def check_label(label: object, *, dataset: str, sample_id: str, source: str | Path | None = None) -> float:
    """Parse a label and check it lies in the dataset's range."""
    try:
        value = float(label)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"label {label!r} is not a number", sample_id=sample_id, field="label",
                        source=source) from None
    low, high = label_range(dataset)
    if not np.isfinite(value) or not low <= value <= high:
        raise DataError(f"label {value} outside [{low:g}, {high:g}] for {dataset}",
                        sample_id=sample_id, field="label", source=source)
    return value


def label_range(dataset: str) -> tuple[float, float]:
    """The label range of a registered dataset (`omni_msa.datasets`); unknown names are an error."""
    from omni_msa.datasets import get_dataset

    return get_dataset(dataset).label_range


def check_text(text: object, *, sample_id: str, source: str | Path | None = None) -> str:
    if not isinstance(text, str) or not text.strip():
        raise DataError("empty transcript", sample_id=sample_id, field="text", source=source)
    return text


def check_split(split: object, *, sample_id: str, source: str | Path | None = None) -> str:
    if split not in SPLITS:
        raise DataError(f"split {split!r} is not one of {SPLITS}", sample_id=sample_id, field="split",
                        source=source)
    return str(split)


def check_unique_ids(samples: list[Sample], source: str | Path | None = None) -> None:
    seen: dict[str, str] = {}
    for sample in samples:
        if sample.id in seen:
            raise DataError(f"duplicate id (also in split {seen[sample.id]!r})", sample_id=sample.id,
                            field="id", source=source)
        seen[sample.id] = sample.split


@dataclass
class LoadResult:
    """What a reader returns: the valid samples, the ones it skipped (only when told to skip
    invalid samples; otherwise the first error is raised), and how many non-finite feature
    values it replaced with 0, per modality."""

    samples: list[Sample]
    skipped: list[DataError] = field(default_factory=list)
    nonfinite_replaced: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{len(self.samples)} samples"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped as invalid")
        replaced = {k: v for k, v in self.nonfinite_replaced.items() if v}
        if replaced:
            parts.append("non-finite values replaced with 0: "
                         + ", ".join(f"{k} {v}" for k, v in sorted(replaced.items())))
        return "; ".join(parts)


class ErrorCollector:
    """Raises the first error, or (when skipping invalid samples) records it and goes on."""

    def __init__(self, skip_invalid: bool) -> None:
        self.skip_invalid = skip_invalid
        self.errors: list[DataError] = []

    def __call__(self, error: DataError) -> None:
        if not self.skip_invalid:
            raise error
        self.errors.append(error)


def join_media(feature_samples: list[Sample], media_samples: list[Sample],
               source: str | Path | None = None) -> list[Sample]:
    """Attach the media paths of a manifest to the samples of a feature pickle, by id.

    Both sources must hold the same ids with the same split and label; anything else is an error
    naming the first sample at fault.
    """
    media_by_id = {sample.id: sample for sample in media_samples}
    joined = []
    for sample in feature_samples:
        media = media_by_id.pop(sample.id, None)
        if media is None:
            raise DataError("in the features but not in the media manifest", sample_id=sample.id,
                            field="id", source=source)
        for name in ("split", "label"):
            if getattr(media, name) != getattr(sample, name):
                raise DataError(f"{name} {getattr(sample, name)!r} in the features but "
                                f"{getattr(media, name)!r} in the media manifest",
                                sample_id=sample.id, field=name, source=source)
        joined.append(replace(sample, video=media.video, audio=media.audio))
    if media_by_id:
        raise DataError("in the media manifest but not in the features", sample_id=next(iter(media_by_id)),
                        field="id", source=source)
    return joined
