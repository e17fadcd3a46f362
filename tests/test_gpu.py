"""The CUDA paths (marker `gpu`; skipped, not failed, where torch.cuda.is_available() is false): the
tiny Thinker's 4-bit QLoRA training with bf16 compute, batch scoring, and a classic model's
training and evaluation, each on the GPU through the same functions the CLI calls."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from omni_msa.assemble import assemble
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.synthetic import make_synthetic
from omni_msa.score import load_scorer, score_file
from omni_msa.scoring_io import read_predictions
from omni_msa.train import train

from classic_msa.evaluation import evaluate
from classic_msa.model import build_model
from classic_msa.seeding import seed_everything
from classic_msa.trainer import TrainConfig, Trainer

from conftest import tiny_run_config

pytestmark = pytest.mark.gpu

TEXT_ONLY = MissingnessProtocol(keep={"text"})
TINY_MDF = {"dim": 16, "lstm_hidden": 8, "mapper_hidden": 16, "extractor_hidden": 16, "predictor_hidden": 16,
            "generator_hidden": 16}


def devices(module: torch.nn.Module) -> set[str]:
    return {p.device.type for p in module.parameters()}


def test_4bit_qlora_training_with_bf16_compute(tiny_thinker_dir, tmp_path):
    cfg = tiny_run_config(tiny_thinker_dir, tmp_path, quantization="4bit", epochs=100, max_steps=40,
                          eval_every_steps=40, lr=1e-2)
    cfg = replace(cfg, backbone=replace(cfg.backbone, compute_dtype="bfloat16"), train_missing=TEXT_ONLY,
                  eval_missing=TEXT_ONLY)
    torch.cuda.reset_peak_memory_stats()
    summary = train(cfg, show_progress=False)
    assert torch.cuda.max_memory_allocated() > 0, "training must run on the GPU"
    losses = [row["loss"] for row in summary["history"] if row["split"] == "train"]
    assert len(losses) == 40 and np.isfinite(losses).all()
    first, last = np.mean(losses[:8]), np.mean(losses[-8:])
    assert last < 0.7 * first, (first, last)

    initial = dict(assemble(cfg).readout.named_parameters())        # same seed: the weights before training
    trained, _ = load_scorer(tmp_path / "checkpoint-last")
    lora = {name: p for name, p in trained.readout.named_parameters() if "lora_" in name}
    assert lora, "the checkpoint must carry LoRA weights"
    assert "Linear4bit" in {type(m).__name__ for m in trained.readout.modules()}
    for name, weight in lora.items():
        assert weight.dtype == initial[name].dtype
        assert not torch.equal(weight.detach().cpu(), initial[name].detach().cpu()), f"{name} did not change"


@pytest.mark.parametrize("quantization", ["none", "4bit"])
def test_batch_scoring(tiny_thinker_dir, synthetic_samples, tmp_path, quantization):
    cfg = tiny_run_config(tiny_thinker_dir, tmp_path, quantization=quantization)   # compute dtype: bf16 on CUDA
    assembled = assemble(cfg)
    assembled.readout.eval()
    samples = synthetic_samples[:6]
    out = tmp_path / "preds.jsonl"
    summary = score_file(assembled, cfg, samples, out, protocol=MissingnessProtocol(), batch_size=4)
    rows = read_predictions(out)
    assert sorted(r["id"] for r in rows) == sorted(s.id for s in samples), "one row per sample"
    assert all(np.isfinite(r["pred"]) and r["status"] == "ok" for r in rows)
    assert len({r["pred"] for r in rows}) > 1, "different samples must get different predictions"
    assert summary["n"] == len(samples)
    assert devices(assembled.readout) == {"cuda"}


def test_classic_model_trains_and_evaluates(tmp_path):
    samples = make_synthetic(240, tmp_path, seed=0, with_media=False)
    split = {name: [s for s in samples if s.split == name] for name in ("train", "valid", "test")}
    seed_everything(0)
    model = build_model("mdf", TINY_MDF)
    config = TrainConfig.from_dict({"lr": 5e-3, "batch_size": 16, "patience": 0, "seed": 0,
                                    "stages": [{"epochs": 10}]})
    result = Trainer(model, config, dataset="mosi", device="cuda").fit(split["train"], split["valid"])
    assert devices(model) == {"cuda"}
    assert np.isfinite(result.valid_metrics["mae"])

    on_gpu = evaluate(model, split["test"], dataset="mosi", device="cuda")
    assert on_gpu.ids == [s.id for s in split["test"]] and np.isfinite(on_gpu.preds).all()
    assert (on_gpu.latency_ms > 0).all()
    train_mean = np.mean([s.label for s in split["train"]])
    mean_mae = float(np.mean([abs(s.label - train_mean) for s in split["test"]]))
    assert on_gpu.metrics["mae"] < 0.5 * mean_mae, "ten epochs must beat the mean predictor by far"
    on_cpu = evaluate(model.to("cpu"), split["test"], dataset="mosi", device="cpu")
    np.testing.assert_allclose(on_gpu.preds, on_cpu.preds, atol=1e-2)
    np.testing.assert_array_equal(on_gpu.labels, on_cpu.labels)
