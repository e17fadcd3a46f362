"""The generative readout: the model writes the score, which is parsed.

Training: teacher-forced cross-entropy on the answer tokens. Prediction: greedy decoding of a
few tokens, stopped at the end-of-turn token or the first line break (the answer is one line;
what a model writes after it is not parsed), then the strict parser. Zero-shot is the same
readout on the bare backbone, never trained.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers import LogitsProcessorList

from omni_msa.inputs import Batch
from omni_msa.parse import parse_score
from omni_msa.readouts.base import Predictions, ReadoutContext, ReadoutSettings, register_readout


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

    def logits_processors(self, prompt_length: int) -> LogitsProcessorList:
        """What decoding applies to the logits beyond greedy choice (readouts built on this one
        constrain it); `prompt_length`: where the generated ids start in every row."""
        return LogitsProcessorList()

    @torch.no_grad()
    def predict(self, batch: Batch) -> Predictions:
        prompt_length = batch.model_inputs["input_ids"].shape[1]
        generated = self.backbone.generate(
            **batch.model_inputs, **batch.forward_kwargs, max_new_tokens=self.settings.max_new_tokens,
            do_sample=False, eos_token_id=self.stop_token_ids, pad_token_id=self.pad_token_id,
            stop_strings=["\n"], tokenizer=self.tokenizer, logits_processor=self.logits_processors(prompt_length))
        texts = [self.decode(row[prompt_length:]) for row in generated]
        low, high = self.label_range
        parsed = [parse_score(text, low, high, fallback=self.settings.unparsable_fallback) for text in texts]
        return Predictions(values=torch.tensor([p.value for p in parsed], dtype=torch.float32),
                           statuses=[str(p.status) for p in parsed], texts=texts)


def build_generative(ctx: ReadoutContext, readout_class: type[GenerativeReadout] = GenerativeReadout,
                     **extra: Any) -> GenerativeReadout:
    """The readout on `ctx`; `readout_class` and `extra` (its further arguments): a readout built on this one."""
    tokenizer = ctx.builder.tokenizer
    return readout_class(ctx.backbone, ctx.settings, ctx.label_range, ctx.builder.stop_token_ids,
                         tokenizer.pad_token_id, lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
                         tokenizer, **extra)


register_readout("generative", with_answers=True, parsed=True, uses_lm_head=True)(build_generative)
register_readout("generative_zero_shot", trained=False, parsed=True, uses_lm_head=True)(build_generative)
