import copy
import json
import runpy
from dataclasses import fields
from pathlib import Path

import pytest
import torch
import yaml

from omni_msa.data.missing import RETENTION_MODES, MissingnessProtocol
from omni_msa.files import read_jsonl
from omni_msa.report import ROW_FIELDS, aggregate, metrics_table, pivot_table, plot_mode_bars, plot_rate_curves

from classic_msa import data as classic_data
from classic_msa.evaluation import evaluate
from classic_msa.model import build_model
from classic_msa.sweep import checkpoint_dirs
from classic_msa.trainer import TrainConfig, Trainer, load_checkpoint

from .conftest import TINY_MDF

REPO = Path(__file__).resolve().parents[2]
METRICS = {"mae": 0.5, "corr": 0.6, "acc7": 0.3, "acc5": 0.4, "acc2_has0": 0.7, "f1_has0": 0.7,
           "acc2_non0": 0.75, "f1_non0": 0.74}


def _row(model, seed, inter, **metrics):
    protocol = MissingnessProtocol(inter_rate=inter, seed=seed)
    return {"model": model, "dataset": "mosi", "seed": seed, "split": "test", "eval_protocol": protocol.to_dict(),
            "eval_label": protocol.label, "metrics": {**METRICS, **metrics}}


def test_table_is_computed_from_the_rows():
    rows = [_row("a", 0, 0.0, mae=0.4), _row("a", 1, 0.0, mae=0.6), _row("b", 0, 0.0), _row("a", 0, 0.5)]
    table = metrics_table(rows)
    assert "| a | inter=0 | 2 | 0.5000 ± 0.1414 |" in table          # mean, sample std of 0.4 and 0.6
    assert "74.00 ± 0.00" in table and "%" in table and "raw" in table  # F1 in %, caption says so
    changed = copy.deepcopy(rows)
    changed[0]["metrics"]["mae"] = 0.8
    assert metrics_table(changed) != table
    assert "0.7000 ± 0.1414" in metrics_table(changed)
    pivot = pivot_table(rows, "acc5")
    assert "| inter=0.5 | 40.00 ± 0.00 | – |" in pivot                # b has no inter=0.5 row
    changed[3]["metrics"]["acc5"] = 0.1
    assert "| inter=0.5 | 10.00 ± 0.00 | – |" in pivot_table(changed, "acc5")
    with pytest.raises(ValueError, match="datasets"):
        metrics_table(rows + [{**rows[0], "dataset": "sims"}])


def test_a_table_of_rows_on_other_samples_says_which_models_differ():
    rows = [{**_row("a", s, 0.0), "n_samples": 20, "sample_set": "x"} for s in (0, 1)]
    assert "Not scored" not in metrics_table(rows) + pivot_table(rows, "mae")
    rows += [{**_row("b", 0, 0.0), "n_samples": 20, "sample_set": "y"}, {**_row("c", 0, 0.0), "n_samples": 19}]
    note = "Not scored on the same samples: b (20 samples, other ids), c (19 samples); the other rows: 20 samples."
    assert note in metrics_table(rows) and note in pivot_table(rows, "mae")
    old = [_row("a", 0, 0.0), _row("b", 0, 0.0)]             # rows without n_samples or sample_set render
    assert "Not scored" not in pivot_table(old, "mae")


def test_null_metrics_render_as_nan():
    rows = [_row("a", 0, 0.0), _row("a", 1, 0.0, corr=None)]
    assert "| a | inter=0 | 2 | 0.5000 ± 0.0000 | nan |" in metrics_table(rows)


def test_plots_are_written(tmp_path):
    rows = [_row(m, s, r, mae=0.4 + r + 0.1 * s) for m in ("a", "b") for s in (0, 1) for r in (0.0, 0.5, 1.0)]
    path = plot_rate_curves(rows, "mae", tmp_path / "inter_mae.png")
    assert path.is_file() and path.stat().st_size > 1000
    modes = []
    for mode in RETENTION_MODES:
        protocol = MissingnessProtocol(keep=mode)
        modes.append({**_row("a", 0, 0.0), "eval_protocol": protocol.to_dict(), "eval_label": protocol.label})
    path = plot_mode_bars(modes, "acc5", tmp_path / "modes_acc5.png")
    assert path.is_file() and path.stat().st_size > 1000


@pytest.fixture(scope="module")
def trained_run(synthetic, tmp_path_factory):
    """A tiny MDF trained 1 epoch for training seeds 0 and 1, laid out as experiment.py does."""
    run = tmp_path_factory.mktemp("run")
    for seed in (0, 1):
        model = build_model("mdf", TINY_MDF)
        config = TrainConfig.from_dict({"lr": 5e-3, "batch_size": 64, "seed": seed, "stages": [{"epochs": 1}]})
        Trainer(model, config, dataset="mosi", out_dir=run / f"seed{seed}").fit(synthetic["train"], synthetic["valid"])
    return run


def test_sweep_script_writes_one_row_per_protocol_and_seed(trained_run, synthetic, synthetic_dir, tmp_path):
    config = {"output_dir": str(trained_run), "model": {"name": "mdf", **TINY_MDF},
              "data": {"dataset": "mosi", "path": str(synthetic_dir / "unaligned.pkl"), "layout": "unaligned"}}
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(config))
    script = runpy.run_path(str(REPO / "scripts" / "sweep_missing.py"))
    out = tmp_path / "out"
    script["main"](["--checkpoint", str(trained_run), "--grid", "modes", "--eval-seeds", "3", "4",
                    "--config", str(config_path), "--out", str(out)])
    rows = read_jsonl(out / "sweep_modes.jsonl")
    assert len(rows) == 2 * 2 * 7                                   # training seeds x eval seeds x modes
    keys = {(r["seed"], r["eval_protocol"]["seed"], r["eval_label"]) for r in rows}
    assert len(keys) == len(rows)
    assert {r["seed"] for r in rows} == {0, 1} and {r["eval_protocol"]["seed"] for r in rows} == {3, 4}
    first = rows[0]
    assert all(tuple(row) == ROW_FIELDS for row in rows), "the grid's and the experiment's row schema"
    assert first["n_samples"] == len(synthetic["test"]) and first["grid"] == "modes" and first["family"] == "classic"
    assert first["device"] == "cpu" and first["settings"]["data"]["digest"] == first["data_fingerprint"]
    # the metrics are those of the checkpoint evaluated under that exact protocol
    model = load_checkpoint(first["checkpoint"])
    again = evaluate(model, synthetic["test"], dataset="mosi",
                     protocol=MissingnessProtocol.from_dict(first["eval_protocol"]))
    assert again.metrics == pytest.approx(first["metrics"], nan_ok=True)
    assert all(g["n"] == 4 for g in aggregate(rows).values())
    for metric in ("mae", "acc5", "f1_non0"):
        png = out / f"modes_{metric}.png"
        assert png.is_file() and png.stat().st_size > 1000
    assert "keep=text+vision" in (out / "sweep_modes.md").read_text()


def test_sweep_inter_grid_defaults_to_training_seeds(trained_run, synthetic_dir, tmp_path):
    # synthetic runs find their data at <run>/data/unaligned.pkl without --config
    (trained_run / "data").mkdir(exist_ok=True)
    (trained_run / "data" / "unaligned.pkl").write_bytes((synthetic_dir / "unaligned.pkl").read_bytes())
    script = runpy.run_path(str(REPO / "scripts" / "sweep_missing.py"))
    out = tmp_path / "inter"
    script["main"](["--checkpoint", str(trained_run), "--grid", "inter", "--seeds", "1", "--out", str(out)])
    rows = [json.loads(line) for line in (out / "sweep_inter.jsonl").read_text().splitlines()]
    assert len(rows) == 11 and {(r["seed"], r["eval_protocol"]["seed"]) for r in rows} == {(1, 1)}
    assert [r["eval_protocol"]["inter_rate"] for r in rows] == pytest.approx([0.1 * i for i in range(11)])
    for metric in ("mae", "acc5", "f1_non0"):
        assert (out / f"inter_{metric}.png").stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="seed"):
        checkpoint_dirs(trained_run, seeds=[7])


class DeviceTensor(torch.Tensor):
    """Stands in for a tensor on an accelerator: like a CUDA tensor it refuses `.numpy()` until
    it is copied to the host with `.cpu()`."""

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert a device tensor to numpy; use .cpu() first")

    def cpu(self, *args, **kwargs):
        return torch.Tensor.cpu(self, *args, **kwargs).as_subclass(torch.Tensor)


def test_evaluation_on_a_device_never_calls_numpy_on_a_device_tensor(synthetic, monkeypatch):
    model = build_model("mdf", TINY_MDF)
    expected = evaluate(model, synthetic["test"], dataset="mosi", batch_size=16)
    moved_to = []
    original = classic_data.FeatureBatch.to

    def to_device(batch, device):
        moved_to.append(str(device))
        moved = original(batch, device)
        wrap = lambda v: v.as_subclass(DeviceTensor) if isinstance(v, torch.Tensor) else v  # noqa: E731
        return classic_data.FeatureBatch(**{f.name: ({k: wrap(x) for k, x in value.items()} if isinstance(value, dict)
                                                     else wrap(value))
                                            for f in fields(moved) for value in [getattr(moved, f.name)]})

    monkeypatch.setattr(classic_data.FeatureBatch, "to", to_device)
    result = evaluate(model, synthetic["test"], dataset="mosi", batch_size=16, device=torch.device("cpu"))
    assert moved_to and set(moved_to) == {"cpu"}
    assert result.ids == expected.ids and result.labels.tolist() == expected.labels.tolist()
    assert result.metrics == pytest.approx(expected.metrics)
