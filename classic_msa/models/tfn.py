"""TFN: tensor fusion of per-modality subnetworks, MMSA's plain reference baseline.

Zadeh et al., EMNLP 2017, "Tensor Fusion Network for Multimodal Sentiment Analysis", as
benchmarked by MMSA (`models/singleTask/TFN.py`): each modality is reduced to one vector, each
vector is extended with a constant 1, and the three-way outer product of the extended vectors
(which holds every unimodal, bimodal and trimodal product of features) feeds an MLP.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from classic_msa.blocks.subnets import ModalitySubNets
from classic_msa.data import FeatureBatch
from classic_msa.model import FeatureModel, register_model
from classic_msa.models.lf_dnn import post_fusion_mlp


@dataclass
class TFNConfig:
    """TFN hyper-parameters; input dims default to unaligned MOSI (filled from data by the runner).

    MMSA's MOSI defaults (`config_regression.json`, `tfn`): hidden dims text 128, audio 32,
    video 128, `text_out` 32, `post_fusion_dim` 64, dropouts audio / video / text 0.3 and
    post-fusion 0.5 (Adam, lr 1e-3, batch 32, early stop 8). Their fused tensor has
    33 x 129 x 33 = 140,481 dims and the first post-fusion layer 9.0M weights; the CPU-sized
    defaults here keep MMSA's text LSTM, dropouts and post-fusion width but use 16-dim audio,
    vision and text vectors: 17^3 = 4,913 fused dims. `output_bound` b: the prediction is
    b * (2 sigmoid(x) - 1), MMSA's sigmoid * 6 - 3 for b = 3 (MOSI/MOSEI; 1 for SIMS);
    None: unbounded.
    """

    text_dim: int = 768
    audio_dim: int = 5
    vision_dim: int = 20
    text_hidden: int = 128
    audio_hidden: int = 16
    vision_hidden: int = 16
    text_out: int = 16
    post_fusion_dim: int = 64
    text_dropout: float = 0.3
    audio_dropout: float = 0.3
    vision_dropout: float = 0.3
    post_fusion_dropout: float = 0.5
    output_bound: float | None = 3.0


def tensor_fusion(audio: Tensor, vision: Tensor, text: Tensor) -> Tensor:
    """The flattened outer product of [1, audio] x [1, vision] x [1, text]: B x (da+1)(dv+1)(dt+1).

    Entry ((i * (dv+1)) + j) * (dt+1) + k is a'_i v'_j t'_k with a' = [1, a] etc. (MMSA's layout):
    entry 0 is the constant 1, the first-row slices are the unimodal vectors, then the bimodal
    and trimodal products.
    """
    ones = audio.new_ones(audio.shape[0], 1)
    a, v, t = (torch.cat([ones, x], dim=-1) for x in (audio, vision, text))
    return torch.einsum("bi,bj,bk->bijk", a, v, t).flatten(1)


@register_model("tfn")
class TFN(FeatureModel):
    """TFN on MMSA features. One loss term, "task": L1, as MMSA's regression trainer.

    Parts, and what each does with length-1 sequences (utterance-level features, N x 1 x D) and
    with missing data (masked steps and dropped modalities are zeros; lengths are kept, and a
    length of 0 is allowed):
    - Subnets: as LF-DNN's (`classic_msa.models.lf_dnn.LFDNN`, `classic_msa.blocks.subnets`):
      audio and vision averaged over their real steps (length 1: the step; length 0: zeros, no
      0 / 0), then BatchNorm1d, dropout, three Linear + ReLU layers; text with its non-word rows
      zeroed through a unidirectional LSTM over the real steps (length 1: one cell update;
      length 0 read as one zero step), final state, dropout, Linear.
    - Fusion: `tensor_fusion`. Because of the constant 1, a modality whose vector is zero (ReLU
      outputs can be) removes only the products it takes part in; the other modalities' unimodal
      and bimodal terms remain, so a dropped modality never zeroes the fused tensor.
    - Post-fusion: dropout (0.5 by default) on the fused tensor, two Linear + ReLU layers of
      `post_fusion_dim`, Linear, then the bounded output of `output_bound`.
    """

    config_class = TFNConfig

    def __init__(self, config: TFNConfig) -> None:
        super().__init__(config)
        c = config
        if c.output_bound is not None and c.output_bound <= 0:
            raise ValueError(f"output_bound must be positive or None, got {c.output_bound}")
        self.subnets = ModalitySubNets.from_config(c)
        self.fused_dim = (c.audio_hidden + 1) * (c.vision_hidden + 1) * (c.text_out + 1)
        self.post_fusion = post_fusion_mlp(self.fused_dim, c.post_fusion_dim, c.post_fusion_dropout)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return self.subnets.parameter_groups(self.post_fusion)

    def fuse(self, batch: FeatureBatch) -> Tensor:
        """The fused tensor, flattened: B x fused_dim."""
        return tensor_fusion(*self.subnets(batch))

    def forward(self, batch: FeatureBatch) -> dict[str, Tensor]:
        out = self.post_fusion(self.fuse(batch)).squeeze(-1)
        bound = self.config.output_bound
        pred = out if bound is None else bound * (2.0 * torch.sigmoid(out) - 1.0)
        return {"pred": pred, "task": F.l1_loss(pred, batch.labels)}
