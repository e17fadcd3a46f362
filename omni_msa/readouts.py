"""The two readouts over one backbone (design.md section 6).

Both return the training loss from `forward(batch)` and `predict(batch)` for scoring, so training, evaluation
and scoring run one code path whichever readout a run uses.

- Discriminative: the headless decoder's final hidden state at the last non-padding position
  (from the attention mask, so left and right padding agree) goes through a float32 head. The
  lm_head is never run.
- Generative: teacher-forced cross-entropy on the answer tokens; prediction by greedy decoding
  of a few tokens, stopped at the end-of-turn token or the first line break (the answer is one
  line; what a model writes after it is not parsed), then the strict parser.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from omni_msa.backbone import decoder_of, input_embedding_dim
from omni_msa.inputs import Batch, last_token_positions
from omni_msa.parse import parse_score

ReadoutKind = Literal["discriminative", "generative"]


@dataclass(frozen=True)
class ReadoutSettings:
    kind: ReadoutKind = "discriminative"
    head: Literal["linear", "mlp"] = "linear"
    head_hidden: int = 256
    head_dropout: float = 0.1
    loss: Literal["mse", "l1", "huber"] = "huber"
    max_new_tokens: int = 6
    unparsable_fallback: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("discriminative", "generative"):
            raise ValueError(f"readout kind {self.kind!r}: expected 'discriminative' or 'generative'")
        if self.head not in ("linear", "mlp"):
            raise ValueError(f"head {self.head!r}: expected 'linear' or 'mlp'")
        if self.loss not in ("mse", "l1", "huber"):
            raise ValueError(f"loss {self.loss!r}: expected 'mse', 'l1' or 'huber'")


@dataclass
class Predictions:
    values: torch.Tensor
    statuses: list[str]
    texts: list[str] | None = None


def build_head(settings: ReadoutSettings, hidden_size: int) -> nn.Module:
    if settings.head == "linear":
        return nn.Linear(hidden_size, 1)
    return nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, settings.head_hidden), nn.GELU(),
                         nn.Dropout(settings.head_dropout), nn.Linear(settings.head_hidden, 1))


_LOSSES = {"mse": nn.functional.mse_loss, "l1": nn.functional.l1_loss, "huber": nn.functional.huber_loss}


class DiscriminativeReadout(nn.Module):
    def __init__(self, backbone: nn.Module, settings: ReadoutSettings, label_range: tuple[float, float]) -> None:
        super().__init__()
        self.backbone = backbone
        self.settings = settings
        self.label_range = label_range
        self.head = build_head(settings, input_embedding_dim(backbone)).float()

    def scores(self, batch: Batch) -> torch.Tensor:
        hidden = decoder_of(self.backbone)(**batch.model_inputs, **batch.forward_kwargs).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        last = hidden[rows, last_token_positions(batch.model_inputs["attention_mask"]).to(hidden.device)]
        return self.head(last.float()).squeeze(-1)

    def forward(self, batch: Batch) -> torch.Tensor:
        """The training loss."""
        return _LOSSES[self.settings.loss](self.scores(batch), batch.labels.to(torch.float32))

    @torch.no_grad()
    def predict(self, batch: Batch) -> Predictions:
        values = self.scores(batch).float().cpu()
        return Predictions(values=values, statuses=["ok"] * len(values))


class GenerativeReadout(nn.Module):
    def __init__(self, backbone: nn.Module, settings: ReadoutSettings, label_range: tuple[float, float],
                 stop_token_ids: list[int], pad_token_id: int, decode: Callable[[torch.Tensor], str],
                 tokenizer: object) -> None:
        super().__init__()
        self.backbone = backbone
        self.settings = settings
        self.label_range = label_range
        self.stop_token_ids = stop_token_ids
        self.pad_token_id = pad_token_id
        self.decode = decode
        self.tokenizer = tokenizer

    def forward(self, batch: Batch) -> torch.Tensor:
        """The training loss: cross-entropy on the answer tokens."""
        if batch.lm_labels is None:
            raise ValueError("generative training needs a batch collated with answers")
        return self.backbone(**batch.model_inputs, **batch.forward_kwargs, labels=batch.lm_labels).loss

    @torch.no_grad()
    def predict(self, batch: Batch) -> Predictions:
        prompt_length = batch.model_inputs["input_ids"].shape[1]
        generated = self.backbone.generate(
            **batch.model_inputs, **batch.forward_kwargs, max_new_tokens=self.settings.max_new_tokens,
            do_sample=False, eos_token_id=self.stop_token_ids, pad_token_id=self.pad_token_id,
            stop_strings=["\n"], tokenizer=self.tokenizer)
        texts = [self.decode(row[prompt_length:]) for row in generated]
        low, high = self.label_range
        parsed = [parse_score(text, low, high, fallback=self.settings.unparsable_fallback) for text in texts]
        return Predictions(values=torch.tensor([p.value for p in parsed], dtype=torch.float32),
                           statuses=[str(p.status) for p in parsed], texts=texts)
