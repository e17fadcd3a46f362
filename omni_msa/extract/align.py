"""Word timings from a manifest, and MMSA-FET's word alignment of audio and vision rows to text tokens.

A manifest carries word timings in a `words` column: a JSON list of `[word, start, end]` (seconds
from the start of the clip), one per word of the transcript, in order, the same words as
`text.split()` (missingness masks words by that position). Alignment follows MMSA-FET
(`extract_align`): each word's row is the mean of the rows whose centre time t has
start <= t < end (zeros where no row falls inside), repeated for each of the word's tokens;
[CLS] and [SEP] get zero rows, so every modality has the text's L steps.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from omni_msa.data.record import DataError

WORDS_COLUMN = "words"


def parse_word_timings(value: Any, *, text: str, sample_id: str, source: str | None = None) -> np.ndarray | None:
    """W x 2 (start, end) seconds for the transcript's W words, or None where the cell is empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    def bad(reason: str) -> DataError:
        return DataError(f"word timings: {reason}", sample_id=sample_id, field=WORDS_COLUMN, source=source)

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise bad(f"not JSON ({error})") from None
    words = text.split()
    if not isinstance(value, list) or len(value) != len(words):
        count = len(value) if isinstance(value, list) else type(value).__name__
        raise bad(f"expected a list of {len(words)} [word, start, end] entries (one per word of the text), got {count}")
    spans = np.zeros((len(words), 2))
    for i, (entry, word) in enumerate(zip(value, words)):
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)):
            raise bad(f"entry {i} is {entry!r}, not [word, start, end]")
        if entry[0] != word:
            raise bad(f"entry {i} is the word {entry[0]!r} but word {i} of the text is {word!r}")
        try:
            start, end = float(entry[1]), float(entry[2])
        except (TypeError, ValueError):
            raise bad(f"entry {i} ({word!r}) has non-numeric times {entry[1:]!r}") from None
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start <= end):
            raise bad(f"entry {i} ({word!r}) spans [{start}, {end}]: need 0 <= start <= end")
        spans[i] = start, end
    return spans


def word_means(values: np.ndarray, times: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """W x D: the mean of the rows whose time lies in each word's [start, end), zeros where none does."""
    starts = np.searchsorted(times, spans[:, 0], side="left")
    ends = np.searchsorted(times, spans[:, 1], side="left")
    out = np.zeros((len(spans), values.shape[1]), np.float32)
    for i, (a, b) in enumerate(zip(starts, ends)):
        if b > a:
            out[i] = values[a:b].mean(axis=0)
    return out


def align_to_tokens(values: np.ndarray, times: np.ndarray, spans: np.ndarray, word_ids: np.ndarray) -> np.ndarray:
    """L x D rows, one per text token: its word's mean row, zeros for special tokens (word id -1)."""
    per_word = word_means(values, times, spans)
    out = np.zeros((len(word_ids), values.shape[1]), np.float32)
    real = word_ids >= 0
    out[real] = per_word[word_ids[real]]
    return out
