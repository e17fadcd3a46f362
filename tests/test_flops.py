"""The step FLOP formula (omni_msa/flops.py): its dense terms equal what PyTorch's FLOP counter counts
on the tiny Thinker's encoders and language model, and a step composes them as documented."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from omni_msa.flops import dense, step_flops, weight_counts
from omni_msa.plan import Workload, load_arch
from omni_msa.tiny import build_tiny_thinker, tiny_thinker_config


@pytest.fixture(scope="module")
def tiny():
    config = tiny_thinker_config()
    return config, build_tiny_thinker(), weight_counts(config)


def counted(run) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        run()
    return counter.get_total_flops()


def test_dense_terms_equal_the_flop_counter(tiny):
    config, model, weights = tiny
    vision = config.vision_config
    grid = (2, 8, 8)
    pixels = torch.randn(grid[0] * grid[1] * grid[2], 3 * vision.temporal_patch_size * vision.patch_size**2)
    patches = grid[0] * grid[1] * grid[2]
    assert counted(lambda: model.model.visual(pixels, grid_thw=torch.tensor([grid]))) == \
        dense(weights["visual"], patches) + dense(weights["visual_merger"], patches // 4)
    frames = 100   # 2 s at 50 positions per second after the stride-2 convolution
    mel = torch.randn(config.audio_config.num_mel_bins, 2 * frames)
    assert counted(lambda: model.model.audio_tower(mel, feature_lens=torch.tensor([2 * frames]),
                                                   aftercnn_lens=torch.tensor([frames]))) == \
        dense(weights["audio_conv1"], 2 * frames) + dense(weights["audio_tower"], frames) + \
        dense(weights["audio_proj"], frames // 2)
    tokens = 40
    ids = torch.randint(0, 100, (1, tokens))
    assert counted(lambda: model.model.language_model(input_ids=ids)) == dense(weights["language_model"], tokens)


def test_a_step_is_three_forwards_with_checkpointing_and_the_encoders_run_once():
    config = load_arch("scripts/configs/qwen25omni_7b_thinker_arch.json")
    weights = weight_counts(config)
    mosi = Workload(batch_size=2, text_tokens=128, video_frames=8, audio_seconds=4.0, gradient_checkpointing=True)
    with_ckpt = step_flops(config, mosi, weights)
    without = step_flops(config, replace(mosi, gradient_checkpointing=False), weights)
    assert with_ckpt.language_model == pytest.approx(1.5 * without.language_model)
    assert with_ckpt.encoders == without.encoders > 0
    assert step_flops(config, replace(mosi, batch_size=1), weights).encoders == pytest.approx(with_ckpt.encoders / 2)
    text_only = step_flops(config, replace(mosi, video_frames=0, audio_seconds=0.0), weights)
    assert text_only.encoders == 0 and text_only.encoder_share == 0
    assert 0.05 < with_ckpt.encoder_share < 0.2, with_ckpt.encoder_share
