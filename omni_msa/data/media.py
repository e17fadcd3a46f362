"""Small raw-media helpers (wav through soundfile, mp4 through PyAV) shared by the whole project.

Readers return float32 mono audio at the requested rate and uint8 RGB frames; decoding failures
are raised as `DataError` naming the file.
"""

from __future__ import annotations

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
    """Decode the audio track of a video file as float32 mono at `sr`."""
    return _decode_audio(path, sr, field="video")


def _decode_audio(path: str | Path, sr: int, *, field: str) -> np.ndarray:
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise DataError("no audio stream", field=field, source=path)
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
            parts = [out.to_ndarray()[0] for frame in container.decode(stream)
                     for out in resampler.resample(frame)]
            parts += [out.to_ndarray()[0] for out in resampler.resample(None)]
            duration = stream.duration * stream.time_base if stream.duration else None
    except (av.FFmpegError, OSError) as error:
        raise DataError(f"cannot decode audio: {error}", field=field, source=path) from None
    wave = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    if duration is not None:
        # AAC pads its last frame; the container's duration says where the real audio ends.
        wave = wave[:round(float(duration) * sr)]
    return wave
