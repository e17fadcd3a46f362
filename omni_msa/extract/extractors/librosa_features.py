"""Audio: librosa frame features as MMSA-FET's librosa config: 20 MFCC (HTK mel scale), RMS,
zero-crossing rate, spectral roll-off and centroid (24 per hop of 512 samples, centred frames)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from omni_msa.extract.base import AudioClip, ModalityExtractor, Rows, register_extractor, zero_rows

DIM = 24


def extract(clip: AudioClip, params: Mapping[str, Any]) -> Rows:
    import librosa

    wave, sr = np.asarray(clip.wave, np.float32), clip.sample_rate
    frames = {"n_fft": params["n_fft"], "hop_length": params["hop_length"]}
    parts = [librosa.feature.mfcc(y=wave, sr=sr, n_mfcc=params["n_mfcc"], htk=params["htk"], **frames),
             librosa.feature.rms(y=wave, frame_length=params["n_fft"], hop_length=params["hop_length"]),
             librosa.feature.zero_crossing_rate(wave, frame_length=params["n_fft"], hop_length=params["hop_length"]),
             librosa.feature.spectral_rolloff(y=wave, sr=sr, **frames),
             librosa.feature.spectral_centroid(y=wave, sr=sr, **frames)]
    values = np.nan_to_num(np.concatenate(parts, axis=0).T.astype(np.float32))
    return Rows(values=values, input_length=len(wave), times=np.arange(len(values)) * params["hop_length"] / sr)


def dropped(n: int, rate: float, params: Mapping[str, Any]) -> Rows:
    steps = 1 + n // params["hop_length"]   # centred frames
    return zero_rows(steps, DIM, input_length=n, times=np.arange(steps) * params["hop_length"] / rate)


LIBROSA = register_extractor(ModalityExtractor(
    name="librosa", modality="audio", dim=DIM, version="1", extract=extract, dropped=dropped,
    params={"n_mfcc": 20, "htk": True, "n_fft": 2048, "hop_length": 512}, packages=("librosa",),
    description="librosa 20 MFCC + RMS + zero-crossing rate + roll-off + centroid, per 512-sample hop"))
