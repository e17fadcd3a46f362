"""Small raw-media helpers (wav through soundfile, mp4 through PyAV) shared by the whole project.

Readers return float32 mono audio at the requested rate and uint8 RGB frames; decoding failures
are raised as `DataError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from omni_msa.data.record import DataError

VIDEO_CODECS: tuple[str, ...] = ("libx264", "mpeg4")
SINGLE_THREAD_OPTIONS = {"libx264": {"threads": "1", "preset": "ultrafast"}}


def write_wav(path: str | Path, wave: np.ndarray, sr: int) -> None:
    """Write float32 mono samples in [-1, 1] as 16-bit PCM."""
    sf.write(str(path), np.asarray(wave, dtype=np.float32), sr, subtype="PCM_16")


def read_audio(path: str | Path, sr: int = 16000) -> np.ndarray:
    """Read an audio file as float32 mono at `sr` (channels averaged).

    soundfile reads wav/flac/ogg; anything it cannot open (mp3, m4a, ...) is decoded by PyAV.
    """
    try:
        wave, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.LibsndfileError:
        return _decode_audio(path, sr, field="audio")
    return resample(wave.mean(axis=1), file_sr, sr)


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Anti-aliased resampling of float32 mono audio: scipy's polyphase filter when scipy is
    installed (it is optional), else PyAV's libswresample."""
    wave = np.asarray(wave, dtype=np.float32)
    if sr_in == sr_out:
        return wave
    try:
        from scipy.signal import resample_poly
    except ImportError:
        pass
    else:
        g = gcd(sr_in, sr_out)
        return resample_poly(wave, sr_out // g, sr_in // g).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(wave[None, :], format="flt", layout="mono")
    frame.sample_rate = sr_in
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sr_out)
    parts = [f.to_ndarray()[0] for f in (*resampler.resample(frame), *resampler.resample(None))]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def write_mp4(path: str | Path, frames: np.ndarray, fps: int, audio: np.ndarray | None = None,
              sr: int = 16000) -> str:
    """Encode uint8 T x H x W x 3 RGB frames (H, W even) as mp4, muxing `audio` as an AAC track.

    Tries the codecs of `VIDEO_CODECS` in order (yuv420p) and returns the one used.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 T x H x W x 3, got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"frame size {width}x{height} must be even for yuv420p")
    for codec in VIDEO_CODECS:
        if codec in av.codecs_available:
            break
    else:
        raise RuntimeError(f"none of the video encoders {VIDEO_CODECS} is available in PyAV")
    with av.open(str(path), "w", format="mp4") as container:
        # one thread and no lookahead: x264 otherwise gives different frames from run to run,
        # and the synthetic set must be a pure function of its seed
        video = container.add_stream(codec, rate=fps, options=SINGLE_THREAD_OPTIONS.get(codec, {"threads": "1"}))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.thread_count, video.codec_context.thread_type = 1, "NONE"
        if audio is not None:  # every stream must exist before the first packet is muxed
            sound = container.add_stream("aac", rate=sr)
            sound.layout = "mono"
            sound.codec_context.thread_count, sound.codec_context.thread_type = 1, "NONE"
        for array in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(video.encode())
        if audio is not None:
            frame = av.AudioFrame.from_ndarray(np.asarray(audio, np.float32)[None, :], format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = sr, 0
            container.mux(sound.encode(frame))
            container.mux(sound.encode())
    return codec


@dataclass(frozen=True)
class VideoStreamInfo:
    """A video stream as its container describes it (headers only, nothing decoded)."""

    codec: str
    width: int
    height: int
    fps: float | None
    frames: int | None
    seconds: float | None
    start: float | None  # the stream's first timestamp, in seconds


@dataclass(frozen=True)
class AudioStreamInfo:
    codec: str
    sample_rate: int
    channels: int
    seconds: float | None
    start: float | None


@dataclass(frozen=True)
class MediaInfo:
    """The first video and audio stream of a media file (None where it has none)."""

    video: VideoStreamInfo | None
    audio: AudioStreamInfo | None


def probe_media(path: str | Path, *, field: str) -> MediaInfo:
    """What the container says about its first video and audio stream; a DataError naming
    `field` and the file if it cannot be opened or holds neither."""
    try:
        with av.open(str(path)) as container:
            streams = container.streams
            info = MediaInfo(video=_video_info(streams.video[0]) if streams.video else None,
                             audio=_audio_info(streams.audio[0]) if streams.audio else None)
    except (av.FFmpegError, OSError) as error:
        raise DataError(f"cannot open media: {error}", field=field, source=path) from None
    if info.video is None and info.audio is None:
        raise DataError("no audio or video stream", field=field, source=path)
    return info


def _video_info(stream: av.video.stream.VideoStream) -> VideoStreamInfo:
    rate = stream.average_rate or stream.guessed_rate
    return VideoStreamInfo(codec=stream.codec_context.name, width=stream.width, height=stream.height,
                           fps=float(rate) if rate else None, frames=stream.frames or None,
                           seconds=_seconds(stream.duration, stream), start=_seconds(stream.start_time, stream))


def _audio_info(stream: av.audio.stream.AudioStream) -> AudioStreamInfo:
    return AudioStreamInfo(codec=stream.codec_context.name, sample_rate=stream.rate, channels=stream.channels,
                           seconds=_seconds(stream.duration, stream), start=_seconds(stream.start_time, stream))


def _seconds(timestamp: int | None, stream: av.stream.Stream) -> float | None:
    return None if timestamp is None else float(timestamp * stream.time_base)


def read_video_frames(path: str | Path) -> np.ndarray:
    """Decode every video frame as uint8 T x H x W x 3 RGB."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError("no video stream", field="video", source=path)
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.FFmpegError, OSError) as error:
        raise DataError(f"cannot decode video: {error}", field="video", source=path) from None
    if not frames:
        raise DataError("video stream has no frames", field="video", source=path)
    return np.stack(frames)


def read_video_audio(path: str | Path, sr: int = 16000) -> np.ndarray:
    """Decode the audio track of a video file as float32 mono at `sr`, on the video's clock:
    sample 0 is the video's first frame (an audio track that starts later is preceded by
    silence, audio before the first frame is dropped)."""
    return _decode_audio(path, sr, field="video")


def _decode_audio(path: str | Path, sr: int, *, field: str) -> np.ndarray:
    """Resampled to `sr` by libswresample, then the channels averaged, as `read_audio` does for wav:
    libswresample's own stereo-to-mono downmix is (L + R) / sqrt(2), 3 dB louder than the mean, which
    leaves [-1, 1] for loud speech. AAC priming needs no handling here: FFmpeg drops the encoder delay
    the container marks (packets before time 0), and the padding of the last frame is cut at the
    stream's duration."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise DataError("no audio stream", field=field, source=path)
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=sr)  # planar: channels x n
            parts, start = [], None
            for frame in container.decode(stream):
                start = frame.time if start is None else start
                parts += [out.to_ndarray().mean(axis=0) for out in resampler.resample(frame)]
            parts += [out.to_ndarray().mean(axis=0) for out in resampler.resample(None)]
            duration = stream.duration * stream.time_base if stream.duration else None
            origin = _video_start(container) if field == "video" else None
    except (av.FFmpegError, OSError) as error:
        raise DataError(f"cannot decode audio: {error}", field=field, source=path) from None
    wave = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    if duration is not None:
        wave = wave[:round(float(duration) * sr)]
    if origin is None or start is None:
        return wave
    shift = round((start - origin) * sr)  # the audio's first sample, in samples after the first frame
    return np.concatenate([np.zeros(shift, np.float32), wave]) if shift > 0 else wave[-shift:]


def _video_start(container: av.container.InputContainer) -> float | None:
    """The time of the first video frame in seconds (the stream's start), or None without video."""
    if not container.streams.video:
        return None
    stream = container.streams.video[0]
    return None if stream.start_time is None else float(stream.start_time * stream.time_base)
