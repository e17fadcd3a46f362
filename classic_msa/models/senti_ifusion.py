"""Senti-iFusion: integrity-centred hierarchical fusion under uncertain modality missingness.

Each modality is compressed to T embedding tokens; an integrity estimator predicts how much of
the modality survived (supervised by the ground-truth integrity 1 - masked share). Shared and
private encoders split each embedding (similarity loss across modalities, cross-covariance
difference loss between subspaces). A surrogate h_sur = I * u + (1 - I) * (shared part of the
other modalities) repairs incomplete modalities in proportion to how incomplete they are;
decoders check the surrogate at the feature and the semantic level (MSE + Deep-InfoMax MI). The
modality with the highest batch-mean integrity becomes the dominant stream, refined by a
Transformer and fused with the auxiliary modalities by cross-modal attention; a prediction
Transformer with prepended zero tokens reads the dominant and fused streams.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omni_msa.data.record import MODALITIES, Sample

from classic_msa.blocks import (
    CrossModalAttention,
    FeatureStandardizer,
    JSDMutualInformation,
    PrependTokenEncoder,
    difference_loss,
)
from classic_msa.data import FeatureBatch, real_steps
from classic_msa.model import FeatureModel, register_model
from classic_msa.text import TextStates

# Modality order used for every stacked tensor (B x 3 x ...): text, audio, vision.
ORDER: tuple[str, ...] = tuple(MODALITIES)
RECON_TERMS: tuple[str, ...] = ("recon_mse", "recon_mi", "sem_mse", "sem_mi")


@dataclass
class SentiIFusionConfig:
    """Senti-iFusion hyper-parameters; input dims default to unaligned MOSI (filled from data).

    Paper defaults: `num_tokens` T = 8, `dim` d = 128 (batch 64, AdamW lr 1e-4, 150 epochs with
    40 in stage 1 live in the run config). `loss_weights` (0.9, 0.4, 1.0) weight integrity,
    subspace (similarity and difference) and reconstruction; `decoder_weights` (0.5, 0.4, 0.3,
    0.2) weight feature MSE, feature MI, semantic MSE, semantic MI inside reconstruction.
    `surrogate_integrity`: "predicted" (estimator output, detached) or "true" (ground truth; an
    oracle ablation). `max_len`: longest input sequence the embedding encoders accept.
    """

    text_dim: int = 768
    audio_dim: int = 5
    vision_dim: int = 20
    dim: int = 128
    num_tokens: int = 8
    num_heads: int = 4
    ff_dim: int = 256
    dropout: float = 0.1
    embed_layers: int = 2
    integrity_layers: int = 2
    dominant_layers: int = 3
    fusion_layers: int = 3
    predictor_layers: int = 2
    mi_hidden: int = 64
    max_len: int = 512
    loss_weights: tuple[float, float, float] = (0.9, 0.4, 1.0)
    decoder_weights: tuple[float, float, float, float] = (0.5, 0.4, 0.3, 0.2)
    surrogate_integrity: Literal["predicted", "true"] = "predicted"
    text_encoder_path: str | None = None
    finetune_text_encoder: bool = False


@dataclass
class SentiIFusionOutputs:
    """Everything one pass computes; `forward` turns it into the prediction and losses."""

    embeddings: Tensor        # B x 3 x T x d: u_m (text, audio, vision)
    integrity: Tensor         # B x 3: predicted integrity (sigmoid)
    shared: Tensor            # B x 3 x T x d: h_s
    private: Tensor           # B x 3 x T x d: h_p
    surrogate: Tensor         # B x 3 x T x d: h_sur
    decoded: Tensor           # B x 3 x T x d: decoder outputs (embedding space)
    dominant: int             # index into ORDER
    pred: Tensor              # B


# --- pure functions (tested directly) -------------------------------------------------------

def cross_modal_term(shared: Tensor) -> Tensor:
    """For each modality the mean shared representation of the other two: B x 3 x ... -> same."""
    n = shared.shape[1]
    return (shared.sum(dim=1, keepdim=True) - shared) / (n - 1)


def surrogate(embeddings: Tensor, integrity: Tensor, shared: Tensor) -> Tensor:
    """h_sur_m = I_m * u_m + (1 - I_m) * mean(h_s of the other modalities).
    embeddings, shared: B x 3 x T x d; integrity: B x 3 in [0, 1]."""
    weight = integrity[:, :, None, None].to(embeddings.dtype)
    return weight * embeddings + (1.0 - weight) * cross_modal_term(shared)


def dominant_modality(integrity: Tensor) -> int:
    """Index of the modality with the highest batch-mean integrity (B x 3 -> int)."""
    return int(integrity.mean(dim=0).argmax())


def similarity_loss(shared: Tensor) -> Tensor:
    """Mean over modality pairs of 1 - cos(pooled h_s_i, pooled h_s_j), batch mean (shared: B x 3 x T x d)."""
    pooled = shared.mean(dim=2)
    n = pooled.shape[1]
    terms = [1.0 - F.cosine_similarity(pooled[:, i], pooled[:, j], dim=-1).mean()
             for i in range(n) for j in range(i + 1, n)]
    return torch.stack(terms).mean()


def subspace_difference(shared: Tensor, private: Tensor) -> Tensor:
    """`difference_loss` between h_s and h_p of each modality and between each pair of private
    parts, on token rows (B*T x d), summed."""
    n = shared.shape[1]
    tokens = lambda x: x.flatten(0, 1)  # noqa: E731 - B x T x d -> B*T x d
    total = sum(difference_loss(tokens(shared[:, m]), tokens(private[:, m])) for m in range(n))
    for i in range(n):
        for j in range(i + 1, n):
            total = total + difference_loss(tokens(private[:, i]), tokens(private[:, j]))
    return total


def weighted_mse(x: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Per-sample MSE (x, target: B x ...) averaged with sample weights (B); 0 if all weights are 0."""
    per_sample = (x - target).pow(2).flatten(1).mean(1)
    return (per_sample * weight).sum() / weight.sum().clamp(min=1e-6)


def word_rows(states: Tensor, text_tokens: Tensor) -> tuple[Tensor, Tensor]:
    """The word-token rows of B x L x D text states moved to the front ([CLS], [SEP] and padding
    dropped, later rows zeroed): (B x Lw x D, n_words B)."""
    words = text_tokens[:, : states.shape[1]]
    n_words = words.sum(1)
    order = torch.sort((~words).to(torch.int8), dim=1, stable=True).indices
    keep = max(int(n_words.max()), 1)
    gathered = states.gather(1, order[:, :keep, None].expand(-1, -1, states.shape[-1]))
    valid = torch.arange(keep, device=states.device)[None, :] < n_words[:, None]
    return gathered * valid[..., None].to(states.dtype), n_words


# --- modules ------------------------------------------------------------------------------

def _mlp(dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))


class IntegrityEstimator(nn.Module):
    """A Transformer over the T embedding tokens with a pooling token, then Linear + sigmoid."""

    def __init__(self, dim: int, num_layers: int, num_heads: int, ff_dim: int, dropout: float,
                 num_tokens: int) -> None:
        super().__init__()
        self.encoder = PrependTokenEncoder(dim, dim, num_tokens=1, num_layers=num_layers, num_heads=num_heads,
                                           ff_dim=ff_dim, dropout=dropout, max_len=num_tokens)
        self.head = nn.Linear(dim, 1)

    def forward(self, embedding: Tensor) -> Tensor:
        token, _ = self.encoder(embedding)
        return torch.sigmoid(self.head(token[:, 0])).squeeze(-1)


@register_model("senti_ifusion")
class SentiIFusion(FeatureModel):
    """Senti-iFusion on MMSA features.

    Loss terms (default weights): "task" 1, "integrity" 0.9, "similarity" 0.4, "difference"
    0.4, and the decoder terms "recon_mse" 0.5, "recon_mi" 0.4, "sem_mse" 0.3, "sem_mi" 0.2
    (decoder weights x the reconstruction weight 1.0). Parameter groups: "embedding",
    "integrity", "subspace", "decoders", "fusion", "predictor" (+ "text_encoder" when wrapping
    an HF encoder). The paper's stage 1 is `frozen: [subspace, fusion, predictor]` with losses
    integrity + the four decoder terms; stage 2 trains everything with the defaults.

    Choices where the paper leaves them open:
    - Text: masked word rows only, moved to the front (the precomputed [CLS] row is never
      masked by missingness and would leak masked words); [CLS]/[SEP] rows dropped.
    - Audio/vision: standardised per dimension with training-set statistics
      (`FeatureStandardizer`), full real length (padding masked).
    - Embedding encoder (T = 8): per modality `PrependTokenEncoder` (Linear projection, 2 pre-norm
      layers, learned positions) with T prepended tokens fixed at zero (distinguished by their
      learned positions); the T token outputs are u_m (B x T x d), the compressed sequence.
    - Integrity estimator: one per modality, a 2-layer `PrependTokenEncoder` over u_m whose pooling
      token goes through Linear + sigmoid; "integrity" = MSE against the ground-truth integrity,
      mean over the 3 modalities.
    - Integrity used downstream (surrogate, dominant choice): the predicted integrity, detached
      (the estimator learns only from its MSE; the ground truth only supervises). Config
      `surrogate_integrity="true"` uses the ground truth instead (oracle ablation).
    - Shared encoder: one 2-layer GELU MLP per token shared by all modalities; private encoders:
      one such MLP per modality.
    - Similarity loss: mean over the 3 modality pairs of 1 - cosine similarity of the
      token-mean shared representations (batch mean), over all samples.
    - Difference loss: MISA's cross-covariance `difference_loss` on token rows (B*T x d) between
      h_s and h_p of each modality and between each pair of private parts, summed.
    - Surrogate: h_sur_m = I_m u_m + (1 - I_m) * mean of the other two modalities' h_s
      (token-wise, T x d).
    - Decoders: one 2-layer GELU MLP per modality, token-wise, decoding h_sur_m back to the
      embedding space. Feature level: MSE(decoded, u_m) and Deep-InfoMax JSD MI (critic on
      token means) between decoded and u_m. Semantic level: the decoded tokens re-encoded by the
      shared + private encoders vs h_s + h_p of the input (MSE and JSD MI). Targets are
      detached. There is no complete view in a training batch, so the target is the embedding
      of the input as given; MSE terms are weighted per sample by the ground-truth integrity
      (a heavily masked input is a poor target). MI terms are unweighted.
    - Dominant modality: arg-max of the batch-mean (used) integrity, one per batch (so it
      depends on the batch composition, also at evaluation); its surrogate is refined by a
      3-layer pre-norm Transformer (one encoder shared by whichever modality dominates).
    - Fusion: `CrossModalAttention` with 3 layers, query = refined dominant stream, context =
      the two auxiliary surrogates concatenated along time (2T tokens).
    - Prediction: a 2-layer `PrependTokenEncoder` over [dominant ; fused] (2T tokens) with two
      prepended zero tokens (one per stream, told apart by learned positions); their outputs are
      concatenated and a Linear gives the prediction. Task loss: L1.
    - Loss weights (0.9, 0.4, 1.0) read as integrity, subspace (similarity and difference each)
      and reconstruction; decoder weights 0.5 / 0.4 / 0.3 / 0.2 as feature MSE, feature MI,
      semantic MSE, semantic MI.
    - Width: heads 4, feed-forward 256, dropout 0.1, MI critic hidden 64 (not in the paper).

    Sequences of length 1: each embedding encoder turns the one step into T = 8 tokens (the zero tokens, told
    apart only by learned positions, attend over themselves and the step): nothing is compressed, one vector
    is spread over 8 tokens. Text is one word row (n_words = 1, also when text is zeroed). Intra masking
    zeroes a modality's one step or nothing, so the ground-truth integrity is 0 or 1 and the estimator's
    target is binary (intact or zeroed); the model reads integrity, never `batch.present`, so a masked
    modality is the same input with the same target as a dropped one, and partial missingness does not occur.
    Everything after the embedding (subspaces, surrogate, decoders, dominant Transformer, fusion, prediction
    encoder) works on the T tokens and is unchanged; no attention is left with a single key.
    """

    config_class = SentiIFusionConfig

    def __init__(self, config: SentiIFusionConfig) -> None:
        super().__init__(config)
        c = config
        if c.surrogate_integrity not in ("predicted", "true"):
            raise ValueError(f"surrogate_integrity must be 'predicted' or 'true', got {c.surrogate_integrity!r}")
        d, t = c.dim, c.num_tokens
        self.text_states = TextStates(c.text_dim, c.text_encoder_path, c.finetune_text_encoder)
        self.audio_norm = FeatureStandardizer(c.audio_dim)
        self.vision_norm = FeatureStandardizer(c.vision_dim)
        inputs = {"text": self.text_states.output_dim, "audio": c.audio_dim, "vision": c.vision_dim}
        block = dict(num_heads=c.num_heads, ff_dim=c.ff_dim, dropout=c.dropout)
        self.embed = nn.ModuleDict({
            m: PrependTokenEncoder(inputs[m], d, num_tokens=t, num_layers=c.embed_layers, tokens="zero",
                                   max_len=c.max_len, **block) for m in ORDER})
        self.estimators = nn.ModuleDict({m: IntegrityEstimator(d, c.integrity_layers, num_tokens=t, **block)
                                         for m in ORDER})
        self.shared = _mlp(d, c.dropout)
        self.private = nn.ModuleDict({m: _mlp(d, c.dropout) for m in ORDER})
        self.decoders = nn.ModuleDict({m: _mlp(d, c.dropout) for m in ORDER})
        self.feature_mi = nn.ModuleDict({m: JSDMutualInformation(d, d, c.mi_hidden) for m in ORDER})
        self.semantic_mi = nn.ModuleDict({m: JSDMutualInformation(d, d, c.mi_hidden) for m in ORDER})
        layer = nn.TransformerEncoderLayer(d, c.num_heads, c.ff_dim, c.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.dominant_encoder = nn.TransformerEncoder(layer, c.dominant_layers, norm=nn.LayerNorm(d),
                                                      enable_nested_tensor=False)
        self.fusion = CrossModalAttention(d, num_layers=c.fusion_layers, **block)
        self.prediction_encoder = PrependTokenEncoder(d, d, num_tokens=2, num_layers=c.predictor_layers,
                                                      tokens="zero", max_len=2 * t, **block)
        self.head = nn.Linear(2 * d, 1)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {
            "text_encoder": list(self.text_states.parameters()),
            "embedding": list(self.embed.parameters()),
            "integrity": list(self.estimators.parameters()),
            "subspace": [*self.shared.parameters(), *self.private.parameters()],
            "decoders": [*self.decoders.parameters(), *self.feature_mi.parameters(),
                         *self.semantic_mi.parameters()],
            "fusion": [*self.dominant_encoder.parameters(), *self.fusion.parameters()],
            "predictor": [*self.prediction_encoder.parameters(), *self.head.parameters()],
        }
        return {name: params for name, params in groups.items() if params}

    def fit_statistics(self, samples: Sequence[Sample]) -> None:
        self.audio_norm.fit(real_steps(samples, "audio"))
        self.vision_norm.fit(real_steps(samples, "vision"))

    def default_loss_weights(self) -> dict[str, float]:
        integrity, subspace, recon = self.config.loss_weights
        weights = {"task": 1.0, "integrity": float(integrity), "similarity": float(subspace),
                   "difference": float(subspace)}
        weights.update({k: float(recon) * float(w) for k, w in zip(RECON_TERMS, self.config.decoder_weights)})
        return weights

    def stage1_loss_weights(self) -> dict[str, float]:
        """The paper's stage 1: integrity and reconstruction terms only."""
        return {k: w for k, w in self.default_loss_weights().items() if k == "integrity" or k in RECON_TERMS}

    # --- pieces ---

    def embed_all(self, batch: FeatureBatch) -> Tensor:
        """u: B x 3 x T x d."""
        text, n_words = word_rows(self.text_states(batch), batch.text_tokens)
        u_text, _ = self.embed["text"](text, n_words)
        out = [u_text]
        for m, norm in (("audio", self.audio_norm), ("vision", self.vision_norm)):
            tokens, _ = self.embed[m](norm(batch.features[m]), batch.lengths[m])
            out.append(tokens)
        return torch.stack(out, dim=1)

    def encode_subspaces(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(h_s, h_p) of B x 3 x T x d."""
        private = torch.stack([self.private[m](x[:, i]) for i, m in enumerate(ORDER)], dim=1)
        return self.shared(x), private

    def true_integrity(self, batch: FeatureBatch, like: Tensor) -> Tensor:
        return torch.stack([batch.integrity[m] for m in ORDER], dim=1).to(like)

    def represent(self, batch: FeatureBatch) -> SentiIFusionOutputs:
        u = self.embed_all(batch)
        predicted = torch.stack([self.estimators[m](u[:, i]) for i, m in enumerate(ORDER)], dim=1)
        shared, private = self.encode_subspaces(u)
        used = (predicted.detach() if self.config.surrogate_integrity == "predicted"
                else self.true_integrity(batch, predicted))
        sur = surrogate(u, used, shared)
        decoded = torch.stack([self.decoders[m](sur[:, i]) for i, m in enumerate(ORDER)], dim=1)
        dom = dominant_modality(used)
        aux = [i for i in range(len(ORDER)) if i != dom]
        dominant = self.dominant_encoder(sur[:, dom])
        fused = self.fusion(dominant, torch.cat([sur[:, i] for i in aux], dim=1))
        tokens, _ = self.prediction_encoder(torch.cat([dominant, fused], dim=1))
        pred = self.head(tokens.flatten(1)).squeeze(-1)
        return SentiIFusionOutputs(embeddings=u, integrity=predicted, shared=shared, private=private,
                                   surrogate=sur, decoded=decoded, dominant=dom, pred=pred)

    def forward(self, batch: FeatureBatch) -> dict[str, Tensor]:
        out = self.represent(batch)
        labels = batch.labels
        truth = self.true_integrity(batch, out.integrity)
        u_target = out.embeddings.detach()
        s_target = (out.shared + out.private).detach()
        re_shared, re_private = self.encode_subspaces(out.decoded)
        re_semantic = re_shared + re_private
        zero = out.pred.sum() * 0.0
        terms = dict.fromkeys(RECON_TERMS, zero)
        for i, m in enumerate(ORDER):
            weight = truth[:, i]
            terms["recon_mse"] = terms["recon_mse"] + weighted_mse(out.decoded[:, i], u_target[:, i], weight)
            terms["sem_mse"] = terms["sem_mse"] + weighted_mse(re_semantic[:, i], s_target[:, i], weight)
            if len(labels) >= 2:
                terms["recon_mi"] = terms["recon_mi"] + self.feature_mi[m].loss(
                    out.decoded[:, i].mean(1), u_target[:, i].mean(1))
                terms["sem_mi"] = terms["sem_mi"] + self.semantic_mi[m].loss(
                    re_semantic[:, i].mean(1), s_target[:, i].mean(1))
        n = len(ORDER)
        return {
            "pred": out.pred,
            "task": F.l1_loss(out.pred, labels),
            "integrity": F.mse_loss(out.integrity, truth),
            "similarity": similarity_loss(out.shared),
            "difference": subspace_difference(out.shared, out.private),
            **{k: v / n for k, v in terms.items()},
        }
