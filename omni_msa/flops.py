"""FLOPs of one QLoRA training step of a Qwen2.5-Omni Thinker, split into the frozen encoders and the
language model: how much of a step the encoder-output cache (`omni_msa.encoder_cache`) saves from the
second epoch on. A multiply-add counts as 2 FLOPs. Per sample:

    dense(N, T)        = 2 N T          the linear and convolution weights N of a stack applied to T positions
    attention(L, T, w, d) = 4 L T w d   L layers of T queries over w keys each (scores and weighted sum), width d

    P = 4 x visual tokens               vision patches (2 x 2 spatial merge), per frame pair p = P / ceil(frames / 2)
    F = 50 x audio seconds              audio encoder positions (after the stride-2 convolution)
    S = text + visual + audio tokens    language-model sequence

    vision     = dense(N_vis, P) + dense(N_merger, P / 4)                           (the merger runs on merged tokens)
                 + attention(4 full-attention layers, P, p, d_vis)
                 + attention(28 window layers, P, 64, d_vis)                        (windows of 112 px: 8 x 8 patches)
    audio      = dense(N_conv1, 2F) + dense(N_aud, F) + dense(N_proj, F / 2)        (mel frames at 100/s; pooled by 2)
                 + attention(L_aud, F, 100, d_aud)                                  (windows of 100 positions, 2 s)
    LM forward = dense(N_lm, S) + attention(L, S, S, d_q)          (the embedding table is a lookup: not in N_lm)
                 [+ dense(N_head, S) when the readout computes vocabulary logits]
    LM step    = (3 with gradient checkpointing, else 2) x LM forward
                 forward, input gradients (frozen 4-bit weights get no weight gradient; LoRA's own gradients
                 are under 1 % of it) and, with checkpointing, the recomputed forward
    encoders   = vision + audio, forward only (frozen, nothing needs their gradients)

    encoder share = encoders / (encoders + LM step)

With the cache, epochs 2 and later skip the encoders: the saving per epoch is the encoder share of
the step's FLOPs. That is also its share of the step's time only if encoders and language model run
at the same efficiency. The attention counts take full rows (no causal halving), as padded SDPA
kernels compute them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import nn

from omni_msa.plan import AUDIO_ENCODER_FRAMES_PER_SECOND, Workload, build_meta_thinker, sequence_length, visual_tokens
from omni_msa.readouts import get_readout

AUDIO_WINDOW = 100


@dataclass(frozen=True)
class StepFlops:
    vision: float
    audio: float
    language_model: float   # the whole training step's share (forward, backward, recompute)
    passes: int             # language-model forward equivalents in that step (3 or 2)

    @property
    def encoders(self) -> float:
        return self.vision + self.audio

    @property
    def total(self) -> float:
        return self.encoders + self.language_model

    @property
    def encoder_share(self) -> float:
        return self.encoders / self.total

    @property
    def scoring_share(self) -> float:
        """The encoders' share of a scoring pass (every model forward only)."""
        return self.encoders / (self.encoders + self.language_model / self.passes)


# Weight groups that run at their own rate (name prefix -> group); the rest go by component.
GROUPS = {"model.visual.merger.": "visual_merger", "model.audio_tower.conv1": "audio_conv1",
          "model.audio_tower.proj": "audio_proj", "lm_head": "lm_head"}


def weight_counts(config: Any) -> dict[str, int]:
    """Weights of the linear and convolution layers of the Thinker of `config` (on the meta device), by
    group: `visual`, `visual_merger`, `audio_conv1`, `audio_tower`, `audio_proj`, `language_model`, `lm_head`."""
    model = build_meta_thinker(config)
    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv3d)):
            group = next((g for prefix, g in GROUPS.items() if name.startswith(prefix)), None) or name.split(".")[1]
            counts[group] = counts.get(group, 0) + module.weight.numel()
    return counts


def dense(weights: int, positions: int) -> float:
    return 2.0 * weights * positions


def attention(layers: int, queries: int, keys: int, width: int) -> float:
    return 4.0 * layers * queries * keys * width


def step_flops(config: Any, work: Workload, weights: dict[str, int] | None = None) -> StepFlops:
    """FLOPs of one training step of `work` (all samples of the batch), formula in the module docstring."""
    weights = weights or weight_counts(config)
    vision, audio, text = config.vision_config, config.audio_config, config.get_text_config()
    visual = visual_tokens(work.video_frames, work.frame_height, work.frame_width, vision)
    patches = 4 * visual
    per_pair = patches // max(1, math.ceil(work.video_frames / vision.temporal_patch_size)) if patches else 0
    window = (vision.window_size // vision.patch_size) ** 2
    full_layers = len(vision.fullatt_block_indexes)
    vision_flops = (dense(weights["visual"], patches) + dense(weights["visual_merger"], visual)
                    + attention(full_layers, patches, per_pair, vision.hidden_size)
                    + attention(vision.depth - full_layers, patches, min(window, patches), vision.hidden_size))
    frames = math.ceil(work.audio_seconds * AUDIO_ENCODER_FRAMES_PER_SECOND)
    audio_flops = (dense(weights["audio_conv1"], 2 * frames) + dense(weights["audio_tower"], frames)
                   + dense(weights["audio_proj"], frames // 2)
                   + attention(audio.encoder_layers, frames, min(AUDIO_WINDOW, frames), audio.d_model))
    seq = sequence_length(config, work)
    width = text.num_attention_heads * (getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads)
    forward = dense(weights["language_model"], seq) + attention(text.num_hidden_layers, seq, seq, width)
    if get_readout(work.readout).uses_lm_head:
        forward += dense(weights["lm_head"], seq)
    passes = 3 if work.gradient_checkpointing else 2
    batch = work.batch_size
    return StepFlops(vision=batch * vision_flops, audio=batch * audio_flops, language_model=batch * passes * forward,
                     passes=passes)
