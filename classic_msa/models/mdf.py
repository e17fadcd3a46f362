"""MDF: text-space decoupled fusion with a supervised modality weight generator.

Text is the anchor. Audio and vision are encoded by BiLSTMs and mapped by MLPs into the text
space. An extractor MLP takes the part of mapped audio that duplicates text (its "textual
component"); what remains is the sound representation. One predictor reads every
representation, so its outputs compare across modalities: the alignment loss makes the
extracted component predict what the text predicts, an orthogonality loss keeps text, sound
and vision apart, and a weight generator learns to weight the three by how well each predicts
the label, supervised by w* = softmax of the inverse unimodal errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omni_msa.data.record import Sample

from classic_msa.blocks import BiLSTMEncoder, FeatureStandardizer, orthogonality_loss
from classic_msa.data import FeatureBatch, real_steps
from classic_msa.model import FeatureModel, register_model
from classic_msa.text import TextStates


@dataclass
class MDFConfig:
    """MDF hyper-parameters; input dims default to unaligned MOSI (filled from data by the runner).

    `dim` is the width of the text space; `text_pooling` "cls" reads position 0 of the text
    states, "mean" averages the word-token states, "auto" picks "cls" for a wrapped encoder and
    "mean" for precomputed features (see `MDF`). `error_eps` is the eps in w*.
    """

    text_dim: int = 768
    audio_dim: int = 5
    vision_dim: int = 20
    dim: int = 128
    lstm_hidden: int = 64
    lstm_layers: int = 1
    mapper_hidden: int = 128
    extractor_hidden: int = 128
    predictor_hidden: int = 64
    generator_hidden: int = 64
    dropout: float = 0.1
    text_pooling: Literal["auto", "cls", "mean"] = "auto"
    text_encoder_path: str | None = None
    finetune_text_encoder: bool = False
    error_eps: float = 0.1


@dataclass
class MDFOutputs:
    """Everything one MDF pass computes; `forward` turns it into the prediction and losses."""

    representations: Tensor   # B x 3 x dim: text, sound, vision (also the order of weights, unimodal)
    extracted: Tensor         # B x dim: the textual component of audio
    weights: Tensor           # B x 3: the weight generator's softmax
    pred: Tensor              # B: predictor on the weighted sum
    unimodal: Tensor          # B x 3: predictor on each representation alone
    extracted_pred: Tensor    # B: predictor on the extracted component


def target_weights(errors: Tensor, eps: float) -> Tensor:
    """w* = softmax(1 / (|y - predictor(h_m)| + eps)) over modalities (last dim)."""
    return torch.softmax(1.0 / (errors + eps), dim=-1)


def pairwise_orthogonality(representations: Tensor) -> Tensor:
    """L_o: `orthogonality_loss` summed over the pairs of the B x 3 x D text/sound/vision stack."""
    text, sound, vision = representations.unbind(dim=1)
    return orthogonality_loss(text, sound) + orthogonality_loss(text, vision) + orthogonality_loss(sound, vision)


def weight_loss(weights: Tensor, target: Tensor) -> Tensor:
    """L_w: KL(w* || w), batch mean."""
    return F.kl_div(weights.clamp_min(1e-12).log(), target, reduction="batchmean")


def _mlp(input_dim: int, hidden: int, output_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(input_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, output_dim))


@register_model("mdf")
class MDF(FeatureModel):
    """MDF on MMSA features. Loss terms: "task", "unimodal", "align", "orth", "weight" (all weight 1).

    Choices where the method summary leaves them open:
    - Text representation: the papers fine-tune BERT and take [CLS]. With precomputed features
      the stored [CLS] row was computed from the unmasked sentence and missingness never masks
      it (it masks word rows only), so it would leak the masked words; "auto" therefore averages
      the (masked) word-token rows, and uses [CLS] only from a wrapped encoder that sees the
      masked ids. A trainable pooler (dropout, Linear, tanh, as BERT's pooler) maps the result
      into the `dim`-wide text space, standing in for fine-tuning.
    - Audio/vision: standardised per dimension with training-set statistics
      (`FeatureStandardizer`), then one-layer BiLSTMs (64 per direction), their outputs averaged over the
      real steps (`BiLSTMEncoder`'s default "mean" pooling), then two-layer GELU MLP mappers into the text space.
    - Extractor: two-layer GELU MLP on mapped audio; sound = mapped audio - extractor output.
      Vision is used as mapped (the summary decouples audio only).
    - Predictor: one two-layer GELU MLP shared by the fused, unimodal and extracted inputs.
    - Task loss: L1 (the selection metric is MAE).
    - Unimodal loss (an added term): w* and the alignment loss both read the predictor on a
      single representation, which only means something if the predictor is trained on single
      representations. Without it the predictor learns to read the weighted sum only, its
      text-alone output overshoots (~2x on the synthetic set), w* turns against text and the
      alignment loss grows without bound. So "unimodal" = mean over text, sound, vision of
      L1(predictor(h_m), y). Weight it 0 in a stage to get the literal
      task + L_a + L_o + L_w of the summary.
    - Alignment loss: MSE between predictor(extracted) and predictor(text), the text side
      detached (text is the teacher; it should not drift towards audio).
    - Orthogonality loss: `orthogonality_loss` (squared per-sample correlation of the
      layer-normalised vectors) summed over the pairs text-sound, text-vision, sound-vision.
    - Weight generator: two-layer GELU MLP over concat(text, sound, vision) -> softmax over 3.
      Its target w* uses the detached unimodal errors with eps = 0.1 (so 1/error <= 10 and w*
      stays finite); loss = KL(w* || w), batch mean.
    - Fusion: sum_m w_m h_m, then the predictor.
    - Width: dim 128 (a CPU-sized text space; the paper's is BERT's 768).

    Sequences of length 1: each BiLSTM is one cell update from the zero state in each direction (two
    separately weighted cells on the same vector), so its output is a function of that vector alone, with no
    temporal context; the forget gate and the hidden-to-hidden weights act on zero states and get no gradient,
    and the mean over the one output (`BiLSTMEncoder`'s default pooling, which MDF uses) equals the final
    states. Text pooling ("mean" over word rows, or "cls") reads the only row. Intra masking zeroes a
    modality's one step or nothing, and MDF never reads `batch.present`, so a masked modality is the same
    input as a dropped one. All else works on vectors, unchanged; only the recurrence loses its reason to
    exist: the BiLSTMs are per-vector nonlinear maps.
    """

    config_class = MDFConfig

    def __init__(self, config: MDFConfig) -> None:
        super().__init__(config)
        c = config
        if c.text_pooling not in ("auto", "cls", "mean"):
            raise ValueError(f"text_pooling must be 'auto', 'cls' or 'mean', got {c.text_pooling!r}")
        self.text_encoder = TextStates(c.text_dim, c.text_encoder_path, c.finetune_text_encoder)
        self.pooling = c.text_pooling if c.text_pooling != "auto" else (
            "cls" if self.text_encoder.wraps_encoder else "mean")
        self.text_pooler = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(self.text_encoder.output_dim, c.dim),
                                         nn.Tanh())
        self.audio_norm = FeatureStandardizer(c.audio_dim)
        self.vision_norm = FeatureStandardizer(c.vision_dim)
        self.audio_encoder = BiLSTMEncoder(c.audio_dim, c.lstm_hidden, num_layers=c.lstm_layers, dropout=c.dropout)
        self.vision_encoder = BiLSTMEncoder(c.vision_dim, c.lstm_hidden, num_layers=c.lstm_layers,
                                            dropout=c.dropout)
        self.audio_mapper = _mlp(self.audio_encoder.output_dim, c.mapper_hidden, c.dim, c.dropout)
        self.vision_mapper = _mlp(self.vision_encoder.output_dim, c.mapper_hidden, c.dim, c.dropout)
        self.extractor = _mlp(c.dim, c.extractor_hidden, c.dim, c.dropout)
        self.predictor = _mlp(c.dim, c.predictor_hidden, 1, c.dropout)
        self.weight_generator = _mlp(3 * c.dim, c.generator_hidden, 3, c.dropout)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {
            "text_encoder": list(self.text_encoder.parameters()),
            "text": list(self.text_pooler.parameters()),
            "audio": [*self.audio_encoder.parameters(), *self.audio_mapper.parameters()],
            "vision": [*self.vision_encoder.parameters(), *self.vision_mapper.parameters()],
            "extractor": list(self.extractor.parameters()),
            "predictor": list(self.predictor.parameters()),
            "weight_generator": list(self.weight_generator.parameters()),
        }
        return {name: params for name, params in groups.items() if params}

    def fit_statistics(self, samples: Sequence[Sample]) -> None:
        self.audio_norm.fit(real_steps(samples, "audio"))
        self.vision_norm.fit(real_steps(samples, "vision"))

    def default_loss_weights(self) -> dict[str, float]:
        return {"task": 1.0, "unimodal": 1.0, "align": 1.0, "orth": 1.0, "weight": 1.0}

    def text_representation(self, batch: FeatureBatch) -> Tensor:
        states = self.text_encoder(batch)
        if self.pooling == "cls":
            pooled = states[:, 0]
        else:
            mask = batch.text_tokens[:, : states.shape[1]].to(states.dtype)
            pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        return self.text_pooler(pooled)

    def represent(self, batch: FeatureBatch) -> MDFOutputs:
        text = self.text_representation(batch)
        audio = self.audio_mapper(self.audio_encoder(self.audio_norm(batch.features["audio"]),
                                                     batch.lengths["audio"]))
        vision = self.vision_mapper(self.vision_encoder(self.vision_norm(batch.features["vision"]),
                                                        batch.lengths["vision"]))
        extracted = self.extractor(audio)
        sound = audio - extracted
        representations = torch.stack([text, sound, vision], dim=1)
        weights = torch.softmax(self.weight_generator(representations.flatten(1)), dim=-1)
        fused = (weights[..., None] * representations).sum(dim=1)
        return MDFOutputs(
            representations=representations,
            extracted=extracted,
            weights=weights,
            pred=self.predictor(fused).squeeze(-1),
            unimodal=self.predictor(representations).squeeze(-1),
            extracted_pred=self.predictor(extracted).squeeze(-1),
        )

    def forward(self, batch: FeatureBatch) -> dict[str, Tensor]:
        out = self.represent(batch)
        labels = batch.labels
        errors = (labels[:, None] - out.unimodal).abs().detach()
        w_star = target_weights(errors, self.config.error_eps)
        return {
            "pred": out.pred,
            "task": F.l1_loss(out.pred, labels),
            "unimodal": F.l1_loss(out.unimodal, labels[:, None].expand_as(out.unimodal)),
            "align": F.mse_loss(out.extracted_pred, out.unimodal[:, 0].detach()),
            "orth": pairwise_orthogonality(out.representations),
            "weight": weight_loss(out.weights, w_star),
        }
