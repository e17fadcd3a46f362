"""Extension without library edits: a readout, a backbone spec and a dataset spec defined in this
file run through training, scoring, the comparison grid and the report.

The backbone is a tiny `LlamaForCausalLM` (neither shipped spec's model class), the readout mean-
pools the decoder's hidden states, and the dataset has labels in [0, 4] and metric keys of its
own (`rmse`, `within_half`), which must become the report's columns.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from omni_msa.backbone import decoder_of, input_embedding_dim
from omni_msa.backbones import BackboneSpec, register_backbone
from omni_msa.datasets import DatasetSpec, register_dataset
from omni_msa.readouts import Predictions, ReadoutContext, register_readout

DATASET = "toy_ext"
BACKBONE = "tiny_llama_ext"
READOUT = "mean_pool_ext"


def toy_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    error = np.abs(p - y)
    return {"mae": float(error.mean()), "rmse": float(np.sqrt(np.mean(error ** 2))),
            "within_half": float(np.mean(error <= 0.5))}


register_dataset(DatasetSpec(
    name=DATASET, label_range=(0.0, 4.0), metrics=toy_metrics, metric_keys=("mae", "rmse", "within_half"),
    paper_columns=(("MAE", ("mae",)), ("RMSE", ("rmse",)), ("Within 0.5", ("within_half",))),
    curve_metrics=("mae", "within_half"), raw_metrics=frozenset({"mae", "rmse"})))


def _pad_with_eos(tokenizer):
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    return tokenizer


register_backbone(BackboneSpec(
    kind=BACKBONE, model_class="transformers.LlamaForCausalLM", processor_class="transformers.AutoTokenizer",
    never_quantized=("lm_head",), lora_targets=r"model\.layers\.\d+\.self_attn\.(q_proj|v_proj)",
    finish_preprocessor=_pad_with_eos))


class MeanPoolReadout(nn.Module):
    """Mean of the decoder's final hidden states over the non-padding tokens, then a linear head."""

    def __init__(self, ctx: ReadoutContext) -> None:
        super().__init__()
        self.backbone = ctx.backbone
        self.head = nn.Linear(input_embedding_dim(ctx.backbone), 1)

    def scores(self, batch) -> torch.Tensor:
        hidden = decoder_of(self.backbone)(**batch.model_inputs).last_hidden_state.float()
        mask = batch.model_inputs["attention_mask"].unsqueeze(-1).float()
        return self.head((hidden * mask).sum(1) / mask.sum(1)).squeeze(-1)

    def forward(self, batch) -> torch.Tensor:
        return nn.functional.mse_loss(self.scores(batch), batch.labels.float())

    @torch.no_grad()
    def predict(self, batch) -> Predictions:
        values = self.scores(batch).cpu()
        return Predictions(values=values, statuses=["ok"] * len(values))


register_readout(READOUT)(MeanPoolReadout)
READER = "mean_pool_plus_one_ext"


class PlusOneReader(MeanPoolReadout):
    """Reads the model the mean-pool readout trains, one point higher: shows which model it scores."""

    @torch.no_grad()
    def predict(self, batch) -> Predictions:
        values = self.scores(batch).cpu() + 1.0
        return Predictions(values=values, statuses=["ok"] * len(values))


register_readout(READER, reads=READOUT)(PlusOneReader)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    from omni_msa.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny_llama") / "model"
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """Sentences whose label is the count of "good" among four words, in train and valid."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("toy") / "manifest.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "split", "label", "text"])
        for i in range(48):
            goods = int(rng.integers(0, 5))
            words = ["good"] * goods + ["plain"] * (4 - goods)
            rng.shuffle(words)
            writer.writerow([f"toy{i // 4}$_${i % 4}", "train" if i < 32 else "valid", goods, " ".join(words)])
    return path


def run_config_dict(llama_dir: Path, out_dir: Path, manifest: Path) -> dict:
    return {"output_dir": str(out_dir),
            "backbone": {"name_or_path": str(llama_dir), "kind": BACKBONE},
            "data": {"dataset": DATASET, "train": str(manifest), "valid": str(manifest)},
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
            "readout": {"kind": READOUT},
            "optim": {"epochs": 3, "batch_size": 8, "lr": 3e-3, "head_lr": 3e-2, "warmup_ratio": 0.0,
                      "scheduler": "constant"}}


def test_test_defined_readout_backbone_and_dataset_train_and_score(llama_dir, manifest, tmp_path):
    from omni_msa.config import config_from_dict
    from omni_msa.data.manifest import read_manifest
    from omni_msa.data.missing import MissingnessProtocol
    from omni_msa.score import load_scorer, score_file
    from omni_msa.train import BEST_DIR, train

    summary = train(config_from_dict(run_config_dict(llama_dir, tmp_path / "run", manifest)), show_progress=False)
    losses = [r["loss"] for r in summary["history"] if r["split"] == "train"]
    assert np.mean(losses[-4:]) < np.mean(losses[:4]), "training must lower the loss"
    valid = [r for r in summary["history"] if r["split"] == "valid"]
    assert {"rmse", "within_half"} <= set(valid[0]) and summary["selection_metric"] == "mae"
    assert len(summary["best_residuals"]) == 16 and summary["selected_on"] == "valid"
    assert np.mean(summary["best_residuals"]) == pytest.approx(summary["best_valid_mae"], abs=1e-4)

    assembled, cfg = load_scorer(tmp_path / "run" / BEST_DIR)
    assert type(assembled.readout) is MeanPoolReadout
    assert type(assembled.readout.backbone.get_base_model()).__name__ == "LlamaForCausalLM"
    samples = [s for s in read_manifest(manifest, dataset=DATASET).samples if s.split == "valid"]
    result = score_file(assembled, cfg, samples, tmp_path / "preds.jsonl", protocol=MissingnessProtocol())
    assert result["n"] == len(samples) == 16
    assert set(result["metrics"]) == {"mae", "rmse", "within_half"}
    assert result["metrics"]["mae"] == pytest.approx(min(r["mae"] for r in valid), abs=1e-5)


def test_test_defined_extensions_run_through_the_grid_and_the_report(llama_dir, manifest, tmp_path):
    from omni_msa.compare.config import compare_config_from_dict
    from omni_msa.compare.grid import prepare_data, run_grid
    from omni_msa.compare.omni_family import omni_contenders
    from omni_msa.compare.report import write_summary

    base = run_config_dict(llama_dir, tmp_path, manifest)
    cfg = compare_config_from_dict({
        "output_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "results"), "dataset": DATASET,
        "data": {"train": str(manifest), "valid": str(manifest)}, "evaluate_on": "valid", "seeds": [0],
        "eval_protocols": [{}, {"intra_rate": 0.5}],
        "omni": {"base": {k: base[k] for k in ("backbone", "lora", "optim")}, "readouts": [READOUT, "discriminative"]}})
    data = prepare_data(cfg, multimodal=False)
    counts = run_grid(cfg, omni_contenders(cfg), data)
    assert counts == {"written": 4, "skipped": 0}
    summary = write_summary(Path(cfg.results_dir)).read_text()
    table = summary[summary.index("| Model |"):].splitlines()
    assert table[0] == "| Model | n | scored samples (errors) | MAE | RMSE | Within 0.5 |", table[0]
    assert any(line.startswith(f"| {READOUT} | 1 | 16 (0) |") for line in table), table
    assert run_grid(cfg, omni_contenders(cfg), data) == {"written": 0, "skipped": 4}


def test_a_readout_that_reads_another_ones_model_reuses_its_training(llama_dir, manifest, tmp_path):
    from omni_msa.compare.config import compare_config_from_dict
    from omni_msa.compare.grid import prepare_data, run_grid
    from omni_msa.compare.omni_family import omni_contenders
    from omni_msa.files import read_jsonl
    from omni_msa.score import load_scorer

    base = run_config_dict(llama_dir, tmp_path, manifest)
    raw = {"output_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "results"), "dataset": DATASET,
           "data": {"train": str(manifest), "valid": str(manifest)}, "evaluate_on": "valid", "seeds": [0],
           "omni": {"base": {k: base[k] for k in ("backbone", "lora", "optim")}, "readouts": [READER, READOUT]}}
    cfg = compare_config_from_dict(raw)
    assert run_grid(cfg, omni_contenders(cfg), prepare_data(cfg, multimodal=False)) == {"written": 2, "skipped": 0}
    runs = sorted(p.parent.parent.parent.name for p in (tmp_path / "runs" / "runs").rglob("train_summary.json"))
    assert len(runs) == 1 and runs[0].startswith(READOUT + "-"), "one training, in the read readout's run"
    rows = {r["model"]: r for r in read_jsonl(tmp_path / "results" / "runs.jsonl")}
    preds = {model: np.array(row["per_sample"]["preds"]) for model, row in rows.items()}
    assert np.allclose(preds[READER], preds[READOUT] + 1, atol=1e-4), "the reader scores the trained model"
    assert "curve" in rows[READOUT]["training"] and "calibration_residuals" not in rows[READER]["training"], \
        "the trained readout's selection residuals calibrate nothing of the reader's"
    checkpoint = rows[READOUT]["checkpoint"]
    with pytest.raises(ValueError, match=f"trained by the '{READOUT}' readout; 'discriminative' reads None"):
        load_scorer(checkpoint, "discriminative")
    raw["omni"]["readouts"] = [READOUT, {"name": READER, "overrides": {"optim": {"lr": 1.0}}}]
    with pytest.raises(ValueError, match="scores the model the 'mean_pool_ext' readout trains"):
        compare_config_from_dict(raw)


def test_a_recipe_search_trains_each_candidate_once_and_selects_on_dev(llama_dir, manifest, tmp_path):
    from omni_msa.compare.config import compare_config_from_dict
    from omni_msa.compare.grid import prepare_data
    from omni_msa.compare.tuning import candidate_overrides, search, tuning_table

    base = run_config_dict(llama_dir, tmp_path, manifest)
    raw = {"output_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "results"), "dataset": DATASET,
           "data": {"train": str(manifest), "valid": str(manifest), "dev_fraction": 0.25}, "evaluate_on": "valid",
           "seeds": [0], "omni": {"base": {k: base[k] for k in ("backbone", "lora", "optim")},
                                  "readouts": [READOUT, READER]}}
    cfg = compare_config_from_dict(raw)
    data = prepare_data(cfg, multimodal=False)
    grid = {"lr": [1e-3, 3e-3], "head_lr": [3e-2]}
    rows = search(cfg, data, grid, max_steps=3, seed=0)
    assert [(r["readout"], r["optim"]["lr"], r["steps"]) for r in rows] == [(READOUT, 1e-3, 3), (READOUT, 3e-3, 3)], \
        "the reader trains nothing of its own; every candidate gets the same budget"
    assert len({r["dev_mae"] for r in rows}) == 2
    summaries = list((tmp_path / "runs" / "tuning").rglob("train_summary.json"))
    assert len(summaries) == 2 and all('"selected_on": "dev"' in p.read_text() for p in summaries)
    stamps = [p.stat().st_mtime_ns for p in summaries]
    assert search(cfg, data, grid, max_steps=3, seed=0) == rows
    assert [p.stat().st_mtime_ns for p in summaries] == stamps, "a finished candidate is not trained again"
    chosen = min(rows, key=lambda r: r["dev_mae"])
    assert f"lr={chosen['optim']['lr']:g} | {chosen['dev_mae']:.4f} | 3 |" in tuning_table(rows)
    assert "**chosen**" in tuning_table(rows)
    with pytest.raises(ValueError, match="held fixed by the comparison"):
        candidate_overrides({"epochs": [1, 2]})
    no_dev = compare_config_from_dict({**raw, "data": {"train": str(manifest), "valid": str(manifest)}})
    with pytest.raises(ValueError, match="selects on the dev split"):
        search(no_dev, prepare_data(no_dev, multimodal=False), grid, max_steps=3, seed=0)
