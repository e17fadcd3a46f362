import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from omni_msa.data.record import MODALITIES
from omni_msa.report import ROW_FIELDS
from omni_msa.yaml_config import apply_overrides

from classic_msa.config import load_classic_config, run_config_from_dict
from classic_msa.evaluation import evaluate
from classic_msa.experiment import run_experiment
from classic_msa.trainer import load_checkpoint

from .conftest import TINY_MDF

REPO = Path(__file__).resolve().parents[2]


def test_overrides_are_dotted_and_parsed_as_yaml():
    config = apply_overrides({"train": {"lr": 1e-3}}, ["train.lr=5e-4", "seeds=[0, 1]", "model.name=mdf",
                                                      "train.train_protocol={intra_rate: uniform}"])
    assert config == {"train": {"lr": 5e-4, "train_protocol": {"intra_rate": "uniform"}}, "seeds": [0, 1],
                      "model": {"name": "mdf"}}
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({}, ["train.lr"])


@pytest.mark.parametrize("name", ["mdf_synthetic.yaml", "mdf_mosi.yaml"])
def test_shipped_configs_parse(name):
    overrides = ["data.skip_invalid=true"] if "mosi" in name else []
    config = load_classic_config(REPO / "scripts" / "configs" / name, overrides)
    assert config.model_name == "mdf" and config.protocols(0)
    assert config.train_config(3).seed == 3


def test_config_errors_name_the_key():
    base = {"output_dir": "x", "model": {"name": "mdf"}, "data": {"synthetic_n": 10}}
    with pytest.raises(ValueError, match="<dict>: unknown key 'trian'"):
        run_config_from_dict({**base, "trian": {}})
    with pytest.raises(ValueError, match="<dict>: data: .*exactly one"):
        run_config_from_dict({**base, "data": {"synthetic_n": 10, "path": "a.pkl"}})
    with pytest.raises(ValueError, match="<dict>: unknown key 'train.learning_rate'"):
        run_config_from_dict({**base, "train": {"learning_rate": 1}})
    with pytest.raises(ValueError, match="<dict>: unknown key 'model.widht'"):
        run_config_from_dict({**base, "model": {"name": "mdf", "widht": 3}})


def test_script_trains_evaluates_writes_rows_and_resumes(synthetic, synthetic_dir, tmp_path, monkeypatch, capsys):
    config = {
        "output_dir": str(tmp_path / "run"),
        "model": {"name": "mdf", **TINY_MDF},
        "data": {"dataset": "mosi", "path": str(synthetic_dir / "unaligned.pkl"), "layout": "unaligned"},
        "train": {"lr": 5e-3, "batch_size": 32, "stages": [{"epochs": 2}],
                  "train_protocol": {"inter_rate": 0.2, "intra_rate": "uniform"}},
        "eval_protocols": [{}, {"grid": "modes"}, {"inter_rate": 0.5, "intra_rate": 0.5, "seed": 11}],
    }
    config_path = tmp_path / "mdf_test.yaml"
    config_path.write_text(yaml.safe_dump(config))
    monkeypatch.setattr(sys, "argv", ["train_classic.py", "--config", str(config_path), "--quiet", "seeds=[7]"])
    runpy.run_path(str(REPO / "scripts" / "train_classic.py"), run_name="__main__")
    assert "9 rows" in capsys.readouterr().out

    results = tmp_path / "run" / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(rows) == 9 and all(tuple(row) == ROW_FIELDS for row in rows), "the grid's row schema"
    assert {row["seed"] for row in rows} == {7}
    assert rows[0]["train_protocol"] == {"inter_rate": 0.2, "intra_rate": "uniform", "keep": None, "seed": 7}
    assert rows[0]["eval_protocol"] == {"inter_rate": 0.0, "intra_rate": 0.0, "keep": None, "seed": 7}
    assert rows[-1]["eval_protocol"]["seed"] == 11
    assert rows[1]["eval_protocol"]["keep"] == ["text"]
    assert rows[0]["n_samples"] == len(synthetic["test"]) and rows[0]["n_params"] > 0
    assert rows[0]["family"] == "classic" and rows[0]["device"] == "cpu" and rows[0]["n_errors"] == 0
    assert len({r["sample_set"] for r in rows}) == 1 and rows[0]["latency_ms"]["p95"] >= rows[0]["latency_ms"]["p50"]
    assert rows[0]["data_fingerprint"] == rows[0]["settings"]["data"]["digest"]
    assert rows[0]["settings"]["data"]["files"] == {"features": _sha256(synthetic_dir / "unaligned.pkl")}

    seed_dir = tmp_path / "run" / "seed7"
    metrics = json.loads((seed_dir / "metrics.json").read_text())
    assert metrics["valid"]["mae"] > 0 and metrics["evaluate_on"] == "test" and len(metrics["evaluation"]) == 9
    assert {row["split"] for row in rows} == {"test"}
    model = load_checkpoint(seed_dir)
    again = evaluate(model, synthetic["test"], dataset="mosi").metrics
    assert again["mae"] == pytest.approx(rows[0]["metrics"]["mae"], rel=1e-6)
    assert model.config.audio_dim == synthetic["train"][0].features["audio"].shape[1]

    resumed = run_experiment(load_classic_config(config_path, ["seeds=[7]"]), resume=True)
    assert resumed == rows and len(results.read_text().splitlines()) == 9


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_input_dims_come_from_the_data(synthetic):
    from classic_msa.experiment import input_dims

    dims = input_dims("mdf", {"dim": 8}, synthetic["train"])
    assert {m: dims[f"{m}_dim"] for m in MODALITIES} == {"text": 768, "audio": 5, "vision": 20}
    with pytest.raises(ValueError, match="audio_dim=7"):
        input_dims("mdf", {"audio_dim": 7}, synthetic["train"])
    assert np.isfinite(dims["dim"])


def test_trained_on_a_features_npz_without_test_and_evaluated_on_valid(tmp_path):
    """Utterance-level features (one step per modality) with train and valid only."""
    from omni_msa.data.npz_features import write_npz_features
    from omni_msa.data.record import Sample

    rng = np.random.default_rng(0)
    samples = []
    for i in range(60):
        label = round(float(rng.uniform(-3, 3)), 1)
        features = {m: (label * np.linspace(-1, 1, d) + rng.normal(0, 0.5, d)).astype(np.float32)[None, :]
                    for m, d in (("text", 100), ("audio", 73), ("vision", 100))}
        samples.append(Sample(id=f"v{i // 4}$_${i % 4}", split="train" if i < 44 else "valid", label=label,
                              text=f"clip {i}", features=features))
    write_npz_features(samples, tmp_path / "data" / "features.npz", feature_set="mosi_utterance")
    raw = {"output_dir": str(tmp_path / "run"), "model": {"name": "mdf", **TINY_MDF}, "seeds": [1],
           "data": {"dataset": "mosi", "path": str(tmp_path / "data" / "features.npz"), "evaluate_on": "valid"},
           "train": {"lr": 5e-3, "batch_size": 16, "stages": [{"epochs": 2}]},
           "eval_protocols": [{}, {"keep": ["text"]}]}
    with pytest.raises(ValueError, match=r"no samples in split\(s\) \['test'\]"):
        run_experiment(run_config_from_dict({**raw, "data": {**raw["data"], "evaluate_on": "test"}}))
    rows = run_experiment(run_config_from_dict(raw))
    assert [(r["split"], r["eval_label"], r["n_samples"]) for r in rows] == [("valid", "inter=0", 16),
                                                                           ("valid", "keep=text", 16)]
    assert rows[0]["metrics"]["mae"] != rows[1]["metrics"]["mae"], "dropping audio and vision changes predictions"
    files = rows[0]["settings"]["data"]["files"]
    assert set(files) == {"features", "manifest:features"} and rows[0]["settings"]["data"]["split"] == "valid"
    model = load_checkpoint(tmp_path / "run" / "seed1")
    assert (model.config.text_dim, model.config.audio_dim, model.config.vision_dim) == (100, 73, 100)
    valid = [s for s in samples if s.split == "valid"]
    assert evaluate(model, valid, dataset="mosi").metrics["mae"] == pytest.approx(rows[0]["metrics"]["mae"], rel=1e-6)
    metrics = json.loads((tmp_path / "run" / "seed1" / "metrics.json").read_text())
    assert metrics["evaluate_on"] == "valid" and [e["eval_label"] for e in metrics["evaluation"]] == ["inter=0",
                                                                                                    "keep=text"]


def test_data_config_for_feature_files():
    base = {"output_dir": "x", "model": {"name": "mdf"}}
    config = run_config_from_dict({**base, "data": {"path": "d/features.npz", "evaluate_on": "valid"}})
    assert config.data.evaluate_on == "valid" and config.data.manifest is None
    assert run_config_from_dict({**base, "data": {"path": "d/x.pkl", "feature_set": "mosi_aligned_50"}})
    with pytest.raises(ValueError, match=r"data.evaluate_on: .*'dev'"):
        run_config_from_dict({**base, "data": {"path": "d/features.npz", "evaluate_on": "dev"}})
    with pytest.raises(ValueError, match="unknown feature set 'utterance'; known"):
        run_config_from_dict({**base, "data": {"path": "d/features.npz", "feature_set": "utterance"}})
    with pytest.raises(ValueError, match="cannot tell the feature set of d/x.pkl"):
        run_config_from_dict({**base, "data": {"path": "d/x.pkl"}})
    with pytest.raises(ValueError, match="a features.npz takes `feature_set`"):
        run_config_from_dict({**base, "data": {"path": "d/features.npz", "layout": "aligned"}})
    with pytest.raises(ValueError, match="goes with a features.npz only"):
        run_config_from_dict({**base, "data": {"path": "d/unaligned_50.pkl", "manifest": "m.csv"}})
    with pytest.raises(ValueError, match="manifest, feature_set describe a feature file: they need `path`"):
        run_config_from_dict({**base, "data": {"synthetic_n": 10, "manifest": "m.csv", "feature_set": "x"}})
    with pytest.raises(ValueError, match="unsupported feature file suffix '.h5'"):
        run_config_from_dict({**base, "data": {"path": "d/x.h5"}})
