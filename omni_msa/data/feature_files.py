"""One entry to the feature files a feature model reads, by kind: an MMSA pickle (`.pkl`) or a
`features.npz` with its manifest. Both give the same `Sample` records."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omni_msa.data.mmsa import read_mmsa_pickle
from omni_msa.data.npz_features import manifest_for, npz_feature_set, read_npz_features
from omni_msa.data.record import SPLITS, DataError, LoadResult
from omni_msa.feature_sets import FeatureSetSpec, feature_set_for

KINDS: dict[str, str] = {".pkl": "an MMSA feature pickle", ".npz": "a features.npz with its manifest"}


def feature_kind(path: str | Path) -> str:
    """`.pkl` or `.npz`; any other suffix is a `DataError`."""
    suffix = Path(path).suffix.lower()
    if suffix not in KINDS:
        raise DataError(f"unsupported feature file suffix {suffix!r}; expected "
                        + " or ".join(f"{k} ({v})" for k, v in KINDS.items()), source=path)
    return suffix


def feature_manifest(path: str | Path, manifest: str | Path | None = None) -> Path | None:
    """The manifest a feature file is read with: none for a pickle, `manifest` or the
    `manifest.csv` beside it for a features.npz."""
    if feature_kind(path) == ".pkl":
        if manifest is not None:
            raise DataError(f"an MMSA pickle holds its own ids and text; a manifest ({manifest}) goes with a "
                            "features.npz only", field="manifest", source=path)
        return None
    return manifest_for(path, manifest)


def read_feature_file(path: str | Path, *, dataset: str, feature_set: str | None = None, layout: str | None = None,
                      manifest: str | Path | None = None, splits: Sequence[str] = SPLITS,
                      skip_invalid: bool = False) -> LoadResult:
    """The samples of `splits` in a feature file, checked against its feature set (see
    `read_mmsa_pickle` and `read_npz_features` for how each chooses it; `layout` is MMSA's)."""
    manifest = feature_manifest(path, manifest)
    if manifest is None:
        return read_mmsa_pickle(path, dataset=dataset, feature_set=feature_set, layout=layout, splits=splits,
                                skip_invalid=skip_invalid)
    if layout is not None:
        raise DataError(f"layout {layout!r} is MMSA's (aligned/unaligned pickles); a features.npz names its "
                        "feature set", field="layout", source=path)
    return read_npz_features(path, manifest, dataset=dataset, feature_set=feature_set, splits=splits,
                             skip_invalid=skip_invalid)


def feature_set_of(path: str | Path, *, dataset: str, feature_set: str | None = None, layout: str | None = None,
                   manifest: str | Path | None = None) -> FeatureSetSpec:
    """The feature set `read_feature_file` checks the file against (without reading its features)."""
    if feature_manifest(path, manifest) is None:
        return feature_set_for(dataset, path, feature_set=feature_set, layout=layout)
    return npz_feature_set(path, dataset=dataset, feature_set=feature_set)
