"""A tiny, randomly initialised Qwen2.5-Omni Thinker with an offline processor.

The built-in demo and the tests use it: the real Thinker has 7B/3B parameters and needs the hub,
this one has about 137 K parameters, builds in well under a second and runs a forward pass in
milliseconds on a CPU, yet has the same module tree (``model.audio_tower``, ``model.visual``,
``model.language_model``, ``lm_head``) and the same processor, so loading, quantization, LoRA
placement and both readouts are exercised on the real code paths.

Vocabulary: the 10 special tokens first (ids 0-9, so the media token ids are small and fixed),
then the 256 byte-level symbols without merges (ids 10-265): every text encodes, one token per
byte. The sizes are the ones seen to work on CPU (platform notes): every linear size is even
(an odd size sends bitsandbytes to a slow compiled path) and ``mrope_section`` sums to
head_dim / 2.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from tokenizers import pre_tokenizers
from transformers import (
    Qwen2_5OmniProcessor,
    Qwen2_5OmniThinkerConfig,
    Qwen2_5OmniThinkerForConditionalGeneration,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
    WhisperFeatureExtractor,
)

# id -> token; the order fixes the ids used in the Thinker config below.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|AUDIO|>",
    "<|IMAGE|>",
    "<|VIDEO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|im_start|>",
    "<|vision_bos|>",
    "<|vision_eos|>",
    "<|im_end|>",
)
TOKEN_ID: dict[str, int] = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
VOCAB_SIZE = len(SPECIAL_TOKENS) + 256

# Names under which Qwen2_5OmniProcessor looks the media tokens up on the tokenizer.
_MEDIA_TOKEN_ATTRIBUTES = {
    "audio_token": "<|AUDIO|>",
    "image_token": "<|IMAGE|>",
    "video_token": "<|VIDEO|>",
    "audio_bos_token": "<|audio_bos|>",
    "audio_eos_token": "<|audio_eos|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
}

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

# Qwen2.5-Omni's ChatML format, written for this project: a default system turn when the
# conversation has none; string content or a list of typed parts; each medium becomes
# <bos><placeholder><eos>, which the processor expands to the right number of media tokens.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\n" + DEFAULT_SYSTEM_PROMPT + "<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'audio' %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif part['type'] == 'image' %}<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif part['type'] == 'video' %}<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Small video frames for tiny runs (pixels per frame); the processor's own default is far larger.
TINY_VIDEO_SIZE = {"shortest_edge": 16 * 28 * 28, "longest_edge": 32 * 28 * 28}

_TINY_CONFIG: dict[str, Any] = {
    "text_config": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": VOCAB_SIZE,
        "max_position_embeddings": 4096,
        # head_dim 8: the three mrope sections (time, height, width) must sum to 8 / 2.
        "rope_parameters": {"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 1e6},
        # With the usual 0.02, a 32-wide frozen lm_head gives logits within about +-0.6, too flat
        # for LoRA to make the answer tokens likely: the generative readout could not learn.
        "initializer_range": 0.3,
    },
    "initializer_range": 0.3,
    "audio_config": {
        "d_model": 32,
        "encoder_layers": 2,
        "encoder_attention_heads": 4,
        "encoder_ffn_dim": 32,
        "num_mel_bins": 128,
        "output_dim": 32,
    },
    "vision_config": {
        "hidden_size": 32,
        "depth": 2,
        "num_heads": 4,
        "intermediate_size": 24,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": 32,
        "fullatt_block_indexes": [0],
    },
    "audio_token_index": TOKEN_ID["<|AUDIO|>"],
    "image_token_index": TOKEN_ID["<|IMAGE|>"],
    "video_token_index": TOKEN_ID["<|VIDEO|>"],
    "audio_start_token_id": TOKEN_ID["<|audio_bos|>"],
    "audio_end_token_id": TOKEN_ID["<|audio_eos|>"],
    "vision_start_token_id": TOKEN_ID["<|vision_bos|>"],
    "vision_end_token_id": TOKEN_ID["<|vision_eos|>"],
    # Qwen's "user" word token; the Thinker's forward does not read it (transformers 5.23).
    "user_token_id": TOKEN_ID["<|im_start|>"],
    "position_id_per_seconds": 25,
    "seconds_per_chunk": 2,
    "pad_token_id": TOKEN_ID["<|endoftext|>"],
    "eos_token_id": TOKEN_ID["<|im_end|>"],
}


def tiny_thinker_config(**overrides: Any) -> Qwen2_5OmniThinkerConfig:
    """The tiny Thinker config; ``text_config=``/``audio_config=``/``vision_config=`` dicts
    are merged into the defaults, any other keyword replaces a top-level value."""
    values = copy.deepcopy(_TINY_CONFIG)
    for key, value in overrides.items():
        if key in ("text_config", "audio_config", "vision_config"):
            values[key].update(value)
        else:
            values[key] = value
    return Qwen2_5OmniThinkerConfig(**values)


def build_tiny_thinker(seed: int = 0, **overrides: Any) -> Qwen2_5OmniThinkerForConditionalGeneration:
    """A tiny Thinker with random weights drawn from ``seed`` (float32, eval mode)."""
    config = tiny_thinker_config(**overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5OmniThinkerForConditionalGeneration(config)
    return model.eval()


def build_tokenizer() -> Qwen2Tokenizer:
    """Byte-level Qwen2 tokenizer (no merges) with the Omni special and media tokens."""
    vocab = dict(TOKEN_ID)
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        extra_special_tokens=_MEDIA_TOKEN_ATTRIBUTES,
        chat_template=CHAT_TEMPLATE,
    )
    # The ChatML markers are special too (never split, dropped by skip_special_tokens).
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    return tokenizer


def build_offline_processor(out_dir: str | Path | None = None) -> Qwen2_5OmniProcessor:
    """A full ``Qwen2_5OmniProcessor`` built without the hub; saved to ``out_dir`` if given."""
    processor = Qwen2_5OmniProcessor(
        image_processor=Qwen2VLImageProcessor(),
        video_processor=Qwen2VLVideoProcessor(size=dict(TINY_VIDEO_SIZE)),
        feature_extractor=WhisperFeatureExtractor(feature_size=128),
        tokenizer=build_tokenizer(),
        chat_template=CHAT_TEMPLATE,
    )
    if out_dir is not None:
        processor.save_pretrained(str(out_dir))
    return processor


def tiny_thinker_fingerprint() -> str:
    """Changes whenever the tiny config does: names cached copies of the tiny Thinker."""
    return hashlib.blake2b(json.dumps(_TINY_CONFIG, sort_keys=True).encode(), digest_size=6).hexdigest()


def save_tiny_thinker(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny Thinker and its processor to ``out_dir``; ``load_backbone`` loads it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    build_tiny_thinker(seed).save_pretrained(str(out))
    build_offline_processor(out)
    return out
