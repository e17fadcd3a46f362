"""The built-in synthetic set (design.md section 3): raw media and MMSA-layout features of the
same utterances, so that both model families run on identical samples.

Each utterance has a label y and each modality sees y through its own noise (`MODALITY_NOISE`,
in units of the [-3, 3] scale), so sentiment is learnable from every modality, best from text,
and removing modalities hurts. Features are computed from the generated transcript, waveform and
frames, one row per element that missingness masks: one text token per word, one audio row per
40 ms chunk, one vision row per video frame.

Randomness: one `np.random.default_rng` stream for the layout (clips per video, splits), one per
video (the speaker) and one per clip, all keyed by `seed`; writing media draws nothing, so
`with_media=False` gives the same features, text and labels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from omni_msa.data.manifest import write_manifest
from omni_msa.data.media import write_mp4, write_wav
from omni_msa.data.mmsa import write_mmsa_pickle
from omni_msa.data.record import MODALITIES, SPLITS, Sample, label_range
from omni_msa.datasets import get_dataset
from omni_msa.feature_sets import get_feature_set

SAMPLE_RATE = 16000
FPS = 10
FRAME_SIZE = 32
CHUNK = 640  # 40 ms at 16 kHz: one audio feature row
MODALITY_NOISE: dict[str, float] = {"text": 0.4, "audio": 0.9, "vision": 1.1}
CLS_ID, SEP_ID = 101, 102
FIRST_WORD_ID = 1000

# Lexicon: slots of the phrase templates below, by polarity where the slot carries sentiment.
_ADJECTIVES = {
    "pos": ("good", "great", "amazing", "wonderful", "funny", "brilliant", "beautiful", "perfect"),
    "neg": ("bad", "awful", "boring", "terrible", "dull", "stupid", "horrible", "disappointing"),
    "neu": ("okay", "fine", "average", "long", "different", "normal"),
}
_VERBS = {
    "pos": ("loved", "liked", "enjoyed"),
    "neg": ("hated", "disliked"),
    "neu": ("watched", "saw"),
}
_NOUNS = ("movie", "film", "plot", "acting", "story", "ending", "music", "characters")
_INTENSIFIERS = ("really", "very", "pretty", "so")
_FILLERS = ("um", "uh", "so", "well", "and", "yeah")
_TEMPLATES = (
    ("i", "VERB", "this", "NOUN"),
    ("the", "NOUN", "was", "ADJ"),
    ("it", "was", "INTENS", "ADJ"),
    ("FILLER",),
    ("i", "thought", "it", "was", "ADJ"),
    ("the", "NOUN", "is", "just", "ADJ"),
    ("and", "the", "NOUN", "was", "INTENS", "ADJ"),
    ("i", "really", "VERB", "it"),
)
_FIXED_WORDS = ("i", "this", "the", "was", "it", "thought", "is", "just", "and", "really")


VOCABULARY: tuple[str, ...] = tuple(dict.fromkeys(
    (*_FIXED_WORDS, *(w for p in ("pos", "neg", "neu") for w in _ADJECTIVES[p] + _VERBS[p]),
     *_NOUNS, *_INTENSIFIERS, *_FILLERS)))
TOKEN_IDS: dict[str, int] = {w: FIRST_WORD_ID + i for i, w in enumerate(VOCABULARY)}


@dataclass(frozen=True)
class _Speaker:
    """Per-video traits, so that clips of one video share a voice and a face."""

    f0: float
    skin: np.ndarray
    offset: tuple[float, float]


def make_synthetic(n: int, out_dir: str | Path, *, seed: int = 0, dataset_shape: str = "mosi",
                   with_media: bool = True,
                   split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> list[Sample]:
    """Generate `n` samples in `out_dir`: per sample a wav and an mp4 (with that audio muxed in)
    under `media/<video>/<clip>`, unless `with_media` is false; always `unaligned.pkl` (feature
    set `synthetic_<dataset_shape>`, in that dataset's unaligned MMSA layout) and `manifest.csv`.
    Splits are assigned by video."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    spec = get_feature_set(f"synthetic_{dataset_shape}")
    shapes = {modality: spec.shape(modality) for modality in MODALITIES}
    high = label_range(dataset_shape)[1]
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    layout_rng = np.random.default_rng([seed, 1])
    clip_counts = _clips_per_video(n, layout_rng)
    video_splits = _assign_splits(clip_counts, split_fractions, layout_rng)
    samples = []
    for video, (count, split) in enumerate(zip(clip_counts, video_splits), start=1):
        speaker = _draw_speaker(np.random.default_rng([seed, 2, video]))
        video_id = f"synth{video:03d}"
        for clip in range(1, count + 1):
            sample, wave, frames = _draw_sample(np.random.default_rng([seed, 3, video, clip]),
                                                f"{video_id}$_${clip}", split, speaker, shapes, high,
                                                unimodal_labels=get_dataset(dataset_shape).unimodal_labels)
            if with_media:
                stem = out_dir / "media" / video_id / str(clip)
                stem.parent.mkdir(parents=True, exist_ok=True)
                write_wav(stem.with_suffix(".wav"), wave, SAMPLE_RATE)
                write_mp4(stem.with_suffix(".mp4"), frames, FPS, wave, SAMPLE_RATE)
                sample.audio, sample.video = stem.with_suffix(".wav"), stem.with_suffix(".mp4")
            samples.append(sample)
    write_mmsa_pickle(samples, out_dir / "unaligned.pkl", dataset=dataset_shape, feature_set=spec.name)
    write_manifest(samples, out_dir / "manifest.csv")
    return samples


# --- features: computed from the generated transcript, waveform and frames ---------------------

def _text_features(words: list[str], y_text: float, rng: np.random.Generator,
                   max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """BERT-like (max_len x 768 features, 3 x max_len ids/mask/segments), one token per word;
    [CLS] is the mean of the word rows, [SEP] a fixed vector."""
    length = len(words) + 2
    if length > max_len:
        raise ValueError(f"{len(words)} words do not fit in {max_len} text tokens")
    word_rows = np.stack([_fixed_vector(f"word:{w}") for w in words])
    word_rows = word_rows + 2.0 * y_text * _fixed_vector("sentiment", unit=True)
    word_rows += rng.normal(0.0, 0.05, word_rows.shape)
    features = np.zeros((max_len, 768), np.float32)
    features[0] = word_rows.mean(axis=0)
    features[1:length - 1] = word_rows
    features[length - 1] = _fixed_vector("[SEP]")
    text_bert = np.zeros((3, max_len), np.int64)
    text_bert[0, :length] = [CLS_ID, *(TOKEN_IDS[w] for w in words), SEP_ID]
    text_bert[1, :length] = 1
    return features, text_bert


def audio_features(wave: np.ndarray, dim: int = 5) -> np.ndarray:
    """One row per 40 ms chunk: log RMS, zero-crossing rate, spectral centroid / 1000, dominant
    frequency / 1000, spectral flatness; further dims (other datasets' shapes) are log energies
    of equal-width frequency bands."""
    chunks = np.asarray(wave, np.float64)[: len(wave) // CHUNK * CHUNK].reshape(-1, CHUNK)
    power = np.abs(np.fft.rfft(chunks * np.hanning(CHUNK), n=2048)) ** 2 + 1e-12
    freqs = np.fft.rfftfreq(2048, 1.0 / SAMPLE_RATE)
    columns = [
        np.log(np.sqrt((chunks ** 2).mean(axis=1)) + 1e-5),
        (np.signbit(chunks[:, 1:]) != np.signbit(chunks[:, :-1])).mean(axis=1),
        (power * freqs).sum(axis=1) / power.sum(axis=1) / 1000.0,
        freqs[power.argmax(axis=1)] / 1000.0,
        np.exp(np.log(power).mean(axis=1)) / power.mean(axis=1),
    ]
    if dim > len(columns):
        bands = np.array_split(power, dim - len(columns), axis=1)
        columns += [np.log(band.sum(axis=1)) for band in bands]
    return np.stack(columns[:dim], axis=1).astype(np.float32)


def vision_features(frames: np.ndarray, dim: int = 20) -> np.ndarray:
    """One row per frame: mean R, G, B and std of grey (in [0, 1]), then a 4 x 4 grid of mean
    grey; further dims (other datasets' shapes) come from an 8 x 8 grey and a 16 x 16 RGB grid."""
    rgb = np.asarray(frames, np.float32) / 255.0
    grey = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    columns = [rgb.mean(axis=(1, 2)), grey.std(axis=(1, 2))[:, None], _grid(grey, 4)]
    if dim > 20:
        columns += [_grid(grey, 8), _grid(rgb, 16)]
    return np.concatenate(columns, axis=1)[:, :dim].astype(np.float32)


def _grid(image: np.ndarray, cells: int) -> np.ndarray:
    """Mean over a cells x cells grid of T x H x W (x C) images, flattened per frame."""
    t, h, w = image.shape[:3]
    blocks = image.reshape(t, cells, h // cells, cells, w // cells, *image.shape[3:])
    return blocks.mean(axis=(2, 4)).reshape(t, -1)


@cache
def _fixed_vector(key: str, unit: bool = False) -> np.ndarray:
    """A 768-d vector seeded by `key` alone (not by the sample or the set's seed)."""
    vector = np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
                                   ).normal(0.0, 0.5, 768)
    return vector / np.linalg.norm(vector) if unit else vector


def _pad(rows: np.ndarray, length: int, modality: str) -> np.ndarray:
    if len(rows) > length:
        raise ValueError(f"{len(rows)} {modality} rows do not fit in the layout's {length}")
    out = np.zeros((length, rows.shape[1]), np.float32)
    out[: len(rows)] = rows
    return out


# --- layout: videos, clips, splits --------------------------------------------------------------

def _clips_per_video(n: int, rng: np.random.Generator) -> list[int]:
    counts: list[int] = []
    while sum(counts) < n:
        counts.append(int(rng.integers(2, 7)))
    counts[-1] -= sum(counts) - n
    return counts


def _assign_splits(counts: list[int], fractions: tuple[float, float, float],
                   rng: np.random.Generator) -> list[str]:
    """Whole videos to splits: in a shuffled order, each video goes to the split whose share of
    the sample sequence holds its middle, so split sizes track `fractions` within half a video."""
    if len(fractions) != len(SPLITS) or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split_fractions must be three non-negative numbers summing to 1, got {fractions}")
    bounds = np.cumsum(fractions) * sum(counts)
    splits = [""] * len(counts)
    start = 0
    for video in rng.permutation(len(counts)):
        index = int(np.searchsorted(bounds, start + counts[video] / 2, side="right"))
        splits[video] = SPLITS[min(index, len(SPLITS) - 1)]
        start += counts[video]
    return splits


# --- one utterance ------------------------------------------------------------------------------

def _draw_speaker(rng: np.random.Generator) -> _Speaker:
    return _Speaker(f0=float(rng.uniform(110.0, 140.0)),
                    skin=rng.uniform(0.75, 1.05) * np.array([220.0, 170.0, 140.0]),
                    offset=(float(rng.uniform(-2.0, 2.0)), float(rng.uniform(-2.0, 2.0))))


def _draw_sample(rng: np.random.Generator, sample_id: str, split: str, speaker: _Speaker,
                 shapes: dict[str, tuple[int, int]], high: float,
                 unimodal_labels: bool) -> tuple[Sample, np.ndarray, np.ndarray]:
    """The sample, its waveform and its frames. Labels are drawn on the [-3, 3] scale, rescaled to
    the dataset's range and rounded to 0.2 steps (which leaves ~5% exactly 0 for MOSI); with
    `unimodal_labels` (SIMS) each modality's own view of y is its T/A/V label."""

    def to_label(value: float) -> float:
        return float(np.round(np.clip(value, -3.0, 3.0) * high / 3.0 * 5.0) / 5.0) + 0.0  # no -0.0

    label = to_label(rng.normal(0.0, 1.5))
    y = label * 3.0 / high
    y_text, y_audio, y_vision = (y + rng.normal(0.0, MODALITY_NOISE[m]) for m in ("text", "audio", "vision"))
    words = _transcript(rng, y_text)
    wave, envelope = _voice(rng, len(words), y_audio, speaker)
    frame_step = SAMPLE_RATE // FPS
    frames = _face(rng, envelope[frame_step // 2::frame_step], y_vision, speaker)
    text, text_bert = _text_features(words, y_text, rng, shapes["text"][0])
    audio = audio_features(wave, shapes["audio"][1])
    vision = vision_features(frames, shapes["vision"][1])
    sample = Sample(id=sample_id, split=split, label=label, text=" ".join(words),
                    features={"text": text, "audio": _pad(audio, shapes["audio"][0], "audio"),
                              "vision": _pad(vision, shapes["vision"][0], "vision")},
                    lengths={"text": len(words) + 2, "audio": len(audio), "vision": len(vision)},
                    text_bert=text_bert,
                    extra_labels=({"T": to_label(y_text), "A": to_label(y_audio), "V": to_label(y_vision)}
                                  if unimodal_labels else {}))
    return sample, wave, frames


def _transcript(rng: np.random.Generator, y_text: float) -> list[str]:
    """4-12 words from phrase templates; sentiment slots lean positive or negative with y_text,
    neutral near 0. Phrases are cut at the word count, as MOSI transcripts often are."""
    n_words = int(rng.integers(4, 13))
    p_neutral = 0.6 * np.exp(-y_text ** 2 / 2.0)
    p_positive = (1.0 - p_neutral) / (1.0 + np.exp(-1.5 * y_text))
    polarity_p = [p_positive, 1.0 - p_neutral - p_positive, p_neutral]
    pools = {"NOUN": _NOUNS, "INTENS": _INTENSIFIERS, "FILLER": _FILLERS}
    words: list[str] = []
    while len(words) < n_words:
        for slot in _TEMPLATES[rng.integers(len(_TEMPLATES))]:
            if slot in ("ADJ", "VERB"):
                polarity = ("pos", "neg", "neu")[rng.choice(3, p=polarity_p)]
                pool = (_ADJECTIVES if slot == "ADJ" else _VERBS)[polarity]
            elif slot in pools:
                pool = pools[slot]
            else:
                words.append(slot)
                continue
            words.append(pool[rng.integers(len(pool))])
    return words[:n_words]


def _voice(rng: np.random.Generator, n_words: int, y_audio: float,
           speaker: _Speaker) -> tuple[np.ndarray, np.ndarray]:
    """A voiced-like waveform, 0.2 s lead, one syllable-like burst per word (~0.3 s), padded to a
    multiple of 0.2 s so 40 ms chunks and video frames tile it exactly. Pitch, loudness, spectral
    tilt and tremolo rate rise with y_audio. Returns the waveform and its voicing envelope."""
    word_seconds = rng.uniform(0.24, 0.36, n_words)
    step = SAMPLE_RATE // 5
    total = int(np.ceil((0.4 + word_seconds.sum()) * SAMPLE_RATE / step)) * step
    envelope = np.zeros(total)
    start = SAMPLE_RATE // 5
    for seconds in word_seconds:
        voiced = int(0.8 * seconds * SAMPLE_RATE)
        envelope[start:start + voiced] = np.sqrt(np.hanning(voiced))
        start += int(seconds * SAMPLE_RATE)
    t = np.arange(total) / SAMPLE_RATE
    intonation = (1.0 - 0.08 * t / t[-1]) * (1.0 + 0.01 * np.sin(2 * np.pi * 5.5 * t))  # falling, vibrato
    f0 = speaker.f0 * 2.0 ** (y_audio / 3.0) * intonation
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    harmonics = np.arange(1, 9)
    amplitudes = harmonics ** -np.clip(1.6 - 0.15 * y_audio, 0.6, 2.6)
    tone = np.zeros(total)
    fundamental = np.exp(1j * phase)
    partial = fundamental.copy()
    for amplitude in amplitudes / amplitudes.sum():  # sin(k phase) = Im(e^{i phase}^k), cheaper than sin
        tone += amplitude * partial.imag
        partial *= fundamental
    tremolo = 1.0 + 0.3 * np.sin(2 * np.pi * np.clip(3.0 + 0.5 * y_audio, 1.0, 7.0) * t)
    loudness = 0.15 * 2.0 ** (y_audio / 4.0)
    wave = loudness * tremolo * envelope * tone + rng.normal(0.0, 0.005, total)
    return np.clip(wave, -1.0, 1.0).astype(np.float32), envelope


def _face(rng: np.random.Generator, mouth_open: np.ndarray, y_vision: float,
          speaker: _Speaker) -> np.ndarray:
    """uint8 frames of a face-like blob on a background. The background hue (blue to orange),
    the face brightness and the mouth curve (frown to smile) follow y_vision; the mouth opens
    with the voice; the head jitters and pixels are noisy frame by frame."""
    n_frames = len(mouth_open)
    yy, xx = np.mgrid[0:FRAME_SIZE, 0:FRAME_SIZE].astype(np.float64)
    jitter = rng.normal(0.0, 0.4, (n_frames, 2))
    cx = (FRAME_SIZE / 2 + speaker.offset[0] + jitter[:, 0])[:, None, None]
    cy = (FRAME_SIZE / 2 - 1 + speaker.offset[1] + jitter[:, 1])[:, None, None]

    def inside(distance: np.ndarray) -> np.ndarray:  # soft (anti-aliased) mask from a signed distance
        return np.clip(0.5 - distance, 0.0, 1.0)

    face = inside((np.hypot((xx - cx) / 9.0, (yy - cy) / 11.0) - 1.0) * 9.0)
    eyes = np.maximum(inside(np.hypot(xx - cx + 3.5, yy - cy + 3.0) - 1.3),
                      inside(np.hypot(xx - cx - 3.5, yy - cy + 3.0) - 1.3))
    curve = np.clip(0.9 * y_vision, -3.0, 3.0)
    mouth_y = cy + 5.5 - curve * (((xx - cx) / 4.5) ** 2 - 0.5)
    thickness = 1.0 + 2.0 * mouth_open[:, None, None]
    mouth = inside(np.abs(yy - mouth_y) - thickness / 2) * inside(np.abs(xx - cx) - 4.5)
    background = np.clip([110.0 + 14.0 * y_vision, 100.0, 110.0 - 14.0 * y_vision], 0, 255)
    skin = np.clip(speaker.skin * (1.0 + 0.05 * y_vision), 0, 255)
    image = background + face[..., None] * (skin - background)
    image += eyes[..., None] * (30.0 - image)
    image += mouth[..., None] * (np.array([90.0, 20.0, 30.0]) - image)
    image += rng.normal(0.0, 6.0, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)
