"""`Sample`s -> torch batches, with a missingness protocol applied per sample.

Missingness goes through the shared layer (`MissingnessProtocol.draw`, `apply_to_features`,
`feature_integrity`), so a classic model sees exactly what every other family sees for the same
(protocol, seed, sample id). Training re-draws every epoch: epoch e uses
`omni_msa.seeding.epoch_protocol(protocol, e)`, the rule every trainer shares, so the LNLN regime
(intra ~ U(0, 1) per sample and modality, plus an inter rate) gives fresh masks each epoch yet a
resumed run sees the same ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from omni_msa.data.missing import (
    MissingnessProtocol,
    apply_to_features,
    feature_integrity,
    text_token_positions,
)
from omni_msa.data.mmsa import stack_features, stack_text_bert
from omni_msa.data.record import MODALITIES, Sample
from omni_msa.seeding import derive_seed, epoch_protocol

COMPLETE = MissingnessProtocol()


@dataclass
class FeatureBatch:
    """One batch of MMSA-layout features after missingness.

    `features[m]`: B x L_m x D_m float32, trimmed to the longest real length in the batch;
    `lengths[m]`: B int64 (unchanged by missingness: masked elements are zeros, not removed);
    `text_tokens`: B x L_text bool, True at word-token positions (between [CLS] and [SEP] when
    the source has BERT ids), the positions text masking acts on; `text_bert`: B x 3 x L_text
    ids/mask/segments after masking, or None; `present[m]`: B bool; `integrity[m]`: B float32,
    the ground-truth integrity (1 - masked fraction, 0 when dropped); `extra_labels`: SIMS T/A/V
    labels when every sample has them.
    """

    ids: list[str]
    labels: Tensor
    features: dict[str, Tensor]
    lengths: dict[str, Tensor]
    text_tokens: Tensor
    present: dict[str, Tensor]
    integrity: dict[str, Tensor]
    text_bert: Tensor | None = None
    extra_labels: dict[str, Tensor] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str) -> FeatureBatch:
        def move(value):
            if isinstance(value, Tensor):
                return value.to(device)
            if isinstance(value, dict):
                return {k: v.to(device) for k, v in value.items()}
            return value
        return FeatureBatch(**{f.name: move(getattr(self, f.name)) for f in fields(self)})


def collate(samples: Sequence[Sample], protocol: MissingnessProtocol = COMPLETE, *,
            masked_at_media: bool = False) -> FeatureBatch:
    """Apply `protocol` to each sample and stack the results into a `FeatureBatch`.
    `masked_at_media`: the features were extracted from media `protocol` already damaged
    (`omni_msa.extract.source`), so only its presence flags and integrity are taken from it."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    draws = [protocol.draw(sample.id) for sample in samples]
    masked = (samples if protocol.is_identity or masked_at_media
              else [apply_to_features(s, d) for s, d in zip(samples, draws)])
    features, lengths = {}, {}
    for m in MODALITIES:
        stacked, lens = stack_features(masked, m)
        keep = max(int(lens.max()), 1)
        features[m] = torch.from_numpy(np.ascontiguousarray(stacked[:, :keep]))
        lengths[m] = torch.from_numpy(lens)
    text_len = features["text"].shape[1]
    text_tokens = torch.zeros(len(samples), text_len, dtype=torch.bool)
    for i, sample in enumerate(samples):
        text_tokens[i, text_token_positions(sample)] = True
    integrity = [feature_integrity(s, d) for s, d in zip(samples, draws)]
    text_bert = None
    if all(s.text_bert is not None for s in masked):
        width = max(text_len, *(np.asarray(s.text_bert).shape[-1] for s in masked))  # cut to the trimmed text
        text_bert = torch.from_numpy(stack_text_bert(masked, width)[:, :, :text_len]).long()
    extra = None
    names = set.intersection(*(set(s.extra_labels) for s in samples))
    if names:
        extra = {k: torch.tensor([s.extra_labels[k] for s in samples], dtype=torch.float32) for k in sorted(names)}
    return FeatureBatch(
        ids=[s.id for s in samples],
        labels=torch.tensor([s.label for s in samples], dtype=torch.float32),
        features=features,
        lengths=lengths,
        text_tokens=text_tokens,
        present={m: torch.tensor([d.present[m] for d in draws]) for m in MODALITIES},
        integrity={m: torch.tensor([g[m] for g in integrity], dtype=torch.float32) for m in MODALITIES},
        text_bert=text_bert,
        extra_labels=extra,
    )


def real_steps(samples: Sequence[Sample], modality: str) -> np.ndarray:
    """The real (unpadded) steps of every sample's `modality` sequence, stacked: S x D."""
    return np.concatenate([np.asarray(s.features[modality])[: s.sequence_length(modality)] for s in samples])


class FeatureLoader:
    """Batches over a fixed list of samples.

    For evaluation (`redraw=False`, `shuffle=False`) every epoch yields the same batches under
    `protocol`. For training, `shuffle` orders samples by a permutation seeded from
    (seed, epoch) and `redraw` applies `epoch_protocol(protocol, epoch)`.
    """

    def __init__(self, samples: Sequence[Sample], *, batch_size: int,
                 protocol: MissingnessProtocol = COMPLETE, shuffle: bool = False, redraw: bool = False,
                 seed: int = 0, masked_at_media: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not samples:
            raise ValueError("no samples to load")
        self.samples = list(samples)
        self.batch_size = batch_size
        self.protocol = protocol
        self.shuffle = shuffle
        self.redraw = redraw
        self.seed = seed
        if masked_at_media and redraw:
            raise ValueError("features masked at the media hold one draw: they cannot be redrawn per epoch")
        self.masked_at_media = masked_at_media

    def __len__(self) -> int:
        return -(-len(self.samples) // self.batch_size)

    def protocol_for(self, epoch: int) -> MissingnessProtocol:
        return epoch_protocol(self.protocol, epoch) if self.redraw else self.protocol

    def epoch(self, epoch: int = 0) -> Iterator[FeatureBatch]:
        order = np.arange(len(self.samples))
        if self.shuffle:
            order = np.random.default_rng(derive_seed(self.seed, "shuffle", epoch)).permutation(order)
        protocol = self.protocol_for(epoch)
        for start in range(0, len(order), self.batch_size):
            yield collate([self.samples[i] for i in order[start:start + self.batch_size]], protocol,
                          masked_at_media=self.masked_at_media)
