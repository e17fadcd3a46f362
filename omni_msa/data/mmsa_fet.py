"""MMSA-FET's per-clip output: a pickled dict of `text`, `audio`, `vision` (L x D each) and
`text_bert` (3 x L input ids, attention mask, segment ids), as MMSA-FET writes for one clip with
`return_type='np'` (`<clip>.feat_original.pkl`).

Read through the restricted unpickler (`omni_msa.safe_pickle.safe_load`), so a file sent by
someone else runs no code, and checked against a feature set (default
`mmsa_fet_egemaps_openface_bert`): every key present, the set's dimensions, finite values, and
for a word-aligned set the same number of steps in every modality.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from omni_msa.data.record import MODALITIES, DataError, Sample
from omni_msa.feature_sets import get_feature_set
from omni_msa.safe_pickle import UnsafePickleError, safe_load

DEFAULT_FEATURE_SET = "mmsa_fet_egemaps_openface_bert"
FILE_SUFFIX = ".feat_original.pkl"
KEYS: tuple[str, ...] = (*MODALITIES, "text_bert")


@dataclass(frozen=True)
class ClipFeatures:
    """One clip's features as a `Sample` holds them: L x D float32 per modality, the real lengths
    (text: the attention mask's sum) and the 3 x L token ids."""

    features: dict[str, np.ndarray]
    lengths: dict[str, int]
    text_bert: np.ndarray


def read_mmsa_fet(path: str | Path, *, sample_id: str | None = None,
                  feature_set: str = DEFAULT_FEATURE_SET) -> ClipFeatures:
    """The checked features of one MMSA-FET output file; errors name `sample_id`, the key and the file."""
    path = Path(path)
    spec = get_feature_set(feature_set)
    data = _load(path, sample_id)
    missing = [key for key in KEYS if key not in data]
    if missing:
        raise DataError(f"key(s) {missing} missing (the file has {sorted(map(str, data))})", sample_id=sample_id,
                        field=missing[0], source=path)
    features = {}
    for modality in MODALITIES:
        array = _array(data, modality, sample_id, path)
        length, dim = spec.shape(modality)
        if array.ndim != 2 or array.shape[1] != dim or (length is not None and array.shape[0] != length):
            raise DataError(f"shape {array.shape}, expected {'L' if length is None else length} x {dim} "
                            f"(feature set {spec.name})", sample_id=sample_id, field=modality, source=path)
        if array.dtype.kind not in "fiu" or not np.isfinite(array).all():
            raise DataError(f"non-finite or non-numeric values (dtype {array.dtype})", sample_id=sample_id,
                            field=modality, source=path)
        features[modality] = array.astype(np.float32)
    text_bert = _text_bert(data, features["text"].shape[0], sample_id, path)
    steps = {m: int(features[m].shape[0]) for m in MODALITIES}
    if spec.aligned and len(set(steps.values())) != 1:
        raise DataError(f"steps {steps} differ, but feature set {spec.name} is word-aligned", sample_id=sample_id,
                        field="audio" if steps["audio"] != steps["text"] else "vision", source=path)
    lengths = {**steps, "text": int(text_bert[1].sum())}
    return ClipFeatures(features=features, lengths=lengths, text_bert=text_bert)


def with_mmsa_fet(samples: Iterable[Sample], directory: str | Path, *, feature_set: str = DEFAULT_FEATURE_SET,
                  suffix: str = FILE_SUFFIX) -> list[Sample]:
    """The samples (e.g. of a raw-media manifest) with the features MMSA-FET wrote for each clip in
    `directory`: `<video_id>_<clip_id><suffix>` for id `video_id$_$clip_id`."""
    out = []
    for sample in samples:
        path = Path(directory) / (sample.id.replace("$_$", "_") + suffix)
        clip = read_mmsa_fet(path, sample_id=sample.id, feature_set=feature_set)
        out.append(replace(sample, features=clip.features, lengths=clip.lengths, text_bert=clip.text_bert))
    return out


def _load(path: Path, sample_id: str | None) -> dict[Any, Any]:
    if not path.is_file():
        raise DataError("file not found", sample_id=sample_id, source=path)
    try:
        data = safe_load(path)
    except UnsafePickleError as exc:
        raise DataError(exc.reason, sample_id=sample_id, source=path) from exc
    except Exception as exc:  # unpickling fails in many ways; all mean "not a readable pickle"
        raise DataError(f"cannot unpickle: {type(exc).__name__}: {exc}", sample_id=sample_id, source=path) from exc
    if not isinstance(data, dict):
        raise DataError(f"top level is a {type(data).__name__}, not a dict of features", sample_id=sample_id,
                        source=path)
    return data


def _array(data: dict[Any, Any], key: str, sample_id: str | None, path: Path) -> np.ndarray:
    try:
        return np.asarray(data[key])
    except ValueError as exc:   # ragged nested lists
        raise DataError(f"not a rectangular array: {exc}", sample_id=sample_id, field=key, source=path) from None


def _text_bert(data: dict[Any, Any], steps: int, sample_id: str | None, path: Path) -> np.ndarray:
    """The 3 x L ids/mask/segments of the `steps` text rows, as int64 with a 0/1 mask."""
    tokens = _array(data, "text_bert", sample_id, path)
    if tokens.shape != (3, steps):
        raise DataError(f"shape {tokens.shape}, expected (3, {steps}) (ids, mask, segments of the text rows)",
                        sample_id=sample_id, field="text_bert", source=path)
    if tokens.dtype.kind not in "fiu" or not np.isfinite(tokens).all() or np.any(tokens != np.round(tokens)):
        raise DataError(f"token ids must be whole numbers (dtype {tokens.dtype})", sample_id=sample_id,
                        field="text_bert", source=path)
    tokens = tokens.astype(np.int64)
    if not np.isin(tokens[1], (0, 1)).all():
        raise DataError("the attention mask (row 1) must hold 0 and 1 only", sample_id=sample_id, field="text_bert",
                        source=path)
    return tokens
