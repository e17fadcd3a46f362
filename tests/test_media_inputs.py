"""Decoding media for the omni model (omni_msa.media_inputs) and its content-keyed cache."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from omni_msa import media_inputs
from omni_msa.data.media import read_audio, read_video_frames, write_mp4, write_wav
from omni_msa.data.record import DataError, Sample
from omni_msa.data.synthetic import FPS, make_synthetic
from omni_msa.media_cache import MediaCache
from omni_msa.media_inputs import MediaSettings, decode_sample_media

SR = 16000


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    return make_synthetic(6, tmp_path_factory.mktemp("synthetic"), seed=0)


def expected_frame_count(total: int, source_fps: float, settings: MediaSettings) -> int:
    """The documented rule: n = floor_even(min(max(D * fps, ceil_even(min_frames)),
    floor_even(max_frames), T)) with D = T / source fps."""
    wanted = total / source_fps * settings.fps
    low = math.ceil(settings.min_frames / 2) * 2
    high = settings.max_frames // 2 * 2
    return int(min(max(wanted, low), high, total) // 2 * 2)


@pytest.mark.parametrize("settings", [MediaSettings(), MediaSettings(fps=5.0, max_frames=8),
                                      MediaSettings(max_frames=2),
                                      MediaSettings(min_pixels=16 * 28 * 28, max_pixels=40 * 28 * 28)])
def test_video_follows_qwen_sampling_and_resize_rules(samples: list[Sample], settings: MediaSettings) -> None:
    for sample in samples:
        media = decode_sample_media(sample, settings)
        frames, height, width = media.video.shape[:3]
        assert media.video.dtype == np.uint8 and media.video.shape[3] == 3
        assert frames % 2 == 0 and height % 28 == 0 and width % 28 == 0
        assert settings.min_pixels <= height * width <= settings.max_pixels
        total = len(read_video_frames(sample.video))
        assert frames == expected_frame_count(total, FPS, settings)
        assert media.video_fps == pytest.approx(frames / (total / FPS))


def test_pyav_fallback_matches_qwen_fetch_video(samples: list[Sample], monkeypatch: pytest.MonkeyPatch) -> None:
    settings = MediaSettings()
    vision = media_inputs._qwen_vision()
    options = {"video": "", "min_pixels": settings.min_pixels, "max_pixels": settings.max_pixels,
               "total_pixels": settings.total_pixels, **media_inputs._frame_options(settings)}
    for sample in samples[:3]:
        decoded = media_inputs.decode_video(Path(sample.video), settings)
        assert decoded.decoder == media_inputs.DECORD
        reference, fps = vision.fetch_video(options | {"video": str(sample.video)}, return_video_sample_fps=True)
        assert np.array_equal(decoded.frames, media_inputs._to_uint8_frames(reference)) and decoded.fps == fps
    monkeypatch.setattr(media_inputs, "_decord_in_use", lambda: False)
    for sample in samples[:3]:
        reference, fps = vision.fetch_video(options | {"video": str(sample.video)}, return_video_sample_fps=True)
        pyav = media_inputs.decode_video(Path(sample.video), settings)
        assert pyav.decoder == media_inputs.PYAV
        assert pyav.frames.shape == (reference.shape[0], *reference.shape[2:], 3) and pyav.fps == pytest.approx(fps)
        assert np.abs(pyav.frames.astype(int) - media_inputs._to_uint8_frames(reference)).max() <= 2


def test_decoded_video_is_not_resized_again_by_the_video_processor(samples: list[Sample]) -> None:
    from transformers import Qwen2_5OmniProcessor, Qwen2VLVideoProcessor

    settings = MediaSettings()
    assert {"shortest_edge": settings.min_pixels, "longest_edge": settings.max_pixels} == \
        Qwen2_5OmniProcessor.videos_kwargs["size"]
    video = decode_sample_media(samples[0], settings).video
    grid = Qwen2VLVideoProcessor()(videos=[video], return_tensors="pt")["video_grid_thw"][0].tolist()
    assert grid == [video.shape[0] // 2, video.shape[1] // 14, video.shape[2] // 14]


def test_audio_from_wav_and_from_the_video_track_agree(samples: list[Sample]) -> None:
    for sample in samples:
        from_wav = decode_sample_media(sample, MediaSettings()).audio
        from_video = decode_sample_media(sample, MediaSettings(use_audio_in_video=True)).audio
        assert from_wav.dtype == from_video.dtype == np.float32
        assert abs(len(from_wav) - len(from_video)) <= 0.040 * SR
        n = min(len(from_wav), len(from_video))
        assert np.corrcoef(from_wav[:n], from_video[:n])[0, 1] > 0.99


def test_long_audio_is_truncated_with_a_warning_naming_the_sample(samples: list[Sample],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    sample = samples[0]
    full_seconds = len(read_audio(sample.audio)) / SR
    with caplog.at_level(logging.WARNING, logger="omni_msa.media_inputs"):
        media = decode_sample_media(sample, MediaSettings(max_audio_seconds=1.0))
    assert len(media.audio) == SR
    assert media.audio_truncated_from == pytest.approx(full_seconds)
    assert sample.id in caplog.text and "truncated" in caplog.text
    assert decode_sample_media(sample, MediaSettings()).audio_truncated_from is None


def test_cache_key_covers_every_setting() -> None:
    base = MediaSettings()
    changed = {"fps": 1.0, "min_frames": 2, "max_frames": 16, "min_pixels": 64 * 28 * 28,
               "max_pixels": 512 * 28 * 28, "total_pixels": 1000 * 28 * 28, "sample_rate": 8000,
               "use_audio_in_video": True, "max_audio_seconds": 10.0}
    assert set(changed) == {f.name for f in dataclasses.fields(MediaSettings)}
    keys = {base.cache_key()} | {dataclasses.replace(base, **{k: v}).cache_key() for k, v in changed.items()}
    assert len(keys) == len(changed) + 1


def test_cache_hits_on_second_decode_and_copies_misses_on_changes(samples: list[Sample], tmp_path: Path) -> None:
    cache = MediaCache(tmp_path / "cache")
    settings = MediaSettings()
    first = [decode_sample_media(s, settings, cache) for s in samples]
    assert (cache.hits, cache.misses) == (0, 3 * len(samples))  # frames, their fps, audio
    second = [decode_sample_media(s, settings, cache) for s in samples]
    assert (cache.hits, cache.misses) == (3 * len(samples), 3 * len(samples))
    for a, b in zip(first, second):
        assert np.array_equal(a.video, b.video) and np.array_equal(a.audio, b.audio)
        assert a.video_fps == b.video_fps

    decode_sample_media(samples[0], dataclasses.replace(settings, fps=1.0), cache)
    assert cache.misses == 3 * len(samples) + 3

    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    copied = dataclasses.replace(samples[1], video=Path(shutil.copy(samples[1].video, copy_dir / "v.mp4")),
                                 audio=Path(shutil.copy(samples[1].audio, copy_dir / "a.wav")))
    hits, misses = cache.hits, cache.misses
    assert np.array_equal(decode_sample_media(copied, settings, cache).video, first[1].video)
    assert (cache.hits, cache.misses) == (hits + 3, misses)

    louder = read_audio(copied.audio) * 0.5
    write_wav(copied.audio, louder, SR)
    edited = decode_sample_media(copied, settings, cache)
    assert (cache.hits, cache.misses) == (hits + 5, misses + 1)  # video unchanged; audio recomputed
    assert np.allclose(edited.audio, louder, atol=1e-4)

    cache.clear()
    assert (cache.hits, cache.misses) == (0, 0) and not list((tmp_path / "cache").rglob("*.npy"))
    decode_sample_media(samples[0], settings, cache)
    assert cache.misses == 3


def test_unreadable_cache_entry_is_recomputed(samples: list[Sample], tmp_path: Path) -> None:
    cache = MediaCache(tmp_path)
    settings = MediaSettings()
    expected = decode_sample_media(samples[2], settings, cache).audio
    cache.entry_path(samples[2].audio, media_inputs.AUDIO, settings).write_bytes(b"truncated")
    assert np.array_equal(decode_sample_media(samples[2], settings, cache).audio, expected)


def _assert_names(error: pytest.ExceptionInfo[DataError], sample: Sample, field: str, path: Path) -> None:
    assert error.value.sample_id == sample.id and error.value.field == field
    assert error.value.source == str(path)
    assert sample.id in str(error.value) and str(path) in str(error.value)


@pytest.mark.parametrize("cached", [False, True])
def test_bad_media_raise_data_error_naming_sample_field_and_file(samples: list[Sample], tmp_path: Path,
                                                                 cached: bool) -> None:
    cache = MediaCache(tmp_path / "cache") if cached else None
    settings = MediaSettings()
    base = samples[0]

    missing = tmp_path / "missing.mp4"
    with pytest.raises(DataError, match="not found") as error:
        decode_sample_media(dataclasses.replace(base, video=missing), settings, cache)
    _assert_names(error, base, "video", missing)

    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not an mp4 file" * 50)
    with pytest.raises(DataError) as error:
        decode_sample_media(dataclasses.replace(base, video=garbage), settings, cache)
    _assert_names(error, base, "video", garbage)

    silent = tmp_path / "silent.mp4"
    write_mp4(silent, read_video_frames(base.video), FPS, audio=None)
    with pytest.raises(DataError, match="no audio stream") as error:
        decode_sample_media(dataclasses.replace(base, video=silent), MediaSettings(use_audio_in_video=True), cache)
    _assert_names(error, base, "video", silent)
    assert decode_sample_media(dataclasses.replace(base, video=silent), settings, cache).video is not None

    one_frame = tmp_path / "one_frame.mp4"
    write_mp4(one_frame, read_video_frames(base.video)[:1], FPS, audio=None)
    with pytest.raises(DataError, match="nframes") as error:
        decode_sample_media(dataclasses.replace(base, video=one_frame), settings, cache)
    _assert_names(error, base, "video", one_frame)

    bad_wav = tmp_path / "bad.wav"
    bad_wav.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 20)
    with pytest.raises(DataError) as error:
        decode_sample_media(dataclasses.replace(base, audio=bad_wav), settings, cache)
    _assert_names(error, base, "audio", bad_wav)

    missing_wav = tmp_path / "missing.wav"
    with pytest.raises(DataError, match="not found") as error:
        decode_sample_media(dataclasses.replace(base, audio=missing_wav), settings, cache)
    _assert_names(error, base, "audio", missing_wav)


def test_invalid_settings_are_rejected() -> None:
    from qwen_omni_utils.v2_5 import vision_process

    assert media_inputs.QWEN_VIDEO_MAX_PIXELS == vision_process.VIDEO_MAX_TOKEN_NUM * 28 * 28
    assert MediaSettings(max_frames=2).max_frames == 2  # max_frames wins over the default min_frames
    for bad in ({"fps": 0.0}, {"min_frames": 0}, {"max_frames": 1},
                {"min_pixels": 10, "max_pixels": 5}, {"max_pixels": 769 * 28 * 28},
                {"max_audio_seconds": 0.0}):
        with pytest.raises(ValueError):
            MediaSettings(**bad)


def test_concurrent_writers_of_one_entry_leave_one_complete_file(tmp_path: Path, samples: list[Sample]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    caches = [MediaCache(tmp_path) for _ in range(6)]
    settings = MediaSettings()
    expected = read_audio(samples[0].audio)
    compute = lambda: read_audio(samples[0].audio)  # noqa: E731
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda c: c.get_or_compute(samples[0].audio, "audio", settings, compute), caches))
    assert all(np.array_equal(r, expected) for r in results)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == \
        [caches[0].entry_path(samples[0].audio, "audio", settings).name]


def test_content_hash_is_memoised_per_path_size_and_mtime(tmp_path: Path) -> None:
    cache = MediaCache(tmp_path / "cache")
    file = tmp_path / "f.bin"
    file.write_bytes(b"a" * 100)
    old = (1_000_000_000, 1_000_000_000)
    os.utime(file, ns=old)
    first = cache.content_hash(file)
    file.write_bytes(b"b" * 100)  # same size; restoring the mtime hides the edit from the memo
    os.utime(file, ns=old)
    assert cache.content_hash(file) == first
    os.utime(file, ns=(old[0], old[1] + 1))
    assert cache.content_hash(file) != first
    assert MediaCache(tmp_path / "cache").content_hash(file) == cache.content_hash(file)


def test_a_cache_that_cannot_write_still_returns_media(samples: list[Sample], tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "not_a_directory"
    blocked.write_text("")
    with caplog.at_level(logging.WARNING, logger="omni_msa.media_cache"):
        media = decode_sample_media(samples[0], MediaSettings(), MediaCache(blocked))
    assert media.video is not None and media.audio is not None and "cannot write" in caplog.text


@pytest.mark.parametrize("cached", [False, True])
def test_empty_and_non_finite_audio_are_data_errors_and_silence_is_valid(samples: list[Sample], tmp_path: Path,
                                                                          cached: bool) -> None:
    cache = MediaCache(tmp_path / "cache") if cached else None
    base = samples[0]
    length = len(read_audio(base.audio))
    wave = np.zeros(length, np.float32)
    cases = (("nan", np.nan, "not finite"), ("inf", np.inf, "not finite"), ("empty", None, "no audio"))
    for name, bad, reason in cases:
        path = tmp_path / f"{name}.wav"
        if bad is None:
            write_wav(path, np.zeros(0, np.float32), SR)
        else:
            one_bad = wave.copy()
            one_bad[length // 2] = bad
            soundfile.write(str(path), one_bad, SR, subtype="FLOAT")
        with pytest.raises(DataError, match=reason) as error:
            decode_sample_media(dataclasses.replace(base, audio=path), MediaSettings(), cache)
        _assert_names(error, base, "audio", path)
    silent = tmp_path / "silent.wav"
    write_wav(silent, wave, SR)
    media = decode_sample_media(dataclasses.replace(base, audio=silent), MediaSettings(), cache)
    assert media.audio.shape == (length,) and not media.audio.any()
    assert (media.audio_field, media.audio_source) == ("audio", str(silent))


def _zero_frame_video(path: Path) -> Path:
    """An AVI whose video stream has no frames (mp4 drops a stream without packets)."""
    import av

    if "mpeg4" not in av.codecs_available:
        pytest.skip("PyAV has no mpeg4 encoder")
    container = av.open(str(path), "w", format="avi")
    stream = container.add_stream("mpeg4", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
    container.start_encoding()
    container.close()
    return path


def test_a_video_without_frames_is_a_data_error(samples: list[Sample], tmp_path: Path) -> None:
    path = _zero_frame_video(tmp_path / "empty.avi")
    with pytest.raises(DataError, match="no frames") as error:
        decode_sample_media(dataclasses.replace(samples[0], video=path), MediaSettings())
    _assert_names(error, samples[0], "video", path)


def _poison(cache: MediaCache, path: Path, settings: MediaSettings, decoder: str, value: int) -> None:
    """Store recognisable frames under one decoder's key."""
    frames = np.full((2, 28, 28, 3), value, np.uint8)
    cache.store(path, {media_inputs.VIDEO: frames, media_inputs.VIDEO_FPS: np.array([1.0])},
                media_inputs.DecoderKey(settings, decoder))


def test_cache_entries_of_one_decoder_are_not_served_for_another(samples: list[Sample], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cache, settings, sample = MediaCache(tmp_path / "cache"), MediaSettings(), samples[1]
    _poison(cache, sample.video, settings, media_inputs.PYAV, 7)
    through_decord = decode_sample_media(sample, settings, cache).video
    assert through_decord.shape[1] > 28 and not np.all(through_decord == 7)
    assert cache.entry_path(sample.video, media_inputs.VIDEO, media_inputs.DecoderKey(settings, "decord")).is_file()
    monkeypatch.setattr(media_inputs, "_decord_in_use", lambda: False)
    assert np.all(decode_sample_media(sample, settings, cache).video == 7)  # PyAV's own (poisoned) entry
    assert settings.cache_key() != media_inputs.DecoderKey(settings, "pyav").cache_key()


def test_decord_failure_falls_back_to_pyav_with_one_warning_and_its_own_cache_entry(
        samples: list[Sample], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    import itertools

    from decord import DECORDError

    cache, settings = MediaCache(tmp_path / "cache"), MediaSettings()
    readers = media_inputs._qwen_vision().VIDEO_READER_BACKENDS
    fallback_key = media_inputs.DecoderKey(settings, media_inputs.PYAV_FALLBACK)

    def broken(options: dict) -> None:
        raise DECORDError(f"cannot open {options['video']}")

    monkeypatch.setattr(media_inputs, "_FALLBACKS", itertools.count())
    with monkeypatch.context() as patch, caplog.at_level(logging.DEBUG, logger="omni_msa.media_inputs"):
        patch.setitem(readers, "decord", broken)
        fallen_back = [decode_sample_media(s, settings, cache).video for s in samples[:3]]
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if "decord could not read" in r.getMessage()]
    assert [level for level, _ in messages] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert str(samples[0].video) in messages[0][1]
    for sample, frames in zip(samples[:3], fallen_back):
        assert cache.entry_path(sample.video, media_inputs.VIDEO, fallback_key).is_file()
        pyav = media_inputs.decode_video(Path(sample.video), settings)  # decord works again
        assert pyav.decoder == media_inputs.DECORD and np.abs(pyav.frames.astype(int) - frames).max() <= 2

    for sample in samples[:2]:
        _poison(cache, sample.video, settings, media_inputs.PYAV_FALLBACK, 9)
    assert not np.all(decode_sample_media(samples[0], settings, cache).video == 9)  # decord reads it again
    monkeypatch.setitem(readers, "decord", broken)
    monkeypatch.setattr(media_inputs, "_decode_video_pyav", lambda *args: pytest.fail("the entry should be used"))
    assert np.all(decode_sample_media(samples[1], settings, cache).video == 9)  # decord fails again: the fallback's
    assert not np.all(decode_sample_media(samples[0], settings, cache).video == 9)  # what decord made, cached


def test_a_file_decord_reads_but_is_too_short_is_a_data_error_not_a_fallback(
        samples: list[Sample], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    one_frame = tmp_path / "one_frame.mp4"
    write_mp4(one_frame, read_video_frames(samples[0].video)[:1], FPS, audio=None)
    with caplog.at_level(logging.DEBUG, logger="omni_msa.media_inputs"), pytest.raises(DataError, match="nframes"):
        decode_sample_media(dataclasses.replace(samples[0], video=one_frame), MediaSettings())
    assert "decord could not read" not in caplog.text


# --- real-media shapes: stereo, other rates, AAC from a video track, late audio -------------------

def tone(seconds: float, sr: int, *, amplitude: float = 0.5, start: float = 0.0, hz: float = 440.0) -> np.ndarray:
    """A sine that is silent before `start` seconds."""
    t = np.arange(round(seconds * sr)) / sr
    return np.where(t >= start, amplitude * np.sin(2 * np.pi * hz * t), 0.0).astype(np.float32)


def write_aac_mp4(path: Path, channels: np.ndarray, sr: int, *, audio_start: float = 0.0, fps: int = 10,
                  size: tuple[int, int] = (48, 36), seconds: float = 2.0) -> Path:
    """An h264 mp4 (height x width `size`, grey frames) with a stereo AAC track at `sr` whose first
    sample is at `audio_start` seconds, written by PyAV as the real clips' encoders do."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps, options={"threads": "1"})
        video.height, video.width, video.pix_fmt = (*size, "yuv420p")
        sound = container.add_stream("aac", rate=sr)
        sound.layout = "stereo"
        for _ in range(round(seconds * fps)):
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.full((*size, 3), 128, np.uint8), format="rgb24")))
        container.mux(video.encode())
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(channels, np.float32), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = sr, round(audio_start * sr)
        container.mux(sound.encode(frame))
        container.mux(sound.encode())
    return path


def onset(wave: np.ndarray, sr: int = SR) -> float:
    return float(np.flatnonzero(np.abs(wave) > 0.05)[0] / sr)


@pytest.mark.parametrize("rate", [16000, 44100])
def test_a_stereo_wav_becomes_mono_16k_with_its_duration(tmp_path: Path, rate: int) -> None:
    left, right = tone(1.25, rate, amplitude=0.6), tone(1.25, rate, amplitude=0.2)
    path = tmp_path / f"stereo_{rate}.wav"
    soundfile.write(str(path), np.stack([left, right], axis=1), rate, subtype="PCM_16")
    sample = Sample(id="clip$_$1", split="train", label=0.0, text="fine", audio=path)
    media = decode_sample_media(sample, MediaSettings())
    assert media.audio.ndim == 1 and media.audio.dtype == np.float32
    assert abs(len(media.audio) - 1.25 * SR) <= 1
    expected = tone(1.25, SR, amplitude=0.4)  # the mean of the two channels
    assert np.corrcoef(media.audio, expected[:len(media.audio)])[0, 1] > 0.999
    assert np.abs(media.audio).max() == pytest.approx(0.4, abs=0.01)
    assert (media.audio_field, media.video, media.video_decoder) == ("audio", None, None)


def test_a_stereo_44k_aac_track_is_the_mean_of_its_channels_at_16k_without_priming(tmp_path: Path) -> None:
    rate = 44100
    signal = tone(1.5, rate, amplitude=0.8, start=0.5)
    path = write_aac_mp4(tmp_path / "aac.mp4", np.stack([signal, signal]), rate)
    sample = Sample(id="clip$_$2", split="train", label=0.0, text="fine", video=path)
    media = decode_sample_media(sample, MediaSettings(use_audio_in_video=True))
    assert media.audio_field == "video" and media.audio.ndim == 1
    assert abs(len(media.audio) / SR - 1.5) <= 1024 / rate  # within one AAC frame of the track's length
    # libswresample's own downmix would give (L + R) / sqrt(2): 1.13, beyond full scale
    assert 0.75 <= np.abs(media.audio).max() <= 0.85
    assert onset(media.audio) == pytest.approx(0.5, abs=0.005)  # the encoder delay is not in the wave


def test_an_audio_track_that_starts_late_is_placed_on_the_video_clock(tmp_path: Path) -> None:
    rate = 44100
    signal = tone(1.0, rate)
    path = write_aac_mp4(tmp_path / "late.mp4", np.stack([signal, signal]), rate, audio_start=0.25)
    from omni_msa.data.media import probe_media, read_video_audio

    info = probe_media(path, field="video")
    assert info.video.start == 0.0 and 0.2 < info.audio.start < 0.25  # the stream starts at its priming
    wave = read_video_audio(path)
    assert onset(wave) == pytest.approx(0.25, abs=0.005)
    assert len(wave) / SR == pytest.approx(1.25, abs=1024 / rate)


def test_probe_describes_the_container(samples: list[Sample], tmp_path: Path) -> None:
    from omni_msa.data.media import probe_media

    info = probe_media(samples[0].video, field="video")
    frames = read_video_frames(samples[0].video)
    assert (info.video.codec, info.video.width, info.video.height) == ("h264", frames.shape[2], frames.shape[1])
    assert info.video.fps == FPS and info.video.frames == len(frames)
    assert (info.audio.codec, info.audio.sample_rate, info.audio.channels) == ("aac", SR, 1)
    wav = probe_media(samples[0].audio, field="audio")
    assert wav.video is None and (wav.audio.sample_rate, wav.audio.channels) == (SR, 1)
    assert wav.audio.seconds == pytest.approx(len(read_audio(samples[0].audio)) / SR)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a container" * 40)
    with pytest.raises(DataError, match="cannot open media") as error:
        probe_media(garbage, field="video")
    assert error.value.field == "video" and error.value.source == str(garbage)


def test_decoded_media_names_the_decoder_and_pyav_gives_decords_frames(samples: list[Sample],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    settings = MediaSettings()
    assert media_inputs.video_reader() == media_inputs.DECORD
    media = decode_sample_media(samples[0], settings)
    assert media.video_decoder == media_inputs.DECORD
    pyav = media_inputs.decode_video_with_pyav(Path(samples[0].video), settings)
    assert pyav.decoder == media_inputs.PYAV and pyav.frames.shape == media.video.shape
    assert np.abs(pyav.frames.astype(int) - media.video.astype(int)).max() <= 2 and pyav.fps == media.video_fps
    monkeypatch.setattr(media_inputs, "_decord_in_use", lambda: False)
    assert decode_sample_media(samples[0], settings).video_decoder == media_inputs.PYAV
    assert media_inputs.video_reader() == media_inputs.PYAV
