"""The constrained generative readout: greedy decoding that can only write an answer the parser accepts.

The generative readout's decoding (one path: `GenerativeReadout.predict`), with a transformers
`PrefixConstrainedLogitsProcessor` that allows, at each step, only the tokens that keep the decoded
text of the generated ids a prefix of an answer as the model was trained to write it
(`PromptSettings.answer`: every value of the label range in steps of 10^-decimals, "0.0" never
"-0.0"), and the stop tokens once the text is a whole answer. Every answer is one of those strings,
so none is unparsable or out of range (for tokenizers that decode a sequence as the concatenation
of its tokens' texts in context, as byte-level BPE does; `AnswerConstraint` reads those texts).
It reads the model the generative readout trains, or the bare backbone (zero-shot).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import LogitsProcessorList, PrefixConstrainedLogitsProcessor

from omni_msa.prompt import PromptSettings
from omni_msa.readouts.base import ReadoutContext, register_readout
from omni_msa.readouts.generative import GenerativeReadout, build_generative


def answer_grid(prompt: PromptSettings, label_range: tuple[float, float]) -> list[str]:
    """Every answer in the label range as the model is trained to write it (fixed decimals)."""
    low, high = label_range
    scale = 10 ** prompt.decimals
    # rounded before ceil/floor: -3.0 * 10 may land a hair off the integer grid
    first, last = math.ceil(round(low * scale, 6)), math.floor(round(high * scale, 6))
    return sorted({prompt.answer(k / scale) for k in range(first, last + 1)}, key=float)


def token_texts(tokenizer: Any) -> list[str]:
    """The text each token id adds when it follows another token (special tokens add ""), decoded once:
    in context, so that a SentencePiece token such as "▁2" reads " 2", as it does mid-answer."""
    anchor = tokenizer("0", add_special_tokens=False)["input_ids"][-1:]
    before = tokenizer.decode(anchor, skip_special_tokens=True)
    decoded = tokenizer.batch_decode([anchor + [i] for i in range(len(tokenizer))], skip_special_tokens=True)
    return [text[len(before):] if text.startswith(before) else "" for text in decoded]


class AnswerConstraint:
    """Which token ids may come next after a text, so that it stays a prefix of an allowed answer,
    and ends (a stop token) only on a whole one. Allowed sets are computed once per text and cached."""

    def __init__(self, answers: Sequence[str], texts: Sequence[str], stop_token_ids: Sequence[int]) -> None:
        if not answers or not stop_token_ids:
            raise ValueError("a constrained answer needs allowed answers and stop tokens")
        self.answers = frozenset(answers)
        self.prefixes = {answer[:n] for answer in answers for n in range(len(answer) + 1)}
        self.stop_token_ids = sorted(set(stop_token_ids))
        alphabet, longest = set("".join(answers)), max(map(len, answers))
        # tokens that add nothing (special ones, "") would let the text stand still and are never allowed
        self._candidates = [(i, text) for i, text in enumerate(texts)
                            if text and i not in self.stop_token_ids and len(text) <= longest and set(text) <= alphabet]
        missing = alphabet - {text for _, text in self._candidates}
        if missing:
            raise ValueError(f"the vocabulary has no single-character token for {sorted(missing)}: "
                             "some answers could not be written")
        self._allowed: dict[str, list[int]] = {}

    @property
    def max_tokens(self) -> int:
        """The most tokens an answer can take, its end-of-turn included: every allowed token adds at
        least one character, and single characters are always allowed."""
        return max(map(len, self.answers)) + 1

    def allowed(self, text: str) -> list[int]:
        """The token ids allowed after `text`; after a text no answer starts with (a tokenizer that
        decodes unlike its tokens' texts), only the stop tokens, so the answer ends and is parsed as is."""
        if text not in self.prefixes:
            return self.stop_token_ids
        if text not in self._allowed:
            following = [i for i, piece in self._candidates if text + piece in self.prefixes]
            self._allowed[text] = following + (self.stop_token_ids if text in self.answers else [])
        return self._allowed[text]

    def processor(self, decode: Callable[[torch.Tensor], str], prompt_length: int) -> PrefixConstrainedLogitsProcessor:
        """The logits processor for one `generate` call: each row's generated ids (after the prompt,
        one length for every row of a left-padded batch) decoded by `decode`, the readout's decoding."""
        return PrefixConstrainedLogitsProcessor(lambda _, ids: self.allowed(decode(ids[prompt_length:])), num_beams=1)


class ConstrainedGenerativeReadout(GenerativeReadout):
    """The generative readout (training and decoding) with decoding constrained to the answer grid."""

    def __init__(self, *args: Any, constraint: AnswerConstraint, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.constraint = constraint

    def logits_processors(self, prompt_length: int) -> LogitsProcessorList:
        return LogitsProcessorList([self.constraint.processor(self.decode, prompt_length)])


def build_constrained(ctx: ReadoutContext) -> GenerativeReadout:
    """Refuses a decoding budget too small for the longest answer (it would be cut off unparsable)."""
    grid = answer_grid(ctx.builder.prompt, ctx.label_range)
    constraint = AnswerConstraint(grid, token_texts(ctx.builder.tokenizer), ctx.builder.stop_token_ids)
    if ctx.settings.max_new_tokens < constraint.max_tokens:
        longest = max(grid, key=len)
        raise ValueError(f"readout.max_new_tokens={ctx.settings.max_new_tokens} is too small for a constrained "
                         f"answer: {longest!r} can take {constraint.max_tokens} tokens with its end-of-turn")
    return build_generative(ctx, ConstrainedGenerativeReadout, constraint=constraint)


# Trained: scores the model the generative readout trains (teacher forcing on the answers, as it does).
register_readout("generative_constrained", with_answers=True, parsed=True, uses_lm_head=True,
                 reads="generative")(build_constrained)
register_readout("generative_constrained_zero_shot", trained=False, parsed=True, uses_lm_head=True)(build_constrained)
