"""What a missingness protocol removes from a set of samples, measured on features and on media."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from omni_msa.data.media import read_audio, read_video_frames
from omni_msa.data.missing import (
    MissingnessProtocol,
    apply_to_media,
    feature_integrity,
    media_integrity,
    modality_set_name,
)
from omni_msa.data.record import MODALITIES, Sample


@dataclass(frozen=True)
class SampleEffect:
    sample_id: str
    kept: str
    intra: dict[str, float]
    feature_integrity: dict[str, float]
    media_integrity: dict[str, float] | None
    masked_text: str | None


def protocol_effects(samples: list[Sample], protocol: MissingnessProtocol, *,
                     decode_media: bool = True, placeholder: str = "[masked]") -> list[SampleEffect]:
    """Per sample: the kept modalities, the intra ratios, and the integrity actually realised on the
    feature sequences and (when media are decoded) on the words, 40 ms chunks and frames."""
    effects = []
    for sample in samples:
        draw = protocol.draw(sample.id)
        media = None
        masked_text = None
        if decode_media and sample.audio is not None and sample.video is not None:
            wave, frames = read_audio(sample.audio), read_video_frames(sample.video)
            media = media_integrity(draw, text=sample.text, audio=wave, video=frames)
            masked_text = apply_to_media(draw, text=sample.text, placeholder=placeholder).text
        effects.append(SampleEffect(
            sample_id=sample.id, kept=modality_set_name(draw.kept), intra=dict(draw.intra),
            feature_integrity=feature_integrity(sample, draw) if sample.features else {},
            media_integrity=media, masked_text=masked_text))
    return effects


def summarise_effects(effects: list[SampleEffect]) -> dict:
    """Shares of kept modality sets and mean integrity per modality, over features and media."""
    kept = Counter(effect.kept for effect in effects)
    summary = {"samples": len(effects),
               "kept_share": {name: count / len(effects) for name, count in sorted(kept.items())},
               "mean_feature_integrity": _mean_integrity([e.feature_integrity for e in effects])}
    with_media = [e.media_integrity for e in effects if e.media_integrity is not None]
    if with_media:
        summary["mean_media_integrity"] = _mean_integrity(with_media)
    return summary


def _mean_integrity(values: list[dict[str, float]]) -> dict[str, float]:
    return {m: float(np.mean([v[m] for v in values])) for m in MODALITIES if values and m in values[0]}
