"""The comparison harness: controlled configs, skipping finished runs, runs keyed by the data's
content, reports from rows, and an end-to-end grid with the tiny Thinker's readouts and a
classic model on the same samples."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from omni_msa.compare.config import compare_config_from_dict
from omni_msa.compare.family import EvalResult, FitInfo, SharedData, with_data
from omni_msa.compare.grid import ROWS_FILE, prepare_data, run_grid
from omni_msa.compare.report import readout_ratios, write_summary
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.record import Sample
from omni_msa.files import read_jsonl, write_jsonl
from omni_msa.report import ROW_FIELDS

ROOT = Path(__file__).resolve().parents[1]


def comparison(tmp_path: Path, **changes) -> dict:
    raw = {
        "output_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "results"), "dataset": "mosi",
        "data": {"synthetic_n": 40}, "seeds": [0, 1], "eval_protocols": [{}, {"keep": ["text"]}],
        "omni": {"base": {"backbone": {"name_or_path": "tiny-thinker", "kind": "qwen2_5_omni_thinker"},
                          "lora": {"r": 4, "alpha": 8}},
                 "readouts": ["discriminative", "generative"]},
    }
    raw.update(changes)
    return raw


# --- a controlled comparison -------------------------------------------------------------

@pytest.mark.parametrize("section, value", [("lora", {"r": 32}), ("backbone", {"name_or_path": "other"})])
def test_readouts_with_different_backbone_or_lora_are_refused(tmp_path, section, value):
    raw = comparison(tmp_path)
    raw["omni"]["readouts"] = ["discriminative", {"name": "generative", "overrides": {section: value}}]
    with pytest.raises(ValueError, match="same backbone and LoRA configuration.*not controlled"):
        compare_config_from_dict(raw)


@pytest.mark.parametrize("overrides, message", [
    ({"prompt": {"instruction": "x"}}, "may override only"),
    ({"optim": {"seed": 3}}, "seeds come from"),
    ({"readout": {"kind": "discriminative"}}, "kind follows from its name"),
    ({"optim": {"epochs": 9, "lr": 1e-3}}, r"\['epochs'\]: the convergence rule"),
    ({"optim": {"early_stopping_patience": 2}}, "the convergence rule"),
])
def test_other_uncontrolled_overrides_are_refused(tmp_path, overrides, message):
    raw = comparison(tmp_path)
    raw["omni"]["readouts"] = ["discriminative", {"name": "generative", "overrides": overrides}]
    with pytest.raises(ValueError, match=message):
        compare_config_from_dict(raw)


def test_readout_specific_settings_are_allowed(tmp_path):
    raw = comparison(tmp_path)
    raw["omni"]["readouts"] = ["discriminative", {"name": "generative", "overrides": {"readout": {"max_new_tokens": 8},
                                                                                      "optim": {"lr": 1e-3}}}]
    cfg = compare_config_from_dict(raw)
    assert cfg.readouts[1].overrides["readout"]["max_new_tokens"] == 8


def test_harness_owned_sections_cannot_be_set_in_the_base(tmp_path):
    raw = comparison(tmp_path)
    raw["omni"]["base"]["train_missing"] = {"inter_rate": 0.5}
    with pytest.raises(ValueError, match="harness sets"):
        compare_config_from_dict(raw)


# --- skipping finished runs --------------------------------------------------------------

class CountingContender:
    """A contender that predicts label + offset, and counts its calls. `unparsable` answers per
    evaluation get that status (a generative readout); `drop` leaves samples out (scored on fewer),
    `skip_first` scores on other ids of the same count (the first one replaced by a copy)."""

    family = "test"

    def __init__(self, name: str, offset: float, *, unparsable: int | None = None, drop: int = 0,
                 skip_first: bool = False, modalities: tuple[str, ...] = ("text", "audio", "vision"),
                 eval_protocols: list[dict] | None = None) -> None:
        self.name, self.offset = name, offset
        self.unparsable, self.drop, self.skip_first = unparsable, drop, skip_first
        self.modalities, self.eval_protocols = modalities, eval_protocols
        self.fits, self.trained_on, self.evaluations = [], [], []

    def settings(self, data=None):
        return with_data({"offset": self.offset}, data, features=False)

    def training(self, data):
        return self.name, self.settings(data)

    def fit(self, seed, train_protocol, run_dir, data):
        self.fits.append(seed)
        self.trained_on.append((seed, train_protocol.label))
        return FitInfo(checkpoint=str(run_dir), trainable={"trainable": 1, "total": 1, "share": 1.0},
                       wall_time_s=1.0, peak_memory_mb=10.0)

    def evaluate(self, fit, protocol, data, out_path):
        self.evaluations.append((fit.checkpoint, protocol.label))
        samples = data.eval_samples[:len(data.eval_samples) - self.drop]
        ids = [s.id for s in samples]
        if self.skip_first:
            ids[0] = "other$_$id"
        labels = np.array([s.label for s in samples])
        statuses = None
        if self.unparsable is not None:
            statuses = ["unparsable"] * self.unparsable + ["ok"] * (len(samples) - self.unparsable)
        return EvalResult(ids=ids, labels=labels, preds=labels + self.offset, latency_ms=np.full(len(samples), 2.0),
                          statuses=statuses, errors=self.drop)

    def release(self):
        pass


def shared_data(n: int = 12) -> SharedData:
    samples = [Sample(id=f"v$_${i}", split="test", label=float(np.linspace(-3, 3, n)[i]), text="x") for i in range(n)]
    return SharedData(dataset="mosi", evaluate_on="test", manifest={}, samples={"test": samples})


def test_grid_skips_finished_runs_and_runs_only_what_is_new(tmp_path):
    cfg = compare_config_from_dict(comparison(tmp_path))
    a = CountingContender("a", 0.5)
    counts = run_grid(cfg, [a], shared_data())
    assert counts == {"written": 4, "skipped": 0} and a.fits == [0, 1]
    rows = read_jsonl(tmp_path / "results" / ROWS_FILE)
    assert len(rows) == 4 and {r["seed"] for r in rows} == {0, 1}
    assert all(tuple(row) == ROW_FIELDS for row in rows), "grid rows follow the one row schema"
    assert rows[0]["n_samples"] == 12 and rows[0]["metrics"]["mae"] == pytest.approx(0.5)

    again = CountingContender("a", 0.5)
    assert run_grid(cfg, [again], shared_data()) == {"written": 0, "skipped": 4}
    assert again.fits == [] and again.evaluations == []
    assert read_jsonl(tmp_path / "results" / ROWS_FILE) == rows

    more = compare_config_from_dict(comparison(tmp_path, seeds=[0, 1, 2]))
    third = CountingContender("a", 0.5)
    assert run_grid(more, [third], shared_data()) == {"written": 2, "skipped": 4}
    assert third.fits == [2]

    changed = CountingContender("a", 0.25)           # changed settings are a different run
    assert run_grid(cfg, [changed], shared_data())["written"] == 4
    rows = read_jsonl(tmp_path / "results" / ROWS_FILE)
    assert len(rows) == 4 and [r["metrics"]["mae"] for r in rows] == pytest.approx([0.25] * 4), \
        "the rows of the old settings are replaced, not averaged with the new"


def test_modality_sets_are_trained_and_evaluated_alone_where_the_inputs_hold_more(tmp_path):
    cfg = compare_config_from_dict(comparison(tmp_path, seeds=[0], modality_sets=[["text"], ["audio", "vision"]]))
    trimodal = CountingContender("trimodal", 0.5)
    text_only = CountingContender("text_only", 0.25, modalities=("text",), eval_protocols=[{}, {"keep": ["text"]}])
    assert run_grid(cfg, [trimodal, text_only], shared_data()) == {"written": 6, "skipped": 0}
    assert trimodal.trained_on == [(0, "inter=0"), (0, "keep=text"), (0, "keep=audio+vision")]
    assert trimodal.evaluations[2:] == [(trimodal.evaluations[2][0], "keep=text"),
                                        (trimodal.evaluations[3][0], "keep=audio+vision")]
    assert text_only.trained_on == [(0, "inter=0")] and [e[1] for e in text_only.evaluations] == [
        "inter=0", "keep=text"], \
        "a text-only contender is not trained on text again, and is evaluated under its own protocols"
    rows = read_jsonl(tmp_path / "results" / ROWS_FILE)
    trained = [(r["model"], MissingnessProtocol.from_dict(r["train_protocol"]).label, r["eval_label"]) for r in rows]
    assert trained == [("trimodal", "inter=0", "inter=0"), ("trimodal", "inter=0", "keep=text"),
                       ("trimodal", "keep=text", "keep=text"), ("trimodal", "keep=audio+vision", "keep=audio+vision"),
                       ("text_only", "inter=0", "inter=0"), ("text_only", "inter=0", "keep=text")]
    assert rows[0]["per_sample"]["ids"] == [s.id for s in shared_data().eval_samples]
    assert np.allclose(np.array(rows[0]["per_sample"]["preds"]) - rows[0]["per_sample"]["labels"], 0.5)
    summary = write_summary(tmp_path / "results").read_text()
    assert "| trimodal | 1 |" in summary, "the paper table holds the main training's row only"
    assert "## Each modality set trained alone" in summary and "### On text alone" in summary
    assert "| text_only | trimodal | 12 (1) | -0.250 |" in summary.split("## Paired comparisons on complete data")[1]
    on_text = summary.split("### On text alone")[1]
    assert "| trimodal | 0.500 ± 0.000 / 91.7 ± 0.0 | – |" in summary and "| text_only | 0.250 ± 0.000 / " in summary
    assert "| text_only | trimodal | 12 (1) | -0.250 |" in on_text, "against the one trained on text"


@pytest.mark.parametrize("sets, message", [([["text", "audio", "vision"]], "every modality"),
                                           ([["text"], ["text"]], "repeats"), ([["smell"]], "non-empty subset")])
def test_wrong_modality_sets_are_refused(tmp_path, sets, message):
    with pytest.raises(ValueError, match=message):
        compare_config_from_dict(comparison(tmp_path, modality_sets=sets))


def test_a_partial_last_row_from_a_killed_run_is_redone(tmp_path):
    cfg = compare_config_from_dict(comparison(tmp_path))
    run_grid(cfg, [CountingContender("a", 0.5)], shared_data())
    path = tmp_path / "results" / ROWS_FILE
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:40])
    rerun = CountingContender("a", 0.5)
    assert run_grid(cfg, [rerun], shared_data()) == {"written": 1, "skipped": 3}
    assert len(read_jsonl(path)) == 4


# --- runs are keyed by the data's content --------------------------------------------------

def write_manifest(path: Path, labels: list[float]) -> None:
    lines = ["id,split,label,text"] + [f"v{i}$_$1,{('train', 'valid', 'test')[i % 3]},{label},clip number {i}"
                                       for i, label in enumerate(labels)]
    path.write_text("\n".join(lines) + "\n")


def test_editing_a_manifest_label_retrains_while_touching_it_does_not(tmp_path):
    manifest = tmp_path / "clips.csv"
    labels = [round(float(x), 2) for x in np.linspace(-3, 3, 18)]
    write_manifest(manifest, labels)
    cfg = compare_config_from_dict(comparison(tmp_path, data={"train": str(manifest), "valid": str(manifest),
                                                               "test": str(manifest)}))
    rows_path = tmp_path / "results" / ROWS_FILE
    first = CountingContender("a", 0.5)
    assert run_grid(cfg, [first], prepare_data(cfg, multimodal=False)) == {"written": 4, "skipped": 0}
    rows = read_jsonl(rows_path)
    assert first.fits == [0, 1] and rows[0]["settings"]["data"]["split"] == "valid"

    stat = manifest.stat()
    os.utime(manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5 * 10**9))     # same bytes, new mtime
    touched = CountingContender("a", 0.5)
    assert run_grid(cfg, [touched], prepare_data(cfg, multimodal=False)) == {"written": 0, "skipped": 4}
    assert touched.fits == [] and touched.evaluations == [] and read_jsonl(rows_path) == rows

    labels[2] = 2.5                                     # sample v2$_$1, a test sample
    write_manifest(manifest, labels)
    edited = CountingContender("a", 0.5)
    assert run_grid(cfg, [edited], prepare_data(cfg, multimodal=False)) == {"written": 4, "skipped": 0}
    assert edited.fits == [0, 1], "the models are trained again on the edited data"
    new = read_jsonl(rows_path)
    assert len(new) == 4, "the rows computed on the old data are replaced, not averaged with the new ones"
    assert {r["data_fingerprint"] for r in new}.isdisjoint({r["data_fingerprint"] for r in rows})
    assert {r["checkpoint"] for r in new}.isdisjoint({r["checkpoint"] for r in rows}), "in new run directories"
    before, after = rows[0]["settings"]["data"]["files"], new[0]["settings"]["data"]["files"]
    assert before.keys() == after.keys() == {"manifest:train", "manifest:valid"}, "what the models train on"
    assert all(before[k] != after[k] for k in before), "one file serves every split"


def test_editing_only_the_evaluation_manifest_rescores_without_retraining(tmp_path):
    train_valid, test = tmp_path / "train_valid.csv", tmp_path / "test.csv"
    labels = [round(float(x), 2) for x in np.linspace(-3, 3, 18)]
    write_manifest(train_valid, labels)
    write_manifest(test, labels)
    cfg = compare_config_from_dict(comparison(tmp_path, data={"train": str(train_valid), "valid": str(train_valid),
                                                               "test": str(test)}))
    first = CountingContender("a", 0.5)
    run_grid(cfg, [first], prepare_data(cfg, multimodal=False))
    labels[2] = 2.5                                     # a test sample's label, in the test manifest only
    write_manifest(test, labels)
    edited = CountingContender("a", 0.5)
    assert run_grid(cfg, [edited], prepare_data(cfg, multimodal=False)) == {"written": 4, "skipped": 0}
    assert edited.fits == [0, 1] and edited.evaluations, "scored again on the edited test split"
    assert {fit for fit, _ in edited.evaluations} == {fit for fit, _ in first.evaluations}, "same run directories"
    rows = read_jsonl(tmp_path / "results" / ROWS_FILE)
    assert len(rows) == 4 and len({r["data_fingerprint"] for r in rows}) == 1


def test_an_unreadable_train_summary_counts_as_an_unfinished_run(tmp_path, monkeypatch):
    import omni_msa.train
    from omni_msa.compare.omni_family import TRAIN_SUMMARY, OmniReadout
    from omni_msa.data.missing import MissingnessProtocol
    from omni_msa.files import write_json

    cfg = compare_config_from_dict(comparison(tmp_path))
    readout = OmniReadout(cfg.readouts[0], cfg)
    data = SharedData(dataset="mosi", evaluate_on="test", manifest={"train": "m.csv", "valid": "m.csv"},
                      samples={})
    summary = {"trainable": {"trainable": 3, "total": 9, "share": 1 / 3}, "wall_time_s": 2.0, "peak_memory_mb": 5.0,
               "steps": 7, "best_valid_mae": 0.4}
    trained = []
    monkeypatch.setattr(omni_msa.train, "train", lambda run_cfg, show_progress: trained.append(run_cfg) or summary)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for partial in (json.dumps(summary)[:40], json.dumps({"steps": 7})):
        (run_dir / TRAIN_SUMMARY).write_text(partial)               # cut off, or without its figures
        fit = readout.fit(0, MissingnessProtocol(), run_dir, data)
        assert fit.extra["train_steps"] == 7
    assert len(trained) == 2 and trained[0].output_dir == str(run_dir)
    write_json(run_dir / TRAIN_SUMMARY, {**summary, "steps": 9})
    fit = readout.fit(0, MissingnessProtocol(), run_dir, data)
    assert len(trained) == 2 and fit.extra["train_steps"] == 9, "a complete summary is a finished run"


# --- the report is computed from the rows -------------------------------------------------

def test_report_follows_the_rows(tmp_path):
    cfg = compare_config_from_dict(comparison(tmp_path))
    run_grid(cfg, [CountingContender("discriminative", 0.4), CountingContender("generative", 1.0)], shared_data())
    results = tmp_path / "results"
    summary = write_summary(results).read_text()
    assert "| discriminative | 2 | 12 (0) | 0.400 ± 0.000 |" in summary
    assert "it holds here" in summary and "2.50x the discriminative one" in summary
    assert "Not scored on the same samples" not in summary
    assert (results / "modes_mae.png").is_file() and (results / "latency.png").is_file()

    rows = read_jsonl(results / ROWS_FILE)
    for row in rows:
        if row["model"] == "generative" and row["eval_label"] == "inter=0":
            row["metrics"]["mae"] = 0.6
    write_jsonl(results / ROWS_FILE, rows)
    summary = write_summary(results).read_text()
    assert "| generative | 2 | 12 (0) | 0.600 ± 0.000 |" in summary
    assert "it does not hold here" in summary and "1.50x the discriminative one" in summary
    ratios = {r["eval_label"]: r["mae_ratio"] for r in readout_ratios(rows)}
    assert ratios == pytest.approx({"inter=0": 1.5, "keep=text": 2.5})


def test_the_claim_is_not_testable_when_the_generative_readout_rarely_parses(tmp_path):
    cfg = compare_config_from_dict(comparison(tmp_path))
    generative = CountingContender("generative", 1.0, unparsable=1)       # 1 of 12 answers per row
    run_grid(cfg, [CountingContender("discriminative", 0.4), generative], shared_data())
    results = tmp_path / "results"
    summary = write_summary(results).read_text()
    assert "not testable: 8.3 % unparsable" in summary and "parsed 22 of its 24 answers" in summary
    assert "it holds here" not in summary and "| generative | complete data | 24 |" in summary

    rows = read_jsonl(results / ROWS_FILE)
    for row in rows:                                   # 38 of 40 parsed: exactly 95 %, testable
        if row["model"] == "generative":
            row["status_counts"] = {"ok": 18, "unparsable": 1, "out_of_range": 1}
    write_jsonl(results / ROWS_FILE, rows)
    summary = write_summary(results).read_text()
    assert "not testable" not in summary and "it holds here" in summary


def test_the_demo_summary_says_not_testable_and_renders_its_old_rows(tmp_path):
    results = tmp_path / "demo"
    shutil.copytree(ROOT / "results" / "demo", results)
    rows = read_jsonl(results / ROWS_FILE)
    assert "sample_set" not in rows[0], "the committed rows predate the sample-set hash"
    summary = write_summary(results).read_text()
    assert "not testable: 100.0 % unparsable" in summary and "parsed 0 of its 38 answers" in summary
    assert "does not hold" not in summary
    assert "| discriminative | 2 | 19 (0) |" in summary and "| mdf | 2 | 19 (0) |" in summary
    assert "Not scored on the same samples" not in summary


def test_tables_name_the_models_scored_on_other_samples(tmp_path):
    cfg = compare_config_from_dict(comparison(tmp_path))
    contenders = [CountingContender("a", 0.4), CountingContender("b", 0.4, drop=1),
                  CountingContender("c", 0.4, skip_first=True)]
    run_grid(cfg, contenders, shared_data())
    summary = write_summary(tmp_path / "results").read_text()
    complete = summary.split("## Complete data")[1].split("## Efficiency")[0]
    assert "| a | 2 | 12 (0) |" in complete and "| b | 2 | 11 (1) |" in complete and "| c | 2 | 12 (0) |" in complete
    note = "Not scored on the same samples: b (11 samples, 2 errors), c (12 samples, other ids); the other rows: 12"
    assert note in complete
    modes = summary.split("**MAE per retention mode**")[1]
    assert "Not scored on the same samples: b (11 samples, 2 errors), c (12 samples, other ids)" in modes


# --- a classic model on a features.npz with train and valid only ----------------------------

def write_utterance_features(directory: Path, n: int = 40, n_train: int = 28) -> Path:
    """features.npz + manifest.csv of `n` utterances (mosi_utterance dims), train and valid only."""
    from omni_msa.data.npz_features import write_npz_features

    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        label = round(float(rng.uniform(-3, 3)), 1)
        features = {m: (label * np.linspace(-1, 1, d) + rng.normal(0, 0.5, d)).astype(np.float32)[None, :]
                    for m, d in (("text", 100), ("audio", 73), ("vision", 100))}
        samples.append(Sample(id=f"v{i // 4}$_${i % 4}", split="train" if i < n_train else "valid", label=label,
                              text=f"clip {i}", features=features))
    write_npz_features(samples, directory / "features.npz", feature_set="mosi_utterance")
    return directory / "features.npz"


def test_a_classic_model_on_a_features_npz_evaluated_on_valid(tmp_path):
    from classic_msa.contender import classic_contenders

    features = write_utterance_features(tmp_path / "data")
    manifest = str(features.parent / "manifest.csv")
    classic = tmp_path / "mdf_tiny.yaml"
    classic.write_text("output_dir: unused\nmodel: {name: mdf, dim: 16, lstm_hidden: 8, mapper_hidden: 16, "
                       "extractor_hidden: 16, predictor_hidden: 16, generator_hidden: 16}\n"
                       "data: {synthetic_n: 10}\ntrain: {lr: 5.0e-3, batch_size: 16, stages: [{epochs: 1}]}\n")
    raw = {"output_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "results"), "dataset": "mosi",
           "data": {"train": manifest, "valid": manifest, "features": str(features)}, "seeds": [0],
           "eval_protocols": [{}, {"keep": ["text"]}], "classic": [str(classic)], "modality_sets": [["audio"]]}
    with pytest.raises(ValueError, match="evaluate_on: test needs a `data.test` manifest"):
        compare_config_from_dict(raw)
    cfg = compare_config_from_dict({**raw, "evaluate_on": "valid"})
    data = prepare_data(cfg, multimodal=False)
    assert set(data.samples) == {"train", "valid"} and data.features_manifest == manifest
    assert run_grid(cfg, classic_contenders(cfg, device="cpu"), data) == {"written": 3, "skipped": 0}
    rows = read_jsonl(tmp_path / "results" / ROWS_FILE)
    assert [(r["model"], r["split"], r["eval_label"], r["n_samples"]) for r in rows] == [
        ("mdf", "valid", "inter=0", 12), ("mdf", "valid", "keep=text", 12), ("mdf", "valid", "keep=audio", 12)]
    for row in (rows[0], rows[2]):   # selected on valid under the set it was trained on: the same figure
        assert row["metrics"]["mae"] == pytest.approx(row["training"]["best_valid_mae"], abs=1e-6)
    assert rows[2]["metrics"]["mae"] != pytest.approx(rows[1]["metrics"]["mae"])
    assert set(rows[0]["settings"]["data"]["files"]) == {"features", "manifest:features", "manifest:train",
                                                         "manifest:valid"}
    assert run_grid(cfg, classic_contenders(cfg, device="cpu"), prepare_data(cfg, multimodal=False)) == {
        "written": 0, "skipped": 3}


def test_feature_file_settings_of_a_comparison(tmp_path):
    data = {"train": "a.csv", "valid": "a.csv"}
    base = comparison(tmp_path, evaluate_on="valid")
    assert compare_config_from_dict({**base, "data": {**data, "features": "f.npz", "feature_set": "mosi_utterance",
                                                      "features_manifest": "m.csv"}}).data.features_manifest == "m.csv"
    with pytest.raises(ValueError, match="features_manifest describe `features`: set it too"):
        compare_config_from_dict({**base, "data": {**data, "features_manifest": "m.csv"}})
    with pytest.raises(ValueError, match="unknown feature set 'mosi'"):
        compare_config_from_dict({**base, "data": {**data, "features": "f.npz", "feature_set": "mosi"}})
    with pytest.raises(ValueError, match="a features.npz takes `feature_set`"):
        compare_config_from_dict({**base, "data": {**data, "features": "f.npz", "features_layout": "aligned"}})
    with pytest.raises(ValueError, match="goes with a features.npz only"):
        compare_config_from_dict({**base, "data": {**data, "features": "f.pkl", "features_manifest": "m.csv"}})


# --- end to end: tiny Thinker readouts and a classic model on the same samples ------------

def test_demo_grid_end_to_end(tmp_path, monkeypatch):
    import runpy

    main = runpy.run_path(str(ROOT / "scripts" / "compare_readouts.py"))["main"]
    monkeypatch.chdir(ROOT)
    args = ["--config", "scripts/configs/compare_demo.yaml", f"output_dir={tmp_path / 'runs'}",
            f"results_dir={tmp_path / 'results'}", "data.synthetic_n=40", "seeds=[0]",
            "eval_protocols=[{}, {keep: [text]}, {intra_rate: 0.5}]", "omni.base.optim.epochs=1",
            "omni.readouts=[discriminative, generative_zero_shot]",
            "classic=[{config: scripts/configs/mdf_synthetic.yaml, overrides: ['train.stages=[{epochs: 2}]']}]"]
    main(args)
    rows = read_jsonl(tmp_path / "results" / ROWS_FILE)
    assert len(rows) == 3 * 3
    by_model = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    assert set(by_model) == {"discriminative", "generative_zero_shot", "mdf"}
    assert len({r["n_samples"] for r in rows}) == 1, "every model is scored on the same samples"
    assert len({r["sample_set"] for r in rows}) == 1 and all(tuple(r) == ROW_FIELDS for r in rows)
    from omni_msa.compare.family import process_device
    assert {r["device"] for r in rows} == {str(process_device())}, "classic models run on the omni device"
    zero_shot = by_model["generative_zero_shot"][0]
    assert zero_shot["trainable"]["trainable"] == 0
    assert sum(zero_shot["status_counts"].values()) == zero_shot["n_samples"]
    assert all(r["latency_ms"]["p95"] >= r["latency_ms"]["p50"] > 0 for r in rows)
    disc = {r["eval_label"]: r["metrics"]["mae"] for r in by_model["discriminative"]}
    assert disc["keep=text"] != disc["inter=0"], "dropping audio and video must change the predictions"
    predictions = Path(by_model["discriminative"][0]["predictions"])
    ids = [json.loads(line)["id"] for line in predictions.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == rows[0]["n_samples"]
    assert (tmp_path / "results" / "summary.md").is_file()
    training = by_model["discriminative"][0]["training"]
    assert training["selected_on"] == "valid" and training["curve"][-1][0] == training["train_steps"]
    assert (tmp_path / "results" / "learning_curves.png").is_file()
    described = json.loads((tmp_path / "results" / "data.json").read_text())
    assert described["feature_set"] == "mosi_unaligned_50" and described["samples"]["test"] == rows[0]["n_samples"]
    main(args)                                       # everything finished: nothing is redone
    assert read_jsonl(tmp_path / "results" / ROWS_FILE) == rows


def test_grid_under_two_processes(tmp_path):
    """Two CPU processes (torchrun): omni training and scoring sharded, classic models on the main
    process, every id scored exactly once."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(ROOT / "scripts" / "compare_readouts.py"), "--config", "scripts/configs/compare_demo.yaml",
               f"output_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}", "data.synthetic_n=40",
               "seeds=[0]", "eval_protocols=[{}, {keep: [text]}]", "omni.base.optim.epochs=1",
               "omni.readouts=[discriminative]",
               "classic=[{config: scripts/configs/mdf_synthetic.yaml, overrides: ['train.stages=[{epochs: 1}]']}]"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = read_jsonl(tmp_path / "results" / ROWS_FILE)
    assert sorted((r["model"], r["eval_label"]) for r in rows) == [
        ("discriminative", "inter=0"), ("discriminative", "keep=text"), ("mdf", "inter=0"), ("mdf", "keep=text")]
    for row in rows:
        if row["model"] == "discriminative":
            ids = [json.loads(line)["id"] for line in Path(row["predictions"]).read_text().splitlines()]
            assert len(ids) == len(set(ids)) == row["n_samples"]
            merged = json.loads(Path(row["predictions"].replace(".jsonl", ".metrics.json")).read_text())["merge"]
            assert merged["parts"] == [0, 1], "both processes must have scored a shard"
