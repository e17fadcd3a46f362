"""The feature-set spec, its registry, and which set a file of a dataset is checked against."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from omni_msa.data.record import MODALITIES
from omni_msa.registry import Registry

LAYOUTS: tuple[str, ...] = ("aligned", "unaligned")
"""MMSA's two layouts: word-aligned sequences, or each modality at its own rate."""


@dataclass(frozen=True)
class PublishedResult:
    """A published figure on this feature set, for the comparison report to set ours beside."""

    source: str
    """Who and which model, e.g. "Poria et al. 2017, SVM per utterance"."""
    metric: str
    """What `values` measure, e.g. "binary accuracy (%)"."""
    values: Mapping[str, float]
    """Per modality set name (`text`, `audio+vision`, `text+audio+vision`, ...)."""
    note: str = ""
    """Where it was measured, when that differs from our split."""


@dataclass(frozen=True)
class FeatureSetSpec:
    """What one feature set holds, per modality (`text`, `audio`, `vision`)."""

    name: str
    dims: Mapping[str, int]
    """Feature dimension D of each modality."""
    level: Literal["sequence", "utterance"]
    """`sequence`: L x D per sample; `utterance`: one D-vector per sample (read as 1 x D)."""
    provenance: str
    """Where the features come from: extractors, published source, split caveats."""
    seq_lens: Mapping[str, int] | None = None
    """Fixed sequence length L of each modality (padded layouts such as MMSA's); None: any length.
    Utterance level: 1 for every modality (the default)."""
    aligned: bool = False
    """Every modality has the same steps (word-aligned sequences, or one vector per utterance)."""
    file_name: str | None = None
    """The name the set is published under (MMSA: `unaligned_50.pkl`), to tell a file's set from its name."""
    published: tuple[PublishedResult, ...] = ()
    """Published results on this set, which the comparison report shows beside its own."""

    def __post_init__(self) -> None:
        where = f"feature set {self.name!r}"
        if not self.name or not self.provenance.strip():
            raise ValueError(f"{where}: needs a name and a provenance")
        if self.level not in ("sequence", "utterance"):
            raise ValueError(f"{where}: level {self.level!r} is not 'sequence' or 'utterance'")
        if self.level == "utterance" and self.seq_lens is None:
            object.__setattr__(self, "seq_lens", dict.fromkeys(MODALITIES, 1))
        for what, values in (("dims", self.dims), ("seq_lens", self.seq_lens)):
            if values is None:
                continue
            if set(values) != set(MODALITIES) or not all(isinstance(v, int) and v >= 1 for v in values.values()):
                raise ValueError(f"{where}: {what} needs a positive integer for each of {MODALITIES}, got {values}")
        if self.level == "utterance" and set(self.seq_lens.values()) != {1}:
            raise ValueError(f"{where}: an utterance-level set has sequence length 1, got {self.seq_lens}")
        if self.aligned and self.seq_lens is not None and len(set(self.seq_lens.values())) != 1:
            raise ValueError(f"{where}: aligned modalities share their steps, got lengths {self.seq_lens}")

    def shape(self, modality: str) -> tuple[int | None, int]:
        """(L, D) of one sample's `modality` sequence; L is None where the set has no fixed length."""
        return (self.seq_lens[modality] if self.seq_lens is not None else None), self.dims[modality]

    def describe(self) -> str:
        """e.g. `mosi_unaligned_50 (sequence, unaligned): text 50 x 768, audio 375 x 5, vision 500 x 20`."""
        shapes = ", ".join(f"{m} {'L' if length is None else length} x {dim}"
                           for m in MODALITIES for length, dim in [self.shape(m)])
        return f"{self.name} ({self.level}, {'aligned' if self.aligned else 'unaligned'}): {shapes}"


FEATURE_SETS: Registry[FeatureSetSpec] = Registry("feature set", "omni_msa.feature_sets")


def register_feature_set(spec: FeatureSetSpec) -> FeatureSetSpec:
    return FEATURE_SETS.register(spec.name, spec)


def get_feature_set(name: str) -> FeatureSetSpec:
    """The registered set; an unknown name is a `ValueError` listing the known ones."""
    return FEATURE_SETS.get(name)


def feature_set_names() -> list[str]:
    return FEATURE_SETS.names()


def feature_set_for(dataset: str, path: str | Path, *, feature_set: str | None = None,
                    layout: str | None = None) -> FeatureSetSpec:
    """The set a feature file of `dataset` is checked against: `feature_set` by name; else, among
    the dataset's `default_feature_sets`, the sequence-level one of `layout` (aligned/unaligned)
    or, without a layout, the one published under the file's name."""
    from omni_msa.datasets import get_dataset

    if feature_set is not None:
        if layout is not None:
            raise ValueError(f"give a feature set or a layout, not both (got {feature_set!r} and {layout!r})")
        return get_feature_set(feature_set)
    defaults = [get_feature_set(name) for name in get_dataset(dataset).default_feature_sets]
    if layout is not None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
        matches = [s for s in defaults if s.level == "sequence" and s.aligned == (layout == "aligned")]
        by = f"layout {layout!r}"
    else:
        matches = [s for s in defaults if s.file_name == Path(path).name]
        by = f"the file name {Path(path).name!r}"
    if len(matches) != 1:
        published = ", ".join(f"{s.name} ({s.file_name})" for s in defaults) or "none"
        raise ValueError(f"cannot tell the feature set of {path} from {by} among {dataset}'s default sets "
                         f"[{published}]; pass a feature set, one of {feature_set_names()}")
    return matches[0]
