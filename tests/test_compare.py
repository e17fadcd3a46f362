"""The comparison harness: controlled configs, skipping finished runs, reports from rows, and an
end-to-end grid with the tiny Thinker's readouts and a classic model on the same samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from omni_msa.compare.config import compare_config_from_dict
from omni_msa.compare.family import EvalResult, FitInfo, SharedData
from omni_msa.compare.grid import ROWS_FILE, run_grid
from omni_msa.compare.report import readout_ratios, write_summary
from omni_msa.report import read_rows
from omni_msa.data.record import Sample

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
    """A contender that predicts label + offset, and counts its calls."""

    family = "test"

    def __init__(self, name: str, offset: float) -> None:
        self.name, self.offset = name, offset
        self.fits, self.evaluations = [], []

    def settings(self):
        return {"offset": self.offset}

    def fit(self, seed, train_protocol, run_dir, data):
        self.fits.append(seed)
        return FitInfo(checkpoint=str(run_dir), trainable={"trainable": 1, "total": 1, "share": 1.0},
                       wall_time_s=1.0, peak_memory_mb=10.0)

    def evaluate(self, fit, protocol, data, out_path):
        self.evaluations.append((fit.checkpoint, protocol.label))
        samples = data.eval_samples
        labels = np.array([s.label for s in samples])
        return EvalResult(ids=[s.id for s in samples], labels=labels, preds=labels + self.offset,
                          latency_ms=np.full(len(samples), 2.0))

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
    rows = read_rows([tmp_path / "results" / ROWS_FILE])
    assert len(rows) == 4 and {r["seed"] for r in rows} == {0, 1}

    again = CountingContender("a", 0.5)
    assert run_grid(cfg, [again], shared_data()) == {"written": 0, "skipped": 4}
    assert again.fits == [] and again.evaluations == []
    assert read_rows([tmp_path / "results" / ROWS_FILE]) == rows

    more = compare_config_from_dict(comparison(tmp_path, seeds=[0, 1, 2]))
    third = CountingContender("a", 0.5)
    assert run_grid(more, [third], shared_data()) == {"written": 2, "skipped": 4}
    assert third.fits == [2]

    changed = CountingContender("a", 0.25)           # changed settings are a different run
    assert run_grid(cfg, [changed], shared_data())["written"] == 4


def test_a_partial_last_row_from_a_killed_run_is_redone(tmp_path):
    cfg = compare_config_from_dict(comparison(tmp_path))
    run_grid(cfg, [CountingContender("a", 0.5)], shared_data())
    path = tmp_path / "results" / ROWS_FILE
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:40])
    rerun = CountingContender("a", 0.5)
    assert run_grid(cfg, [rerun], shared_data()) == {"written": 1, "skipped": 3}
    assert len(read_rows([path])) == 4


# --- the report is computed from the rows -------------------------------------------------

def test_report_follows_the_rows(tmp_path):
    cfg = compare_config_from_dict(comparison(tmp_path))
    run_grid(cfg, [CountingContender("discriminative", 0.4), CountingContender("generative", 1.0)], shared_data())
    results = tmp_path / "results"
    summary = write_summary(results).read_text()
    assert "| discriminative | 2 | 0.400 ± 0.000 |" in summary
    assert "it holds here" in summary and "2.50x the discriminative one" in summary
    assert (results / "modes_mae.png").is_file() and (results / "latency.png").is_file()

    rows = read_rows([results / ROWS_FILE])
    for row in rows:
        if row["model"] == "generative" and row["eval_label"] == "inter=0":
            row["metrics"]["mae"] = 0.6
    (results / ROWS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = write_summary(results).read_text()
    assert "| generative | 2 | 0.600 ± 0.000 |" in summary
    assert "it does not hold here" in summary and "1.50x the discriminative one" in summary
    ratios = {r["eval_label"]: r["mae_ratio"] for r in readout_ratios(rows)}
    assert ratios == pytest.approx({"inter=0": 1.5, "keep=text": 2.5})


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
    rows = read_rows([tmp_path / "results" / ROWS_FILE])
    assert len(rows) == 3 * 3
    by_model = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    assert set(by_model) == {"discriminative", "generative_zero_shot", "mdf"}
    assert len({r["n_samples"] for r in rows}) == 1, "every model is scored on the same samples"
    zero_shot = by_model["generative_zero_shot"][0]
    assert zero_shot["trainable"]["trainable"] == 0 and sum(zero_shot["status_counts"].values()) == zero_shot["n_samples"]
    assert all(r["latency_ms"]["p95"] >= r["latency_ms"]["p50"] > 0 for r in rows)
    disc = {r["eval_label"]: r["metrics"]["mae"] for r in by_model["discriminative"]}
    assert disc["keep=text"] != disc["inter=0"], "dropping audio and video must change the predictions"
    ids = [json.loads(line)["id"] for line in Path(by_model["discriminative"][0]["predictions"]).read_text().splitlines()]
    assert len(ids) == len(set(ids)) == rows[0]["n_samples"]
    assert (tmp_path / "results" / "summary.md").is_file()
    main(args)                                       # everything finished: nothing is redone
    assert read_rows([tmp_path / "results" / ROWS_FILE]) == rows


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
    rows = read_rows([tmp_path / "results" / ROWS_FILE])
    assert sorted((r["model"], r["eval_label"]) for r in rows) == [
        ("discriminative", "inter=0"), ("discriminative", "keep=text"), ("mdf", "inter=0"), ("mdf", "keep=text")]
    for row in rows:
        if row["model"] == "discriminative":
            ids = [json.loads(line)["id"] for line in Path(row["predictions"]).read_text().splitlines()]
            assert len(ids) == len(set(ids)) == row["n_samples"]
            merged = json.loads(Path(row["predictions"].replace(".jsonl", ".metrics.json")).read_text())["merge"]
            assert merged["parts"] == [0, 1], "both processes must have scored a shard"
