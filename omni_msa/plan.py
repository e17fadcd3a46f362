"""Dry-run plan for QLoRA training of a Qwen2.5-Omni Thinker: no weights, no GPU.

Parameter counts are exact. The Thinker is built on the meta device from its architecture
values (``scripts/configs/qwen25omni_*_thinker_arch.json``), LoRA is applied with the same code
as a real run (``omni_msa.backbone.apply_lora``) and the discriminative readout's regression
head ``Linear(hidden, 1)`` is added. ``share = trainable / total`` with
``total = base + LoRA + head`` and ``trainable = LoRA + head``. The weights bitsandbytes would
store in 4 bits are counted as in ``from_pretrained``: every ``nn.Linear`` outside
``model.audio_tower``, ``model.visual`` and ``lm_head`` (the language model's projections).

GPU memory is an estimate, in bytes (reported in GiB):

    peak = static + 1.1 * dynamic + CUDA context (0.5 GiB)

    static  = Q * (0.5 + 1/64 + 4/(64*256))    4-bit NF4 weights, two per byte, plus double-quant
                                               constants: an 8-bit absmax per 64-weight block and
                                               an fp32 scale per 256 blocks
            + U * 2                            everything else in bf16: audio tower, vision
                                               encoder, embeddings, lm_head, norms, biases
            + T * 16                           LoRA + head in fp32: weight 4, grad 4, AdamW 8

    dynamic = max(encoder transient, LM activations + logits)   (the encoders run first)

Q, U, T: quantized, unquantized and trainable parameter counts. The 1.1 factor is allocator
slack on the dynamic part.

Token counts per sample: visual tokens = ceil(frames / 2) * (H/14) * (W/14) / 4 (temporal patch
2, patch 14, 2x2 spatial merge; H and W rounded to multiples of 28 as the processor does);
audio tokens = 25 per second (the encoder runs at 50 frames/s and pools by 2); sequence
S = text tokens + visual tokens + audio tokens; N = batch * S tokens in the language model.

Language-model activations: bytes saved per token by one decoder layer (h hidden, q = heads *
head_dim, I intermediate, n heads, r LoRA rank, S sequence length), bf16 compute, SDPA with a
memory-efficient kernel (a padding mask rules out flash attention and GQA, so keys and values
are repeated to ``q`` width; no S x S score matrix is stored):

    A = 2 * 4h                          two RMSNorms keep their fp32 input
      + 3 * 2q + 2q + 4n                SDPA keeps q, k, v and its output (bf16), fp32 logsumexp
      + 2S                              SDPA turns the boolean padding mask into an additive
                                        bf16 mask in every layer and keeps it (B * S^2 * 2 bytes)
      + 3 * 2I                          SwiGLU keeps gate, SiLU(gate), up (bf16)
      + sum over LoRA modules (4 d_in + [1 d_in if dropout] + 4r)
                                        peft casts the module input to fp32 for the fp32 adapter
                                        and keeps it (or its dropout output) for the gradient of
                                        lora_A, plus the dropout mask (1 byte on CUDA; PyTorch's
                                        CPU dropout keeps a 4-byte one); lora_A's output for lora_B

    without checkpointing: L * A * N + A * N           (all layers + one layer's gradients)
    with checkpointing:    L * 2h * N + 2 * A * N      (bf16 layer inputs + one layer recomputed
                                                        and its gradients)

Measured on CPU with saved-tensor hooks (tests/test_plan.py), ``A`` matches the bytes a 4-bit
LoRA decoder really keeps to within a few percent.

The frozen 4-bit projections keep nothing (their backward needs only the weight) and the
encoders, frozen and fed by inputs that need no gradient, keep nothing either: their cost is a
transient working set of one layer, ``2 * tokens * (7d + 3 ffn)`` bytes per encoder (vision at
4 patches per visual token, audio at 50 frames/s). The discriminative readout never computes
vocabulary logits; the generative one (trained through ``labels=``) computes them at every
position: ``N * V * 10`` bytes (bf16 logits, their fp32 copy in the loss, fp32 log-softmax).
Ignored: the boolean attention mask and RoPE tables (once per step), the optimizer's step
temporaries, compute kernels' own workspaces beyond the CUDA context, and the activations of
LoRA adapters inside the encoders (only non-default target lists put them there).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from omni_msa.backbone import LoraSettings, apply_lora, trainable_report, unwrap
from omni_msa.backbones import get_backbone
from omni_msa.readouts import get_readout

GIB = 1024**3
NF4_BYTES_PER_WEIGHT = 0.5 + 1 / 64 + 4 / (64 * 256)
BF16 = 2
TRAINABLE_BYTES_PER_PARAM = 4 + 4 + 8
CUDA_CONTEXT_BYTES = 0.5 * GIB
ALLOCATOR_SLACK = 0.10
AUDIO_TOKENS_PER_SECOND = 25
AUDIO_ENCODER_FRAMES_PER_SECOND = 50


def load_arch(path: str | Path) -> Any:
    """A ``Qwen2_5OmniThinkerConfig`` from an architecture JSON (keys starting with ``_`` skipped)."""
    from transformers import Qwen2_5OmniThinkerConfig

    values = {k: v for k, v in json.loads(Path(path).read_text()).items() if not k.startswith("_")}
    return Qwen2_5OmniThinkerConfig(**values)


def build_meta_thinker(config: Any) -> nn.Module:
    """The Thinker with every tensor on the meta device: shapes only, no memory."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    with torch.device("meta"):
        return Qwen2_5OmniThinkerForConditionalGeneration(config)


THINKER = get_backbone("qwen2_5_omni_thinker")


def quantized_weight_count(model: nn.Module) -> int:
    """Weights bitsandbytes stores in 4 bits: ``nn.Linear`` weights outside the skip list."""
    return sum(
        module.weight.numel()
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not name.startswith(THINKER.never_quantized)
    )


@dataclass(frozen=True)
class ParamCounts:
    base: int
    lora: int
    head: int
    quantized: int  # part of ``base`` stored in 4 bits
    lora_by_component: dict[str, int]  # "language_model" / "audio_tower" / "visual"
    lora_lm_modules: int  # LoRA-wrapped linear layers in the language model (all layers)
    lora_lm_in_features: int  # sum of their input widths

    @property
    def total(self) -> int:
        return self.base + self.lora + self.head

    @property
    def trainable(self) -> int:
        return self.lora + self.head

    @property
    def unquantized(self) -> int:
        return self.base - self.quantized

    @property
    def share(self) -> float:
        return self.trainable / self.total

    @property
    def naive_4bit_share(self) -> float:
        """The share a plain ``sum(p.numel())`` over the 4-bit model gives: packed 4-bit
        weights count half (two per uint8 element)."""
        return self.trainable / (self.total - self.quantized // 2)


def count_parameters(config: Any, lora: LoraSettings, head_outputs: int = 1) -> ParamCounts:
    """Exact counts for the Thinker of ``config`` with ``lora`` and a Linear(hidden, outputs) head."""
    model = build_meta_thinker(config)
    base = sum(p.numel() for p in model.parameters())
    quantized = quantized_weight_count(model)
    from peft.tuners.lora import LoraLayer

    peft_model = apply_lora(model, lora, THINKER)
    by_component = dict.fromkeys(("language_model", "audio_tower", "visual"), 0)
    for name, param in unwrap(peft_model).named_parameters():
        if param.requires_grad:  # LoRA weights only: peft froze the rest
            by_component[name.split(".")[1]] += param.numel()
    lm_lora = [
        module
        for name, module in unwrap(peft_model).named_modules()
        if isinstance(module, LoraLayer) and name.startswith("model.language_model.")
    ]
    hidden = config.get_text_config().hidden_size
    return ParamCounts(
        base=base,
        lora=int(trainable_report(peft_model)["trainable"]),
        head=hidden * head_outputs + head_outputs,
        quantized=quantized,
        lora_by_component=by_component,
        lora_lm_modules=len(lm_lora),
        lora_lm_in_features=sum(module.in_features for module in lm_lora),
    )


@dataclass(frozen=True)
class Workload:
    """One training step's inputs: per-sample media and text, and the batch size."""

    batch_size: int = 1
    text_tokens: int = 128
    video_frames: int = 0
    frame_height: int = 364
    frame_width: int = 644
    audio_seconds: float = 0.0
    gradient_checkpointing: bool = True
    readout: str = "discriminative"   # a registered readout


def visual_tokens(frames: int, height: int, width: int, vision: Any) -> int:
    """LLM tokens for a video of ``frames`` frames resized to about ``height`` x ``width``."""
    if frames <= 0:
        return 0
    unit = vision.patch_size * vision.spatial_merge_size
    grid_h = max(1, round(height / unit)) * vision.spatial_merge_size
    grid_w = max(1, round(width / unit)) * vision.spatial_merge_size
    grid_t = math.ceil(frames / vision.temporal_patch_size)
    return grid_t * grid_h * grid_w // vision.spatial_merge_size**2


def audio_tokens(seconds: float) -> int:
    return math.ceil(seconds * AUDIO_TOKENS_PER_SECOND)


def sequence_length(config: Any, work: Workload) -> int:
    video = visual_tokens(work.video_frames, work.frame_height, work.frame_width, config.vision_config)
    return work.text_tokens + video + audio_tokens(work.audio_seconds)


def layer_activation_bytes(config: Any, counts: ParamCounts, lora: LoraSettings, seq_len: int) -> float:
    """Bytes one decoder layer keeps per token for the backward pass (formula ``A`` above),
    with the LoRA term averaged over the layers from the modules LoRA really wraps."""
    text = config.get_text_config()
    h, inter, n, layers = text.hidden_size, text.intermediate_size, text.num_attention_heads, text.num_hidden_layers
    q = n * (getattr(text, "head_dim", None) or h // n)
    per_input = 4 + (1 if lora.dropout > 0 else 0)
    lora_bytes = (per_input * counts.lora_lm_in_features + 4 * lora.r * counts.lora_lm_modules) / layers
    return 2 * 4 * h + (3 * 2 * q + 2 * q + 4 * n) + 2 * seq_len + 3 * 2 * inter + lora_bytes


def encoder_transient_bytes(config: Any, work: Workload) -> float:
    """Largest one-layer working set of the (frozen, graph-free) audio or vision encoder."""
    vision, audio = config.vision_config, config.audio_config
    patches = 4 * work.batch_size * visual_tokens(
        work.video_frames, work.frame_height, work.frame_width, vision
    )
    frames = work.batch_size * math.ceil(work.audio_seconds * AUDIO_ENCODER_FRAMES_PER_SECOND)
    vision_bytes = BF16 * patches * (7 * vision.hidden_size + 3 * vision.intermediate_size)
    audio_bytes = BF16 * frames * (7 * audio.d_model + 3 * audio.encoder_ffn_dim)
    return max(vision_bytes, audio_bytes)


@dataclass(frozen=True)
class MemoryEstimate:
    sequence_length: int
    quantized_weights: float
    unquantized_weights: float
    trainable_state: float
    activations: float
    logits: float
    encoder_transient: float

    @property
    def static(self) -> float:
        return self.quantized_weights + self.unquantized_weights + self.trainable_state

    @property
    def dynamic(self) -> float:
        return max(self.encoder_transient, self.activations + self.logits)

    @property
    def peak(self) -> float:
        return self.static + (1 + ALLOCATOR_SLACK) * self.dynamic + CUDA_CONTEXT_BYTES

    def gib(self) -> dict[str, float]:
        """Every term and the peak in GiB."""
        names = ("quantized_weights", "unquantized_weights", "trainable_state", "activations", "logits")
        out = {name: getattr(self, name) / GIB for name in names}
        out.update(encoder_transient=self.encoder_transient / GIB, peak=self.peak / GIB)
        return out


def estimate_memory(config: Any, counts: ParamCounts, lora: LoraSettings, work: Workload) -> MemoryEstimate:
    """QLoRA training memory for ``work`` (formula in the module docstring)."""
    text = config.get_text_config()
    seq = sequence_length(config, work)
    tokens = work.batch_size * seq
    per_layer = layer_activation_bytes(config, counts, lora, seq)
    layers = text.num_hidden_layers
    if work.gradient_checkpointing:
        activations = layers * BF16 * text.hidden_size * tokens + 2 * per_layer * tokens
    else:
        activations = (layers + 1) * per_layer * tokens
    logits = tokens * text.vocab_size * 10 if get_readout(work.readout).uses_lm_head else 0
    return MemoryEstimate(
        sequence_length=seq,
        quantized_weights=counts.quantized * NF4_BYTES_PER_WEIGHT,
        unquantized_weights=counts.unquantized * BF16,
        trainable_state=counts.trainable * TRAINABLE_BYTES_PER_PARAM,
        activations=activations,
        logits=logits,
        encoder_transient=encoder_transient_bytes(config, work),
    )
