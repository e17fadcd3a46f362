"""Raw media -> features: each clip decoded as the omni path decodes it, missingness applied to the
media with the omni path's own functions, then each modality's extractor, a per-modality cache,
word alignment where the manifest has timings, and the output files.

The media a clip's extractors receive are `apply_to_media(protocol.draw(id), ...)` of
`decode_sample_media(sample, settings.media)`: for the same media settings, protocol and seed,
byte for byte what the omni readouts are given. A dropped modality reaches no extractor and
becomes zero rows as many as its complete media would give; a modality the clip does not have
(no video file) becomes one zero row. A clip that fails (a missing, corrupt or unreadable file,
no audio track, no frames, an extractor error) goes to the errors with its id, field and reason,
and the others go on.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omni_msa.data.fingerprint import file_sha256
from omni_msa.data.missing import MissingnessDraw, MissingnessProtocol, apply_to_media
from omni_msa.data.record import MODALITIES, DataError, Sample
from omni_msa.extract.align import align_to_tokens
from omni_msa.extract.base import AudioClip, ModalityExtractor, Rows, TextClip, VideoClip, zero_rows
from omni_msa.extract.cache import FeatureCache
from omni_msa.extract.recipes import DEFAULT_RECIPE, Recipe, get_recipe
from omni_msa.media_cache import MediaCache
from omni_msa.media_inputs import DecodedMedia, MediaSettings, decode_sample_media

DEFAULT_MEDIA = MediaSettings(use_audio_in_video=True)
"""The omni path's defaults (2 fps, 4-32 frames, 16 kHz), audio from the video track where there is one."""
DEFAULT_PLACEHOLDER = "[masked]"


@dataclass(frozen=True)
class ExtractionSettings:
    """The recipe (feature set) and its parameter overrides per modality, the media decoding, the
    missingness protocol and the placeholder that stands for a masked word."""

    recipe: str = DEFAULT_RECIPE
    media: MediaSettings = DEFAULT_MEDIA
    protocol: MissingnessProtocol = MissingnessProtocol()
    placeholder: str = DEFAULT_PLACEHOLDER
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def resolved_recipe(self) -> Recipe:
        return get_recipe(self.recipe).with_params(self.params)


DEFAULT_SETTINGS = ExtractionSettings()


@dataclass(frozen=True)
class ExtractorInputs:
    """What one clip's extractors receive (None: dropped, or media the clip lacks), and per modality
    the size of its complete media, (elements, rate), that sizes the zero rows of a dropped one
    (None: the clip has no such media)."""

    clips: dict[str, AudioClip | VideoClip | TextClip | None]
    sizes: dict[str, tuple[int, float] | None]


@dataclass
class ClipReport:
    """One clip's extraction: rows per modality, sampled frames and those with a face, audio
    seconds, words, seconds spent (decode and each modality; 0 where cached), cache hits."""

    id: str
    present: tuple[str, ...]
    steps: dict[str, int]
    frames: int | None
    faces: int
    audio_seconds: float | None
    words: int
    seconds: dict[str, float]
    cached: dict[str, bool]


@dataclass
class Extraction:
    """A run's samples (with features, lengths, text_bert), its errors and per-clip reports."""

    feature_set: str
    settings: ExtractionSettings
    samples: list[Sample]
    errors: list[DataError]
    clips: list[ClipReport]
    cache_hits: dict[str, int]
    cache_misses: dict[str, int]


@dataclass
class _Run:
    settings: ExtractionSettings
    extractors: dict[str, ModalityExtractor]
    features: FeatureCache
    media: MediaCache
    aligned: bool


def masked_inputs(sample: Sample, media: DecodedMedia, draw: MissingnessDraw, settings: ExtractionSettings
                  ) -> ExtractorInputs:
    """The extractors' inputs: `apply_to_media` of the decoded media, as the omni path calls it."""
    rate = settings.media.sample_rate
    masked = apply_to_media(draw, text=sample.text, audio=media.audio, video=media.video, sample_rate=rate,
                            placeholder=settings.placeholder)
    clips = {"text": None if masked.text is None else TextClip(masked.text, settings.placeholder),
             "audio": None if masked.audio is None else AudioClip(masked.audio, rate),
             "vision": None if masked.video is None else VideoClip(masked.video, float(media.video_fps))}
    sizes = {"text": (len(sample.text.split()), 0.0),
             "audio": None if media.audio is None else (len(media.audio), float(rate)),
             "vision": None if media.video is None else (len(media.video), float(media.video_fps))}
    return ExtractorInputs(clips=clips, sizes=sizes)


def extract_samples(samples: Sequence[Sample], *, cache_dir: str | Path,
                    settings: ExtractionSettings = DEFAULT_SETTINGS,
                    word_timings: Mapping[str, np.ndarray] | None = None, aligned: bool = False,
                    progress: bool = False) -> Extraction:
    """Extract every sample; `word_timings` (id -> W x 2 seconds) are needed for each sample when `aligned`."""
    from tqdm.auto import tqdm

    recipe = settings.resolved_recipe()
    cache_dir = Path(cache_dir)
    run = _Run(settings=settings, extractors={m: recipe.extractor(m) for m in MODALITIES},
               features=FeatureCache(cache_dir / "features"), media=MediaCache(cache_dir / "media"), aligned=aligned)
    out, errors, clips = [], [], []
    for sample in tqdm(samples, desc="extract", unit="clip", disable=not progress):
        spans = None if word_timings is None else word_timings.get(sample.id)
        try:
            extracted, report = _extract_clip(sample, run, spans)
        except DataError as error:
            errors.append(error if error.sample_id is not None else
                          DataError(error.reason, sample_id=sample.id, field=error.field, source=error.source))
            continue
        out.append(extracted)
        clips.append(report)
    return Extraction(feature_set=recipe.spec(aligned).name, settings=settings, samples=out, errors=errors,
                      clips=clips, cache_hits={m: run.features.hits[m] for m in MODALITIES},
                      cache_misses={m: run.features.misses[m] for m in MODALITIES})


def _extract_clip(sample: Sample, run: _Run, spans: np.ndarray | None) -> tuple[Sample, ClipReport]:
    """One clip's features, from the cache where every input of a modality's entry is unchanged."""
    if run.aligned and spans is None:
        raise DataError("no word timings for the word-aligned layout", sample_id=sample.id, field="words")
    draw = run.settings.protocol.draw(sample.id)
    keys = {m: run.features.key(_key_parts(sample, m, draw, run)) for m in MODALITIES}
    rows: dict[str, Rows | None] = {m: run.features.load(m, keys[m]) for m in MODALITIES}
    seconds = dict.fromkeys(("decode", *MODALITIES), 0.0)
    cached = {m: rows[m] is not None for m in MODALITIES}
    if not all(cached.values()):
        start = time.perf_counter()
        media = decode_sample_media(sample, run.settings.media, run.media)
        seconds["decode"] = time.perf_counter() - start
        inputs = masked_inputs(sample, media, draw, run.settings)
        for modality in (m for m in MODALITIES if not cached[m]):
            start = time.perf_counter()
            rows[modality] = _modality_rows(sample, modality, inputs, run.extractors[modality])
            seconds[modality] = time.perf_counter() - start
            run.features.store(modality, keys[modality], rows[modality])
    features = _laid_out(rows, spans, run.aligned)
    extracted = Sample(id=sample.id, split=sample.split, label=sample.label, text=sample.text, video=sample.video,
                       audio=sample.audio, features=features, lengths={m: len(features[m]) for m in MODALITIES},
                       text_bert=rows["text"].text_bert)
    return extracted, _report(sample, draw, rows, seconds, cached, run.settings)


def _modality_rows(sample: Sample, modality: str, inputs: ExtractorInputs, extractor: ModalityExtractor) -> Rows:
    clip = inputs.clips[modality]
    size = inputs.sizes[modality]
    if clip is None:
        if size is None:  # the clip has no such media
            return zero_rows(1, extractor.dim, input_length=0, times=np.zeros(1), vision=modality == "vision")
        return extractor.zeros(*size)
    try:
        return extractor.run(clip)
    except DataError:
        raise
    except (ValueError, RuntimeError, OSError) as error:  # the libraries' ways of refusing an input
        raise DataError(f"extractor {extractor.name!r} failed: {type(error).__name__}: {error}",
                        sample_id=sample.id, field=modality) from error


def _laid_out(rows: Mapping[str, Rows], spans: np.ndarray | None, aligned: bool) -> dict[str, np.ndarray]:
    """Per-modality feature arrays: each at its own rate, or audio and vision aligned to the text tokens."""
    if not aligned:
        return {m: rows[m].values for m in MODALITIES}
    text = rows["text"]
    return {"text": text.values, **{m: align_to_tokens(rows[m].values, rows[m].times, spans, text.word_ids)
                                    for m in ("audio", "vision")}}


def _key_parts(sample: Sample, modality: str, draw: MissingnessDraw, run: _Run) -> dict[str, Any]:
    """What a modality's rows depend on: the clip's content, the extractor, the media settings, and
    only as much of the draw as changes them (whether dropped; the masked elements' id, seed, rate)."""
    if not draw.present[modality]:
        masking: dict[str, Any] = {"dropped": True}
    elif draw.intra[modality] == 0:
        masking = {"complete": True}
    else:
        masking = {"id": sample.id, "seed": run.settings.protocol.seed, "intra": draw.intra[modality]}
    parts = {"modality": modality, "extractor": run.extractors[modality].cache_key(), "masking": masking}
    if modality == "text":
        return {**parts, "text": sample.text, "placeholder": run.settings.placeholder}
    return {**parts, "media": run.settings.media.cache_key(),
            "content": {"video": _content(sample.video), "audio": _content(sample.audio)}}


def _content(path: Path | None) -> str | None:
    """sha256 of a media file's bytes; a missing file has none (its clip fails when decoded)."""
    if path is None or not Path(path).is_file():
        return None
    return file_sha256(path)


def _report(sample: Sample, draw: MissingnessDraw, rows: Mapping[str, Rows], seconds: dict[str, float],
            cached: dict[str, bool], settings: ExtractionSettings) -> ClipReport:
    audio, vision = rows["audio"].input_length, rows["vision"].input_length
    return ClipReport(
        id=sample.id, present=tuple(m for m in MODALITIES if draw.present[m] and rows[m].input_length > 0),
        steps={m: len(rows[m].values) for m in MODALITIES}, frames=vision or None,
        faces=int(np.count_nonzero(rows["vision"].detected)) if rows["vision"].detected is not None else 0,
        audio_seconds=audio / settings.media.sample_rate if audio else None, words=rows["text"].input_length,
        seconds=seconds, cached=cached)


def warm_up(settings: ExtractionSettings = DEFAULT_SETTINGS) -> dict[str, float]:
    """Load every extractor's libraries and models once, on a tiny input (seconds per modality), so
    that clip timings measure extraction rather than loading."""
    recipe, rate = settings.resolved_recipe(), settings.media.sample_rate
    noise = np.random.default_rng(0).normal(0.0, 0.05, rate // 2).astype(np.float32)
    clips = {"text": TextClip("a warm up", settings.placeholder), "audio": AudioClip(noise, rate),
             "vision": VideoClip(np.full((2, 64, 64, 3), 128, np.uint8), 2.0)}
    seconds = {}
    for modality in MODALITIES:
        start = time.perf_counter()
        recipe.extractor(modality).run(clips[modality])
        recipe.extractor(modality).zeros(3, float(rate))
        seconds[modality] = time.perf_counter() - start
    return seconds
