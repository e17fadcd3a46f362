"""Audio: openSMILE eGeMAPSv02 low-level descriptors (25 per 10 ms frame), as MMSA-FET's default audio.

The `opensmile` wheel carries libSMILEapi and the eGeMAPSv02 configuration, so this runs offline.
Each row is one 20 ms (60 ms for pitch) analysis window every 10 ms; openSMILE's frame count for
n samples at rate sr is max(1, (n - 50 ms) // 10 ms + 1) (checked against the library in the tests).
Too short a signal gives one NaN row, which becomes zeros.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from omni_msa.extract.base import AudioClip, ModalityExtractor, Rows, register_extractor, zero_rows

DIM = 25
STEP_SECONDS, SPAN_SECONDS = 0.01, 0.05


@lru_cache(maxsize=4)
def _smile(feature_set: str, feature_level: str) -> Any:
    import opensmile

    return opensmile.Smile(feature_set=opensmile.FeatureSet[feature_set],
                           feature_level=opensmile.FeatureLevel[feature_level])


def descriptor_names() -> list[str]:
    """The 25 LLD names, in column order (Loudness_sma3 ... F3amplitudeLogRelF0_sma3nz)."""
    return list(_smile(*(EGEMAPS.params[k] for k in ("feature_set", "feature_level"))).feature_names)


def frame_count(n: int, sample_rate: float) -> int:
    """The rows openSMILE's eGeMAPS LLDs give for n samples."""
    return max(1, (n - round(SPAN_SECONDS * sample_rate)) // round(STEP_SECONDS * sample_rate) + 1)


def extract(clip: AudioClip, params: Mapping[str, Any]) -> Rows:
    smile = _smile(params["feature_set"], params["feature_level"])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Segment too short")
        frame = smile.process_signal(np.asarray(clip.wave, np.float32), clip.sample_rate)
    values = np.nan_to_num(frame.to_numpy(dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    starts = frame.index.get_level_values("start").total_seconds().to_numpy()
    ends = frame.index.get_level_values("end").total_seconds().to_numpy()
    return Rows(values=values, input_length=len(clip.wave), times=(starts + ends) / 2)


def dropped(n: int, rate: float, params: Mapping[str, Any]) -> Rows:
    steps = frame_count(n, rate)
    times = np.arange(steps) * STEP_SECONDS + STEP_SECONDS
    return zero_rows(steps, DIM, input_length=n, times=times)


EGEMAPS = register_extractor(ModalityExtractor(
    name="egemaps", modality="audio", dim=DIM, version="1", extract=extract, dropped=dropped,
    params={"feature_set": "eGeMAPSv02", "feature_level": "LowLevelDescriptors"}, packages=("opensmile",),
    description="openSMILE eGeMAPSv02 low-level descriptors, 25 per 10 ms frame"))
