"""LF-DNN mechanics on generated data: shapes, each modality reaches the prediction, length-1 and
length-0 sequences, a short run that learns, and the configs that name it."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.record import MODALITIES, Sample

from classic_msa.blocks.subnets import masked_mean
from classic_msa.config import load_classic_config
from classic_msa.data import collate
from classic_msa.model import build_model
from classic_msa.models.lf_dnn import LFDNN, LFDNNConfig
from classic_msa.seeding import seed_everything
from classic_msa.trainer import TrainConfig, Trainer

TINY_LF_DNN = {"text_hidden": 16, "audio_hidden": 8, "vision_hidden": 8, "text_out": 16, "post_fusion_dim": 16}
UTTERANCE_DIMS = {"text": 6, "audio": 4, "vision": 5}
CONFIGS = Path(__file__).resolve().parents[2] / "scripts" / "configs"


def utterance_samples(n: int, seed: int = 0, dims: dict[str, int] = UTTERANCE_DIMS) -> list[Sample]:
    """Utterance-level samples like mosi_utterance's: one step per modality, no BERT ids."""
    rng = np.random.default_rng(seed)
    return [Sample(id=f"v{i}$_$1", split="train", label=float(rng.uniform(-3, 3)), text="w",
                   features={m: rng.normal(size=(1, d)).astype(np.float32) for m, d in dims.items()})
            for i in range(n)]


def with_length_zero(sample: Sample, modality: str) -> Sample:
    """The sample with `modality` empty: a zero row and length 0 (what a reader gives for no frames)."""
    features = {**sample.features, modality: np.zeros_like(sample.features[modality][:1])}
    return replace(sample, features=features, lengths={**sample.lengths, modality: 0})


def utterance_model(name: str, tiny: dict) -> torch.nn.Module:
    seed_everything(0)
    return build_model(name, {**tiny, **{f"{m}_dim": d for m, d in UTTERANCE_DIMS.items()}})


def predictions(model: torch.nn.Module, samples, protocol=None) -> torch.Tensor:
    batch = collate(samples) if protocol is None else collate(samples, protocol)
    with torch.no_grad():
        return model(batch)["pred"]


def check_each_modality_moves_only_its_sample(model: torch.nn.Module, samples: list[Sample]) -> None:
    """In eval mode a change of one modality of sample 0 changes its prediction and no other."""
    model.eval()
    before = predictions(model, samples)
    for m in MODALITIES:
        changed = dict(samples[0].features)
        changed[m] = changed[m] + 2.0 * np.sign(changed[m] + 1e-3).astype(np.float32)
        after = predictions(model, [samples[0].with_features(changed, samples[0].text_bert), *samples[1:]])
        assert abs(after[0] - before[0]) > 1e-5, m
        torch.testing.assert_close(after[1:], before[1:])


def check_length_one_and_dropped_modalities_are_finite(model: torch.nn.Module) -> None:
    samples = utterance_samples(6)
    samples[1] = with_length_zero(samples[1], "audio")
    samples[2] = with_length_zero(with_length_zero(samples[2], "text"), "vision")
    for training in (True, False):
        model.train(training)
        for protocol in (None, MissingnessProtocol(keep=frozenset({"text"}), seed=0),
                         MissingnessProtocol(keep=frozenset({"vision"}), intra_rate=0.5, seed=0)):
            terms = model(collate(samples) if protocol is None else collate(samples, protocol))
            assert terms["pred"].shape == (6,) and torch.isfinite(terms["pred"]).all()
            assert torch.isfinite(terms["task"])
        terms = model(collate(samples[:1]))              # a training batch of one sample (BatchNorm)
        assert torch.isfinite(terms["pred"]).all()


def check_short_run_beats_the_mean(name: str, tiny: dict, synthetic, *, epochs: int, lr: float) -> None:
    seed_everything(0)
    model = build_model(name, tiny)
    config = TrainConfig.from_dict({"lr": lr, "batch_size": 16, "patience": 0, "seed": 0, "schedule": "constant",
                                    "warmup_ratio": 0.0, "stages": [{"epochs": epochs}]})
    result = Trainer(model, config, dataset="mosi").fit(synthetic["train"], synthetic["valid"])
    history = [r["train"]["task"] for r in result.history]
    train_mean = np.mean([s.label for s in synthetic["train"]])
    mean_mae = float(np.mean([abs(s.label - train_mean) for s in synthetic["valid"]]))
    print(f"{name}: train task loss per epoch {[round(h, 3) for h in history]}; "
          f"valid MAE {result.valid_metrics['mae']:.3f} vs mean predictor {mean_mae:.3f}")
    assert history[-1] < 0.8 * history[0]
    assert result.valid_metrics["mae"] <= 0.85 * mean_mae


def check_configs_build(name: str) -> None:
    """Each config naming the model loads and builds it, at the data dims of its dataset."""
    paths = sorted(CONFIGS.glob(f"{name}_*.yaml"))
    assert {p.stem for p in paths} >= {f"{name}_synthetic", f"{name}_mosi_utterance"}
    for path in paths:
        cfg = load_classic_config(path)
        assert cfg.model_name == name
        dims = UTTERANCE_DIMS if "utterance" in path.stem else {}
        model = build_model(name, {**cfg.model_options, **{f"{m}_dim": d for m, d in dims.items()}})
        assert model.n_params() > 0


def test_masked_mean_reads_real_steps_only():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]],
                      [[5.0, 6.0], [7.0, 7.0], [7.0, 7.0]],
                      [[8.0, 8.0], [8.0, 8.0], [8.0, 8.0]]])
    out = masked_mean(x, torch.tensor([2, 1, 0]))
    torch.testing.assert_close(out, torch.tensor([[2.0, 3.0], [5.0, 6.0], [0.0, 0.0]]))


def test_shapes_and_loss(synthetic):
    seed_everything(0)
    model = build_model("lf_dnn", TINY_LF_DNN).eval()
    batch = collate(synthetic["train"][:5])
    with torch.no_grad():
        fused = model.fuse(batch)
        terms = model(batch)
    assert fused.shape == (5, 8 + 8 + 16)
    audio, vision, text = model.subnets(batch)
    torch.testing.assert_close(fused, torch.cat([audio, vision, text], dim=-1))   # late fusion: concatenation
    assert set(terms) == {"pred", "task"} and terms["pred"].shape == (5,)
    torch.testing.assert_close(terms["task"], (terms["pred"] - batch.labels).abs().mean())
    torch.testing.assert_close(terms["pred"], model.post_fusion(fused).squeeze(-1))


def test_each_modality_changes_the_prediction(synthetic):
    seed_everything(0)
    check_each_modality_moves_only_its_sample(build_model("lf_dnn", TINY_LF_DNN), synthetic["train"][:4])
    check_each_modality_moves_only_its_sample(utterance_model("lf_dnn", TINY_LF_DNN), utterance_samples(4))


def test_bert_special_rows_do_not_reach_the_prediction(synthetic):
    seed_everything(0)
    model = build_model("lf_dnn", TINY_LF_DNN).eval()
    samples = synthetic["train"][:3]
    text = samples[0].features["text"].copy()
    text[0] += 5.0                                      # the [CLS] row: computed from the unmasked sentence
    text[samples[0].sequence_length("text") - 1] += 5.0  # the [SEP] row
    changed = [samples[0].with_features({**samples[0].features, "text": text}, samples[0].text_bert), *samples[1:]]
    torch.testing.assert_close(predictions(model, changed), predictions(model, samples))


def test_length_one_and_dropped_modalities_give_finite_outputs():
    check_length_one_and_dropped_modalities_are_finite(utterance_model("lf_dnn", TINY_LF_DNN))


def test_default_parameter_count():
    model = LFDNN(LFDNNConfig())
    groups = {k: sum(p.numel() for p in v) for k, v in model.parameter_groups().items()}
    print(f"LF-DNN parameters at default config: {model.n_params():,}; per group: {groups}")
    assert sum(groups.values()) == model.n_params()
    # text LSTM 768 -> 128 and its Linear to 256 dominate: 4 * 128 * (768 + 128 + 2) + 129 * 256
    assert groups["text"] == 4 * 128 * (768 + 128 + 2) + 129 * 256
    assert model.post_fusion[1].in_features == 16 + 128 + 256


def test_short_training_run_learns(synthetic):
    check_short_run_beats_the_mean("lf_dnn", TINY_LF_DNN, synthetic, epochs=10, lr=3e-3)


def test_configs_build_the_model():
    check_configs_build("lf_dnn")


@pytest.mark.skipif(not Path("/work/shared/data/mosi_utterance/features.npz").is_file(),
                    reason="real mosi_utterance features not on this machine")
def test_real_utterance_dims_build_and_run():
    """A manual check on the real shapes (N x 1 x D: text 100, audio 73, vision 100), first rows only."""
    data = np.load("/work/shared/data/mosi_utterance/features.npz", allow_pickle=False)
    samples = [Sample(id=str(data["id"][i]), split="train", label=float(data["label"][i]), text="w",
                      features={m: data[m][i][None].astype(np.float32) for m in MODALITIES}) for i in range(8)]
    model = build_model("lf_dnn", {f"{m}_dim": int(data[m].shape[-1]) for m in MODALITIES}).eval()
    assert torch.isfinite(predictions(model, samples)).all()
