"""A sample's media decoded for the Qwen2.5-Omni processor, once per set of processing parameters.

Video frames are read by qwen-omni-utils' decord reader (we set `FORCE_QWENVL_VIDEO_READER=decord`
before the first import; qwen-omni-utils 0.0.9 reads it once at import and never picks torchcodec
then), called directly rather than through `fetch_video`, whose fallback for any reader error is
torchvision's `read_video`, gone from torchvision 0.29. If decord is not in use, or fails to open
a file (`RuntimeError` from its reader, `DECORDError` from its C core), the frames are read with
PyAV instead (a counting pass, then only the selected frames are kept); the first such fallback
of a process is logged as a WARNING, later ones at DEBUG. Both readers' frames are then sampled and
resized by the same qwen-omni-utils rules (on the synthetic set decord and PyAV give arrays within
2 grey levels of each other, not identical), and a cache entry records which decoder made it:
`decord`, `pyav` (decord not in use) or `pyav_fallback` (decord failed on that file).

- frame count: with T source frames at source rate r (duration D = T / r),
  n = floor_even(min(max(D * fps, ceil_even(min_frames)), floor_even(max_frames), T)),
  frames at indices round(linspace(0, T - 1, n)); an n below 2 is an error;
- size: `smart_resize` to multiples of 28 with min_pixels <= H * W <= max_pixels (aspect kept),
  bicubic with antialiasing, where max_pixels is further capped at total_pixels / n * 2;
- the effective sampling rate is `video_fps = n / D`; it is what the processor needs.

Frames are uint8 T x H x W x 3 (RGB, channels last): the Qwen2-VL video processor takes that
layout directly (it infers channels-last; the same grid as T x 3 x H x W), missingness masks whole
frames along axis 0, and the default pixel bounds below equal the Omni processor's own
`videos_kwargs` size, so the processor does not resize our frames again.

Passing the timing to the processor (transformers 5.23): `processor(..., videos=[...], fps=x)` takes
one number per call (a list fails validation) and returns `video_second_per_grid =
temporal_patch_size / x` (2 / x seconds per temporal patch) for every video of the call; the Thinker
takes it as `video_second_per_grid` for its time-aligned rope positions. Videos with different
`video_fps` need separate calls (or their own `video_second_per_grid` entry, which is only safe
without `use_audio_in_video`, since the interleaving of audio and video tokens is laid out from it).

Audio is float32 mono at `sample_rate`, from `sample.audio`, or with `use_audio_in_video` from the
video's own track through PyAV (no ffmpeg binary needed); a sample without a video then falls back
to its audio file. Audio longer than `max_audio_seconds` (Whisper's 30 s window, past which the
processor's feature extractor would cut it silently) is truncated with a warning naming the sample,
and the original length is recorded in `DecodedMedia.audio_truncated_from`. Audio without samples
or with a non-finite sample (NaN, infinity) is a DataError; an all-zero (silent) track is valid.
How short is too short depends on the processor: `omni_msa.inputs.InputBuilder` checks that.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import av
import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.functional import resize

from omni_msa.data.media import read_audio, read_video_audio
from omni_msa.data.record import DataError, Sample
from omni_msa.media_cache import MediaCache

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

READER_ENV = "FORCE_QWENVL_VIDEO_READER"
PATCH_FACTOR = 28  # vision patch 14 x spatial merge 2
FRAME_FACTOR = 2  # temporal patch: frame counts are even
QWEN_VIDEO_MAX_PIXELS = 768 * PATCH_FACTOR ** 2  # qwen-omni-utils' per-frame cap
DECODE_VERSION = "media-v2"  # bump when decoding changes, so old cache entries stop matching

VIDEO, VIDEO_FPS, AUDIO, AUDIO_FROM_VIDEO = "video", "video_fps", "audio", "audio_from_video"
DECORD, PYAV, PYAV_FALLBACK = "decord", "pyav", "pyav_fallback"  # the decoders a video entry may come from


@dataclass(frozen=True)
class MediaSettings:
    """How media is decoded. Defaults follow Qwen2.5-Omni: 2 frames per second, 128 to 768
    tokens' worth of pixels per frame (qwen-omni-utils' VIDEO_MIN/MAX_TOKEN_NUM x 28 x 28, and
    the processor's own default size), at least 4 frames (its FPS_MIN_FRAMES), at most 32 here
    (its own limit, 768, is far beyond utterance length; max_frames wins over min_frames, as
    there). `total_pixels` bounds all frames
    together (per frame at most total_pixels / n * 2): qwen-omni-utils' default, 90% of a 128 K
    token context, which 0.0.9 derives from the MODEL_SEQ_LEN environment variable; we pass it
    explicitly so the environment cannot change results behind the cache key."""

    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 32
    min_pixels: int = 128 * PATCH_FACTOR ** 2
    max_pixels: int = 768 * PATCH_FACTOR ** 2
    total_pixels: int = int(128000 * PATCH_FACTOR ** 2 * 0.9)
    sample_rate: int = 16000
    use_audio_in_video: bool = False
    max_audio_seconds: float | None = 30.0

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.sample_rate <= 0 or self.total_pixels <= 0:
            raise ValueError(f"fps, sample_rate and total_pixels must be positive: {self}")
        if self.min_frames < 1 or self.max_frames < FRAME_FACTOR:
            raise ValueError(f"need min_frames >= 1 and max_frames >= {FRAME_FACTOR}, got "
                             f"{self.min_frames}, {self.max_frames}")
        if not 0 < self.min_pixels <= self.max_pixels <= QWEN_VIDEO_MAX_PIXELS:
            raise ValueError(f"need 0 < min_pixels <= max_pixels <= {QWEN_VIDEO_MAX_PIXELS}, got "
                             f"{self.min_pixels}, {self.max_pixels}")
        if self.max_audio_seconds is not None and self.max_audio_seconds <= 0:
            raise ValueError(f"max_audio_seconds must be positive or None, got {self.max_audio_seconds}")

    def cache_key(self) -> str:
        """Every field (and the decoder version), as a stable string."""
        return f"{DECODE_VERSION}:{json.dumps(asdict(self), sort_keys=True)}"


@dataclass(frozen=True)
class DecodedMedia:
    """A sample's decoded media: float32 mono audio at the settings' rate, uint8 T x H x W x 3
    frames and their effective sampling rate, or None where the sample has no such media.
    `video_decoder` names the decoder that made the frames (`decord`, `pyav`, `pyav_fallback`);
    `audio_truncated_from` is the original length in seconds when the audio was cut; `audio_field`
    and `audio_source` say where the audio came from (the `audio` file, or the `video` file's track)."""

    audio: np.ndarray | None = None
    video: np.ndarray | None = None
    video_fps: float | None = None
    video_decoder: str | None = None
    audio_truncated_from: float | None = None
    audio_field: str | None = None
    audio_source: str | None = None


@dataclass(frozen=True)
class DecodedVideo:
    """Sampled, resized uint8 T x H x W x 3 frames, their effective rate, the decoder that read
    them, and whether they came from the media cache."""

    frames: np.ndarray
    fps: float
    decoder: str
    cached: bool = False


@dataclass(frozen=True)
class DecoderKey:
    """A video cache key: the media settings and the decoder that produced the entry."""

    settings: MediaSettings
    decoder: str

    def cache_key(self) -> str:
        return f"{self.settings.cache_key()}:decoder={self.decoder}"


def decode_sample_media(sample: Sample, settings: MediaSettings,
                        cache: MediaCache | None = None) -> DecodedMedia:
    """Decode (or fetch from `cache`) the sample's video frames and audio.

    Raises DataError naming the sample, the field (`video` or `audio`) and the file on any
    failure: a missing file, an undecodable one, a video too short for two frames, a video
    without an audio track when `use_audio_in_video` asks for it, or audio that is empty or
    holds non-finite samples.
    """
    video = None if sample.video is None else _video(sample, Path(sample.video), settings, cache)
    audio, truncated_from, field, source = _audio(sample, settings, cache)
    return DecodedMedia(audio=audio, video=None if video is None else video.frames,
                        video_fps=None if video is None else video.fps,
                        video_decoder=None if video is None else video.decoder,
                        audio_truncated_from=truncated_from, audio_field=field, audio_source=source)


def _video(sample: Sample, path: Path, settings: MediaSettings,
           cache: MediaCache | None) -> DecodedVideo:
    """Frames and effective fps, cached together under the decoder that produced them."""
    def cached(decoder: str) -> DecodedVideo | None:
        found = cache.lookup(path, (VIDEO, VIDEO_FPS), DecoderKey(settings, decoder)) if cache is not None else None
        return None if found is None else DecodedVideo(found[VIDEO], float(found[VIDEO_FPS][0]), decoder, True)

    decoded = _guarded(sample, "video", path, VIDEO, lambda: decode_video(path, settings, cached))
    if cache is not None and not decoded.cached:
        cache.store(path, {VIDEO: decoded.frames, VIDEO_FPS: np.array([decoded.fps])},
                    DecoderKey(settings, decoded.decoder))
    return decoded


def _audio(sample: Sample, settings: MediaSettings,
           cache: MediaCache | None) -> tuple[np.ndarray | None, float | None, str | None, str | None]:
    """The wave, its original length in seconds if truncated, and the field and file it came from."""
    rate = settings.sample_rate
    if settings.use_audio_in_video and sample.video is not None:
        path, field, kind = Path(sample.video), "video", AUDIO_FROM_VIDEO
        compute = lambda: read_video_audio(path, rate)  # noqa: E731
    elif sample.audio is not None:
        path, field, kind = Path(sample.audio), "audio", AUDIO
        compute = lambda: read_audio(path, rate)  # noqa: E731
    else:
        return None, None, None, None
    wave = _guarded(sample, field, path, kind,
                    lambda: compute() if cache is None else cache.get_or_compute(path, kind, settings, compute))
    if wave.size == 0:
        raise DataError("no audio samples", sample_id=sample.id, field=field, source=path)
    bad = int(np.count_nonzero(~np.isfinite(wave)))
    if bad:
        raise DataError(f"{bad} of {wave.size} audio samples are not finite (NaN or infinity)",
                        sample_id=sample.id, field=field, source=path)
    limit = settings.max_audio_seconds
    if limit is None or len(wave) <= round(limit * rate):
        return wave, None, field, str(path)
    seconds = len(wave) / rate
    logger.warning("sample %r: %s audio of %.2f s truncated to its first %g s (%s)", sample.id, field,
                   seconds, limit, path)
    return wave[:round(limit * rate)], seconds, field, str(path)


def _guarded(sample: Sample, field: str, path: Path, kind: str, action: Callable[[], _T]) -> _T:
    """Run `action` on an existing file, turning every decoding failure into a DataError naming the sample."""
    if not path.is_file():
        raise DataError("file not found", sample_id=sample.id, field=field, source=path)
    try:
        return action()
    except DataError as error:
        raise DataError(error.reason, sample_id=sample.id, field=field, source=error.source or path) from None
    except (OSError, ValueError, RuntimeError) as error:
        raise DataError(f"cannot decode {kind}: {error}", sample_id=sample.id, field=field,
                        source=path) from error


def _not_cached(decoder: str) -> None:
    return None


def decode_video(path: Path, settings: MediaSettings,
                 cached: Callable[[str], DecodedVideo | None] = _not_cached) -> DecodedVideo:
    """Frames sampled and resized by the qwen-omni-utils rules, read by decord, or by PyAV when
    decord is not in use or fails to open this file. `cached(decoder)` is asked first for what
    that decoder would give: the PyAV fallback's entry is only used once decord has failed again."""
    vision = _qwen_vision()
    if not _decord_in_use():
        return cached(PYAV) or _decode_video_pyav(path, settings, vision, PYAV)
    if (hit := cached(DECORD)) is not None:
        return hit
    from decord import DECORDError

    try:
        # fetch_video's decord reader (qwen-omni-utils 0.0.9): T x 3 x H x W frames, metadata, effective fps
        video, _, fps = vision.VIDEO_READER_BACKENDS[DECORD]({"video": str(path), **_frame_options(settings)})
    except (RuntimeError, DECORDError) as error:  # decord cannot open or read the file
        _warn_fallback(path, error)
        return cached(PYAV_FALLBACK) or _decode_video_pyav(path, settings, vision, PYAV_FALLBACK)
    return DecodedVideo(_resize(video, settings, vision), float(fps), DECORD)


def decode_video_with_pyav(path: Path, settings: MediaSettings) -> DecodedVideo:
    """The frames `decode_video` gives, read by PyAV whatever the reader in use (no cache): the
    fallback for files decord cannot read, callable on its own to compare the two readers."""
    return _decode_video_pyav(path, settings, _qwen_vision(), PYAV)


def video_reader() -> str:
    """The reader `decode_video` tries first: `decord`, or `pyav` when qwen-omni-utils does not
    read video with decord (imports qwen-omni-utils: call it to take that cost up front)."""
    return DECORD if _decord_in_use() else PYAV


_FALLBACKS = itertools.count()  # decord failures in this process


def _warn_fallback(path: Path, error: Exception) -> None:
    """A WARNING for the first decord failure of the process, DEBUG for the later ones."""
    level = logging.WARNING if next(_FALLBACKS) == 0 else logging.DEBUG
    logger.log(level, "decord could not read %s (%s: %s); decoding it with PyAV (cached as %r; warned once "
               "per process, later files at DEBUG)", path, type(error).__name__, error, PYAV_FALLBACK)


def _decode_video_pyav(path: Path, settings: MediaSettings, vision: ModuleType, decoder: str) -> DecodedVideo:
    """The frames qwen-omni-utils' decord reader selects, read with PyAV and resized the same way.
    A counting pass comes first, so only the selected frames are ever held in memory."""
    total, source_fps = _count_frames(path)
    count = vision.smart_nframes(_frame_options(settings), total_frames=total, video_fps=source_fps)
    indices = torch.linspace(0, total - 1, count).round().long().tolist()
    video = torch.from_numpy(_read_frames(path, indices)).permute(0, 3, 1, 2)
    return DecodedVideo(_resize(video, settings, vision), count / total * source_fps, decoder)


def _resize(video: torch.Tensor, settings: MediaSettings, vision: ModuleType) -> np.ndarray:
    """fetch_video's resizing: smart_resize within the pixel bounds (per frame at most
    total_pixels / n * 2), bicubic with antialiasing."""
    count = video.shape[0]
    max_pixels = min(settings.max_pixels,
                     max(min(QWEN_VIDEO_MAX_PIXELS, settings.total_pixels / count * FRAME_FACTOR),
                         int(settings.min_pixels * 1.05)))
    height, width = vision.smart_resize(video.shape[2], video.shape[3], factor=PATCH_FACTOR,
                                        min_pixels=settings.min_pixels, max_pixels=max_pixels)
    video = resize(video, [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True).float()
    return _to_uint8_frames(video)


def _count_frames(path: Path) -> tuple[int, float]:
    """Decoded frame count (container headers may be wrong or absent) and the stream's rate."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError("no video stream", field="video", source=path)
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            total = sum(1 for _ in container.decode(stream))
    except (av.FFmpegError, OSError) as error:
        raise DataError(f"cannot decode video: {error}", field="video", source=path) from None
    if not rate or not total:
        raise DataError("the video stream has no frames or no frame rate", field="video", source=path)
    return total, float(Fraction(rate))


def _read_frames(path: Path, indices: list[int]) -> np.ndarray:
    """uint8 RGB frames at the given decode positions (repeats allowed), as len(indices) x H x W x 3."""
    wanted = set(indices)
    kept: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            for position, frame in enumerate(container.decode(video=0)):
                if position in wanted:
                    kept[position] = frame.to_ndarray(format="rgb24")
                if position >= indices[-1]:
                    break
    except (av.FFmpegError, OSError) as error:
        raise DataError(f"cannot decode video: {error}", field="video", source=path) from None
    if len(kept) != len(wanted):
        raise DataError("fewer frames on the second decoding pass", field="video", source=path)
    return np.stack([kept[i] for i in indices])


def _frame_options(settings: MediaSettings) -> dict[str, float]:
    return {"fps": settings.fps, "min_frames": settings.min_frames, "max_frames": settings.max_frames}


def _to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """Float T x 3 x H x W (bicubic can overshoot [0, 255]) -> uint8 T x H x W x 3."""
    return video.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


@lru_cache(maxsize=1)
def _qwen_vision() -> ModuleType:
    """qwen-omni-utils' vision module, imported with decord chosen as its video reader (it reads
    the variable once, at import)."""
    os.environ.setdefault(READER_ENV, "decord")
    from qwen_omni_utils.v2_5 import vision_process

    return vision_process


@lru_cache(maxsize=1)
def _decord_in_use() -> bool:
    vision = _qwen_vision()
    backend = vision.get_video_reader_backend()
    if backend == "decord" and vision.is_decord_available():
        return True
    logger.warning("qwen-omni-utils reads video with %r, not decord; decoding video with PyAV instead", backend)
    return False
