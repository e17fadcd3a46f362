"""Batch scoring with a trained classic checkpoint: a second features file scored in one call with
`predict`'s predictions, the omni scorer's files and resume rules, bad samples in the errors file,
features of another set refused."""

from dataclasses import replace

import numpy as np
import pytest

from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.mmsa import write_mmsa_pickle
from omni_msa.data.record import DataError, LoadResult
from omni_msa.data.synthetic import make_synthetic
from omni_msa.files import read_json, read_jsonl
from omni_msa.metrics import regression_metrics
from omni_msa.scoring_io import REQUIRED_KEYS, errors_path_for, read_predictions

from classic_msa import scoring
from classic_msa.evaluation import predict
from classic_msa.model import build_model
from classic_msa.scoring import load_classic_scorer, load_feature_samples, score_features, score_samples
from classic_msa.trainer import TrainConfig, Trainer, load_checkpoint

from .conftest import TINY_MDF

PROTOCOL = MissingnessProtocol(inter_rate=0.5, intra_rate=0.3, seed=3)


@pytest.fixture(scope="module")
def run_dir(synthetic, tmp_path_factory):
    """A tiny MDF trained 1 epoch on the synthetic set, laid out as `train-classic` writes it."""
    run = tmp_path_factory.mktemp("run")
    config = TrainConfig.from_dict({"lr": 5e-3, "batch_size": 64, "seed": 0, "stages": [{"epochs": 1}]})
    Trainer(build_model("mdf", TINY_MDF), config, dataset="mosi", out_dir=run / "seed0").fit(
        synthetic["train"], synthetic["valid"])
    return run


@pytest.fixture(scope="module")
def new_features(tmp_path_factory):
    """Other synthetic samples (another generator seed) in an MMSA pickle: (path, samples)."""
    where = tmp_path_factory.mktemp("new")
    samples = make_synthetic(60, where / "gen", seed=1, with_media=False)
    path = where / "unaligned_50.pkl"
    write_mmsa_pickle(samples, path, dataset="mosi")
    return path, load_feature_samples(path, "mosi").samples


@pytest.fixture(scope="module")
def scorer(run_dir):
    return load_classic_scorer(run_dir / "seed0", device="cpu")


def _preds(path):
    return {row["id"]: row["pred"] for row in read_predictions(path)}


def test_one_call_scores_a_new_file_with_the_predictions_of_evaluation(run_dir, new_features, tmp_path):
    path, samples = new_features
    out = tmp_path / "preds.jsonl"
    summary = score_features(run_dir / "seed0", path, out, protocol=PROTOCOL, batch_size=16, device="cpu")
    rows = read_predictions(out)
    assert sorted(r["id"] for r in rows) == sorted(s.id for s in samples)
    assert all(set(REQUIRED_KEYS) <= set(row) for row in rows)
    ids, preds, labels, _ = predict(load_checkpoint(run_dir / "seed0"), samples, protocol=PROTOCOL)
    by_id = {row["id"]: row for row in rows}
    assert [by_id[i]["pred"] for i in ids] == pytest.approx(preds.tolist(), abs=1e-6)
    assert [by_id[i]["label"] for i in ids] == pytest.approx(labels.tolist())
    assert {row["readout"] for row in rows} == {"mdf"} and {row["status"] for row in rows} == {"ok"}
    assert [by_id[s.id]["present"] for s in samples] == [list(PROTOCOL.draw(s.id).kept) for s in samples]
    assert any(len(row["present"]) < 3 for row in rows), "inter 0.5 drops modalities"
    assert not errors_path_for(out).exists()
    expected = regression_metrics(np.array([by_id[i]["pred"] for i in ids]), labels, "mosi")
    assert summary["n"] == len(samples) and summary["errors"] == 0
    assert summary["metrics"]["mae"] == pytest.approx(expected["mae"])
    assert summary["protocol"] == PROTOCOL.to_dict() and summary["dataset"] == "mosi"
    assert read_json(tmp_path / "preds.metrics.json") == summary
    # complete data differs from the masked run: the protocol reached the model
    complete = score_features(run_dir / "seed0", path, tmp_path / "complete.jsonl", device="cpu")
    assert complete["metrics"]["mae"] != pytest.approx(summary["metrics"]["mae"])
    valid = score_features(run_dir, path, tmp_path / "valid.jsonl", split="valid", device="cpu")
    assert valid["n"] == sum(s.split == "valid" for s in samples) > 0
    assert {row["split"] for row in read_predictions(tmp_path / "valid.jsonl")} == {"valid"}


def test_an_interrupted_run_resumes_to_one_row_per_id(scorer, new_features, tmp_path):
    path, samples = new_features
    full = tmp_path / "full.jsonl"
    score_samples(scorer, LoadResult(samples), full, protocol=PROTOCOL, batch_size=8, source=path)
    expected = _preds(full)

    out = tmp_path / "preds.jsonl"
    score_samples(scorer, LoadResult(samples[:20]), out, protocol=PROTOCOL, batch_size=8, source=path)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:13]) + lines[13][:25])          # killed mid-write of row 14
    first = {row["id"]: row["pred"] for row in read_predictions(out)}
    assert len(first) == 13
    summary = score_samples(scorer, LoadResult(samples), out, protocol=PROTOCOL, batch_size=8, source=path)
    rows = read_predictions(out)                                    # duplicate ids would raise here
    assert len(rows) == len(samples) == summary["n"]
    assert _preds(out) == pytest.approx(expected, abs=1e-6)
    assert {i: _preds(out)[i] for i in first} == first, "rows already written are kept"
    again = score_samples(scorer, LoadResult(samples), out, protocol=PROTOCOL, source=path)
    assert again["n"] == len(samples) and len(out.read_text().splitlines()) == len(samples)


def test_resuming_with_another_protocol_or_checkpoint_is_refused(scorer, new_features, tmp_path):
    path, samples = new_features
    out = tmp_path / "preds.jsonl"
    score_samples(scorer, LoadResult(samples[:5]), out, protocol=PROTOCOL, source=path)
    with pytest.raises(DataError, match="field 'protocol'.*already scored with protocol"):
        score_samples(scorer, LoadResult(samples), out, protocol=PROTOCOL.with_seed(4), source=path)
    with pytest.raises(DataError, match="field 'features'"):
        score_samples(scorer, LoadResult(samples), out, protocol=PROTOCOL, source=tmp_path / "other.pkl")
    assert len(read_predictions(out)) == 5


def test_bad_samples_go_to_the_errors_file_and_the_rest_are_scored(scorer, new_features, tmp_path):
    path, samples = new_features
    nan_audio = np.array(samples[3].features["audio"], copy=True)
    nan_audio[0, 1] = np.nan
    narrow = np.zeros((10, 7), dtype=np.float32)
    broken = list(samples)
    broken[3] = replace(samples[3], features={**samples[3].features, "audio": nan_audio})
    broken[8] = replace(samples[8], features={**samples[8].features, "vision": narrow})
    skipped = DataError("label 9 outside [-3, 3]", sample_id="gone", field="label", source=path)
    out = tmp_path / "preds.jsonl"
    summary = score_samples(scorer, LoadResult(broken, skipped=[skipped]), out, source=path)
    errors = {row["id"]: row for row in read_jsonl(errors_path_for(out))}
    assert set(errors) == {samples[3].id, samples[8].id, "gone"}
    assert errors[samples[3].id]["field"] == "audio" and "1 non-finite" in errors[samples[3].id]["reason"]
    assert errors[samples[8].id]["field"] == "vision" and "(10, 7)" in errors[samples[8].id]["reason"]
    assert errors["gone"]["field"] == "label" and errors["gone"]["source"] == str(path)
    scored = set(_preds(out))
    assert scored == {s.id for s in samples} - {samples[3].id, samples[8].id}
    assert summary["n"] == len(samples) - 2 and summary["errors"] == 3
    # fixed data: the failed ids are retried on the next run, and resolved errors leave the file
    summary = score_samples(scorer, LoadResult(samples), out, source=path)
    assert summary["n"] == len(samples) and set(_preds(out)) == {s.id for s in samples}
    assert [row["id"] for row in read_jsonl(errors_path_for(out))] == ["gone"] and summary["errors"] == 1


def test_features_of_another_set_are_refused_naming_the_field(run_dir, new_features, tmp_path, monkeypatch):
    path, samples = new_features
    other_set = [replace(s, features={**s.features, "audio": np.zeros((4, 73), dtype=np.float32)},
                         lengths={**s.lengths, "audio": 4}) for s in samples]

    monkeypatch.setattr(scoring, "read_feature_file", lambda *args, **kwargs: LoadResult(other_set))
    out = tmp_path / "preds.jsonl"
    with pytest.raises(DataError, match=r"field 'audio'.*no sample has audio features of dimension 5.*found: 73"):
        score_features(run_dir / "seed0", tmp_path / "features.npz", out, device="cpu")
    monkeypatch.undo()
    assert not out.exists() and not errors_path_for(out).exists()
    mosei_shaped = tmp_path / "mosei"                                  # an MMSA pickle of MOSEI's feature set
    make_synthetic(12, mosei_shaped, seed=2, dataset_shape="mosei", with_media=False)
    with pytest.raises(DataError, match=r"field 'audio'.*expected \(\d+, 375, 5\)"):
        score_features(run_dir / "seed0", mosei_shaped / "unaligned.pkl", out, layout="unaligned", device="cpu")
    with pytest.raises(DataError, match="unsupported feature file suffix '.csv'"):
        score_features(run_dir / "seed0", tmp_path / "features.csv", out, device="cpu")
    with pytest.raises(DataError, match="cannot tell the feature set of .* from the file name"):
        score_features(run_dir / "seed0", mosei_shaped / "unaligned.pkl", out, device="cpu")
    assert not out.exists()


def test_a_run_with_several_seeds_asks_for_one(run_dir, tmp_path):
    two = tmp_path / "two"
    for seed in ("seed0", "seed1"):
        (two / seed).mkdir(parents=True)
        for name in ("config.json", "model.safetensors"):
            (two / seed / name).write_bytes((run_dir / "seed0" / name).read_bytes())
    with pytest.raises(DataError, match="field 'checkpoint'.*2 checkpoints \\(seed0, seed1\\)"):
        load_classic_scorer(two, device="cpu")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_classic_scorer(tmp_path / "nowhere", device="cpu")


def test_a_features_npz_with_its_manifest_is_scored_on_the_split_asked_for(run_dir, new_features, tmp_path):
    """A features.npz with only train and valid (as mosi_utterance) scores its valid rows with the
    predictions of evaluation on the samples it holds (a features.npz carries no BERT token ids, so
    the text rows are read as given)."""
    from omni_msa.data.npz_features import read_npz_features, write_npz_features

    _, samples = new_features
    kept = [replace(s, split={"test": "valid", "valid": "train"}.get(s.split, s.split)) for s in samples]
    npz = tmp_path / "npz" / "features.npz"
    write_npz_features(kept, npz, feature_set="synthetic_mosi")
    summary = score_features(run_dir / "seed0", npz, tmp_path / "npz.jsonl", split="valid", device="cpu")
    valid = read_npz_features(npz, dataset="mosi", splits=("valid",)).samples
    ids, preds, _, _ = predict(load_checkpoint(run_dir / "seed0"), valid)
    assert summary["n"] == len(valid) == sum(s.split == "valid" for s in kept)
    assert [_preds(tmp_path / "npz.jsonl")[i] for i in ids] == pytest.approx(preds.tolist(), abs=1e-6)
