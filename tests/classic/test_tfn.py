"""TFN mechanics on generated data: the tensor fusion against a brute-force outer product, shapes,
each modality reaches the prediction, the bounded output, length-1 and length-0 sequences, a short
run that learns, and the configs that name it."""

import itertools

import pytest
import torch

from classic_msa.data import collate
from classic_msa.model import build_model
from classic_msa.models.tfn import TFN, TFNConfig, tensor_fusion
from classic_msa.seeding import seed_everything

from .test_lf_dnn import (
    check_configs_build,
    check_each_modality_moves_only_its_sample,
    check_length_one_and_dropped_modalities_are_finite,
    check_short_run_beats_the_mean,
    utterance_model,
    utterance_samples,
)

TINY_TFN = {"text_hidden": 16, "audio_hidden": 4, "vision_hidden": 4, "text_out": 4, "post_fusion_dim": 16,
            "post_fusion_dropout": 0.1}


def brute_force_fusion(audio: torch.Tensor, vision: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Loops over every (i, j, k) of the extended vectors, written in MMSA's flattened layout."""
    batch, da, dv, dt = audio.shape[0], audio.shape[1] + 1, vision.shape[1] + 1, text.shape[1] + 1
    out = torch.empty(batch, da * dv * dt)
    for b in range(batch):
        a = [1.0, *audio[b].tolist()]
        v = [1.0, *vision[b].tolist()]
        t = [1.0, *text[b].tolist()]
        for i, j, k in itertools.product(range(da), range(dv), range(dt)):
            out[b, (i * dv + j) * dt + k] = a[i] * v[j] * t[k]
    return out


def test_tensor_fusion_is_the_outer_product_of_the_extended_vectors():
    torch.manual_seed(0)
    audio, vision, text = torch.randn(3, 2), torch.randn(3, 3), torch.randn(3, 4)
    fused = tensor_fusion(audio, vision, text)
    assert fused.shape == (3, 3 * 4 * 5)
    torch.testing.assert_close(fused, brute_force_fusion(audio, vision, text))
    # MMSA's two batched matrix products give the same layout
    ones = torch.ones(3, 1)
    a, v, t = torch.cat([ones, audio], 1), torch.cat([ones, vision], 1), torch.cat([ones, text], 1)
    mmsa = torch.bmm(torch.bmm(a[:, :, None], v[:, None]).reshape(3, -1, 1), t[:, None]).reshape(3, -1)
    torch.testing.assert_close(fused, mmsa)


def test_a_zero_modality_keeps_the_other_modalities_terms():
    torch.manual_seed(0)
    vision, text = torch.randn(2, 3), torch.randn(2, 2)
    fused = tensor_fusion(torch.zeros(2, 2), vision, text).reshape(2, 3, 4, 3)
    ones = torch.ones(2, 1)
    v, t = torch.cat([ones, vision], 1), torch.cat([ones, text], 1)
    torch.testing.assert_close(fused[:, 0], v[:, :, None] * t[:, None])   # the vision-text block survives
    assert torch.count_nonzero(fused[:, 1:]) == 0                           # every audio product is gone


def test_shapes_and_loss(synthetic):
    seed_everything(0)
    model = build_model("tfn", TINY_TFN).eval()
    batch = collate(synthetic["train"][:5])
    with torch.no_grad():
        fused = model.fuse(batch)
        terms = model(batch)
        parts = model.subnets(batch)
    assert model.fused_dim == 5 * 5 * 5 and fused.shape == (5, 125)
    torch.testing.assert_close(fused, brute_force_fusion(*parts))
    assert set(terms) == {"pred", "task"} and terms["pred"].shape == (5,)
    torch.testing.assert_close(terms["task"], (terms["pred"] - batch.labels).abs().mean())
    raw = model.post_fusion(fused).squeeze(-1)
    torch.testing.assert_close(terms["pred"], 6.0 * torch.sigmoid(raw) - 3.0)     # MMSA's bounded output


def test_output_bound():
    seed_everything(0)
    samples = utterance_samples(8)
    for sample in samples:
        for m in sample.features:
            sample.features[m] *= 1e3
    bounded = utterance_model("tfn", {**TINY_TFN, "output_bound": 1.0}).eval()
    with torch.no_grad():
        last = bounded.post_fusion[-1]
        last.weight.mul_(1e3)
        pred = bounded(collate(samples))["pred"]
    assert pred.abs().max() <= 1.0 and pred.abs().max() > 0.9
    unbounded = utterance_model("tfn", {**TINY_TFN, "output_bound": None}).eval()
    unbounded.load_state_dict(bounded.state_dict())
    with torch.no_grad():
        raw = unbounded(collate(samples))["pred"]
    torch.testing.assert_close(pred, torch.tanh(raw / 2))                      # b (2 sigmoid(x) - 1) = b tanh(x / 2)
    with pytest.raises(ValueError, match="output_bound"):
        build_model("tfn", {"output_bound": 0.0})


def test_each_modality_changes_the_prediction(synthetic):
    seed_everything(0)
    check_each_modality_moves_only_its_sample(build_model("tfn", TINY_TFN), synthetic["train"][:4])
    check_each_modality_moves_only_its_sample(utterance_model("tfn", TINY_TFN), utterance_samples(4))


def test_length_one_and_dropped_modalities_give_finite_outputs():
    check_length_one_and_dropped_modalities_are_finite(utterance_model("tfn", TINY_TFN))


def test_default_parameter_count():
    model = TFN(TFNConfig())
    groups = {k: sum(p.numel() for p in v) for k, v in model.parameter_groups().items()}
    print(f"TFN parameters at default config: {model.n_params():,}; fused dims {model.fused_dim:,}; "
          f"per group: {groups}")
    assert model.fused_dim == 17 ** 3
    assert sum(groups.values()) == model.n_params()
    assert groups["post_fusion"] == (17 ** 3 + 1) * 64 + 65 * 64 + 65
    mmsa = TFN(TFNConfig(audio_hidden=32, vision_hidden=128, text_out=32))
    assert mmsa.fused_dim == 140_481                                           # MMSA's MOSI sizes, as documented


def test_short_training_run_learns(synthetic):
    check_short_run_beats_the_mean("tfn", TINY_TFN, synthetic, epochs=10, lr=3e-3)


def test_configs_build_the_model():
    check_configs_build("tfn")
