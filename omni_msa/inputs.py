"""From samples to model inputs: missingness on raw media, the shared prompt, and collation.

One path serves both readouts and both backbone kinds. The discriminative readout and
generative decoding use the prompt ending at the assistant turn; generative training appends
the answer and marks only its tokens as targets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from omni_msa.data.missing import MissingnessDraw, apply_to_media, modality_set_name
from omni_msa.data.record import MODALITIES, DataError, Sample
from omni_msa.media_inputs import DecodedMedia
from omni_msa.prompt import PromptSettings, conversation, with_answer

IGNORE_INDEX = -100
# The Qwen2.5-Omni audio encoder turns L mel frames into ((L - 1) // 2 + 1 - 2) // 2 + 1 tokens (a
# stride-2 convolution, then stride-2 pooling): fewer than 3 frames give no audio token, and the
# Thinker's rope indexing then fails on the empty audio span (`max(): ... numel() == 0`).
MIN_AUDIO_FRAMES = 3


def min_audio_samples(preprocessor: Any) -> int:
    """The fewest audio samples the processor turns into at least one audio token: its feature
    extractor makes one mel frame per started `hop_length` samples (Whisper: 160, 10 ms at 16 kHz)."""
    extractor = getattr(preprocessor, "feature_extractor", None)
    hop = getattr(extractor, "hop_length", None)
    if not isinstance(hop, int) or hop < 1:
        raise ValueError(f"{type(preprocessor).__name__} has no audio feature extractor with a hop_length")
    return hop * (MIN_AUDIO_FRAMES - 1) + 1


MediaDecoder = Callable[[Sample], DecodedMedia]


@dataclass(frozen=True)
class PreparedSample:
    """One sample after missingness, ready to be collated."""

    id: str
    split: str
    label: float
    present: tuple[str, ...]
    intra: dict[str, float]
    messages: list[dict[str, Any]]
    audio: np.ndarray | None
    video: np.ndarray | None
    video_fps: float | None
    length: int

    @property
    def group(self) -> str:
        """Batches hold one modality set (omni models need it)."""
        return modality_set_name(self.present)


@dataclass
class Batch:
    ids: list[str]
    splits: list[str]
    labels: torch.Tensor
    present: list[tuple[str, ...]]
    intra: list[dict[str, float]]
    model_inputs: dict[str, torch.Tensor]
    lm_labels: torch.Tensor | None = None
    forward_kwargs: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device) -> Batch:
        self.model_inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                             for k, v in self.model_inputs.items()}
        self.labels = self.labels.to(device)
        if self.lm_labels is not None:
            self.lm_labels = self.lm_labels.to(device)
        return self


class InputBuilder:
    """Builds prompts and batches for one backbone.

    `preprocessor` is the Qwen2.5-Omni processor (multimodal) or a tokenizer (text-only causal
    LM). `decode_media` decodes a sample's audio/video (multimodal only); missingness is applied
    to the decoded arrays, so cached decodes are shared across protocols.
    """

    def __init__(self, preprocessor: Any, *, multimodal: bool, prompt: PromptSettings,
                 decode_media: MediaDecoder | None = None, use_audio_in_video: bool = False,
                 placeholder: str = "[masked]", processor_kwargs: dict[str, Any] | None = None) -> None:
        if multimodal and decode_media is None:
            raise ValueError("a multimodal backbone needs a media decoder")
        self.preprocessor = preprocessor
        self.tokenizer = getattr(preprocessor, "tokenizer", preprocessor)
        self.multimodal = multimodal
        self.prompt = prompt
        self.decode_media = decode_media
        self.use_audio_in_video = use_audio_in_video
        self.placeholder = placeholder
        self.processor_kwargs = dict(processor_kwargs or {})
        self.min_audio_samples = min_audio_samples(preprocessor) if multimodal else 0  # no audio without media

    @property
    def stop_token_ids(self) -> list[int]:
        """Tokens that end the assistant turn: the template's end-of-turn token and EOS."""
        messages = conversation(self.prompt, ("text",), "x", multimodal=self.multimodal)
        prompt = self.preprocessor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        suffix = self._answer_suffix(messages, "0", prompt)
        end_of_turn = self.tokenizer(suffix, add_special_tokens=False)["input_ids"][-1]
        return sorted({i for i in (self.tokenizer.eos_token_id, end_of_turn) if i is not None})

    def prepare(self, sample: Sample, draw: MissingnessDraw) -> PreparedSample:
        """Decode and validate the sample's media, then apply missingness. Raises DataError naming
        the sample and the field for media the model cannot take, whatever the draw keeps, so that
        the samples scored do not depend on the missingness protocol."""
        if draw.sample_id != sample.id:
            raise ValueError(f"draw for {draw.sample_id!r} applied to sample {sample.id!r}")
        if not sample.text.strip():
            raise DataError("empty transcript", sample_id=sample.id, field="text")
        media = self.decode_media(sample) if self.multimodal else DecodedMedia()
        self._check_media(sample, media)
        masked = apply_to_media(draw, text=sample.text, audio=media.audio, video=media.video,
                                placeholder=self.placeholder)
        # With audio in video, the video item carries its own audio track (the processor interleaves
        # the two); a separate audio item would feed the audio twice.
        prompt_audio = None if self._audio_in_video(masked.present) else masked.audio
        messages = conversation(self.prompt, masked.present, masked.text, prompt_audio, masked.video,
                                multimodal=self.multimodal)
        length = len(masked.text.split()) if masked.text else 0
        if masked.audio is not None:
            length += len(masked.audio) // 640  # 25 audio tokens per second
        if masked.video is not None:
            length += int(np.prod(masked.video.shape[:3])) // (2 * 28 * 28 * 4)
        return PreparedSample(id=sample.id, split=sample.split, label=float(sample.label),
                              present=masked.present, intra={m: draw.intra[m] for m in MODALITIES},
                              messages=messages, audio=masked.audio, video=masked.video,
                              video_fps=media.video_fps, length=length)

    def _check_media(self, sample: Sample, media: DecodedMedia) -> None:
        """What the decoder cannot know (it checks the rest: unreadable files, empty or non-finite
        audio, videos without frames): the shortest audio this processor takes."""
        if media.audio is not None and len(media.audio) < self.min_audio_samples:
            raise DataError(f"audio too short: {len(media.audio)} samples, the processor needs at least "
                            f"{self.min_audio_samples}", sample_id=sample.id, field=media.audio_field or "audio",
                            source=media.audio_source)

    def _audio_in_video(self, present: tuple[str, ...]) -> bool:
        return self.multimodal and self.use_audio_in_video and "audio" in present and "vision" in present

    def prompt_text(self, item: PreparedSample) -> str:
        return self.preprocessor.apply_chat_template(item.messages, add_generation_prompt=True, tokenize=False)

    def _answer_suffix(self, messages: list[dict[str, Any]], answer: str, prompt: str) -> str:
        """The assistant turn after the prompt, up to and including its end-of-turn token."""
        full = self.preprocessor.apply_chat_template(with_answer(messages, answer, multimodal=self.multimodal),
                                                     tokenize=False)
        if not full.startswith(prompt):
            raise ValueError("the chat template renders the prompt differently with an answer appended")
        return full[len(prompt):].rstrip()

    def collate(self, items: list[PreparedSample], *, with_answers: bool = False,
                padding_side: str = "left") -> Batch:
        """Tokenize (and process media for) one batch. All items must share a modality set."""
        groups = {item.group for item in items}
        if len(groups) != 1:
            raise ValueError(f"a batch must hold one modality set, got {sorted(groups)}")
        prompts = [self.prompt_text(item) for item in items]
        suffixes = ([self._answer_suffix(item.messages, self.prompt.answer(item.label), p)
                     for item, p in zip(items, prompts)] if with_answers else None)
        texts = [p + s for p, s in zip(prompts, suffixes)] if suffixes else prompts
        forward_kwargs: dict[str, Any] = {}
        if self.multimodal:
            audio_in_video = self._audio_in_video(items[0].present)
            if audio_in_video:
                forward_kwargs["use_audio_in_video"] = True
            encoded = self._process_each(items, texts, padding_side, audio_in_video)
        else:
            encoded = self.tokenizer(texts, return_tensors="pt", padding=True, padding_side=padding_side,
                                     add_special_tokens=False)
        model_inputs = dict(encoded)
        lm_labels = self._answer_labels(model_inputs, suffixes, padding_side) if suffixes else None
        return Batch(ids=[i.id for i in items], splits=[i.split for i in items],
                     labels=torch.tensor([i.label for i in items], dtype=torch.float32),
                     present=[i.present for i in items], intra=[i.intra for i in items],
                     model_inputs=model_inputs, lm_labels=lm_labels, forward_kwargs=forward_kwargs)

    def _process_each(self, items: list[PreparedSample], texts: list[str], padding_side: str,
                      audio_in_video: bool) -> dict[str, torch.Tensor]:
        """Run the processor per sample, then pad and concatenate.

        The Qwen2.5-Omni processor takes one `fps` per call, but the effective frame rate after
        frame sampling differs per video, and it sets each video's time-aligned rope positions
        (and the audio/video interleaving) - so each sample gets its own call.
        """
        parts = []
        for item, text in zip(items, texts):
            kwargs: dict[str, Any] = dict(self.processor_kwargs)
            if item.audio is not None:
                kwargs["audio"] = [item.audio]
            if item.video is not None:
                kwargs["videos"] = [item.video]
                kwargs["fps"] = item.video_fps
            if audio_in_video:
                kwargs.update(load_audio_from_video=True, audio_from_video_indices=[0])
            parts.append(self.preprocessor(text=[text], return_tensors="pt", **kwargs))
        width = max(part["input_ids"].shape[1] for part in parts)
        pad_id = self.tokenizer.pad_token_id
        merged: dict[str, torch.Tensor] = {}
        for key in ("input_ids", "attention_mask"):
            rows = []
            for part in parts:
                row = part[key][0]
                pad = torch.full((width - len(row),), pad_id if key == "input_ids" else 0, dtype=row.dtype)
                rows.append(torch.cat([pad, row] if padding_side == "left" else [row, pad]))
            merged[key] = torch.stack(rows)
        for key in parts[0]:
            if key not in merged:
                merged[key] = torch.cat([torch.as_tensor(part[key]) for part in parts])
        return merged

    def _answer_labels(self, model_inputs: dict[str, torch.Tensor], suffixes: list[str],
                       padding_side: str) -> torch.Tensor:
        """Next-token targets on the answer tokens only (-100 elsewhere)."""
        input_ids, mask = model_inputs["input_ids"], model_inputs["attention_mask"]
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        ends = last_token_positions(mask) + 1
        for row, suffix in enumerate(suffixes):
            answer = torch.tensor(self.tokenizer(suffix, add_special_tokens=False)["input_ids"])
            start = int(ends[row]) - len(answer)
            if not torch.equal(input_ids[row, start:ends[row]], answer):
                raise ValueError(f"answer {suffix!r} does not tokenize the same inside the sequence")
            labels[row, start:ends[row]] = answer
        return labels


def last_token_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last non-padding position per row, for left or right padding."""
    length = attention_mask.shape[1]
    flipped = attention_mask.flip(dims=[1]).to(torch.int64)
    return length - 1 - flipped.argmax(dim=1)
