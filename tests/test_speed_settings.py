"""The speed settings a run chooses where its backbone config says `auto`, and the plan's dry run of them."""

from __future__ import annotations

import pytest
import torch

from omni_msa.backbone import BackboneConfig
from omni_msa.speed_settings import choose_attention, choose_gradient_checkpointing, speed_settings


@pytest.mark.parametrize(("cuda", "dtype", "installed", "custom_mask", "expected"), [
    (True, torch.bfloat16, True, False, "flash_attention_2"),
    (True, torch.float16, True, False, "flash_attention_2"),
    (True, torch.float32, True, False, "sdpa"),           # flash-attn takes half precision only
    (True, torch.bfloat16, False, False, "sdpa"),
    (True, torch.bfloat16, True, True, "sdpa"),           # a tree mask, which flash attention ignores
    (False, torch.bfloat16, True, False, "sdpa"),
])
def test_auto_attention(cuda, dtype, installed, custom_mask, expected):
    assert choose_attention("auto", cuda=cuda, dtype=dtype, flash_installed=installed,
                            custom_mask=custom_mask) == expected


def test_an_explicit_attention_is_kept_and_an_impossible_one_refused():
    assert choose_attention("eager", cuda=True, dtype=torch.bfloat16, flash_installed=True) == "eager"
    with pytest.raises(ValueError, match="flash-attn is not installed"):
        choose_attention("flash_attention_2", cuda=True, dtype=torch.bfloat16, flash_installed=False)
    with pytest.raises(ValueError, match="4-D attention mask"):
        choose_attention("flash_attention_2", cuda=True, dtype=torch.bfloat16, flash_installed=True,
                         custom_mask=True)


def test_auto_gradient_checkpointing_is_on_for_qlora_on_cuda_only():
    assert choose_gradient_checkpointing("auto", cuda=True, quantized=True)
    assert not choose_gradient_checkpointing("auto", cuda=True, quantized=False)
    assert not choose_gradient_checkpointing("auto", cuda=False, quantized=True)
    assert choose_gradient_checkpointing(True, cuda=False, quantized=False)


def test_a_config_resolves_for_this_machine_and_for_a_dry_run_on_cuda():
    cfg = BackboneConfig("tiny-thinker", quantization="4bit")
    on_gpu = speed_settings(cfg, cuda=True, flash_installed=True)
    assert (on_gpu.device, on_gpu.compute_dtype, on_gpu.attention, on_gpu.gradient_checkpointing) == \
        ("cuda", "bfloat16", "flash_attention_2", True)
    if not torch.cuda.is_available():
        here = speed_settings(cfg)
        assert (here.device, here.compute_dtype, here.attention, here.gradient_checkpointing) == \
            ("cpu", "float32", "sdpa", False)
    with pytest.raises(ValueError, match="gradient_checkpointing 'yes'"):
        BackboneConfig("tiny-thinker", gradient_checkpointing="yes")


def test_the_plan_prints_what_the_7b_config_uses_on_a_gpu(capsys):
    from omni_msa.cli.plan import print_speed_settings

    print_speed_settings("scripts/configs/qwen25omni_7b_mosi.yaml")
    out = capsys.readouterr().out
    assert "| installed | the others | bfloat16 | flash_attention_2 | on |" in out
    assert "| not installed | the others | bfloat16 | sdpa | on |" in out
    assert "generative_expected" in out and "This config's readout: `discriminative`" in out
