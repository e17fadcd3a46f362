"""Modality-missingness protocols shared by every model family (design.md section 4).

What happens to a sample is a pure function of (protocol, seed, sample id): every random number
comes from a keyed hash of (seed, sample id, stream name), never from a global RNG or Python's
salted `hash`. The draw is therefore the same in any order, batch, worker or process.

Two choices worth knowing:
- Common random numbers. A sample's uniforms do not depend on the rates, only on (seed, id), so
  sweeps are nested: a sample that loses a modality at inter rate 0.3 also loses it at 0.5, and an
  element masked at intra rate 0.3 is also masked at 0.6. Curves over a sweep are then smooth and
  differences between rates are not sampling noise.
- Positions by fraction. Element i of a sequence of n covers the fraction [i/n, (i+1)/n) of the
  utterance; its uniform is read from a fixed fine grid over [0, 1) at the centre of that span.
  Sequences of different lengths for the same utterance (BERT tokens vs words, feature frames vs
  40 ms audio chunks) are masked at the same relative positions, and with one element per grid
  cell each element is still masked independently with probability r.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from omni_msa.data.record import MODALITIES, Sample

# The six non-empty proper subsets, one of which an inter-modality drop keeps (uniformly).
KEPT_SUBSETS: tuple[frozenset[str], ...] = (
    frozenset({"text"}),
    frozenset({"audio"}),
    frozenset({"vision"}),
    frozenset({"text", "audio"}),
    frozenset({"text", "vision"}),
    frozenset({"audio", "vision"}),
)
# The seven modality-retention modes of the SG-DTAM and Senti-iFusion tables.
RETENTION_MODES: tuple[frozenset[str], ...] = (*KEPT_SUBSETS, frozenset(MODALITIES))

INTER_RATE_GRID: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
INTRA_RATE_GRID: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(10))

AUDIO_CHUNK_SECONDS = 0.04
_GRID_CELLS = 1 << 24
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MASK64 = (1 << 64) - 1


def _stream_key(seed: int, sample_id: str, stream: str) -> int:
    digest = hashlib.blake2b(f"{seed}\x1f{sample_id}\x1f{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _uniforms(key: int, cells: np.ndarray) -> np.ndarray:
    """Counter-based uniforms in [0, 1): random access into the stream `key` at `cells`."""
    with np.errstate(over="ignore"):
        x = np.uint64(key) + cells.astype(np.uint64) * _GOLDEN
        return (_splitmix64(x) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _uniform(seed: int, sample_id: str, stream: str) -> float:
    return float(_uniforms(_stream_key(seed, sample_id, stream), np.zeros(1, dtype=np.uint64))[0])


def modality_set_name(modalities: Iterable[str]) -> str:
    """`text+audio+vision` order, e.g. `text+vision`; used in labels and batch grouping keys."""
    chosen = set(modalities)
    return "+".join(m for m in MODALITIES if m in chosen) or "none"


@dataclass(frozen=True)
class MissingnessDraw:
    """What a protocol does to one sample.

    `present[m]` says whether modality m is kept; `intra[m]` is its element masking ratio (1.0
    for a dropped modality). `mask(m, n)` gives the element mask (True = masked) for a sequence
    of n elements of that modality.
    """

    sample_id: str
    present: dict[str, bool]
    intra: dict[str, float]
    _element_keys: dict[str, int] = field(repr=False)

    @property
    def kept(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if self.present[m])

    def mask(self, modality: str, n: int) -> np.ndarray:
        if n < 0:
            raise ValueError(f"sample {self.sample_id!r}: negative length {n} for {modality}")
        if not self.present[modality]:
            return np.ones(n, dtype=bool)
        rate = self.intra[modality]
        if rate <= 0.0 or n == 0:
            return np.zeros(n, dtype=bool)
        cells = ((np.arange(n, dtype=np.float64) + 0.5) * (_GRID_CELLS / n)).astype(np.int64)
        return _uniforms(self._element_keys[modality], cells) < rate

    def integrity(self, modality: str, n: int) -> float:
        """Ground-truth integrity: 1 - the fraction of the n elements actually masked."""
        if not self.present[modality]:
            return 0.0
        if n == 0:
            return 1.0
        return 1.0 - float(self.mask(modality, n).mean())


@dataclass(frozen=True)
class MissingnessProtocol:
    """Inter-modality drops, intra-modality element masking and an optional fixed retention mode.

    `intra_rate` is a ratio in [0, 1] or `"uniform"` (a ratio drawn per sample and modality from
    U(0, 1), the LNLN training regime). `keep` fixes the kept modalities for every sample and
    cannot be combined with a positive `inter_rate`.
    """

    inter_rate: float = 0.0
    intra_rate: float | str = 0.0
    keep: frozenset[str] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.inter_rate) <= 1.0:
            raise ValueError(f"inter_rate must be in [0, 1], got {self.inter_rate}")
        object.__setattr__(self, "inter_rate", float(self.inter_rate))
        if isinstance(self.intra_rate, str):
            if self.intra_rate != "uniform":
                raise ValueError(f"intra_rate must be a number in [0, 1] or 'uniform', got {self.intra_rate!r}")
        else:
            if not 0.0 <= float(self.intra_rate) <= 1.0:
                raise ValueError(f"intra_rate must be in [0, 1], got {self.intra_rate}")
            object.__setattr__(self, "intra_rate", float(self.intra_rate))
        if self.keep is not None:
            keep = frozenset(self.keep)
            unknown = keep - set(MODALITIES)
            if unknown or not keep:
                raise ValueError(f"keep must be a non-empty subset of {MODALITIES}, got {sorted(self.keep)}")
            if self.inter_rate > 0:
                raise ValueError("a fixed `keep` mode cannot be combined with inter_rate > 0")
            object.__setattr__(self, "keep", keep)
        if int(self.seed) != self.seed:
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))

    @property
    def is_identity(self) -> bool:
        """True when the protocol never removes anything."""
        return (self.inter_rate == 0.0 and self.intra_rate == 0.0
                and (self.keep is None or self.keep == frozenset(MODALITIES)))

    @property
    def label(self) -> str:
        """A short readable name for tables and file names (the seed is reported separately)."""
        parts = ([f"keep={modality_set_name(self.keep)}"] if self.keep is not None
                 else [f"inter={self.inter_rate:g}"])
        if self.intra_rate:
            rate = self.intra_rate if isinstance(self.intra_rate, str) else f"{self.intra_rate:g}"
            parts.append(f"intra={rate}")
        return ",".join(parts)

    def to_dict(self) -> dict:
        return {"inter_rate": self.inter_rate, "intra_rate": self.intra_rate,
                "keep": None if self.keep is None else [m for m in MODALITIES if m in self.keep],
                "seed": self.seed}

    @classmethod
    def from_dict(cls, spec: dict) -> MissingnessProtocol:
        unknown = set(spec) - {"inter_rate", "intra_rate", "keep", "seed"}
        if unknown:
            raise ValueError(f"unknown missingness protocol keys: {sorted(unknown)}")
        keep = spec.get("keep")
        return cls(inter_rate=spec.get("inter_rate", 0.0), intra_rate=spec.get("intra_rate", 0.0),
                   keep=None if keep is None else frozenset(keep), seed=spec.get("seed", 0))

    def with_seed(self, seed: int) -> MissingnessProtocol:
        return replace(self, seed=seed)

    @property
    def selection_protocol(self) -> MissingnessProtocol:
        """What a model trained under this protocol is validated (selected) under: its fixed
        modality set when it has one (a model trained on text alone is chosen on text alone, never
        on inputs it was not trained to read), complete data otherwise."""
        return MissingnessProtocol(keep=self.keep, seed=self.seed) if self.keep is not None else MissingnessProtocol()

    def draw(self, sample_id: str) -> MissingnessDraw:
        if self.keep is not None:
            kept = self.keep
        elif _uniform(self.seed, sample_id, "inter") < self.inter_rate:
            pick = _uniform(self.seed, sample_id, "kept-subset")
            kept = KEPT_SUBSETS[min(int(pick * len(KEPT_SUBSETS)), len(KEPT_SUBSETS) - 1)]
        else:
            kept = frozenset(MODALITIES)
        present = {m: m in kept for m in MODALITIES}
        intra = {}
        for m in MODALITIES:
            if not present[m]:
                intra[m] = 1.0
            elif self.intra_rate == "uniform":
                intra[m] = _uniform(self.seed, sample_id, f"intra-rate/{m}")
            else:
                intra[m] = float(self.intra_rate)
        keys = {m: _stream_key(self.seed, sample_id, f"elements/{m}") for m in MODALITIES}
        return MissingnessDraw(sample_id=sample_id, present=present, intra=intra, _element_keys=keys)


def sweep(grid: str, *, seed: int = 0, intra_rate: float | str = 0.0) -> list[MissingnessProtocol]:
    """The standard evaluation grids.

    `inter`: inter rate 0.0-1.0 in steps of 0.1 (Senti-iFusion's curves), with `intra_rate` on
    top; `intra`: intra rate 0.0-0.9 (LNLN's); `modes`: the seven retention modes.
    """
    if grid == "inter":
        return [MissingnessProtocol(inter_rate=r, intra_rate=intra_rate, seed=seed) for r in INTER_RATE_GRID]
    if grid == "intra":
        return [MissingnessProtocol(intra_rate=r, seed=seed) for r in INTRA_RATE_GRID]
    if grid == "modes":
        return [MissingnessProtocol(keep=mode, seed=seed) for mode in RETENTION_MODES]
    raise ValueError(f"unknown grid {grid!r}; expected 'inter', 'intra' or 'modes'")


def expand_protocols(specs: Iterable[dict], seed: int) -> list[MissingnessProtocol]:
    """Protocols from config entries: a `MissingnessProtocol` dict ({} is complete data), or
    {grid: inter|intra|modes[, intra_rate]} for a standard sweep. An entry without a seed takes
    `seed`, so every model evaluated with one seed sees the same masks."""
    out = []
    for spec in specs:
        spec = dict(spec)
        if "grid" in spec:
            grid = spec.pop("grid")
            unknown = set(spec) - {"seed", "intra_rate"}
            if unknown:
                raise ValueError(f"unknown keys {sorted(unknown)} in eval grid {grid!r}")
            out += sweep(grid, seed=spec.get("seed", seed), intra_rate=spec.get("intra_rate", 0.0))
        else:
            out.append(MissingnessProtocol.from_dict({"seed": seed, **spec}))
    return out


# --- applying a draw to MMSA-layout features -------------------------------------------------

def text_token_positions(sample: Sample) -> np.ndarray:
    """Positions of the real text tokens between [CLS] and [SEP] in the MMSA text sequence."""
    length = sample.sequence_length("text")
    if sample.text_bert is not None and length >= 2:
        return np.arange(1, length - 1)
    return np.arange(length)


def feature_integrity(sample: Sample, draw: MissingnessDraw) -> dict[str, float]:
    """Integrity per modality for the sample's feature sequences (Senti-iFusion's label)."""
    lengths = {"text": len(text_token_positions(sample)), "audio": sample.sequence_length("audio"),
               "vision": sample.sequence_length("vision")}
    return {m: draw.integrity(m, lengths[m]) for m in MODALITIES}


def apply_to_features(sample: Sample, draw: MissingnessDraw, *, unk_id: int = 100) -> Sample:
    """A copy of the sample with masked elements zeroed (text ids -> [UNK]) and dropped
    modalities all zeros. [CLS]/[SEP] ids and the attention mask are kept."""
    if draw.sample_id != sample.id:
        raise ValueError(f"draw for {draw.sample_id!r} applied to sample {sample.id!r}")
    features = {}
    for m, array in sample.features.items():
        out = array.copy()
        if not draw.present[m]:
            out[:] = 0
        elif m == "text":
            positions = text_token_positions(sample)
            out[positions[draw.mask("text", len(positions))]] = 0
        else:
            n = sample.sequence_length(m)
            out[:n][draw.mask(m, n)] = 0
        features[m] = out
    text_bert = sample.text_bert
    if text_bert is not None:
        text_bert = text_bert.copy()
        positions = text_token_positions(sample)
        text_bert[0, positions[draw.mask("text", len(positions))]] = unk_id
    return sample.with_features(features, text_bert)


# --- applying a draw to raw media ------------------------------------------------------------

@dataclass(frozen=True)
class MaskedMedia:
    """Raw inputs after missingness: a dropped (or absent) modality is None and is left out of
    the prompt altogether; `present` lists the modalities that remain."""

    text: str | None
    audio: np.ndarray | None
    video: np.ndarray | None
    present: tuple[str, ...]


def mask_words(text: str, mask: np.ndarray, placeholder: str) -> str:
    words = text.split()
    return " ".join(placeholder if masked else word for word, masked in zip(words, mask, strict=True))


def audio_chunk_count(num_samples: int, sample_rate: int) -> int:
    return math.ceil(num_samples / round(AUDIO_CHUNK_SECONDS * sample_rate))


def mask_audio_chunks(wave: np.ndarray, mask: np.ndarray, sample_rate: int) -> np.ndarray:
    """Silence the masked 40 ms chunks (the last chunk may be shorter)."""
    chunk = round(AUDIO_CHUNK_SECONDS * sample_rate)
    out = wave.copy()
    for i in np.flatnonzero(mask):
        out[i * chunk:(i + 1) * chunk] = 0
    return out


def apply_to_media(draw: MissingnessDraw, *, text: str | None, audio: np.ndarray | None = None,
                   video: np.ndarray | None = None, sample_rate: int = 16_000,
                   placeholder: str = "[masked]") -> MaskedMedia:
    """Apply a draw to decoded media: masked words -> `placeholder`, masked 40 ms audio chunks
    -> silence, masked video frames (T x H x W x C) -> black; dropped modalities -> None."""
    kept_text = kept_audio = kept_video = None
    if text is not None and draw.present["text"]:
        kept_text = mask_words(text, draw.mask("text", len(text.split())), placeholder)
    if audio is not None and draw.present["audio"]:
        kept_audio = mask_audio_chunks(audio, draw.mask("audio", audio_chunk_count(len(audio), sample_rate)),
                                       sample_rate)
    if video is not None and draw.present["vision"]:
        kept_video = video.copy()
        kept_video[draw.mask("vision", len(video))] = 0
    present = tuple(m for m, value in zip(MODALITIES, (kept_text, kept_audio, kept_video)) if value is not None)
    return MaskedMedia(text=kept_text, audio=kept_audio, video=kept_video, present=present)


def media_integrity(draw: MissingnessDraw, *, text: str | None, audio: np.ndarray | None = None,
                    video: np.ndarray | None = None, sample_rate: int = 16_000) -> dict[str, float]:
    """Integrity per modality for raw media, counted in words, 40 ms chunks and frames."""
    counts = {"text": None if text is None else len(text.split()),
              "audio": None if audio is None else audio_chunk_count(len(audio), sample_rate),
              "vision": None if video is None else len(video)}
    return {m: 0.0 if n is None else draw.integrity(m, n) for m, n in counts.items()}

