"""SG-DTAM: semantic-guided staged generation of missing modalities plus dynamic time alignment.

Text is the anchor. Audio and vision are generated from text in two stages whose order is
chosen per sample by a mutual-information criterion: the modality that shares more with text
(per-sample MINE estimate of I(text; audio) - I(text; vision) against a threshold) is generated
first from text alone, the other second from text and the first generated modality. Generated
sequences stand in for dropped modalities. A dynamic time alignment module then lets every
text word attend to the audio and vision time axes through a soft time-offset window with a
learnable width, an offset penalty and per-head gates; a soft-DTW loss and a smoothness loss
regularise the aligned streams; a light classifier reads text plus the two aligned streams.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omni_msa.data.record import Sample

from classic_msa.blocks import MINE, FeatureStandardizer, InfoNCE, PrependTokenEncoder, soft_dtw
from classic_msa.data import FeatureBatch, real_steps
from classic_msa.model import FeatureModel, register_model
from classic_msa.text import TextStates


@dataclass
class SGDTAMConfig:
    """SG-DTAM hyper-parameters; input dims default to unaligned MOSI (filled from data by the runner).

    Paper defaults: `dim` 32, `num_heads` 8, `order_threshold` 0.12 (the loss weights 0.1 / 0.1
    / 0.05 are `default_loss_weights`). `segments`: audio and vision are averaged into this many
    equal time segments of their real length (generation length and alignment keys).
    `tau_init`, `mask_temperature`, `offset_lambda_init`: the alignment window (relative time,
    fraction of the utterance), its softness and the initial offset penalty. `dtw_gamma`: soft-DTW
    smoothing. `text_max_len`: longest word sequence the text encoder accepts.
    """

    text_dim: int = 768
    audio_dim: int = 5
    vision_dim: int = 20
    dim: int = 32
    num_heads: int = 8
    ff_dim: int = 64
    segments: int = 16
    text_max_len: int = 64
    dropout: float = 0.1
    order_threshold: float = 0.12
    mine_hidden: int = 64
    contrast_proj_dim: int = 32
    contrast_hidden: int = 64
    contrast_temperature: float = 0.1
    tau_init: float = 0.25
    mask_temperature: float = 0.02
    offset_lambda_init: float = 1.0
    dtw_gamma: float = 0.1
    classifier_hidden: int = 32
    text_encoder_path: str | None = None
    finetune_text_encoder: bool = False


@dataclass
class SGDTAMOutputs:
    """Everything one SG-DTAM pass computes; `forward` turns it into the prediction and losses."""

    text_pooled: Tensor       # B x d
    text_states: Tensor       # B x Lw x d, word states (words moved to the front)
    n_words: Tensor           # B
    real: dict[str, Tensor]   # audio/vision: B x K x d encoder states of the real (masked) input
    real_pooled: dict[str, Tensor]
    targets: dict[str, Tensor]  # audio/vision: B x K x D_m standardised segment means (recon targets)
    generated: dict[str, Tensor]  # audio/vision: B x K x d
    first: Tensor             # B x K x d, stage-1 output
    second: Tensor            # B x K x d, stage-2 output
    mi_difference: Tensor     # B, I(t; a) - I(t; v) per sample
    audio_first: Tensor       # B bool
    aligned: dict[str, Tensor]  # audio/vision: B x Lw x d on the text timeline
    pred: Tensor              # B


# --- pure functions (tested directly) -------------------------------------------------------

def generation_order(mi_difference: Tensor, threshold: float) -> Tensor:
    """True where audio is generated first: I(t; a) - I(t; v) > threshold; else vision first."""
    return mi_difference > threshold


def staged_generation_mask(stage: int, n_words: Tensor, max_words: int, segments: int) -> Tensor:
    """Key padding mask (True = hidden) over the generator context [bridge | text words | first
    generated modality]: stage 1 sees the bridge token and the real words only, stage 2 also
    the stage-1 output."""
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage}")
    batch = n_words.shape[0]
    bridge = torch.zeros(batch, 1, dtype=torch.bool, device=n_words.device)
    words = torch.arange(max_words, device=n_words.device)[None, :] >= n_words[:, None]
    generated = torch.full((batch, segments), stage == 1, dtype=torch.bool, device=n_words.device)
    return torch.cat([bridge, words, generated], dim=1)


def causal_mask(length: int, device: torch.device | None = None) -> Tensor:
    """L x L bool mask, True above the diagonal (step t may not see steps > t)."""
    return torch.triu(torch.ones(length, length, dtype=torch.bool, device=device), diagonal=1)


def segment_pool(x: Tensor, lengths: Tensor, segments: int) -> Tensor:
    """Average B x L x D into B x segments x D equal slices of each row's real length n.
    Slice s covers [floor(s n / K), max(ceil((s + 1) n / K), floor(s n / K) + 1)) within [0, n),
    so rows shorter than K repeat frames; a row of length 0 gives zeros."""
    length = x.shape[1]
    n = lengths.to(x.dtype).clamp(max=length)[:, None]                       # B x 1
    s = torch.arange(segments, device=x.device, dtype=x.dtype)[None, :]      # 1 x K
    start = torch.floor(s * n / segments)
    end = torch.maximum(torch.ceil((s + 1) * n / segments), start + 1)
    t = torch.arange(length, device=x.device, dtype=x.dtype)[None, None, :]
    weights = ((t >= start[..., None]) & (t < end[..., None]) & (t < n[..., None])).to(x.dtype)
    weights = weights / weights.sum(-1, keepdim=True).clamp(min=1.0)
    return weights @ x


def pointwise_mi(mine: MINE, x: Tensor, y: Tensor) -> Tensor:
    """Per-sample MINE statistic T(x_i, y_i) - log E_{p(x)p(y)}[e^T]: the Donsker-Varadhan bound
    with the expectation taken out of the sample. The denominator is MINE's moving average
    (batch-independent) once trained; before that, the log-mean-exp over all in-batch pairs
    (x_i, y_j), j != i (0 for a batch of one)."""
    joint = mine.critic(x, y)
    if not torch.isnan(mine.log_ema):
        return joint - mine.log_ema
    batch = x.shape[0]
    if batch < 2:
        return torch.zeros_like(joint)
    scores = mine.critic(x[:, None].expand(-1, batch, -1), y[None, :].expand(batch, -1, -1))   # B x B
    off = ~torch.eye(batch, dtype=torch.bool, device=x.device)
    negatives = scores[off].view(batch, batch - 1)
    return joint - (torch.logsumexp(negatives.flatten(), 0) - math.log(negatives.numel()))


def conditional_mi_lower_bound(mine: MINE, x: Tensor, y: Tensor, z: Tensor) -> Tensor:
    """Donsker-Varadhan lower bound on I(x; y | z) with the critic of `mine` on (x, [y, z]).
    Joint: (x_i, y_i, z_i). Product of conditionals p(x|z)p(y|z)p(z): (x_i, y_k, z_i) with k the
    nearest in-batch neighbour of z_i (k-NN conditional shuffle). Returns 0 for a batch of one."""
    if x.shape[0] < 2:
        return x.sum() * 0.0
    with torch.no_grad():
        distance = torch.cdist(z, z)
        distance.fill_diagonal_(float("inf"))
        neighbour = distance.argmin(dim=1)
    joint = mine.critic(x, torch.cat([y, z], dim=-1))
    marginal = mine.critic(x, torch.cat([y[neighbour], z], dim=-1))
    return joint.mean() - (torch.logsumexp(marginal, 0) - math.log(marginal.shape[0]))


def smoothness_loss(x: Tensor, lengths: Tensor) -> Tensor:
    """Mean squared step ||x_{t+1} - x_t||^2 of unit-normalised states over valid steps."""
    x = F.normalize(x, dim=-1)
    steps = (x[:, 1:] - x[:, :-1]).pow(2).sum(-1)
    valid = torch.arange(1, x.shape[1], device=x.device)[None, :] < lengths[:, None]
    return (steps * valid).sum() / valid.sum().clamp(min=1)


def alignment_loss(text: Tensor, aligned: Tensor, lengths: Tensor, gamma: float) -> Tensor:
    """Soft-DTW between unit-normalised text word states and an aligned stream (both on the text
    timeline, `lengths` real steps each), divided by the length, batch mean."""
    lengths = lengths.clamp(min=1)
    value = soft_dtw(F.normalize(text, dim=-1), F.normalize(aligned, dim=-1), gamma,
                     x_lengths=lengths, y_lengths=lengths)
    return (value / lengths.to(value.dtype)).mean()


# --- modules ------------------------------------------------------------------------------

class GeneratorLayer(nn.Module):
    """Pre-norm decoder layer: causal self-attention over the generated steps, cross-attention
    to the context under the staged-generation mask, feed-forward."""

    def __init__(self, dim: int, num_heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm_self = nn.LayerNorm(dim)
        self.self_attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm_query = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.cross_attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor) -> Tensor:
        h = self.norm_self(x)
        attended, _ = self.self_attention(h, h, h, attn_mask=causal_mask(x.shape[1], x.device), need_weights=False)
        x = x + self.dropout(attended)
        context = self.norm_context(context)
        attended, _ = self.cross_attention(self.norm_query(x), context, context, key_padding_mask=context_mask,
                                           need_weights=False)
        x = x + self.dropout(attended)
        return x + self.dropout(self.ff(self.norm_ff(x)))


class StagedGenerator(nn.Module):
    """Generates a `segments`-step sequence of a target modality (0 audio, 1 vision) from the
    context [bridge | text words | stage-1 output]. Queries: learned step positions + a target
    modality embedding; the [bridge] token is a learned context key visible in both stages."""

    def __init__(self, dim: int, num_heads: int, ff_dim: int, segments: int, dropout: float) -> None:
        super().__init__()
        self.bridge = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.query_positions = nn.Parameter(torch.randn(1, segments, dim) * 0.02)
        self.modality = nn.Parameter(torch.randn(2, dim) * 0.02)
        self.layer = GeneratorLayer(dim, num_heads, ff_dim, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, target: Tensor, text: Tensor, first: Tensor | None, n_words: Tensor, stage: int) -> Tensor:
        """target: B long (0 audio, 1 vision); text: B x Lw x d; first: B x K x d or None (stage 1)."""
        batch, segments = text.shape[0], self.query_positions.shape[1]
        if first is None:
            first = text.new_zeros(batch, segments, text.shape[-1])
        context = torch.cat([self.bridge.expand(batch, -1, -1), text, first], dim=1)
        mask = staged_generation_mask(stage, n_words, text.shape[1], segments)
        queries = self.query_positions + self.modality[target][:, None]
        return self.norm(self.layer(queries, context, mask))


class DynamicTimeAlignment(nn.Module):
    """Multi-head attention from text words to another modality's time axis.

    Both axes are in relative time t in [0, 1] (step centre / real length); offset = |t_q - t_k|.
    Per head h the logits get log sigmoid((tau_h - offset) / temperature) (a soft time-offset
    mask with learnable width tau_h: ~1 inside the window, ~0 beyond it) and the adaptive
    weighting -lambda * offset (lambda = softplus of a learnable scalar, > 0). Each head's
    output is scaled by a gate sigmoid(W_g q) before the output projection; then a pre-norm
    feed-forward block with a residual.
    """

    def __init__(self, dim: int, num_heads: int, ff_dim: int, dropout: float, tau_init: float,
                 temperature: float, lambda_init: float) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim, self.temperature = num_heads, dim // num_heads, temperature
        self.norm_query = nn.LayerNorm(dim)
        self.norm_key = nn.LayerNorm(dim)
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))
        self.gate = nn.Linear(dim, num_heads)
        self.tau = nn.Parameter(torch.full((num_heads,), float(tau_init)))
        self.raw_lambda = nn.Parameter(torch.tensor(math.log(math.expm1(lambda_init))))
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim))
        self.dropout = nn.Dropout(dropout)

    @property
    def offset_lambda(self) -> Tensor:
        return F.softplus(self.raw_lambda)

    def offset_mask(self, offsets: Tensor) -> Tensor:
        """B x H x Lq x Lk soft mask sigmoid((tau_h - offset) / temperature) for B x Lq x Lk offsets."""
        return torch.sigmoid((self.tau[None, :, None, None] - offsets[:, None]) / self.temperature)

    def attention_bias(self, offsets: Tensor) -> Tensor:
        """log(offset_mask) - lambda * offset, B x H x Lq x Lk."""
        window = F.logsigmoid((self.tau[None, :, None, None] - offsets[:, None]) / self.temperature)
        return window - self.offset_lambda * offsets[:, None]

    def forward(self, query: Tensor, query_times: Tensor, keys: Tensor, key_times: Tensor) -> tuple[Tensor, Tensor]:
        """query B x Lq x d, keys B x Lk x d, times B x L. Returns (B x Lq x d, weights B x H x Lq x Lk)."""
        batch, lq, dim = query.shape
        h = self.norm_query(query)
        kn = self.norm_key(keys)
        split = lambda x: x.view(batch, -1, self.num_heads, self.head_dim).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(h)), split(self.k(kn)), split(self.v(kn))
        offsets = (query_times[:, :, None] - key_times[:, None, :]).abs()
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + self.attention_bias(offsets)
        weights = torch.softmax(logits, dim=-1)
        heads = self.dropout(weights) @ v                                     # B x H x Lq x dh
        gates = torch.sigmoid(self.gate(h)).transpose(1, 2)[..., None]        # B x H x Lq x 1
        out = self.out((gates * heads).transpose(1, 2).reshape(batch, lq, dim))
        out = out + self.dropout(self.ff(self.norm_ff(out)))
        return out, weights


@register_model("sg_dtam")
class SGDTAM(FeatureModel):
    """SG-DTAM on MMSA features. Loss terms (default weights): "task" 1, "contrast" 0.1,
    "recon" 0.1, "order" 0.05, "align" 0.1, "smooth" 0.05, "mine" 1 (trains the order critics
    only: their inputs are detached).

    Choices where the paper leaves them open:
    - Text: masked word rows only (moved to the front, [CLS]/[SEP]/padding dropped; the stored
      [CLS] row is never masked and would leak masked words), one-layer Transformer encoder
      (`PrependTokenEncoder`, d = 32, 8 heads, ff 64, learned positions) whose prepended token
      is the pooled text representation.
    - Audio/vision: standardised with training-set statistics, averaged into K = 16 equal
      segments of each row's real length (`segment_pool`), then a one-layer
      `PrependTokenEncoder` each; K segments are the common time grid for generation,
      reconstruction targets and alignment keys (this keeps 375/500-frame MOSI sequences cheap).
    - Per-sample MI: the pointwise MINE statistic T(x_i, y_i) - log E_marginal[e^T] with MINE's
      moving-average denominator (batch-independent; in-batch log-mean-exp before the first
      training step) on the pooled text and audio/vision encodings of the input as given,
      detached; two MINE critics (text-audio, text-vision) trained by the "mine" term.
    - Order: audio first iff I(t; a) - I(t; v) > 0.12, else vision first (the threshold is
      one-sided as in the issue).
    - Generation: one shared `StagedGenerator` (target-modality embedding); stage 1 attends
      (cross-attention) to [bridge] + text words only, stage 2 also to the stage-1 output
      (`staged_generation_mask`). Within the generated modality a causal self-attention mask
      makes step t depend on steps <= t only; the K steps are decoded in one parallel pass
      from learned step queries (no output feedback, so no train/test exposure gap).
    - Generation always runs from text on every sample; generated states replace a modality
      only where it is dropped (`batch.present` False). If text itself is dropped, generation
      still runs from the bridge token and zeroed words (no modality other than text is an anchor).
    - Stage 2 conditions on the generated first modality even when that modality is present.
    - Conditional-MI term ("order"): -DV bound of I(text; second | first) on pooled vectors,
      critic from a `MINE` block, negatives by the k-NN conditional shuffle (y of the nearest
      neighbour in z); gradients reach critic, generator and text encoder.
    - Contrast: one `InfoNCE` block (projection heads, temperature 0.1) per generated modality,
      between the mean generated state and the mean real encoder state, over samples where the
      modality is present (0 with fewer than 2 such samples).
    - Reconstruction: a linear head per modality maps generated states back to the standardised
      segment means; MSE over samples where the modality is present.
    - Time alignment: text words are the queries (relative time (i + 0.5) / n_words), the K
      audio or vision segments the keys ((s + 0.5) / K); one `DynamicTimeAlignment` per
      modality, tau_h initialised to 0.25 of the utterance, mask temperature 0.02, lambda
      init 1. Soft mask (differentiable in tau) applied as a log-additive attention bias.
    - Alignment loss: soft-DTW (gamma 0.1) between unit-normalised text word states and each
      aligned stream, divided by the word count; smoothness: mean squared step between
      consecutive unit-normalised aligned states. Weights 0.1 and 0.05 (not given in the paper).
    - Classifier: LayerNorm, Linear(3d, 32), GELU, dropout, Linear(32, 1) on [text token, mean
      aligned audio, mean aligned vision]; task loss L1.
    - Optimiser: the trainer's AdamW with weight_decay 0 is Adam (paper: Adam, lr 1e-3).

    Sequences of length 1: `segment_pool` copies the one audio/vision frame into all K = 16 segments, so the
    segment states differ only through learned positions and the reconstruction targets are 16 copies of one
    vector; text is one word (n_words = 1, also when text is zeroed), so the text encoder attends over [token,
    word]. The time alignment is not a one-to-one match: its one query (time 0.5) attends over the 16
    replicated keys, favouring the middle ones (offset bias): a weighted mean of near-identical states, with
    nothing to align. Soft-DTW of two one-step sequences is their one cost, so "align" is 2 - 2 cos(word
    state, aligned state); "smooth" (no consecutive steps) is identically 0. Intra masking zeroes a modality's
    step or nothing; a zeroed but present modality is used as real input, never generated.
    """

    config_class = SGDTAMConfig

    def __init__(self, config: SGDTAMConfig) -> None:
        super().__init__(config)
        c = config
        d = c.dim
        self.text_states = TextStates(c.text_dim, c.text_encoder_path, c.finetune_text_encoder)
        encoder = dict(num_tokens=1, num_layers=1, num_heads=c.num_heads, ff_dim=c.ff_dim, dropout=c.dropout)
        self.text_encoder = PrependTokenEncoder(self.text_states.output_dim, d, max_len=c.text_max_len, **encoder)
        self.audio_norm = FeatureStandardizer(c.audio_dim)
        self.vision_norm = FeatureStandardizer(c.vision_dim)
        self.audio_encoder = PrependTokenEncoder(c.audio_dim, d, max_len=c.segments, **encoder)
        self.vision_encoder = PrependTokenEncoder(c.vision_dim, d, max_len=c.segments, **encoder)
        self.mine_audio = MINE(d, d, hidden=c.mine_hidden)
        self.mine_vision = MINE(d, d, hidden=c.mine_hidden)
        self.generator = StagedGenerator(d, c.num_heads, c.ff_dim, c.segments, c.dropout)
        self.conditional_mine = MINE(d, 2 * d, hidden=c.mine_hidden)
        self.reconstruct_audio = nn.Linear(d, c.audio_dim)
        self.reconstruct_vision = nn.Linear(d, c.vision_dim)
        contrast = dict(proj_dim=c.contrast_proj_dim, hidden=c.contrast_hidden, temperature=c.contrast_temperature)
        self.contrast_audio = InfoNCE(d, d, **contrast)
        self.contrast_vision = InfoNCE(d, d, **contrast)
        alignment = dict(dropout=c.dropout, tau_init=c.tau_init, temperature=c.mask_temperature,
                         lambda_init=c.offset_lambda_init)
        self.align_audio = DynamicTimeAlignment(d, c.num_heads, c.ff_dim, **alignment)
        self.align_vision = DynamicTimeAlignment(d, c.num_heads, c.ff_dim, **alignment)
        self.classifier = nn.Sequential(nn.LayerNorm(3 * d), nn.Linear(3 * d, c.classifier_hidden), nn.GELU(),
                                        nn.Dropout(c.dropout), nn.Linear(c.classifier_hidden, 1))

    def fit_statistics(self, samples: Sequence[Sample]) -> None:
        self.audio_norm.fit(real_steps(samples, "audio"))
        self.vision_norm.fit(real_steps(samples, "vision"))

    def default_loss_weights(self) -> dict[str, float]:
        return {"task": 1.0, "contrast": 0.1, "recon": 0.1, "order": 0.05, "align": 0.1, "smooth": 0.05,
                "mine": 1.0}

    # --- pieces ---

    def encode_text(self, batch: FeatureBatch) -> tuple[Tensor, Tensor, Tensor]:
        """(pooled B x d, word states B x Lw x d, n_words B) from the masked word rows only."""
        states = self.text_states(batch)
        words = batch.text_tokens[:, : states.shape[1]]
        n_words = words.sum(1)
        order = torch.sort((~words).to(torch.int8), dim=1, stable=True).indices     # words first, in order
        keep = max(int(n_words.max()), 1)
        gathered = states.gather(1, order[:, :keep, None].expand(-1, -1, states.shape[-1]))
        gathered = gathered * (torch.arange(keep, device=states.device)[None, :] < n_words[:, None])[..., None]
        token, sequence = self.text_encoder(gathered, n_words)
        return token[:, 0], sequence, n_words

    def encode_other(self, batch: FeatureBatch, modality: str) -> tuple[Tensor, Tensor, Tensor]:
        """(pooled B x d, segment states B x K x d, standardised segment means B x K x D_m)."""
        norm = self.audio_norm if modality == "audio" else self.vision_norm
        encoder = self.audio_encoder if modality == "audio" else self.vision_encoder
        target = segment_pool(norm(batch.features[modality]), batch.lengths[modality], self.config.segments)
        token, sequence = encoder(target)
        return token[:, 0], sequence, target

    def mi_difference(self, text: Tensor, audio: Tensor, vision: Tensor) -> Tensor:
        with torch.no_grad():
            return (pointwise_mi(self.mine_audio, text, audio) - pointwise_mi(self.mine_vision, text, vision))

    def represent(self, batch: FeatureBatch) -> SGDTAMOutputs:
        c = self.config
        text_pooled, text_states, n_words = self.encode_text(batch)
        real, real_pooled, targets = {}, {}, {}
        for m in ("audio", "vision"):
            real_pooled[m], real[m], targets[m] = self.encode_other(batch, m)
        delta = self.mi_difference(text_pooled.detach(), real_pooled["audio"].detach(),
                                   real_pooled["vision"].detach())
        audio_first = generation_order(delta, c.order_threshold)
        first_target = (~audio_first).long()              # 0 audio, 1 vision
        first = self.generator(first_target, text_states, None, n_words, stage=1)
        second = self.generator(1 - first_target, text_states, first, n_words, stage=2)
        pick = audio_first[:, None, None]
        generated = {"audio": torch.where(pick, first, second), "vision": torch.where(pick, second, first)}

        device = text_states.device
        lw = text_states.shape[1]
        query_times = (torch.arange(lw, device=device)[None, :] + 0.5) / n_words.clamp(min=1)[:, None]
        key_times = ((torch.arange(c.segments, device=device) + 0.5) / c.segments)[None].expand(len(n_words), -1)
        word_valid = (torch.arange(lw, device=device)[None, :] < n_words[:, None]).to(text_states.dtype)
        aligned, pooled = {}, [text_pooled]
        for m, module in (("audio", self.align_audio), ("vision", self.align_vision)):
            keys = torch.where(batch.present[m].to(device)[:, None, None], real[m], generated[m])
            aligned[m], _ = module(text_states, query_times, keys, key_times)
            pooled.append((aligned[m] * word_valid[..., None]).sum(1) / word_valid.sum(1, keepdim=True).clamp(min=1))
        pred = self.classifier(torch.cat(pooled, dim=-1)).squeeze(-1)
        return SGDTAMOutputs(text_pooled=text_pooled, text_states=text_states, n_words=n_words, real=real,
                             real_pooled=real_pooled, targets=targets, generated=generated, first=first,
                             second=second, mi_difference=delta, audio_first=audio_first, aligned=aligned,
                             pred=pred)

    def forward(self, batch: FeatureBatch) -> dict[str, Tensor]:
        out = self.represent(batch)
        labels = batch.labels
        zero = out.pred.sum() * 0.0
        contrast, recon = zero, zero
        heads = {"audio": (self.contrast_audio, self.reconstruct_audio),
                 "vision": (self.contrast_vision, self.reconstruct_vision)}
        for m, (infonce, head) in heads.items():
            present = batch.present[m].to(labels.device)
            if int(present.sum()) >= 2:
                contrast = contrast + infonce.loss(out.generated[m][present].mean(1), out.real[m][present].mean(1))
            if bool(present.any()):
                recon = recon + F.mse_loss(head(out.generated[m][present]), out.targets[m][present])
        text = out.text_pooled
        order = -conditional_mi_lower_bound(self.conditional_mine, text, out.second.mean(1), out.first.mean(1))
        mine = zero
        if len(labels) >= 2:
            mine = (self.mine_audio.loss(text.detach(), out.real_pooled["audio"].detach())
                    + self.mine_vision.loss(text.detach(), out.real_pooled["vision"].detach()))
        align = sum(alignment_loss(out.text_states, out.aligned[m], out.n_words, self.config.dtw_gamma)
                    for m in ("audio", "vision"))
        smooth = sum(smoothness_loss(out.aligned[m], out.n_words) for m in ("audio", "vision"))
        return {
            "pred": out.pred,
            "task": F.l1_loss(out.pred, labels),
            "contrast": contrast / 2,
            "recon": recon / 2,
            "order": order,
            "align": align / 2,
            "smooth": smooth / 2,
            "mine": mine,
        }
