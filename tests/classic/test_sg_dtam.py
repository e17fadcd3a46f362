import numpy as np
import pytest
import torch

from classic_msa.data import collate
from classic_msa.model import build_model
from classic_msa.models.sg_dtam import (
    SGDTAM,
    DynamicTimeAlignment,
    SGDTAMConfig,
    alignment_loss,
    generation_order,
    segment_pool,
    staged_generation_mask,
)
from classic_msa.seeding import seed_everything
from classic_msa.trainer import TrainConfig, Trainer

TINY_SG_DTAM = {"dim": 16, "num_heads": 4, "ff_dim": 32, "segments": 8, "mine_hidden": 16,
                "contrast_proj_dim": 16, "contrast_hidden": 16, "classifier_hidden": 16}


def test_stage_one_mask_shows_only_the_bridge_and_the_known_words():
    n_words = torch.tensor([3, 1])
    stage1 = staged_generation_mask(1, n_words, max_words=4, segments=2)     # [bridge | 4 words | 2 generated]
    visible1 = ~stage1
    assert visible1.tolist() == [[True, True, True, True, False, False, False],
                                 [True, True, False, False, False, False, False]]
    stage2 = staged_generation_mask(2, n_words, max_words=4, segments=2)
    assert (~stage2).tolist() == [[True, True, True, True, False, True, True],
                                  [True, True, False, False, False, True, True]]
    # A row without words still sees the bridge token: attention never has an empty key set.
    assert not staged_generation_mask(1, torch.tensor([0]), 4, 2)[0, 0]


def test_stage_one_output_ignores_the_generated_slot_and_stage_two_reads_it():
    seed_everything(0)
    model = SGDTAM(SGDTAMConfig(**TINY_SG_DTAM)).eval()
    text = torch.randn(2, 5, 16)
    n_words = torch.tensor([5, 3])
    target = torch.tensor([0, 1])
    first_a, first_b = torch.randn(2, 8, 16), torch.randn(2, 8, 16)
    with torch.no_grad():
        stage1 = model.generator(target, text, None, n_words, stage=1)
        # Stage 1 hides the generated slot: whatever sits there cannot change its output.
        mask = staged_generation_mask(1, n_words, 5, 8)
        context = lambda first: torch.cat([model.generator.bridge.expand(2, -1, -1), text, first], 1)  # noqa: E731
        queries = model.generator.query_positions + model.generator.modality[target][:, None]
        out_a = model.generator.norm(model.generator.layer(queries, context(first_a), mask))
        out_b = model.generator.norm(model.generator.layer(queries, context(first_b), mask))
        torch.testing.assert_close(out_a, out_b)
        torch.testing.assert_close(out_a, stage1)
        # Padding words beyond n_words are hidden too.
        text_b = text.clone()
        text_b[1, 3:] = 100.0
        torch.testing.assert_close(model.generator(target, text_b, None, n_words, stage=1), stage1)
        # Stage 2 does read the stage-1 output.
        stage2_a = model.generator(target, text, first_a, n_words, stage=2)
        stage2_b = model.generator(target, text, first_b, n_words, stage=2)
    assert not torch.allclose(stage2_a, stage2_b)


def test_generated_steps_are_autoregressive():
    seed_everything(0)
    model = SGDTAM(SGDTAMConfig(**TINY_SG_DTAM)).eval()
    layer = model.generator.layer
    x = torch.randn(1, 8, 16)
    context = torch.randn(1, 4, 16)
    mask = torch.zeros(1, 4, dtype=torch.bool)
    changed = x.clone()
    changed[:, 5:] += 3.0
    with torch.no_grad():
        a, b = layer(x, context, mask), layer(changed, context, mask)
    torch.testing.assert_close(a[:, :5], b[:, :5])            # steps < 5 do not see steps >= 5
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_order_flips_when_the_mi_difference_crosses_the_threshold():
    delta = torch.tensor([-0.5, 0.0, 0.11, 0.119, 0.121, 0.13, 1.0])
    assert generation_order(delta, 0.12).tolist() == [False, False, False, False, True, True, True]
    # Inside the model: make the text-audio critic score higher by a constant and watch the order flip.
    seed_everything(0)
    model = SGDTAM(SGDTAMConfig(**TINY_SG_DTAM)).eval()
    text, audio, vision = torch.randn(4, 16), torch.randn(4, 16), torch.randn(4, 16)
    for mine in (model.mine_audio, model.mine_vision):
        mine.log_ema.fill_(0.0)
    with torch.no_grad():
        base = model.mi_difference(text, audio, vision)
        model.mine_audio.log_ema.fill_(float(base.max() - 0.12 + 0.01))    # every delta just below 0.12
        below = model.mi_difference(text, audio, vision)
        model.mine_audio.log_ema.sub_(0.02)                                  # ... and now just above
        above = model.mi_difference(text, audio, vision)
    assert (below <= 0.12).all() and (above > 0.12).any()
    assert generation_order(below, 0.12).sum() < generation_order(above, 0.12).sum()


def test_alignment_mask_blocks_pairs_beyond_the_threshold():
    module = DynamicTimeAlignment(16, 4, 32, 0.0, tau_init=0.2, temperature=0.02, lambda_init=1.0).eval()
    offsets = torch.tensor([[[0.0, 0.05, 0.15, 0.3, 0.5, 0.9]]])
    mask = module.offset_mask(offsets)[0, 0, 0]
    assert (mask[:3] > 0.9).all() and (mask[3:] < 0.01).all()
    # Attention: a query at t = 0.05 over keys at 0.05 ... 0.95 puts ~no weight beyond tau = 0.2.
    query_times = torch.tensor([[0.05]])
    key_times = ((torch.arange(10) + 0.5) / 10)[None]
    with torch.no_grad():
        _, weights = module(torch.randn(1, 1, 16), query_times, torch.randn(1, 10, 16), key_times)
    far = (key_times - 0.05).abs()[0] > 0.3
    assert weights[0, :, 0, far].sum(-1).max() < 1e-2
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 4, 1))
    # tau is learnable through the soft mask, and lambda penalises offsets.
    logits_bias = module.attention_bias(offsets)
    logits_bias.sum().backward()
    assert module.tau.grad is not None and module.tau.grad.abs().sum() > 0
    assert module.raw_lambda.grad < 0            # larger lambda lowers the bias on non-zero offsets


def test_alignment_loss_prefers_the_aligned_stream_over_a_shifted_copy():
    torch.manual_seed(0)
    text = torch.randn(2, 12, 8)
    lengths = torch.tensor([12, 9])
    same = alignment_loss(text, text, lengths, gamma=0.1)
    shifted = alignment_loss(text, torch.roll(text, 3, dims=1), lengths, gamma=0.1)
    assert same < shifted


def test_segment_pool_averages_equal_slices_of_the_real_length():
    x = torch.arange(10, dtype=torch.float32)[None, :, None].repeat(2, 1, 1)
    pooled = segment_pool(x, torch.tensor([8, 2]), 4)
    assert pooled[0, :, 0].tolist() == [0.5, 2.5, 4.5, 6.5]
    assert pooled[1, :, 0].tolist() == [0.0, 0.0, 1.0, 1.0]     # short rows repeat their frames


def test_forward_terms_and_substitution_of_dropped_modalities(synthetic):
    from omni_msa.data.missing import MissingnessProtocol

    seed_everything(0)
    model = build_model("sg_dtam", TINY_SG_DTAM).eval()
    batch = collate(synthetic["train"][:6], MissingnessProtocol(keep=frozenset({"text"}), seed=0))
    with torch.no_grad():
        out = model.represent(batch)
        terms = model(batch)
    assert set(terms) == {"pred", "task", "contrast", "recon", "order", "align", "smooth", "mine"}
    assert all(terms[k].dim() == 0 and torch.isfinite(terms[k]) for k in terms if k != "pred")
    assert out.generated["audio"].shape == (6, 8, 16) and out.aligned["vision"].shape[:2] == out.text_states.shape[:2]
    first_is_audio = out.audio_first[:, None, None]
    torch.testing.assert_close(out.generated["audio"], torch.where(first_is_audio, out.first, out.second))


def test_default_parameter_count():
    model = SGDTAM(SGDTAMConfig())          # MOSI shapes: text 768, audio 5, vision 20; d 32, 8 heads
    print(f"SG-DTAM parameters at default config (paper: 125-155 K): {model.n_params():,}; per group:",
          {k: sum(p.numel() for p in v) for k, v in model.parameter_groups().items()})
    assert 125_000 <= model.n_params() <= 155_000


def test_short_training_run_learns(synthetic):
    seed_everything(0)
    model = build_model("sg_dtam", TINY_SG_DTAM)
    print(f"SG-DTAM parameters at the test config: {model.n_params():,}")
    config = TrainConfig.from_dict({"lr": 5e-3, "weight_decay": 0.0, "batch_size": 16, "patience": 0, "seed": 0,
                                    "stages": [{"epochs": 8}]})
    result = Trainer(model, config, dataset="mosi").fit(synthetic["train"], synthetic["valid"])
    history = [r["train"] for r in result.history]
    train_mean = np.mean([s.label for s in synthetic["train"]])
    mean_mae = float(np.mean([abs(s.label - train_mean) for s in synthetic["valid"]]))
    print("train task loss per epoch:", [round(h["task"], 3) for h in history])
    print("train total loss per epoch:", [round(h["total"], 3) for h in history])
    print("recon per epoch:", [round(h["recon"], 3) for h in history])
    print(f"valid MAE {result.valid_metrics['mae']:.3f} vs mean predictor {mean_mae:.3f}")
    assert history[-1]["task"] < 0.6 * history[0]["task"]
    assert history[-1]["total"] < history[0]["total"]
    assert history[-1]["recon"] < history[0]["recon"]
    assert result.valid_metrics["mae"] <= 0.85 * mean_mae


@pytest.mark.parametrize("name", ["sg_dtam_synthetic.yaml", "sg_dtam_mosi.yaml"])
def test_configs_build_the_model(name):
    from pathlib import Path

    from classic_msa.config import load_classic_config

    path = Path(__file__).resolve().parents[2] / "scripts" / "configs" / name
    run = load_classic_config(path)
    assert run.model_name == "sg_dtam"
    model = build_model(run.model_name, run.model_options)
    assert model.config.dim == 32 and model.config.num_heads == 8
    assert run.train_config(0).weight_decay == 0.0            # AdamW without decay = Adam
