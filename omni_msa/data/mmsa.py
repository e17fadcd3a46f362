"""MMSA feature pickles (`aligned_50.pkl`, `unaligned_50.pkl`, `unaligned_39.pkl`): read, check, write.

A pickle holds `train`/`valid`/`test`; each split holds stacked arrays, one row per `id`
(see `read_mmsa_pickle`). Loading checks every array against a named feature set
(`omni_msa.feature_sets`: `mosi_unaligned_50`, `mosi_aligned_50`, ...), because public configs
disagree on the order of the (sequence length, feature dimension) pair and a silently transposed
array would train on garbage.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from omni_msa.data.record import (
    MODALITIES,
    SPLITS,
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
from omni_msa.feature_sets import FeatureSetSpec, feature_set_for
from omni_msa.files import atomic_write
from omni_msa.safe_pickle import UnsafePickleError, safe_load

logger = logging.getLogger(__name__)

REQUIRED_KEYS: tuple[str, ...] = ("id", "raw_text", "text", "audio", "vision", "regression_labels")
EXTRA_LABEL_KEYS: dict[str, str] = {
    "T": "regression_labels_T",
    "A": "regression_labels_A",
    "V": "regression_labels_V",
}


def read_mmsa_pickle(path: str | Path, *, dataset: str, feature_set: str | None = None, layout: str | None = None,
                     splits: Sequence[str] = SPLITS, skip_invalid: bool = False) -> LoadResult:
    """Read the requested splits of an MMSA feature pickle into `Sample`s, checked against a feature set.

    The set (`omni_msa.feature_sets`) is `feature_set` by name, else the dataset's default set of
    `layout` (aligned/unaligned), else the one published under the file's name (`unaligned_50.pkl`
    of MOSI -> `mosi_unaligned_50`); `feature_set_for` says which.

    Per split the file holds `id` (MMSA `video_id$_$clip_id`), `raw_text`, `text` (N x L x 768),
    `audio` (N x La x Da), `vision` (N x Lv x Dv), `regression_labels` (N), and optionally
    `text_bert` (N x 3 x L: input ids, attention mask, segment ids), `audio_lengths`,
    `vision_lengths` and (SIMS) `regression_labels_T/A/V`, which go to `Sample.extra_labels`.

    Lengths: text = the sum of the `text_bert` attention mask (L without `text_bert`); audio and
    vision = the stored `*_lengths`, or, where a file lacks them, L minus the trailing all-zero rows
    (counted after non-finite values are replaced with 0).

    Features become float32 and NaN/+-inf become 0, counted per modality in
    `LoadResult.nonfinite_replaced`. A missing split or key, a wrong array shape or duplicate ids
    always raise `DataError`; a bad label, empty `raw_text` or impossible length is raised, or
    with `skip_invalid` recorded in `LoadResult.skipped` and the sample left out. Samples hold
    views into the stacked arrays. The pickle is read with `omni_msa.safe_pickle.safe_load`: a
    file that names any global other than numpy's array reconstruction and the builtin containers
    is refused (`DataError` naming the file and the global) before anything of it runs.
    """
    path = Path(path)
    label_range(dataset)
    spec = feature_set_for(dataset, path, feature_set=feature_set, layout=layout)
    unknown = [split for split in splits if split not in SPLITS]
    if unknown:
        raise ValueError(f"unknown splits {unknown}; expected a subset of {SPLITS}")
    data = _load_pickle(path)
    collect = ErrorCollector(skip_invalid)
    replaced = dict.fromkeys(MODALITIES, 0)
    samples: list[Sample] = []
    for split in splits:
        if split not in data:
            raise DataError(f"split {split!r} missing (file has {sorted(map(str, data))})", source=path)
        part = data[split]
        if not isinstance(part, dict):
            raise DataError(f"split {split!r} is a {type(part).__name__}, not a dict", source=path)
        samples.extend(_read_split(part, split, dataset=dataset, spec=spec, source=path,
                                   collect=collect, replaced=replaced))
    check_unique_ids(samples, source=path)
    if any(replaced.values()):
        logger.warning("%s: replaced non-finite feature values with 0: %s", path,
                       ", ".join(f"{m} {n}" for m, n in replaced.items() if n))
    return LoadResult(samples=samples, skipped=collect.errors, nonfinite_replaced=replaced)


def _load_pickle(path: Path) -> dict[Any, Any]:
    if not path.is_file():
        raise DataError("file not found", source=path)
    try:
        data = safe_load(path)
    except UnsafePickleError as exc:
        raise DataError(exc.reason, source=path) from exc
    except Exception as exc:  # unpickling fails in many ways; all mean "not a readable pickle"
        raise DataError(f"cannot unpickle: {type(exc).__name__}: {exc}", source=path) from exc
    if not isinstance(data, dict):
        raise DataError(f"top level is a {type(data).__name__}, not a dict of splits", source=path)
    return data


def _read_split(part: dict[str, Any], split: str, *, dataset: str, spec: FeatureSetSpec,
                source: Path, collect: ErrorCollector, replaced: dict[str, int]) -> list[Sample]:
    missing = [key for key in REQUIRED_KEYS if key not in part]
    if missing:
        raise DataError(f"key(s) {missing} missing from split {split!r}", field=missing[0], source=source)
    where = f"split {split!r}"
    ids = [_as_str(value) if isinstance(value, (str, bytes)) else str(value)
           for value in _column(part, "id", None, where, source)]
    n = len(ids)
    raw_text = _column(part, "raw_text", n, where, source)
    labels = _column(part, "regression_labels", n, where, source)
    extra = {name: _column(part, key, n, where, source)
             for name, key in EXTRA_LABEL_KEYS.items() if key in part}
    features = {modality: _finite_features(part, modality, (n, *spec.shape(modality)), spec.name, where, source,
                                           replaced)
                for modality in MODALITIES}
    text_bert = _read_text_bert(part, (n, 3, features["text"].shape[1]), where, source)
    lengths = _sequence_lengths(part, features, text_bert, where, source)

    samples = []
    for i, sample_id in enumerate(ids):
        try:
            label = check_label(labels[i], dataset=dataset, sample_id=sample_id, source=source)
            extra_labels = {name: _check_extra_label(values[i], EXTRA_LABEL_KEYS[name], dataset,
                                                     sample_id, source)
                            for name, values in extra.items()}
            text = check_text(_as_str(raw_text[i]), sample_id=sample_id, source=source)
            sample_lengths = {modality: _check_length(lengths[modality][i], features[modality].shape[1],
                                                      modality, sample_id, source)
                              for modality in MODALITIES}
        except DataError as error:
            collect(error)
            continue
        samples.append(Sample(
            id=sample_id, split=split, label=label, text=text,
            features={modality: features[modality][i] for modality in MODALITIES},
            lengths=sample_lengths,
            text_bert=text_bert[i] if text_bert is not None else None,
            extra_labels=extra_labels,
        ))
    return samples


def _finite_features(part: dict[str, Any], modality: str, expected: tuple[int | None, ...], feature_set: str,
                     where: str, source: Path, replaced: dict[str, int]) -> np.ndarray:
    """The checked float32 feature array with NaN/+-inf set to 0, counted in `replaced`."""
    array = _checked_array(part, modality, expected, where, source, feature_set).astype(np.float32, copy=False)
    bad = ~np.isfinite(array)
    count = int(np.count_nonzero(bad))
    if count:
        array[bad] = 0.0
        replaced[modality] += count
    return array


def _read_text_bert(part: dict[str, Any], expected: tuple[int, ...], where: str, source: Path) -> np.ndarray | None:
    if "text_bert" not in part:
        return None
    text_bert = _checked_array(part, "text_bert", expected, where, source)
    if not np.all(np.isfinite(text_bert)):
        raise DataError(f"non-finite token ids in {where}", field="text_bert", source=source)
    return text_bert.astype(np.int64)


def _sequence_lengths(part: dict[str, Any], features: dict[str, np.ndarray], text_bert: np.ndarray | None,
                      where: str, source: Path) -> dict[str, np.ndarray]:
    """Per-modality lengths, unchecked: text from the `text_bert` attention mask (else the full
    length), audio and vision from `*_lengths` (else the trailing all-zero rows left out)."""
    n, text_len = features["text"].shape[:2]
    lengths = {"text": text_bert[:, 1, :].sum(axis=1) if text_bert is not None else np.full(n, text_len)}
    for modality in ("audio", "vision"):
        key = f"{modality}_lengths"
        if key in part:
            lengths[modality] = _column(part, key, n, where, source)
        else:
            lengths[modality] = _trailing_nonzero_length(features[modality])
    return lengths


def _column(part: dict[str, Any], key: str, n: int | None, where: str, source: Path) -> np.ndarray:
    """A per-sample 1-D column (N or N x 1), checked to have one entry per id."""
    values = _as_array(part, key, where, source)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise DataError(f"expected one value per sample in {where}, got shape {values.shape}",
                        field=key, source=source)
    if n is not None and values.shape[0] != n:
        raise DataError(f"{values.shape[0]} entries but {where} has {n} ids", field=key, source=source)
    return values


def _checked_array(part: dict[str, Any], key: str, expected: tuple[int | None, ...], where: str,
                   source: Path, feature_set: str | None = None) -> np.ndarray:
    """The array under `key`, of shape `expected` (None: any size along that axis)."""
    array = _as_array(part, key, where, source)
    if array.ndim >= 1 and array.shape[0] != expected[0]:
        raise DataError(f"{array.shape[0]} rows but {where} has {expected[0]} ids", field=key, source=source)
    fits = array.ndim == len(expected) and all(e is None or e == a for a, e in zip(array.shape, expected))
    if not fits or array.dtype == object:
        shown = " x ".join("L" if e is None else str(e) for e in expected[1:])
        against = f" of feature set {feature_set}" if feature_set else ""
        raise DataError(f"shape {array.shape} (dtype {array.dtype}) in {where}, expected {expected} "
                        f"= N x {shown}{against} (public configs disagree on the order of sequence length "
                        "and feature dimension)", field=key, source=source)
    return array


def _as_array(part: dict[str, Any], key: str, where: str, source: Path) -> np.ndarray:
    try:
        return np.asarray(part[key])
    except ValueError as exc:  # ragged per-sample arrays
        raise DataError(f"not a rectangular array in {where}: {exc}", field=key, source=source) from None


def _trailing_nonzero_length(array: np.ndarray) -> np.ndarray:
    """Per sample: the sequence length minus the trailing all-zero rows."""
    nonzero = np.any(array != 0, axis=2)
    seq_len = array.shape[1]
    last_from_end = np.argmax(nonzero[:, ::-1], axis=1)
    return np.where(nonzero.any(axis=1), seq_len - last_from_end, 0)


def _check_length(value: Any, seq_len: int, modality: str, sample_id: str, source: Path) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (np.isfinite(number) and number.is_integer() and 0 <= number <= seq_len):
        raise DataError(f"length {value} is not a whole number in [0, {seq_len}]", sample_id=sample_id,
                        field=f"{modality}_lengths", source=source)
    return int(number)


def _check_extra_label(value: Any, key: str, dataset: str, sample_id: str, source: Path) -> float:
    try:
        return check_label(value, dataset=dataset, sample_id=sample_id, source=source)
    except DataError as error:
        raise DataError(error.reason, sample_id=sample_id, field=key, source=source) from None


def _as_str(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str):
        return str(value)
    return value


def stack_features(samples: Iterable[Sample], modality: str, *, seq_len: int | None = None,
                   feature_dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stack per-sample sequences into an N x L x D float32 array, zero-padded at the end, and
    the N real lengths (`Sample.sequence_length`).

    L and D default to the longest sequence and the first sample's dimension; both are needed
    for an empty list. A sequence longer than `seq_len` or of another dimension is an error.
    """
    samples = list(samples)
    arrays = []
    for sample in samples:
        array = sample.features.get(modality)
        if array is None:
            raise DataError("no features for this modality", sample_id=sample.id, field=modality)
        array = np.asarray(array)
        if array.ndim != 2:
            raise DataError(f"expected a 2-D (seq_len, feature_dim) array, got shape {array.shape}",
                            sample_id=sample.id, field=modality)
        arrays.append(array)
    if seq_len is None or feature_dim is None:
        if not arrays:
            raise ValueError(f"cannot infer the {modality} shape of no samples; pass seq_len and feature_dim")
        seq_len = max(a.shape[0] for a in arrays) if seq_len is None else seq_len
        feature_dim = arrays[0].shape[1] if feature_dim is None else feature_dim
    stacked = np.zeros((len(arrays), seq_len, feature_dim), dtype=np.float32)
    lengths = np.zeros(len(arrays), dtype=np.int64)
    for i, (sample, array) in enumerate(zip(samples, arrays)):
        if array.shape[1] != feature_dim:
            raise DataError(f"shape {array.shape}, expected feature dimension {feature_dim}",
                            sample_id=sample.id, field=modality)
        if array.shape[0] > seq_len:
            raise DataError(f"shape {array.shape}: {array.shape[0]} steps, longer than {seq_len}",
                            sample_id=sample.id, field=modality)
        stacked[i, : array.shape[0]] = array
        length = sample.sequence_length(modality)
        if not 0 <= length <= array.shape[0]:
            raise DataError(f"length {length} outside [0, {array.shape[0]}]", sample_id=sample.id,
                            field=f"{modality}_lengths")
        lengths[i] = length
    return stacked, lengths


def write_mmsa_pickle(samples: list[Sample], path: str | Path, *, dataset: str, feature_set: str | None = None,
                      layout: str | None = None) -> None:
    """Write samples as an MMSA feature pickle, the inverse of `read_mmsa_pickle`.

    The feature set is chosen as the reader chooses it (`feature_set_for`). Every split is written
    (empty ones as N = 0 arrays). Features are zero-padded to the set's sequence lengths (the
    longest sequence where the set has none); `text_bert` and the SIMS `regression_labels_T/A/V`
    are written only when every sample has them. The text length is not stored: readers take it
    from the `text_bert` attention mask.
    """
    path = Path(path)
    spec = feature_set_for(dataset, path, feature_set=feature_set, layout=layout)
    shapes = {modality: _padded_shape(spec, samples, modality) for modality in MODALITIES}
    for sample in samples:
        check_split(sample.split, sample_id=sample.id)
    check_unique_ids(samples)
    with_bert = bool(samples) and all(sample.text_bert is not None for sample in samples)
    with_extra = bool(samples) and all(set(EXTRA_LABEL_KEYS) <= sample.extra_labels.keys()
                                       for sample in samples)
    data: dict[str, dict[str, np.ndarray]] = {}
    for split in SPLITS:
        group = [sample for sample in samples if sample.split == split]
        part: dict[str, np.ndarray] = {
            "id": np.array([sample.id for sample in group], dtype=str),
            "raw_text": np.array([sample.text for sample in group], dtype=str),
            "regression_labels": np.array([sample.label for sample in group], dtype=np.float64),
        }
        for modality in MODALITIES:
            seq_len, feature_dim = shapes[modality]
            part[modality], lengths = stack_features(group, modality, seq_len=seq_len,
                                                     feature_dim=feature_dim)
            if modality != "text":
                part[f"{modality}_lengths"] = lengths
        if with_bert:
            part["text_bert"] = stack_text_bert(group, shapes["text"][0])
        if with_extra:
            for name, key in EXTRA_LABEL_KEYS.items():
                part[key] = np.array([sample.extra_labels[name] for sample in group], dtype=np.float64)
        data[split] = part
    atomic_write(path, lambda tmp: tmp.write_bytes(pickle.dumps(data, protocol=4)))


def _padded_shape(spec: FeatureSetSpec, samples: list[Sample], modality: str) -> tuple[int, int]:
    """(L, D) the samples' `modality` is written with: the set's length, else the longest sequence."""
    length, dim = spec.shape(modality)
    if length is None:
        length = max((np.asarray(s.features[modality]).shape[0] for s in samples if modality in s.features),
                     default=0)
    return length, dim


def stack_text_bert(samples: Sequence[Sample], seq_len: int) -> np.ndarray:
    """N x 3 x `seq_len` ids, masks and segments, zero-padded; one longer than `seq_len` is an error."""
    stacked = np.zeros((len(samples), 3, seq_len), dtype=np.int64)
    for i, sample in enumerate(samples):
        tokens = np.asarray(sample.text_bert)
        if tokens.ndim != 2 or tokens.shape[0] != 3 or tokens.shape[1] > seq_len:
            raise DataError(f"shape {tokens.shape}, expected (3, L) with L <= {seq_len}",
                            sample_id=sample.id, field="text_bert")
        stacked[i, :, : tokens.shape[1]] = tokens
    return stacked
