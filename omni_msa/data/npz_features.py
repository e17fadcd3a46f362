"""Feature arrays in `features.npz` with their samples in `manifest.csv`: read, check, write.

The npz holds `id`, `split`, `label` (N each) and one array per modality: N x D for an
utterance-level feature set, N x L x D for a sequence-level one (then optionally `<modality>_lengths`,
N real lengths; without it every step is real). It may name its feature set in `feature_set` (the
writer does). The manifest (`id, split, label, text`, other columns ignored) lists the same ids
in the same order; the text comes from it (an empty text is kept: the sample carries features),
and so does the label (the npz's must agree with it to float32 precision), so readers of the
manifest alone (the text-only readouts) score the same labels. Loaded with
`np.load(allow_pickle=False)`: nothing in the file runs code.
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from omni_msa.data.manifest import read_manifest
from omni_msa.data.mmsa import stack_features
from omni_msa.data.record import (
    MODALITIES,
    SPLITS,
    DataError,
    ErrorCollector,
    LoadResult,
    Sample,
    check_split,
    check_unique_ids,
)
from omni_msa.feature_sets import FeatureSetSpec, feature_set_for, get_feature_set
from omni_msa.files import atomic_write

MANIFEST_NAME = "manifest.csv"
FEATURE_SET_KEY = "feature_set"
_COLUMNS = ("id", "split", "label")


def manifest_for(path: str | Path, manifest: str | Path | None = None) -> Path:
    """The manifest of a features.npz: `manifest`, else `manifest.csv` beside it."""
    return Path(manifest) if manifest is not None else Path(path).parent / MANIFEST_NAME


def read_npz_features(path: str | Path, manifest: str | Path | None = None, *, dataset: str,
                      feature_set: str | None = None, splits: Sequence[str] = SPLITS,
                      skip_invalid: bool = False) -> LoadResult:
    """The samples of the requested splits, with `features` (L x D per modality; 1 x D at utterance
    level) and `lengths`, as the MMSA reader gives them.

    The feature set is `feature_set`, else the one the file names, else the dataset's default set
    published under the file's name (`features.npz` of MOSI -> `mosi_utterance`). A missing array,
    a wrong shape, ids that differ from the manifest's row by row, a missing manifest row always
    raise `DataError` naming the field and the file (and the sample where there is one); a
    non-finite feature value, a split or label that disagrees with the manifest, and the manifest's
    own invalid rows are raised, or with `skip_invalid` recorded in `LoadResult.skipped`.
    """
    path, manifest = Path(path), manifest_for(path, manifest)
    unknown = [split for split in splits if split not in SPLITS]
    if unknown:
        raise ValueError(f"unknown splits {unknown}; expected a subset of {SPLITS}")
    arrays = _load_npz(path)
    spec = _feature_set(arrays, dataset, path, feature_set)
    ids = _strings(arrays, "id", None, path)
    npz_splits = _strings(arrays, "split", len(ids), path)
    labels = _column(arrays, "label", len(ids), path)
    features = {m: _features(arrays, m, spec, len(ids), path) for m in MODALITIES}
    lengths = {m: _lengths(arrays, m, features[m], spec, path) for m in MODALITIES}
    rows = read_manifest(manifest, dataset=dataset, check_media=False, skip_invalid=skip_invalid, require_text=False)
    collect = ErrorCollector(skip_invalid)
    finite = {m: np.isfinite(features[m]).reshape(len(ids), -1).all(axis=1) for m in MODALITIES}
    samples = []
    for i, row in _matched_rows(ids, rows, path, manifest):
        try:
            _check_row(row, npz_splits[i], float(labels[i]), {m: bool(finite[m][i]) for m in MODALITIES}, path)
        except DataError as error:
            collect(error)
            continue
        if row.split in splits:
            samples.append(Sample(id=row.id, split=row.split, label=row.label, text=row.text, video=row.video,
                                  audio=row.audio, features={m: features[m][i] for m in MODALITIES},
                                  lengths={m: int(lengths[m][i]) for m in MODALITIES}))
    return LoadResult(samples=samples, skipped=rows.skipped + collect.errors,
                      nonfinite_replaced=dict.fromkeys(MODALITIES, 0))


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError("file not found", source=path)
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"not a readable .npz file: {exc}", source=path) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):     # a plain .npy file: one array, nothing to close
        raise DataError("a single .npy array, not an .npz archive of named arrays", source=path)
    arrays = {}
    with npz:
        for key in npz.files:
            try:
                arrays[key] = npz[key]
            except ValueError as exc:   # object arrays need pickle, which is refused
                raise DataError(f"cannot read without unpickling: {exc}", field=key, source=path) from None
    return arrays


def npz_feature_set(path: str | Path, *, dataset: str, feature_set: str | None = None) -> FeatureSetSpec:
    """The feature set `read_npz_features` checks a file against, reading only the name it stores."""
    with np.load(path, allow_pickle=False) as stored:
        name = {FEATURE_SET_KEY: stored[FEATURE_SET_KEY]} if FEATURE_SET_KEY in stored.files else {}
    return _feature_set(name, dataset, Path(path), feature_set)


def _feature_set(arrays: dict[str, np.ndarray], dataset: str, path: Path, name: str | None) -> FeatureSetSpec:
    """`name`, else the set the file names, else the dataset's default for the file name."""
    stored = arrays.get(FEATURE_SET_KEY)
    if stored is not None:
        if stored.ndim != 0 or stored.dtype.kind != "U":
            raise DataError(f"expected one string, got shape {stored.shape} dtype {stored.dtype}",
                            field=FEATURE_SET_KEY, source=path)
        if name is not None and name != str(stored):
            raise DataError(f"the file holds feature set {str(stored)!r}, not {name!r}", field=FEATURE_SET_KEY,
                            source=path)
        return get_feature_set(str(stored))
    return feature_set_for(dataset, path, feature_set=name)


def _require(arrays: dict[str, np.ndarray], key: str, path: Path) -> np.ndarray:
    if key not in arrays:
        raise DataError(f"array missing (the file has {sorted(arrays)})", field=key, source=path)
    return arrays[key]


def _column(arrays: dict[str, np.ndarray], key: str, n: int | None, path: Path) -> np.ndarray:
    """A 1-D per-sample array with one entry per id."""
    values = _require(arrays, key, path)
    if values.ndim != 1:
        raise DataError(f"expected one value per sample, got shape {values.shape}", field=key, source=path)
    if n is not None and values.shape[0] != n:
        raise DataError(f"{values.shape[0]} entries but the file has {n} ids", field=key, source=path)
    return values


def _strings(arrays: dict[str, np.ndarray], key: str, n: int | None, path: Path) -> list[str]:
    values = _column(arrays, key, n, path)
    if values.dtype.kind not in "US":
        raise DataError(f"expected strings, got dtype {values.dtype}", field=key, source=path)
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values.tolist()]


def _features(arrays: dict[str, np.ndarray], modality: str, spec: FeatureSetSpec, n: int,
              path: Path) -> np.ndarray:
    """N x L x D float32 (an utterance-level N x D array as N x 1 x D), checked against the set."""
    array = _require(arrays, modality, path)
    length, dim = spec.shape(modality)
    if spec.level == "utterance" and array.ndim == 2:
        array = array[:, None, :]
    expected = (n, length, dim)
    if array.ndim != 3 or array.shape[0] != n or any(e is not None and e != a for a, e in zip(array.shape, expected)):
        layout = f"N x {dim}" if spec.level == "utterance" else f"N x {'L' if length is None else length} x {dim}"
        raise DataError(f"shape {array.shape}, expected {layout} with N = {n} ids for feature set {spec.name}",
                        field=modality, source=path)
    if array.dtype.kind not in "fiu":
        raise DataError(f"expected numbers, got dtype {array.dtype}", field=modality, source=path)
    return array.astype(np.float32, copy=False)


def _lengths(arrays: dict[str, np.ndarray], modality: str, features: np.ndarray, spec: FeatureSetSpec,
             path: Path) -> np.ndarray:
    """Real lengths: `<modality>_lengths` of a sequence-level file, else every step."""
    n, steps = features.shape[:2]
    key = f"{modality}_lengths"
    if spec.level == "utterance" or key not in arrays:
        return np.full(n, steps, dtype=np.int64)
    lengths = _column(arrays, key, n, path)
    if lengths.dtype.kind not in "iu" or lengths.min(initial=0) < 0 or lengths.max(initial=0) > steps:
        raise DataError(f"expected whole numbers in [0, {steps}], got dtype {lengths.dtype}", field=key, source=path)
    return lengths


def _matched_rows(ids: list[str], rows: LoadResult, path: Path, manifest: Path) -> list[tuple[int, Sample]]:
    """(npz row, manifest sample) pairs, matched row by row; rows the manifest skipped as invalid are left out."""
    skipped = {error.sample_id for error in rows.skipped}
    kept = [i for i, sample_id in enumerate(ids) if sample_id not in skipped]
    for position, i in enumerate(kept):
        if position >= len(rows.samples):
            raise DataError(f"row {i} of the features has no manifest row ({manifest} has {len(rows.samples)} "
                            "valid rows)", sample_id=ids[i], field="id", source=path)
        if rows.samples[position].id != ids[i]:
            raise DataError(f"row {i} of the features is {ids[i]!r} but the manifest's is "
                            f"{rows.samples[position].id!r} (ids must be in the same order in {manifest})",
                            sample_id=ids[i], field="id", source=path)
    if len(rows.samples) > len(kept):
        raise DataError("in the manifest but not in the features", sample_id=rows.samples[len(kept)].id,
                        field="id", source=manifest)
    return list(zip(kept, rows.samples))


def _check_row(row: Sample, split: str, label: float, finite: dict[str, bool], path: Path) -> None:
    check_split(split, sample_id=row.id, source=path)
    if split != row.split:
        raise DataError(f"split {split!r} in the features but {row.split!r} in the manifest", sample_id=row.id,
                        field="split", source=path)
    if not np.isfinite(label) or np.float32(label) != np.float32(row.label):
        raise DataError(f"label {label} in the features but {row.label} in the manifest", sample_id=row.id,
                        field="label", source=path)
    for modality, ok in finite.items():
        if not ok:
            raise DataError("non-finite feature values (NaN or infinity)", sample_id=row.id, field=modality,
                            source=path)


def write_npz_features(samples: Sequence[Sample], path: str | Path, *, feature_set: str,
                       manifest: str | Path | None = None) -> None:
    """Write samples as `features.npz` (naming `feature_set`) and its manifest (`manifest.csv` beside
    it unless given), each atomically; the inverse of `read_npz_features`.

    Features are checked against the set: finite, its dimensions, at most its sequence lengths
    (zero-padded to them, or to the longest sequence where it has none; one step at utterance level).
    """
    samples, spec = list(samples), get_feature_set(feature_set)
    for sample in samples:
        check_split(sample.split, sample_id=sample.id)
    check_unique_ids(samples)
    arrays: dict[str, np.ndarray] = {
        "id": np.array([s.id for s in samples], dtype=str), "split": np.array([s.split for s in samples], dtype=str),
        "label": np.array([s.label for s in samples], dtype=np.float64), FEATURE_SET_KEY: np.array(spec.name)}
    for modality in MODALITIES:
        length, dim = spec.shape(modality)
        stacked, lengths = stack_features(samples, modality, seq_len=length, feature_dim=dim)
        bad = ~np.isfinite(stacked).reshape(len(samples), -1).all(axis=1)
        if bad.any():
            raise DataError("non-finite feature values (NaN or infinity)", sample_id=samples[int(np.argmax(bad))].id,
                            field=modality)
        if spec.level == "utterance":
            arrays[modality] = stacked[:, 0, :]
        else:
            arrays[modality], arrays[f"{modality}_lengths"] = stacked, lengths
    atomic_write(path, lambda tmp: _save_npz(tmp, arrays))
    atomic_write(manifest_for(path, manifest), lambda tmp: _write_manifest_rows(tmp, samples))


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with path.open("wb") as handle:          # a handle: np.savez would add .npz to a path
        np.savez_compressed(handle, **arrays)


def _write_manifest_rows(path: Path, samples: list[Sample]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow((*_COLUMNS, "text"))
        writer.writerows((s.id, s.split, repr(float(s.label)), s.text) for s in samples)
