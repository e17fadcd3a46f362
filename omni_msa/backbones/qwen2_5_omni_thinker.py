"""The Thinker of Qwen2.5-Omni: audio tower and vision encoder (never quantized, frozen by
default) in front of a Qwen2 decoder; LoRA on the decoder's projections only; the frozen encoders'
outputs are cached on disk (`omni_msa.encoder_cache`)."""

from omni_msa.backbones.base import DECODER_PROJECTIONS, BackboneSpec, register_backbone

register_backbone(BackboneSpec(
    kind="qwen2_5_omni_thinker",
    model_class="transformers.Qwen2_5OmniThinkerForConditionalGeneration",
    processor_class="transformers.Qwen2_5OmniProcessor",
    never_quantized=("model.audio_tower", "model.visual", "lm_head"),
    lora_targets=r"model\.language_model\.layers\.\d+\." + DECODER_PROJECTIONS,
    encoder_prefixes=("model.audio_tower", "model.visual"),
    multimodal=True,
    encoder_cache_hook="omni_msa.encoder_cache.install_thinker_cache",
))
