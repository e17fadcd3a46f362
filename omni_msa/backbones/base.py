"""The backbone spec and its registry."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omni_msa.registry import Registry

# A decoder layer's attention and MLP projections, the default LoRA targets of a decoder.
DECODER_PROJECTIONS = r"(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))"


@dataclass(frozen=True)
class BackboneSpec:
    """How to load and adapt one family of backbones (the `backbone.kind` of a run config).

    `never_quantized` are full module-name prefixes (transformers 5 matches the skip list
    against full prefixes) kept in the compute dtype; it must be given, and must cover every
    encoder prefix, so no encoder is ever quantized silently. `lora_targets` is a regex peft
    full-matches against module names. `build_inputs(preprocessor, run_config)` returns the
    input builder; None means the shared prompt builder (`omni_msa.inputs.InputBuilder`).
    `encoder_cache_hook` is the dotted name of `install(model, root) -> cache` that serves the
    frozen encoders' outputs from an on-disk cache (`omni_msa.encoder_cache`); None: no cache.
    """

    kind: str
    model_class: str                      # dotted name, imported when a model is loaded
    processor_class: str
    never_quantized: tuple[str, ...] | None
    lora_targets: str
    encoder_prefixes: tuple[str, ...] = ()
    multimodal: bool = False
    gguf: bool = False                    # may load a GGUF file (transformers dequantizes it)
    build_inputs: Callable[[Any, Any], Any] | None = None
    finish_preprocessor: Callable[[Any], Any] | None = None
    encoder_cache_hook: str | None = None

    def __post_init__(self) -> None:
        if self.never_quantized is None:
            raise ValueError(f"backbone {self.kind!r}: the spec must say which modules stay unquantized "
                             f"(never_quantized), e.g. ('lm_head',)")
        uncovered = [p for p in self.encoder_prefixes if not p.startswith(tuple(self.never_quantized))]
        if uncovered:
            raise ValueError(f"backbone {self.kind!r}: encoders {uncovered} are not in never_quantized "
                             f"{self.never_quantized}; bitsandbytes would quantize them")
        if self.multimodal and not self.encoder_prefixes:
            raise ValueError(f"backbone {self.kind!r}: a multimodal backbone must name its encoder prefixes")

    def load_class(self, which: str) -> Any:
        """`model_class`, `processor_class` or `encoder_cache_hook`, imported."""
        module, _, name = getattr(self, which).rpartition(".")
        return getattr(importlib.import_module(module), name)


BACKBONES: Registry[BackboneSpec] = Registry("backbone kind", "omni_msa.backbones")


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    return BACKBONES.register(spec.kind, spec)


def get_backbone(kind: str) -> BackboneSpec:
    return BACKBONES.get(kind)


def backbone_names() -> list[str]:
    return BACKBONES.names()
