"""ProMMA: prompt learning on a frozen backbone, with a learned "generate the missing modality?" decision.

Only the seed abstract exists, so every part below is a reading (listed in the `ProMMA`
docstring). In short: per-modality Transformer encoders are pre-trained on the task (stage 1)
and then frozen; stage 2 trains deep prompts (shared prompts decomposed into modality-private
ones), a light generator of missing modalities, an evaluator that decides per sample whether
generating is worth it (supervised by pseudo-labels from the frozen pre-trained model), a
cross-attention fusion whose modality weights come from mutual-information estimates, and a
residual prediction head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omni_msa.data.record import MODALITIES, Sample

from classic_msa.blocks import CrossModalAttention, FeatureStandardizer, JSDMutualInformation, padding_mask
from classic_msa.blocks.subnets import masked_mean
from classic_msa.data import FeatureBatch, real_steps
from classic_msa.model import FeatureModel, register_model
from classic_msa.models.senti_ifusion import word_rows
from classic_msa.text import TextStates

# Modality order of every stacked tensor (B x 3 x ...): text, audio, vision.
ORDER: tuple[str, ...] = tuple(MODALITIES)
BACKBONE_GROUP = "backbone"
STAGE2_GROUPS: tuple[str, ...] = ("prompts", "generator", "evaluator", "fusion", "head")


@dataclass
class ProMMAConfig:
    """ProMMA hyper-parameters; input dims default to unaligned MOSI (filled from data).

    `dim` d and `num_layers` L of each frozen modality encoder; `num_prompts` k prompt tokens per
    layer; `prompt_rank` r of the modality-specific factor of the private prompts;
    `decision_threshold` on the evaluator's gate; `simulate_drop` drops one present modality
    per training sample (when at least two are present) to make evaluator pseudo-labels on
    complete data; `max_len` is the longest input sequence accepted.
    """

    text_dim: int = 768
    audio_dim: int = 5
    vision_dim: int = 20
    dim: int = 64
    num_layers: int = 2
    num_heads: int = 4
    ff_dim: int = 128
    dropout: float = 0.1
    num_prompts: int = 4
    prompt_rank: int = 4
    fusion_layers: int = 1
    generator_hidden: int = 64
    evaluator_hidden: int = 32
    head_hidden: int = 64
    mi_hidden: int = 64
    decision_threshold: float = 0.5
    simulate_drop: bool = True
    max_len: int = 512
    text_encoder_path: str | None = None
    finetune_text_encoder: bool = False


# --- pure functions (tested directly) -------------------------------------------------------

def private_prompts(shared: Tensor, down: Tensor, up: Tensor) -> Tensor:
    """P_m = P_s + P_s A_m B_m: shared prompts (L x k x d) through a modality-specific rank-r
    residual map (A_m: d x r, B_m: r x d). Zero shared prompts give zero private prompts."""
    return shared + shared @ down @ up


def generation_pseudo_labels(pred_without: Tensor, pred_with: Tensor, labels: Tensor) -> Tensor:
    """1.0 where generating the missing modality lowered the pre-trained model's absolute
    error, else 0.0 (all inputs B or B x M; computed without gradients)."""
    with torch.no_grad():
        return ((pred_with - labels).abs() < (pred_without - labels).abs()).to(labels.dtype)


def mi_weights(scores: Tensor) -> Tensor:
    """Per-sample modality weights: softmax over the last dim of the pointwise MI scores."""
    return torch.softmax(scores, dim=-1)


# --- modules ------------------------------------------------------------------------------

def _mlp(input_dim: int, hidden: int, output_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(input_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, output_dim))


class ModalityEncoder(nn.Module):
    """The (to be frozen) backbone of one modality: Linear projection, learned positions, L
    pre-norm Transformer layers, final LayerNorm. Run with or without deep prompts."""

    def __init__(self, input_dim: int, dim: int, num_layers: int, num_heads: int, ff_dim: int, dropout: float,
                 max_len: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.proj = nn.Linear(input_dim, dim)
        self.positions = nn.Parameter(torch.randn(1, max_len, dim) * 0.02)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, num_heads, ff_dim, dropout, activation="gelu", batch_first=True,
                                       norm_first=True) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, lengths: Tensor, prompts: Tensor | None = None,
                shared: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """x: B x L x input_dim. prompts: num_layers x k x d private prompts (deep prompts) and
        shared: the matching shared prompts, or None for the plain backbone.
        Returns (pooled B x d over the real steps, prompt states B x k x d or None): the prompt
        states are the mean over levels of (prompt outputs of the layer + shared prompts of
        that level), the multi-level residual."""
        batch, length, _ = x.shape
        if length > self.max_len:
            raise ValueError(f"sequence of {length} is longer than max_len={self.max_len}")
        h = self.proj(x) + self.positions[:, :length]
        if prompts is None:
            mask = padding_mask(lengths, length)
            for layer in self.layers:
                h = layer(h, src_key_padding_mask=mask)
            return masked_mean(self.norm(h), lengths), None
        k = prompts.shape[1]
        seq_mask = torch.arange(length, device=x.device)[None, :] >= lengths[:, None]
        mask = torch.cat([seq_mask.new_zeros(batch, k), seq_mask], dim=1)
        levels = []
        for level, layer in enumerate(self.layers):
            out = layer(torch.cat([prompts[level].expand(batch, -1, -1), h], dim=1), src_key_padding_mask=mask)
            h = out[:, k:]
            levels.append(out[:, :k] + shared[level])
        return masked_mean(self.norm(h), lengths), self.norm(torch.stack(levels).mean(0))


class MissingModalityEvaluator(nn.Module):
    """Gate in [0, 1] per modality: "generate this missing modality?" from the present mask
    (B x 3) and the present modalities' pooled backbone features (B x 3 x d, zeros where absent)."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        n = len(ORDER)
        self.net = _mlp(n + n * dim, hidden, n, dropout)

    def logits(self, present: Tensor, summaries: Tensor) -> Tensor:
        masked = summaries * present[..., None].to(summaries.dtype)
        return self.net(torch.cat([present.to(summaries.dtype), masked.flatten(1)], dim=-1))

    def forward(self, present: Tensor, summaries: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(present, summaries))


class ModalityGenerator(nn.Module):
    """ĝ_m: the pooled backbone feature of modality m from the other two (masked) and their mask bits."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.nets = nn.ModuleList(_mlp(2 * dim + 2, hidden, dim, dropout) for _ in ORDER)

    def forward(self, present: Tensor, summaries: Tensor) -> Tensor:
        """present: B x 3 bool; summaries: B x 3 x d. Returns B x 3 x d."""
        mask = present.to(summaries.dtype)
        out = []
        for i, net in enumerate(self.nets):
            others = [j for j in range(len(ORDER)) if j != i]
            inputs = torch.cat([(summaries[:, others] * mask[:, others, None]).flatten(1), mask[:, others]], dim=-1)
            out.append(net(inputs))
        return torch.stack(out, dim=1)


@dataclass
class ProMMAOutputs:
    pooled: Tensor            # B x 3 x d: plain (frozen) backbone features of the input
    backbone_pred: Tensor     # B: the pre-trained model's prediction
    generated: Tensor         # B x 3 x d: ĝ_m from the present modalities
    gates: Tensor             # B x 3: evaluator output on the actual present mask
    decisions: Tensor         # B x 3 bool: missing and gate > threshold (generation used)
    attended: Tensor          # B x 3 x d: token mean of each cross-attention output
    fused_mean: Tensor        # B x d: the unweighted mean of `attended` (MI partner)
    mi_scores: Tensor         # B x 3: pointwise MI scores (critic on the joint pair)
    weights: Tensor           # B x 3: softmax of the detached MI scores
    pred: Tensor              # B


@register_model("promma")
class ProMMA(FeatureModel):
    """ProMMA on MMSA features. Loss terms: "backbone" (stage 1), and "task" 1, "generator" 1,
    "evaluator" 0.5, "mi" 0.1 (stage 2 defaults). Parameter groups: "backbone" (encoders and
    the pre-training head), "prompts", "generator", "evaluator", "fusion", "head" (+
    "text_encoder" when wrapping an HF encoder). Stage 1: `frozen: [prompts, generator,
    evaluator, fusion, head]`, `losses: {backbone: 1}`; stage 2: `frozen: [backbone]`.

    How each part of the abstract was read (only the abstract exists):
    - Frozen pretrained backbone: no hub, so per-modality Transformer encoders (projection, learned positions, L
      pre-norm layers, LayerNorm, masked mean pool) + an MLP head on the 3 pooled features, pre-trained with L1
      "backbone" loss in stage 1, frozen in stage 2 (group "backbone").
    - Text input: masked word rows moved to the front ([CLS]/[SEP] dropped: the stored [CLS] row is never masked
      and would leak); audio/vision standardised with training statistics.
    - Learnable prompts: deep prompts, k tokens prepended at every encoder layer (re-set at each layer), no positions.
    - Shared -> private prompts: one shared set P_s (L x k x d); P_m = P_s + P_s A_m B_m with a rank-r modality
      factor (A_m: d x r, B_m: r x d), so each P_m is a function of P_s.
    - Multi-level residual: at each level the shared prompts P_s^l are added to the self-attention layer's
      outputs at the prompt positions; the modality's prompt state is the LayerNorm of the mean over levels.
    - Missing-modality generator: per modality an MLP from the other two modalities' pooled backbone features
      (masked) + mask bits to the pooled feature of the missing one; "generator" = MSE to the real (detached)
      pooled feature where the modality is present, weighted by integrity.
    - Evaluator: an MLP on (present mask, masked pooled features of the present modalities) -> per-modality gate
      in [0, 1]; decision = missing and gate > 0.5 (hard; the gate learns only from its pseudo-labels).
    - Pseudo-labels: frozen backbone head on the pooled features with the missing modality as given (zeros
      encoded) vs replaced by ĝ_m, both detached; label 1 if generation lowered |pred - y|. In training one
      present modality per sample (>= 2 present) is also dropped by simulation (its "without" feature = the
      backbone on zeros) so complete data yields labels; "evaluator" = BCE over the missing (actual + simulated)
      pairs.
    - Using a generated modality: where decided, the pooled feature is replaced by ĝ_m and the prompt state gets
      + Linear(ĝ_m) on every prompt token.
    - Cross-attention: per modality a `CrossModalAttention` (query = its k prompt states, context = the other
      two modalities' 2k prompt states); token mean -> c_m.
    - MI-based weights: one Deep-InfoMax JSD estimator per modality between c_m and the fused mean f = mean_m
      c_m; "mi" = mean of their losses (maximising MI); the pointwise score is the critic T_m(c_m, f) (at the
      JSD optimum T = log p(x,y)/p(x)p(y)), detached, softmax over modalities -> weights summing to 1 per
      sample, batch-independent.
    - Prediction: frozen backbone head on the (possibly generated) prompted pooled features + a residual MLP
      head on sum_m w_m c_m (last layer zero-initialised, so stage 2 starts at the pre-trained prediction);
      "task" = L1.
    - Width: d 64, L 2, k 4, r 4, heads 4, ff 128, dropout 0.1 (CPU-sized; not in the abstract).

    Sequences of length 1: in the plain backbone pass every self-attention has one key, puts weight 1 on it
    and reduces to the output projection of the step's value projection (query and key projections have no
    effect; in training, attention dropout makes that weight 0 or 1 / (1 - p)): it has nothing to mix. Only
    position 0 of the learned position table is used, and the masked mean pool picks the only step. With deep
    prompts the step attends over the k prompts and itself (k + 1 keys), so the prompts still act.
    Cross-attention, generator, evaluator, MI weights and heads work on prompt states or pooled vectors and
    are unchanged. Intra masking zeroes a modality's one step or nothing; a zeroed but present one has
    integrity 0 (no generator loss) and, being present, is never generated: its encoding of zeros is used.
    """

    config_class = ProMMAConfig

    def __init__(self, config: ProMMAConfig) -> None:
        super().__init__(config)
        c = config
        d, n_layers = c.dim, c.num_layers
        self.text_states = TextStates(c.text_dim, c.text_encoder_path, c.finetune_text_encoder)
        self.audio_norm = FeatureStandardizer(c.audio_dim)
        self.vision_norm = FeatureStandardizer(c.vision_dim)
        inputs = {"text": self.text_states.output_dim, "audio": c.audio_dim, "vision": c.vision_dim}
        self.encoders = nn.ModuleDict({m: ModalityEncoder(inputs[m], d, n_layers, c.num_heads, c.ff_dim, c.dropout,
                                                          c.max_len) for m in ORDER})
        self.backbone_head = _mlp(len(ORDER) * d, c.head_hidden, 1, c.dropout)
        self.shared_prompts = nn.Parameter(torch.randn(n_layers, c.num_prompts, d) * 0.02)
        self.prompt_down = nn.ParameterDict({m: nn.Parameter(torch.randn(d, c.prompt_rank) / d ** 0.5)
                                             for m in ORDER})
        self.prompt_up = nn.ParameterDict({m: nn.Parameter(torch.randn(c.prompt_rank, d) / c.prompt_rank ** 0.5)
                                           for m in ORDER})
        self.generator = ModalityGenerator(d, c.generator_hidden, c.dropout)
        self.inject = nn.Linear(d, d)
        self.evaluator = MissingModalityEvaluator(d, c.evaluator_hidden, c.dropout)
        self.cross = nn.ModuleDict({m: CrossModalAttention(d, num_layers=c.fusion_layers, num_heads=c.num_heads,
                                                           ff_dim=c.ff_dim, dropout=c.dropout) for m in ORDER})
        self.mi = nn.ModuleDict({m: JSDMutualInformation(d, d, c.mi_hidden) for m in ORDER})
        self.head = _mlp(d, c.head_hidden, 1, c.dropout)
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {
            "text_encoder": list(self.text_states.parameters()),
            BACKBONE_GROUP: [*self.encoders.parameters(), *self.backbone_head.parameters()],
            "prompts": [self.shared_prompts, *self.prompt_down.parameters(), *self.prompt_up.parameters()],
            "generator": [*self.generator.parameters(), *self.inject.parameters()],
            "evaluator": list(self.evaluator.parameters()),
            "fusion": [*self.cross.parameters(), *self.mi.parameters()],
            "head": list(self.head.parameters()),
        }
        return {name: params for name, params in groups.items() if params}

    def fit_statistics(self, samples: Sequence[Sample]) -> None:
        self.audio_norm.fit(real_steps(samples, "audio"))
        self.vision_norm.fit(real_steps(samples, "vision"))

    def default_loss_weights(self) -> dict[str, float]:
        return {"task": 1.0, "generator": 1.0, "evaluator": 0.5, "mi": 0.1}

    def stage1_loss_weights(self) -> dict[str, float]:
        """Stage 1 pre-trains the backbone on the task alone."""
        return {"backbone": 1.0}

    # --- pieces ---

    def private(self) -> Tensor:
        """3 x L x k x d private prompts (ORDER)."""
        return torch.stack([private_prompts(self.shared_prompts, self.prompt_down[m], self.prompt_up[m])
                            for m in ORDER])

    def inputs(self, batch: FeatureBatch) -> dict[str, tuple[Tensor, Tensor]]:
        text, n_words = word_rows(self.text_states(batch), batch.text_tokens)
        return {"text": (text, n_words),
                "audio": (self.audio_norm(batch.features["audio"]), batch.lengths["audio"]),
                "vision": (self.vision_norm(batch.features["vision"]), batch.lengths["vision"])}

    def present(self, batch: FeatureBatch) -> Tensor:
        return torch.stack([batch.present[m] for m in ORDER], dim=1).to(self.shared_prompts.device)

    def encode(self, inputs: dict[str, tuple[Tensor, Tensor]], prompted: bool) -> tuple[Tensor, Tensor | None]:
        private = self.private() if prompted else None
        pooled, states = [], []
        for i, m in enumerate(ORDER):
            x, lengths = inputs[m]
            p, s = self.encoders[m](x, lengths, None if private is None else private[i],
                                    None if private is None else self.shared_prompts)
            pooled.append(p)
            states.append(s)
        return torch.stack(pooled, dim=1), (torch.stack(states, dim=1) if prompted else None)

    def backbone_predict(self, pooled: Tensor) -> Tensor:
        return self.backbone_head(pooled.flatten(1)).squeeze(-1)

    def represent(self, batch: FeatureBatch) -> ProMMAOutputs:
        inputs = self.inputs(batch)
        present = self.present(batch)
        pooled, _ = self.encode(inputs, prompted=False)
        backbone_pred = self.backbone_predict(pooled)
        features = pooled.detach()
        generated = self.generator(present, features)
        gates = self.evaluator(present, features)
        decisions = (~present) & (gates.detach() > self.config.decision_threshold)
        use = decisions.to(pooled.dtype)
        prompted_pooled, states = self.encode(inputs, prompted=True)
        prompted_pooled = torch.where(decisions[..., None], generated, prompted_pooled)
        states = states + use[..., None, None] * self.inject(generated)[:, :, None, :]
        attended = []
        for i, m in enumerate(ORDER):
            context = torch.cat([states[:, j] for j in range(len(ORDER)) if j != i], dim=1)
            attended.append(self.cross[m](states[:, i], context).mean(1))
        attended = torch.stack(attended, dim=1)
        fused_mean = attended.mean(1)
        scores = torch.stack([self.mi[m].critic(attended[:, i], fused_mean) for i, m in enumerate(ORDER)], dim=1)
        weights = mi_weights(scores.detach())
        fused = (weights[..., None] * attended).sum(1)
        pred = self.backbone_predict(prompted_pooled) + self.head(fused).squeeze(-1)
        return ProMMAOutputs(pooled=pooled, backbone_pred=backbone_pred, generated=generated, gates=gates,
                             decisions=decisions, attended=attended, fused_mean=fused_mean, mi_scores=scores,
                             weights=weights, pred=pred)

    def evaluator_targets(self, batch: FeatureBatch, out: ProMMAOutputs) -> tuple[Tensor, Tensor, Tensor]:
        """(mask the evaluator is asked about B x 3, pseudo-labels B x 3, which pairs count B x 3)."""
        present = self.present(batch)
        mask = present.clone()
        without = out.pooled.detach()
        if self.training and self.config.simulate_drop:
            droppable = present & (present.sum(1, keepdim=True) >= 2)
            choice = torch.multinomial(droppable.float() + 1e-9 * (~droppable.any(1, keepdim=True)).float(), 1)
            drop = torch.zeros_like(present).scatter_(1, choice, True) & droppable
            if drop.any():
                with torch.no_grad():
                    zeros = {m: (torch.zeros_like(x), n) for m, (x, n) in self.inputs(batch).items()}
                    empty, _ = self.encode(zeros, prompted=False)
                mask = present & ~drop
                without = torch.where(drop[..., None], empty, without)
        with torch.no_grad():
            generated = self.generator(mask, without)
            base = self.backbone_predict(without)
            with_gen = torch.stack([self.backbone_predict(torch.where(
                (torch.arange(len(ORDER), device=without.device) == i)[None, :, None], generated, without))
                for i in range(len(ORDER))], dim=1)
            labels = generation_pseudo_labels(base[:, None].expand_as(with_gen), with_gen,
                                              batch.labels[:, None].expand_as(with_gen))
        return mask, labels, ~mask

    def forward(self, batch: FeatureBatch) -> dict[str, Tensor]:
        out = self.represent(batch)
        labels = batch.labels
        present = self.present(batch)
        integrity = torch.stack([batch.integrity[m] for m in ORDER], dim=1).to(out.pooled)
        gen_weight = present.to(out.pooled.dtype) * integrity
        gen_error = (out.generated - out.pooled.detach()).pow(2).mean(-1)
        generator = (gen_error * gen_weight).sum() / gen_weight.sum().clamp(min=1e-6)
        mask, pseudo, counted = self.evaluator_targets(batch, out)
        logits = self.evaluator.logits(mask, out.pooled.detach())
        bce = F.binary_cross_entropy_with_logits(logits, pseudo, reduction="none")
        counted_f = counted.to(bce.dtype)
        evaluator = (bce * counted_f).sum() / counted_f.sum().clamp(min=1.0)
        if len(labels) >= 2:
            mi = torch.stack([self.mi[m].loss(out.attended[:, i], out.fused_mean) for i, m in enumerate(ORDER)]).mean()
        else:
            mi = out.pred.sum() * 0.0
        return {
            "pred": out.pred,
            "task": F.l1_loss(out.pred, labels),
            "backbone": F.l1_loss(out.backbone_pred, labels),
            "generator": generator,
            "evaluator": evaluator,
            "mi": mi,
        }
