"""The model's own distribution over the answer grid: every answer the generative readout could be
trained to write (label_low to label_high in steps of 10^-decimals, written by
`PromptSettings.answer`), each scored as the sum of its tokens' log-probabilities given the prompt.

A candidate's tokens are exactly the training target: the answer and the end-of-turn token(s) of
the assistant turn (`InputBuilder._answer_suffix`), tokenized alone as `_answer_labels` checks they
are inside the training sequence. The candidates share prefixes ("-2." before "-2.0" ... "-2.9"),
so they are merged into a trie and scored in one pass over the prompt followed by the trie's
inner nodes, under a tree attention mask: a node sees the real prompt tokens, its ancestors and
itself, at the position it would have after the prompt. One pass, no KV cache: it is
differentiable and runs under gradient checkpointing (which turns the cache off in training).
With one token per digit (Qwen's tokenizer, the byte-level test one), MOSI's 61 candidates of 4
or 5 tokens need 78 trie tokens after the prompt, not 61 continuations. The mask is a custom 4D
one: eager or sdpa attention, never flash attention (which would ignore it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from omni_msa.backbone import decoder_of, unwrap
from omni_msa.inputs import Batch, last_token_positions
from omni_msa.prompt import PromptSettings, conversation


@dataclass(frozen=True)
class AnswerGrid:
    """The candidates and the trie they are scored through (tensors on the CPU)."""

    prompt: PromptSettings
    texts: tuple[str, ...]       # the answers, ascending
    values: torch.Tensor         # [K] float32: the value each answer writes
    node_tokens: torch.Tensor    # [N] long: each inner trie node (a proper token prefix) ends with this token
    node_depth: torch.Tensor     # [N] long: its prefix length, so its position is the prompt's last + depth
    node_ancestry: torch.Tensor  # [N, N] bool: [i, j] when node j is node i or one of its ancestors
    source: torch.Tensor         # [K, J] long: what predicts token j: 0 the prompt's last token, 1 + i node i
    token: torch.Tensor          # [K, J] long: candidate k's j-th token (0 past its end)
    valid: torch.Tensor          # [K, J] float32: 1 where candidate k has a j-th token

    def index_of(self, label: float) -> int:
        """The candidate the generative readout is trained to write for `label`."""
        return self.texts.index(self.prompt.answer(label))

    @property
    def token_counts(self) -> torch.Tensor:
        return self.valid.sum(-1)


def grid_answers(prompt: PromptSettings) -> list[str]:
    """Every answer from label_low to label_high in steps of 10^-decimals, as the model writes it."""
    scale = 10 ** prompt.decimals
    low, high = round(prompt.label_low * scale), round(prompt.label_high * scale)
    return [prompt.answer(step / scale) for step in range(low, high + 1)]


def answer_grid(builder: Any) -> AnswerGrid:
    """The grid of `builder`'s prompt settings, tokenized as its training targets."""
    prompt: PromptSettings = builder.prompt
    messages = conversation(prompt, ("text",), "x", multimodal=builder.multimodal)
    rendered = builder.preprocessor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    texts = grid_answers(prompt)
    sequences = [tuple(builder.tokenizer(builder._answer_suffix(messages, text, rendered),
                                         add_special_tokens=False)["input_ids"]) for text in texts]
    return grid_from_sequences(prompt, texts, sequences)


def grid_from_sequences(prompt: PromptSettings, texts: list[str], sequences: list[tuple[int, ...]]) -> AnswerGrid:
    """The trie of the candidates' token sequences: one node per distinct proper prefix."""
    prefixes = sorted({seq[:j] for seq in sequences for j in range(1, len(seq))}, key=lambda p: (len(p), p))
    node = {prefix: i for i, prefix in enumerate(prefixes)}
    ancestry = torch.tensor([[prefix[:len(other)] == other for other in prefixes] for prefix in prefixes],
                            dtype=torch.bool).reshape(len(prefixes), len(prefixes))
    width = max(len(seq) for seq in sequences)
    source = torch.zeros(len(sequences), width, dtype=torch.long)
    token = torch.zeros(len(sequences), width, dtype=torch.long)
    valid = torch.zeros(len(sequences), width)
    for k, seq in enumerate(sequences):
        for j, token_id in enumerate(seq):
            source[k, j] = 0 if j == 0 else 1 + node[seq[:j]]
            token[k, j], valid[k, j] = token_id, 1.0
    return AnswerGrid(prompt=prompt, texts=tuple(texts), values=torch.tensor([float(t) for t in texts]),
                      node_tokens=torch.tensor([p[-1] for p in prefixes], dtype=torch.long),
                      node_depth=torch.tensor([len(p) for p in prefixes], dtype=torch.long),
                      node_ancestry=ancestry, source=source, token=token, valid=valid)


def tree_attention_mask(prompt_mask: torch.Tensor, ancestry: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive [B, 1, L + N, L + N] mask: prompt tokens causal over the real prompt tokens (a pad
    sees itself only, so no row is empty), trie nodes over the real prompt tokens and their ancestors."""
    batch, length = prompt_mask.shape
    nodes = ancestry.shape[0]
    real = prompt_mask.bool()[:, None, :]
    causal = torch.ones(length, length, dtype=torch.bool, device=real.device).tril()
    eye = torch.eye(length, dtype=torch.bool, device=real.device)
    prompt_rows = torch.cat([(causal & real) | eye, real.new_zeros(batch, length, nodes)], dim=-1)
    node_rows = torch.cat([real.expand(batch, nodes, length), ancestry.expand(batch, nodes, nodes)], dim=-1)
    allowed = torch.cat([prompt_rows, node_rows], dim=1)[:, None]
    return torch.zeros(allowed.shape, dtype=dtype, device=real.device).masked_fill(~allowed, torch.finfo(dtype).min)


def grid_log_probs(backbone: nn.Module, grid: AnswerGrid, batch: Batch) -> torch.Tensor:
    """[B, K] log p(candidate | prompt), differentiable (callers that predict wrap it in no_grad).

    Positions come from the model's own generation rule (`_prepare_position_ids_for_generation`:
    the mask's cumulative sum, or Qwen's multimodal rope index), so left and right padding agree.
    """
    model = unwrap(backbone)
    if "flash" in str(model.config._attn_implementation):
        raise ValueError("the answer grid is scored under a tree attention mask, which flash attention ignores: "
                         "use attn_implementation 'sdpa' or 'eager'")
    input_ids, mask = batch.model_inputs["input_ids"], batch.model_inputs["attention_mask"]
    device, (size, length) = input_ids.device, input_ids.shape
    positions = model._prepare_position_ids_for_generation(input_ids, {**batch.model_inputs, **batch.forward_kwargs})
    last = last_token_positions(mask).to(device)
    index = last.view(*([1] * (positions.ndim - 2)), size, 1).expand(*positions.shape[:-1], 1)
    node_positions = positions.gather(-1, index) + grid.node_depth.to(device)
    nodes = grid.node_tokens.to(device).expand(size, -1)
    dtype = model.get_input_embeddings().weight.dtype
    inputs = {**batch.model_inputs, "input_ids": torch.cat([input_ids, nodes], dim=1),
              "attention_mask": tree_attention_mask(mask, grid.node_ancestry.to(device), dtype),
              "position_ids": torch.cat([positions, node_positions], dim=-1)}
    hidden = decoder_of(backbone)(**inputs, **batch.forward_kwargs, use_cache=False).last_hidden_state
    rows = torch.arange(size, device=device)
    sources = torch.cat([hidden[rows, last][:, None], hidden[:, length:]], dim=1)
    logits = model.get_output_embeddings()(sources)
    log_probs = logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)  # bf16 up, never down
    token_log_probs = log_probs[:, grid.source.to(device), grid.token.to(device)]
    return (token_log_probs * grid.valid.to(device)).sum(-1)


@dataclass(frozen=True)
class GridSummary:
    """Per-sample statistics of the renormalised distribution over the grid."""

    mean: torch.Tensor
    median: torch.Tensor      # the smallest grid value whose cumulative probability reaches 0.5
    std: torch.Tensor
    grid_mass: torch.Tensor   # the probability the grid held before renormalising
    low80: torch.Tensor       # the 0.1 and 0.9 quantiles: the central 80 % interval of the distribution
    high80: torch.Tensor


def grid_mean(log_probs: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The expected value under the renormalised distribution (differentiable: RAFT's prediction)."""
    return log_probs.softmax(-1) @ values.to(log_probs)


def summarise(log_probs: torch.Tensor, values: torch.Tensor) -> GridSummary:
    """Mean, median, standard deviation and mass of each row's distribution over ascending `values`."""
    values = values.to(log_probs)
    probs = log_probs.softmax(-1)
    mean = probs @ values
    variance = (probs * (values - mean[:, None]) ** 2).sum(-1)
    cumulative = probs.cumsum(-1)

    def quantile(q: float) -> torch.Tensor:
        """The smallest grid value whose cumulative probability reaches q."""
        return values[(cumulative < q).sum(-1).clamp(max=len(values) - 1)]

    return GridSummary(mean=mean, median=quantile(0.5), std=variance.clamp(min=0).sqrt(),
                       grid_mass=log_probs.logsumexp(-1).exp(), low80=quantile(0.1), high80=quantile(0.9))
