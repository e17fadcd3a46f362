"""What a modality extractor takes and gives, and the registry a new extractor joins with one module.

An extractor is registered once (`register_extractor`) in a module of `omni_msa.extract.extractors`;
its heavy library (opensmile, librosa, dlib, transformers) is imported inside its functions only,
so importing the registry stays cheap. It receives the media *after* missingness, exactly as
`apply_to_media` gives them to the omni path, and never sees a dropped modality: for that, its
`dropped` function gives as many zero rows as the extraction of that many input elements (audio
samples, frames, words) at that rate would give.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from omni_msa.data.record import MODALITIES
from omni_msa.registry import Registry


@dataclass(frozen=True)
class AudioClip:
    """Float32 mono samples at `sample_rate` (masked 40 ms chunks already silent)."""

    wave: np.ndarray
    sample_rate: int


@dataclass(frozen=True)
class VideoClip:
    """uint8 T x H x W x 3 RGB frames (masked frames already black) sampled at `fps` per second."""

    frames: np.ndarray
    fps: float


@dataclass(frozen=True)
class TextClip:
    """The transcript after missingness: each masked word is `placeholder`."""

    text: str
    placeholder: str


@dataclass(frozen=True)
class Rows:
    """What an extractor returns for one clip: `values` T x D float32; `times` the centre of each
    row in seconds (audio, vision: what word alignment averages over); `detected` per row whether a
    face was found (vision); `text_bert` 3 x T ids, mask, segments and `word_ids` the word each token
    belongs to, -1 for special tokens (text); `input_length` the number of input elements (audio
    samples, frames, words) the rows came from."""

    values: np.ndarray
    input_length: int
    times: np.ndarray | None = None
    detected: np.ndarray | None = None
    text_bert: np.ndarray | None = None
    word_ids: np.ndarray | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """The non-empty fields as arrays (what the feature cache stores)."""
        out = {"values": self.values, "input_length": np.array(self.input_length)}
        for name in ("times", "detected", "text_bert", "word_ids"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Rows:
        return cls(values=arrays["values"], input_length=int(arrays["input_length"]),
                   **{name: arrays[name] for name in ("times", "detected", "text_bert", "word_ids") if name in arrays})


@dataclass(frozen=True)
class ModalityExtractor:
    """One modality's extractor: `extract(clip, params)` on the masked media, `dropped(n, rate,
    params)` for a dropped modality (n input elements: audio samples at `rate` Hz, frames at `rate`
    fps, or words), both giving `dim` columns. `version` changes when the code changes what it
    computes; `packages` name the distributions whose versions go into the cache key."""

    name: str
    modality: str
    dim: int
    version: str
    extract: Callable[[Any, Mapping[str, Any]], Rows]
    dropped: Callable[[int, float, Mapping[str, Any]], Rows]
    params: Mapping[str, Any] = field(default_factory=dict)
    packages: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"extractor {self.name!r}: modality {self.modality!r} is not one of {MODALITIES}")

    def with_params(self, overrides: Mapping[str, Any]) -> ModalityExtractor:
        """The extractor with some parameters changed; an unknown parameter is an error."""
        unknown = set(overrides) - set(self.params)
        if unknown:
            raise ValueError(f"extractor {self.name!r} has no parameter(s) {sorted(unknown)}; "
                             f"it takes {sorted(self.params)}")
        return replace(self, params={**self.params, **overrides})

    def cache_key(self) -> str:
        """Name, code version, parameters and the versions of the packages it runs."""
        versions = {package: _package_version(package) for package in self.packages}
        return json.dumps({"extractor": self.name, "version": self.version, "params": dict(self.params),
                           "packages": versions}, sort_keys=True, default=str)

    def run(self, clip: Any) -> Rows:
        return self.extract(clip, self.params)

    def zeros(self, n: int, rate: float) -> Rows:
        return self.dropped(n, rate, self.params)


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


EXTRACTORS: Registry[ModalityExtractor] = Registry("feature extractor", "omni_msa.extract.extractors")


def register_extractor(extractor: ModalityExtractor) -> ModalityExtractor:
    return EXTRACTORS.register(extractor.name, extractor)


def get_extractor(name: str) -> ModalityExtractor:
    return EXTRACTORS.get(name)


def extractor_names() -> list[str]:
    return EXTRACTORS.names()


def zero_rows(steps: int, dim: int, *, input_length: int, times: np.ndarray | None = None,
              vision: bool = False) -> Rows:
    """`steps` zero rows (a dropped modality), with no face detected where it is vision."""
    return Rows(values=np.zeros((steps, dim), np.float32), input_length=input_length, times=times,
                detected=np.zeros(steps, bool) if vision else None)
