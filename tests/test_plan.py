"""The dry-run plan: exact counts against real models, the activation formula against autograd."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from omni_msa.backbone import (
    BackboneConfig,
    LoraSettings,
    apply_lora,
    decoder_of,
    input_embedding_dim,
    load_backbone,
    logical_numel,
    trainable_report,
)
from omni_msa.plan import (
    NF4_BYTES_PER_WEIGHT,
    Workload,
    audio_tokens,
    count_parameters,
    estimate_memory,
    layer_activation_bytes,
    load_arch,
    visual_tokens,
)
from omni_msa.tiny import build_tiny_thinker, save_tiny_thinker, tiny_thinker_config

CONFIGS = Path(__file__).resolve().parents[1] / "scripts" / "configs"


@pytest.fixture(scope="module")
def tiny_4bit(tmp_path_factory: pytest.TempPathFactory) -> nn.Module:
    pytest.importorskip("bitsandbytes")
    directory = save_tiny_thinker(tmp_path_factory.mktemp("tiny_thinker"))
    model, _ = load_backbone(BackboneConfig(str(directory), quantization="4bit", compute_dtype="bfloat16"))
    return model


def test_plan_on_the_tiny_config_equals_the_real_tiny_model() -> None:
    lora = LoraSettings(r=4)
    planned = count_parameters(tiny_thinker_config(), lora)
    peft_model = apply_lora(build_tiny_thinker(), lora, "qwen2_5_omni_thinker")
    head = nn.Linear(input_embedding_dim(peft_model), 1)
    head_params = sum(p.numel() for p in head.parameters())
    real = trainable_report(peft_model)
    assert planned.trainable == real["trainable"] + head_params
    assert planned.total == real["total"] + head_params
    assert planned.lora_by_component == {"language_model": real["trainable"], "audio_tower": 0, "visual": 0}


def test_planned_quantized_weights_are_those_bitsandbytes_quantizes(tiny_4bit: nn.Module) -> None:
    quantized = sum(logical_numel(p) for p in tiny_4bit.parameters() if type(p).__name__ == "Params4bit")
    assert count_parameters(tiny_thinker_config(), LoraSettings(r=4)).quantized == quantized


def test_activation_formula_matches_what_autograd_keeps(tiny_4bit: nn.Module) -> None:
    lora = LoraSettings(r=4, dropout=0.0)  # dropout masks differ between CPU (4 bytes) and CUDA (1)
    peft_model = apply_lora(tiny_4bit, lora, "qwen2_5_omni_thinker")
    peft_model.train()
    batch, seq = 2, 256
    input_ids = torch.randint(10, 266, (batch, seq), generator=torch.Generator().manual_seed(0))
    attention_mask = torch.ones(batch, seq, dtype=torch.long)
    attention_mask[1, :40] = 0
    kept: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        decoder_of(peft_model)(input_ids=input_ids, attention_mask=attention_mask)
    config = tiny_thinker_config()
    per_layer = layer_activation_bytes(config, count_parameters(config, lora), lora, seq)
    predicted = config.text_config.num_hidden_layers * per_layer * batch * seq
    assert sum(kept.values()) == pytest.approx(predicted, rel=0.05)


def test_the_7b_plan_runs_on_the_meta_device_in_seconds() -> None:
    start = time.perf_counter()
    config = load_arch(CONFIGS / "qwen25omni_7b_thinker_arch.json")
    counts = count_parameters(config, LoraSettings(r=16))
    assert time.perf_counter() - start < 30
    h, kv, inter, layers = 3584, 4 * 128, 18944, 28
    per_rank = layers * ((h + h) * 2 + (h + kv) * 2 + (h + inter) * 3)  # q, o; k, v; gate, up, down
    assert counts.lora == 16 * per_rank == 40_370_176
    assert counts.head == h + 1
    assert counts.base == 8_931_813_888
    assert counts.share == pytest.approx(0.0045, abs=1e-4)
    assert load_arch(CONFIGS / "qwen25omni_3b_thinker_arch.json").get_text_config().hidden_size == 2048


def test_token_counts_and_memory_terms() -> None:
    config = tiny_thinker_config()
    assert visual_tokens(8, 364, 644, config.vision_config) == 4 * 13 * 23
    assert visual_tokens(0, 364, 644, config.vision_config) == 0
    assert audio_tokens(4.0) == 100
    lora = LoraSettings(r=4)
    counts = count_parameters(config, lora)
    work = Workload(batch_size=2, text_tokens=64, video_frames=4, frame_height=56, frame_width=56, audio_seconds=1)
    checkpointed = estimate_memory(config, counts, lora, work)
    assert checkpointed.sequence_length == 64 + 2 * 2 * 2 + 25
    assert checkpointed.quantized_weights == counts.quantized * NF4_BYTES_PER_WEIGHT
    assert checkpointed.trainable_state == counts.trainable * 16
    full = estimate_memory(config, counts, lora, replace(work, gradient_checkpointing=False))
    assert full.activations > checkpointed.activations and full.peak > checkpointed.peak
    generative = estimate_memory(config, counts, lora, replace(work, readout="generative"))
    tokens = work.batch_size * checkpointed.sequence_length
    assert generative.logits == tokens * config.text_config.vocab_size * 10 and checkpointed.logits == 0
