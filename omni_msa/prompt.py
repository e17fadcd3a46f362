"""The one prompt both readouts share (design.md section 6).

The user turn carries the media that are present (video, then audio), the transcript when text is
present, a line naming the present modalities, and the instruction to rate sentiment in the
dataset's range. A dropped modality is left out altogether. The generative readout appends the
label, written with a fixed number of decimals, as the assistant turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MODALITY_WORDS = {"text": "transcript", "audio": "audio", "vision": "video"}
DEFAULT_SYSTEM = "You are an expert annotator of sentiment in spoken video clips."


@dataclass(frozen=True)
class PromptSettings:
    """What the prompt says; part of every checkpoint's readout config."""

    system: str = DEFAULT_SYSTEM
    label_low: float = -3.0
    label_high: float = 3.0
    decimals: int = 1

    def instruction(self) -> str:
        low, high = f"{self.label_low:g}", f"{self.label_high:g}"
        return (f"Rate the sentiment the speaker expresses on a scale from {low} (highly negative) to "
                f"{high} (highly positive). Answer with the number only.")

    def answer(self, label: float) -> str:
        """The supervised target: the label clipped to range, with fixed decimals."""
        value = float(np.clip(label, self.label_low, self.label_high))
        text = f"{value:.{self.decimals}f}"
        return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text


def user_text(settings: PromptSettings, present: tuple[str, ...], transcript: str | None) -> str:
    # "none" when a retention mode keeps nothing the sample has (keep=vision on an audio-only clip)
    lines = ["Modalities present: " + (", ".join(MODALITY_WORDS[m] for m in present) or "none") + "."]
    if transcript is not None:
        lines.append(f'Transcript: "{transcript}"')
    lines.append(settings.instruction())
    return "\n".join(lines)


def conversation(settings: PromptSettings, present: tuple[str, ...], transcript: str | None,
                 audio: np.ndarray | None = None, video: np.ndarray | None = None, *,
                 multimodal: bool = True) -> list[dict[str, Any]]:
    """Chat messages for the processor's (multimodal) or tokenizer's (text-only) chat template."""
    text = user_text(settings, present, transcript)
    if not multimodal:
        if audio is not None or video is not None:
            raise ValueError("a text-only backbone cannot take audio or video")
        return [{"role": "system", "content": settings.system}, {"role": "user", "content": text}]
    content: list[dict[str, Any]] = []
    if video is not None:
        content.append({"type": "video", "video": video})
    if audio is not None:
        content.append({"type": "audio", "audio": audio})
    content.append({"type": "text", "text": text})
    return [{"role": "system", "content": [{"type": "text", "text": settings.system}]},
            {"role": "user", "content": content}]


def with_answer(messages: list[dict[str, Any]], answer: str, *, multimodal: bool = True) -> list[dict[str, Any]]:
    content: Any = [{"type": "text", "text": answer}] if multimodal else answer
    return [*messages, {"role": "assistant", "content": content}]
