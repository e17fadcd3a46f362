"""Scoring survives bad data and running out of memory, and says what happened: raw media are
checked before batching, a batch that fails on its data is retried sample by sample, an
out-of-memory batch is retried once at half size and otherwise stops the run, and the result
JSON never holds NaN."""

import json
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch

from omni_msa.assemble import assemble
from omni_msa.checkpoint import save_checkpoint
from omni_msa.data.manifest import read_manifest, write_manifest
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.record import DataError
from omni_msa.inputs import min_audio_samples
from omni_msa.prediction import PredictionOutOfMemory, predict_samples
from omni_msa.score import load_scorer, score_file
from omni_msa.scoring_io import errors_path_for, read_predictions
from omni_msa.tiny import TOKEN_ID, build_offline_processor

from conftest import tiny_run_config

PROTOCOL = MissingnessProtocol()


def strict_json(text):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def checkpoint(tiny_thinker_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("robust_ckpt")
    cfg = tiny_run_config(tiny_thinker_dir, out)
    save_checkpoint(out / "ckpt", assemble(cfg).readout, cfg.to_dict(), None)
    return out / "ckpt"


@pytest.fixture(scope="module")
def scorer(checkpoint):
    return load_scorer(checkpoint)


@pytest.fixture()
def four_clips(synthetic_samples, tmp_path):
    """The issue's manifest: a good clip, a silent one, a NaN-filled wav and a 100-byte wav."""
    good = synthetic_samples[0]
    wave, rate = sf.read(str(good.audio), dtype="float32")
    silent, nan, short = tmp_path / "silent.wav", tmp_path / "nan.wav", tmp_path / "short.wav"
    sf.write(str(silent), np.zeros_like(wave), rate, subtype="PCM_16")
    sf.write(str(nan), np.full_like(wave, np.nan), rate, subtype="FLOAT")
    sf.write(str(short), wave[:28], rate, subtype="PCM_16")
    assert short.stat().st_size == 100
    samples = [good, replace(good, id="silent", audio=silent), replace(good, id="nan", audio=nan),
               replace(good, id="short", audio=short)]
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(samples, manifest)
    return manifest, {"nan": nan, "short": short}


def test_good_and_silent_clips_score_and_the_bad_two_are_recorded_with_their_field(scorer, four_clips, tmp_path):
    manifest, bad = four_clips
    assembled, cfg = scorer
    loaded = read_manifest(manifest, dataset="mosi", skip_invalid=True)
    out = tmp_path / "preds.jsonl"
    summary = score_file(assembled, cfg, loaded.samples, out, protocol=PROTOCOL, batch_size=4,
                         invalid=loaded.skipped)
    good_id = loaded.samples[0].id
    rows = {row["id"]: row for row in read_predictions(out)}
    assert sorted(rows) == sorted([good_id, "silent"]) and summary["n"] == 2
    assert all(row["status"] == "ok" and np.isfinite(row["pred"]) for row in rows.values())
    errors = {row["id"]: row for row in read_predictions(errors_path_for(out))}
    assert sorted(errors) == ["nan", "short"]
    for sample_id, error in errors.items():
        assert error["field"] == "audio" and error["source"] == str(bad[sample_id])
    assert "not finite" in errors["nan"]["reason"]
    assert errors["short"]["reason"] == "audio too short: 28 samples, the processor needs at least 321"
    strict_json((tmp_path / "preds.metrics.json").read_text())


def test_minimum_audio_length_is_what_the_processor_needs(scorer, synthetic_samples, tmp_path):
    processor = build_offline_processor()
    shortest = min_audio_samples(processor)
    assert shortest == 321  # 3 mel frames of 160 samples, started
    prompt = "<|im_start|>user\n<|audio_bos|><|AUDIO|><|audio_eos|>hi<|im_end|>\n"
    for length, tokens in ((shortest - 1, 0), (shortest, 1)):
        encoded = processor(text=[prompt], audio=[np.zeros(length, np.float32)], return_tensors="pt")
        assert int((encoded["input_ids"] == TOKEN_ID["<|AUDIO|>"]).sum()) == tokens

    assembled, _ = scorer
    wave = sf.read(str(synthetic_samples[1].audio), dtype="float32")[0]
    clips = {}
    for length in (shortest - 1, shortest):
        clips[length] = tmp_path / f"clip{length}.wav"
        sf.write(str(clips[length]), wave[:length], 16000, subtype="PCM_16")
    sample = replace(synthetic_samples[1], audio=clips[shortest - 1])
    with pytest.raises(DataError, match="too short") as error:
        assembled.builder.prepare(sample, PROTOCOL.draw(sample.id))
    assert error.value.sample_id == sample.id and error.value.field == "audio"
    assert error.value.source == str(clips[shortest - 1])
    sample = replace(sample, audio=clips[shortest])
    run = predict_samples(assembled, [assembled.builder.prepare(sample, PROTOCOL.draw(sample.id))], 1, "cpu")
    assert not run.errors and np.isfinite(run.results[0].pred)


def _patched_predict(readout, monkeypatch, fail):
    """Wrap the readout's predict: `fail(batch_ids, call_number)` returns an exception to raise, or None."""
    original = readout.predict
    calls = []

    def predict(batch):
        calls.append(list(batch.ids))
        error = fail(batch.ids, len(calls))
        if error is not None:
            raise error
        return original(batch)

    monkeypatch.setattr(readout, "predict", predict)
    return calls


@pytest.mark.parametrize("oom", [torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                 RuntimeError("CUDA error: out of memory")])
def test_an_out_of_memory_batch_is_retried_at_half_size(scorer, synthetic_samples, tmp_path, monkeypatch, oom):
    assembled, cfg = scorer
    samples = synthetic_samples[:6]
    reference = tmp_path / "reference.jsonl"
    score_file(assembled, cfg, samples, reference, protocol=PROTOCOL, batch_size=4)
    expected = {row["id"]: row["pred"] for row in read_predictions(reference)}

    failed = []

    def once(ids, call):  # the first batch of more than one sample runs out of memory, nothing after it
        if failed or len(ids) < 2:
            return None
        failed.append(ids)
        return oom

    calls = _patched_predict(assembled.readout, monkeypatch, once)
    out = tmp_path / "preds.jsonl"
    summary = score_file(assembled, cfg, samples, out, protocol=PROTOCOL, batch_size=4)
    rows = read_predictions(out)
    assert sorted(row["id"] for row in rows) == sorted(s.id for s in samples) and summary["n"] == 6
    assert not errors_path_for(out).exists()
    assert [len(ids) for ids in calls[:3]] == [4, 2, 2] and calls[1] + calls[2] == failed[0]
    assert sorted(row["batch_size"] for row in rows) == [2, 2, 2, 2, 2, 2]  # the two halves, then the last 2
    for row in rows:
        assert row["pred"] == pytest.approx(expected[row["id"]], abs=1e-5)


@pytest.mark.parametrize("batch_size", [4, 1])
def test_a_persistent_out_of_memory_error_stops_the_run(scorer, synthetic_samples, tmp_path, monkeypatch,
                                                        batch_size):
    assembled, cfg = scorer
    _patched_predict(assembled.readout, monkeypatch, lambda ids, n: torch.cuda.OutOfMemoryError("CUDA out of memory"))
    out = tmp_path / "preds.jsonl"
    expected = "again at half the batch size" if batch_size > 1 else "on a single sample"
    with pytest.raises(PredictionOutOfMemory, match=expected):
        score_file(assembled, cfg, synthetic_samples[:6], out, protocol=PROTOCOL, batch_size=batch_size)
    assert read_predictions(out) == [] and not list(tmp_path.glob("*errors*"))


@pytest.mark.parametrize("stage", ["collate", "predict"])
def test_a_batch_failing_on_one_sample_is_retried_sample_by_sample(scorer, synthetic_samples, tmp_path,
                                                                   monkeypatch, stage):
    assembled, cfg = scorer
    samples = synthetic_samples[:4]
    bad = samples[2].id
    if stage == "collate":
        original = assembled.builder.collate

        def collate(items, **kwargs):
            if any(item.id == bad for item in items):
                raise ValueError("the processor cannot take this input")
            return original(items, **kwargs)

        monkeypatch.setattr(assembled.builder, "collate", collate)
    else:
        _patched_predict(assembled.readout, monkeypatch, lambda ids, n: DataError(
            "video frames of mixed sizes", sample_id=bad, field="video") if bad in ids else None)
    out = tmp_path / "preds.jsonl"
    score_file(assembled, cfg, samples, out, protocol=PROTOCOL, batch_size=4)
    rows = read_predictions(out)
    assert sorted(row["id"] for row in rows) == sorted(s.id for s in samples if s.id != bad)
    assert {row["batch_size"] for row in rows} == {1}
    errors = read_predictions(errors_path_for(out))
    if stage == "collate":
        assert errors == [{"id": bad, "reason": "collate failed: ValueError: the processor cannot take this input"}]
    else:
        assert errors == [{"id": bad, "reason": "video frames of mixed sizes", "field": "video"}]


def test_other_errors_propagate_and_predictions_come_in_input_order(scorer, synthetic_samples, monkeypatch):
    assembled, _ = scorer
    prepared = [assembled.builder.prepare(s, PROTOCOL.draw(s.id)) for s in synthetic_samples[:5]][::-1]
    run = predict_samples(assembled, prepared, 2, "cpu")
    assert [result.id for result in run.complete()] == [item.id for item in prepared]
    assert assembled.readout.training is False

    nan_id = prepared[1].id
    original = assembled.readout.predict

    def predict(batch):
        out = original(batch)
        for i, sample_id in enumerate(batch.ids):
            if sample_id == nan_id:
                out.values[i] = float("nan")
        return out

    monkeypatch.setattr(assembled.readout, "predict", predict)
    run = predict_samples(assembled, prepared, 2, "cpu")
    assert [r is None for r in run.results] == [False, True, False, False, False]
    assert [(e.index, e.id) for e in run.errors] == [(1, nan_id)] and "non-finite" in run.errors[0].reason
    with pytest.raises(DataError, match="1 of 5 samples failed") as error:
        run.complete()
    assert error.value.sample_id == nan_id

    _patched_predict(assembled.readout, monkeypatch, lambda ids, n: KeyError("a bug, not bad data"))
    with pytest.raises(KeyError):
        predict_samples(assembled, prepared, 2, "cpu")


def test_metrics_json_holds_no_nan_for_constant_predictions(scorer, synthetic_samples, tmp_path, monkeypatch):
    assembled, cfg = scorer
    original = assembled.readout.predict

    def constant(batch):
        out = original(batch)
        out.values[:] = 1.5
        return out

    monkeypatch.setattr(assembled.readout, "predict", constant)
    out = tmp_path / "preds.jsonl"
    summary = score_file(assembled, cfg, synthetic_samples[:6], out, protocol=MissingnessProtocol(keep={"text"}),
                         batch_size=3)
    written = strict_json((tmp_path / "preds.metrics.json").read_text())
    assert written["metrics"]["corr"] is None and written["metrics"]["corr_reason"] == "constant predictions"
    assert written["metrics"]["mae"] == pytest.approx(np.mean([abs(1.5 - s.label) for s in synthetic_samples[:6]]))
    assert written == strict_json(json.dumps(summary))


def test_undefined_metrics_are_null_with_their_reason(tmp_path):
    from omni_msa.score import summarise_predictions
    from omni_msa.scoring_io import PredictionWriter

    out = tmp_path / "preds.jsonl"
    with PredictionWriter(out) as writer:
        for i, pred in enumerate([0.5, -1.0, 2.0]):
            writer.write({"id": f"s{i}", "split": "test", "label": 0.0, "pred": pred, "readout": "discriminative",
                          "status": "ok", "latency_ms": 1.0, "present": ["text"], "intra": {}})
    metrics = strict_json(json.dumps(summarise_predictions(out, "mosi")))["metrics"]
    assert metrics["corr"] is None and metrics["corr_reason"] == "constant labels"
    assert metrics["acc2_non0"] is None and metrics["acc2_non0_reason"] == "every label is 0"
    assert metrics["f1_non0_reason"] == "every label is 0" and metrics["mae"] == pytest.approx(3.5 / 3)
    assert "mae_reason" not in metrics


def test_a_failure_every_sample_shares_is_raised_not_recorded(scorer, synthetic_samples, tmp_path, monkeypatch):
    """A readout that fails on everything (a bug or a device error) must not end as an errors file
    full of healthy samples and a scoring run that looks finished."""
    assembled, cfg = scorer
    _patched_predict(assembled.readout, monkeypatch, lambda ids, n: RuntimeError("Expected all tensors on one device"))
    out = tmp_path / "preds.jsonl"
    with pytest.raises(RuntimeError, match="every sample of a batch of 4 fails on its own at predict"):
        score_file(assembled, cfg, synthetic_samples[:4], out, protocol=PROTOCOL, batch_size=4)
    assert not errors_path_for(out).is_file()
