"""Batch scoring: bad samples go to the errors file while the rest are scored, an interrupted
job resumes without duplicates, and two accelerate processes give the single-process result."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from omni_msa.assemble import assemble
from omni_msa.checkpoint import save_checkpoint
from omni_msa.data.manifest import read_manifest, write_manifest
from omni_msa.data.media import write_mp4
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.score import Scorer, load_scorer, score_file
from omni_msa.scoring_io import read_predictions

from conftest import tiny_run_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tiny_thinker_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("score_ckpt")
    cfg = tiny_run_config(tiny_thinker_dir, out, use_audio_in_video=True)
    assembled = assemble(cfg)
    save_checkpoint(out / "ckpt", assembled.readout, cfg.to_dict(), None)
    return out / "ckpt"


@pytest.fixture()
def manifest_with_bad_samples(synthetic_samples, tmp_path):
    """The synthetic samples plus four bad ones, each broken in its own way."""
    good = [s for s in synthetic_samples[:10]]
    media_dir = tmp_path / "bad_media"
    media_dir.mkdir()
    corrupt = media_dir / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    silent = media_dir / "silent.mp4"
    write_mp4(silent, np.zeros((6, 32, 32, 3), dtype=np.uint8), fps=10)
    template = good[0]
    bad = [
        replace(template, id="bad$_$missing", video=media_dir / "nowhere.mp4"),
        replace(template, id="bad$_$corrupt", video=corrupt),
        replace(template, id="bad$_$no_audio_track", video=silent),
        replace(template, id="bad$_$empty_text", text=" "),
    ]
    path = tmp_path / "manifest.jsonl"
    write_manifest(good + bad, path)
    return path, [s.id for s in good], [s.id for s in bad]


def _score(checkpoint, manifest, out, **kwargs):
    assembled, cfg = load_scorer(checkpoint)
    loaded = read_manifest(manifest, dataset="mosi", skip_invalid=True)
    return score_file(assembled, cfg, loaded.samples, out, protocol=MissingnessProtocol(), invalid=loaded.skipped,
                      **kwargs)


def test_bad_samples_are_recorded_and_the_rest_scored(checkpoint, manifest_with_bad_samples, tmp_path):
    manifest, good_ids, bad_ids = manifest_with_bad_samples
    out = tmp_path / "preds.jsonl"
    summary = _score(checkpoint, manifest, out, batch_size=4)
    rows = read_predictions(out)
    assert sorted(r["id"] for r in rows) == sorted(good_ids)
    assert summary["n"] == len(good_ids) and set(summary["metrics"]) >= {"mae", "corr", "acc7"}
    errors = {e["id"]: e for e in read_predictions(tmp_path / "preds.errors.jsonl")}
    assert set(errors) == set(bad_ids)
    assert "not found" in errors["bad$_$missing"]["reason"] or "missing" in errors["bad$_$missing"]["reason"]
    assert errors["bad$_$no_audio_track"]["field"] == "video"
    assert "audio" in errors["bad$_$no_audio_track"]["reason"]
    assert errors["bad$_$empty_text"]["field"] == "text"
    assert errors["bad$_$corrupt"]["field"] == "video"
    for row in rows:
        assert row["readout"] == "discriminative" and row["status"] == "ok" and row["latency_ms"] > 0
        assert row["present"] == ["text", "audio", "vision"]


def test_interrupted_scoring_resumes_without_duplicates(checkpoint, manifest_with_bad_samples, tmp_path):
    manifest, good_ids, _ = manifest_with_bad_samples
    reference = tmp_path / "reference.jsonl"
    _score(checkpoint, manifest, reference, batch_size=4)
    expected = {r["id"]: r["pred"] for r in read_predictions(reference)}

    out = tmp_path / "resumed.jsonl"
    partial = read_predictions(reference)[:4]
    out.write_text("".join(json.dumps(r) + "\n" for r in partial) + '{"id": "truncated by a kil')
    _score(checkpoint, manifest, out, batch_size=4)
    rows = read_predictions(out)
    assert sorted(r["id"] for r in rows) == sorted(good_ids)
    for row in rows:
        assert row["pred"] == pytest.approx(expected[row["id"]], abs=1e-6)


def test_two_accelerate_processes_score_every_id_once(checkpoint, manifest_with_bad_samples, tmp_path):
    manifest, good_ids, bad_ids = manifest_with_bad_samples
    single = tmp_path / "single.jsonl"
    _score(checkpoint, manifest, single, batch_size=4)
    expected = {r["id"]: r["pred"] for r in read_predictions(single)}
    out = tmp_path / "two.jsonl"
    # torchrun: `accelerate launch --cpu --num_processes 2` starts a single process (accelerate 1.16)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(ROOT / "scripts/score.py"), "--checkpoint", str(checkpoint), "--manifest", str(manifest),
               "--out", str(out), "--batch-size", "4"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = read_predictions(out)
    assert sorted(r["id"] for r in rows) == sorted(good_ids)
    for row in rows:
        assert row["pred"] == pytest.approx(expected[row["id"]], abs=1e-5)
    assert {e["id"] for e in read_predictions(tmp_path / "two.errors.jsonl")} == set(bad_ids)
    assert not list(tmp_path.glob("two.rank*"))
    summary = json.loads((tmp_path / "two.metrics.json").read_text())
    assert summary["n"] == len(good_ids)
    assert summary["merge"]["parts"] == [0, 1], "both processes must have scored a shard"



def test_single_sample_scoring_from_python(checkpoint, synthetic_samples):
    scorer = Scorer.from_checkpoint(checkpoint)
    sample = synthetic_samples[0]
    with_media = scorer.score(sample.text, audio=sample.audio, video=sample.video)
    text_only = scorer.score(sample.text)
    assert with_media["present"] == ["text", "audio", "vision"] and text_only["present"] == ["text"]
    assert with_media["pred"] != text_only["pred"]
    assert scorer.score("a different sentence entirely")["pred"] != text_only["pred"]


def test_zero_shot_generative_scoring_counts_parse_statuses(tiny_thinker_dir, synthetic_samples, tmp_path):
    from omni_msa.score import zero_shot_scorer

    cfg = tiny_run_config(tiny_thinker_dir, tmp_path, readout="generative_zero_shot")
    assembled = zero_shot_scorer(cfg)
    assert assembled.trainable["trainable"] == 0, "zero-shot scoring trains nothing and adds no LoRA"
    summary = score_file(assembled, cfg, synthetic_samples[:6], tmp_path / "zs.jsonl",
                         protocol=MissingnessProtocol(keep={"text"}), batch_size=3)
    rows = read_predictions(tmp_path / "zs.jsonl")
    assert len(rows) == 6 and {r["readout"] for r in rows} == {"generative_zero_shot"}
    assert all("generated" in r for r in rows)
    counts = summary["status"]["counts"]
    assert sum(counts.values()) == 6
    for row in rows:
        assert row["status"] in ("ok", "unparsable", "out_of_range")
        if row["status"] == "unparsable":
            assert row["pred"] == 0.0
