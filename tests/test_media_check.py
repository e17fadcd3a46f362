"""`omni_msa.media_check` on a generated raw-media manifest: synthetic clips (h264 + mono AAC, and
their wavs), a 16 kHz stereo wav, an h264 mp4 of odd size with a stereo 44.1 kHz AAC track, and a
broken file; every clip is reported, the second pass comes from the cache, the broken one is named."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
from test_media_inputs import tone, write_aac_mp4

from omni_msa.data.manifest import read_manifest
from omni_msa.data.missing import RETENTION_MODES, MissingnessProtocol, modality_set_name
from omni_msa.data.synthetic import make_synthetic
from omni_msa.media_check import ClipCheck, MediaCheck, check_media, render_report, write_report
from omni_msa.media_inputs import DECORD, MediaSettings
from omni_msa.prediction import predict_samples

SR = 16000
# few frames, but the processor's own pixel bounds (smaller ones make it resize the frames again)
SMALL = MediaSettings(fps=2.0, min_frames=2, max_frames=4, use_audio_in_video=True)
STEREO_ID, AAC_ID, BROKEN_ID = "stereo$_$1", "aac$_$1", "broken$_$1"
STEREO_SECONDS = 1.5


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    synthetic = make_synthetic(2, root / "synthetic", seed=0)
    left, right = tone(STEREO_SECONDS, SR, amplitude=0.6), tone(STEREO_SECONDS, SR, amplitude=0.2)
    soundfile.write(str(root / "stereo.wav"), np.stack([left, right], axis=1), SR, subtype="PCM_16")
    signal = tone(2.0, 44100, amplitude=0.5)
    write_aac_mp4(root / "aac.mp4", np.stack([signal, signal]), 44100, size=(50, 38), seconds=2.0)
    (root / "broken.mp4").write_bytes(b"this is not an mp4" * 64)
    rows = [{"id": s.id, "split": s.split, "label": s.label, "text": s.text,
             "video": Path(s.video).relative_to(root).as_posix(), "audio": Path(s.audio).relative_to(root).as_posix()}
            for s in synthetic]
    for sample_id, label, video, audio in ((STEREO_ID, 1.0, "", "stereo.wav"), (AAC_ID, -1.0, "aac.mp4", ""),
                                           (BROKEN_ID, 0.0, "broken.mp4", "")):
        rows.append({"id": sample_id, "split": "train", "label": label, "text": "a fine film", "video": video,
                     "audio": audio})
    path = root / "manifest.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def checked(manifest: Path, tiny_thinker_dir: Path) -> MediaCheck:
    return check_media(manifest, backbone=str(tiny_thinker_dir), settings=SMALL)


def clip(check: MediaCheck, sample_id: str) -> ClipCheck:
    return next(c for c in check.clips if c.id == sample_id)


def manifest_ids(manifest: Path) -> list[str]:
    with manifest.open() as handle:
        return [row["id"] for row in csv.DictReader(handle)]


def test_every_clip_is_reported_and_the_broken_one_is_named_with_its_field(checked: MediaCheck,
                                                                           manifest: Path) -> None:
    ids = manifest_ids(manifest)
    assert [c.id for c in checked.clips] == [i for i in ids if i != BROKEN_ID]
    assert [(e.id, e.step, e.field) for e in checked.errors] == [(BROKEN_ID, "decoding", "video")]
    assert checked.errors[0].source == str(manifest.parent / "broken.mp4")
    assert checked.settings == SMALL and checked.readout == "discriminative" and not checked.trained


def test_the_second_pass_is_served_from_the_cache(checked: MediaCheck) -> None:
    arrays = {STEREO_ID: 1}  # the audio; a video adds its frames and their rate, and its audio track
    for c in checked.clips:
        first, second = c.passes
        expected = arrays.get(c.id, 3)
        assert (first.hits, first.misses) == (0, expected)
        assert (second.hits, second.misses) == (expected, 0)
        assert c.cache_identical and first.seconds > 0 and second.seconds > 0


def test_decoded_video_and_audio_of_each_clip(checked: MediaCheck) -> None:
    for c in checked.clips:
        if c.id == STEREO_ID:
            assert (c.frames, c.decoder, c.audio_field) == (None, None, "audio")
            continue
        video = c.probes["video"].video
        height, width = c.size
        assert c.decoder == DECORD and c.pyav_max_diff <= 2 and c.audio_field == "video"
        assert c.frames % 2 == 0 and SMALL.min_frames <= c.frames <= SMALL.max_frames
        assert c.fps == pytest.approx(c.frames / (video.frames / video.fps))
        assert height % 28 == 0 and width % 28 == 0 and SMALL.min_pixels <= height * width <= SMALL.max_pixels
        assert c.audio_seconds == pytest.approx(c.probes["video"].audio.seconds, abs=0.07)
    aac = clip(checked, AAC_ID)
    assert (aac.probes["video"].video.width, aac.probes["video"].video.height) == (38, 50)
    assert (aac.probes["video"].audio.sample_rate, aac.probes["video"].audio.channels) == (44100, 2)
    assert aac.audio_peak == pytest.approx(0.5, abs=0.05)  # the channels' mean, not a louder downmix


def test_the_stereo_wav_is_mono_16k_with_its_duration(checked: MediaCheck) -> None:
    stereo = clip(checked, STEREO_ID)
    assert (stereo.probes["audio"].audio.channels, stereo.probes["audio"].audio.sample_rate) == (2, SR)
    assert stereo.audio_seconds == pytest.approx(STEREO_SECONDS, abs=1 / SR)
    assert stereo.audio_peak == pytest.approx(0.4, abs=0.01)  # (0.6 + 0.2) / 2


def test_tokens_per_modality_follow_the_media(checked: MediaCheck) -> None:
    for c in checked.clips:
        tokens = c.complete.tokens
        # 25 audio tokens per second (Whisper frames of 10 ms, pooled 4 to 1)
        assert abs(tokens["audio"] - 25 * c.audio_seconds) <= 1
        video = 0 if c.frames is None else c.frames // 2 * (c.size[0] // 28) * (c.size[1] // 28)
        assert tokens["video"] == video and tokens["text"] > 0
        assert c.complete.video_size == c.size  # the processor keeps the decoded frames as they are


def test_frames_the_processor_resizes_again_are_flagged(manifest: Path, tiny_thinker_dir: Path) -> None:
    one = manifest.parent / "aac_only.csv"
    one.write_text(f"id,split,label,text,video,audio\n{AAC_ID},train,0.5,ok then,aac.mp4,\n")
    tiny = replace(SMALL, min_pixels=4 * 28 * 28, max_pixels=4 * 28 * 28)
    check = check_media(one, backbone=str(tiny_thinker_dir), settings=tiny)
    (aac,) = check.clips
    assert aac.complete.video_size != aac.size
    processed = aac.complete.video_size
    assert aac.complete.tokens["video"] == aac.frames // 2 * (processed[0] // 28) * (processed[1] // 28)
    assert "RESIZED AGAIN by the processor" in render_report(check, "x")


def test_each_retention_mode_keeps_what_the_clip_has_and_the_prompt_says_so(checked: MediaCheck) -> None:
    words = {"text": "transcript", "audio": "audio", "vision": "video"}
    for c in checked.clips:
        has = {"text", "audio"} | (set() if c.frames is None else {"vision"})
        assert [m.mode for m in c.modes] == [modality_set_name(keep) for keep in RETENTION_MODES]
        for keep, mode in zip(RETENTION_MODES, c.modes):
            assert mode.error is None and mode.status == "ok" and math.isfinite(mode.pred)
            assert set(mode.present) == keep & has
            named = ", ".join(words[m] for m in mode.present) or "none"
            assert mode.prompt == f"Modalities present: {named}."
            assert mode.transcript == ("text" in mode.present)
            assert (mode.tokens["audio"] > 0) == ("audio" in mode.present)
            assert (mode.tokens["video"] > 0) == ("vision" in mode.present)
    stereo = clip(checked, STEREO_ID)
    assert next(m for m in stereo.modes if m.mode == "vision").present == ()


def test_the_scores_are_deterministic_and_depend_on_the_media(checked: MediaCheck, manifest: Path,
                                                              tiny_thinker_dir: Path) -> None:
    again = check_media(manifest, backbone=str(tiny_thinker_dir), settings=SMALL)
    assert [[m.pred for m in c.modes] for c in again.clips] == [[m.pred for m in c.modes] for c in checked.clips]
    preds = {m.pred for c in checked.clips for m in c.modes}
    assert len(preds) > len(checked.clips)


def test_the_report_has_a_row_per_clip_the_errors_and_the_command(checked: MediaCheck, tmp_path: Path) -> None:
    out = write_report(checked, tmp_path / "results" / "real_clips.md", "omni-msa check-media --manifest m.csv")
    text = out.read_text()
    assert text == render_report(checked, "omni-msa check-media --manifest m.csv")
    assert "Command: `omni-msa check-media --manifest m.csv`" in text
    clips_section = text.split("## Clips")[1].split("## Errors")[0]
    for c in checked.clips:
        row = next(line for line in clips_section.splitlines() if line.startswith(f"| `{c.id}` |"))
        assert f"{c.complete.pred:+.4f} (ok)" in row and f"{c.audio_seconds:.3f} s mono" in row
    errors_section = text.split("## Errors")[1].split("## Cache")[0]
    assert f"| `{BROKEN_ID}` | decoding | video |" in errors_section
    modes_section = text.split("## Missingness")[1]
    assert sum(line.startswith("| `") for line in modes_section.splitlines()) == 7 * len(checked.clips)
    assert "Modalities present: none." in modes_section


def test_audio_too_short_for_the_processor_is_one_error_for_the_clip(checked: MediaCheck, manifest: Path,
                                                              tiny_thinker_dir: Path) -> None:
    short = manifest.parent / "short.wav"
    soundfile.write(str(short), np.full(100, 0.1, np.float32), SR)  # too short for one audio token
    one = manifest.parent / "one.csv"
    one.write_text(f"id,split,label,text,video,audio\nshort$_$1,train,0.5,ok then,,{short.name}\n")
    check = check_media(one, backbone=str(tiny_thinker_dir), settings=replace(SMALL, use_audio_in_video=False))
    assert [c.id for c in check.clips] == ["short$_$1"] and all(m.error is not None for m in check.clips[0].modes)
    # the processor's shortest audio does not depend on the mode: one error for the clip, not seven
    assert [(e.id, e.step, e.field) for e in check.errors] == [("short$_$1", "every mode", "audio")]
    assert "audio too short" in check.errors[0].reason and check.errors[0].source == str(short)
    row = next(line for line in render_report(check, "x").splitlines() if line.startswith("| `short$_$1` |"))
    assert "| error |" in row


def test_a_checkpoint_brings_its_readout_and_media_settings(manifest: Path, tiny_thinker_dir: Path,
                                                             tmp_path: Path) -> None:
    import torch

    from omni_msa.assemble import assemble
    from omni_msa.checkpoint import save_checkpoint
    from omni_msa.score import load_scorer

    from conftest import tiny_run_config

    cfg = tiny_run_config(tiny_thinker_dir, tmp_path / "run", use_audio_in_video=True)
    assembled = assemble(cfg)
    with torch.no_grad():
        list(assembled.readout.head.parameters())[-1].fill_(1.5)  # the output bias: not what a fresh assembly has
    save_checkpoint(tmp_path / "run" / "ckpt", assembled.readout, cfg.to_dict(), None)
    check = check_media(manifest, checkpoint=tmp_path / "run" / "ckpt")
    assert check.trained and check.settings == cfg.media and check.readout == "discriminative"
    assert str(tmp_path / "run" / "ckpt") in check.model
    assert not (tmp_path / "run" / "media_cache").exists()  # the check's cache is its own, and removed
    scorer, _ = load_scorer(tmp_path / "run" / "ckpt")
    sample = next(s for s in read_manifest(manifest, dataset="mosi", skip_invalid=True).samples if s.id == AAC_ID)
    item = scorer.builder.prepare(sample, MissingnessProtocol().draw(sample.id))
    (expected,) = predict_samples(scorer, [item], 1, "cpu").complete()
    assert clip(check, AAC_ID).complete.pred == pytest.approx(expected.pred, abs=1e-6)
