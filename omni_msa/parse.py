"""The strict parser for the generative readout's answer (design.md section 6).

The model is trained to answer with the number only, so the parser accepts exactly that and
counts everything else instead of rescuing it: a zero-shot answer such as "The sentiment is 1.5"
is `unparsable`, so the unparsable share measures how well a model follows the answer format.

Grammar, after stripping surrounding whitespace (newlines included):

    [sign] (digits [ "." digits ] | "." digits) [ "." ]

- sign: "+", "-" or the unicode minus U+2212 (what typeset text writes). Not the en dash U+2013:
  it is a dash (ranges, bullets), not a minus.
- ".5" is accepted (an unambiguous number); "5." is accepted as 5 only through the trailing period.
- At most one trailing period, read as the end of a sentence ("1.5." is 1.5, "5.." is not a number).
- Only ASCII digits. No exponent, thousands separator, spaces inside, quotes, label ("Score:"),
  unit or trailing word; "nan" and "inf" are not numbers.

A number outside [low, high] is clipped and counted `out_of_range` (a digit string too long for a
float reads as +-inf and is clipped likewise). Anything else is `unparsable` and scored as
`fallback`: by default 0.0, the neutral point, the prediction that carries no information; a run
may pass e.g. the train label mean instead. "-0" reads as 0.0, never -0.0.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any


class ParseStatus(str, Enum):
    OK = "ok"
    UNPARSABLE = "unparsable"
    OUT_OF_RANGE = "out_of_range"

    def __str__(self) -> str:
        return self.value


_NUMBER = re.compile(r"[+\-\u2212]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)\.?")


@dataclass(frozen=True)
class ParsedScore:
    value: float
    status: ParseStatus
    raw: str


def parse_score(text: str, low: float = -3.0, high: float = 3.0, fallback: float = 0.0) -> ParsedScore:
    """Read a generated answer as a score in [low, high]; never raises for a str."""
    if not isinstance(text, str):
        raise TypeError(f"expected str, got {type(text).__name__}")
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"invalid range [{low}, {high}]")
    if not (math.isfinite(fallback) and low <= fallback <= high):
        raise ValueError(f"fallback {fallback} outside [{low}, {high}]")
    number = text.strip()
    if not _NUMBER.fullmatch(number):
        return ParsedScore(float(fallback), ParseStatus.UNPARSABLE, text)
    value = float(number.removesuffix(".").replace("\u2212", "-"))
    clipped = min(max(value, low), high) + 0.0  # + 0.0 turns -0.0 into 0.0
    status = ParseStatus.OK if clipped == value else ParseStatus.OUT_OF_RANGE
    return ParsedScore(clipped, status, text)


@dataclass(frozen=True)
class StatusCounts:
    """How many answers got each status (all three always present), and their shares."""

    counts: dict[str, int]
    total: int

    @classmethod
    def of(cls, items: Iterable[ParsedScore | str]) -> StatusCounts:
        """Count parsed scores, or status strings as stored in a predictions file."""
        counted = Counter(ParseStatus(item.status if isinstance(item, ParsedScore) else item) for item in items)
        return cls({s.value: counted[s] for s in ParseStatus}, sum(counted.values()))

    def share(self, status: ParseStatus | str) -> float:
        """Share of answers with `status`; 0.0 when there are none (no NaN in reports)."""
        return self.counts[ParseStatus(status).value] / self.total if self.total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "counts": dict(self.counts),
                "shares": {s.value: self.share(s) for s in ParseStatus}}
