"""Batch scoring with a trained classic checkpoint: a features file in, per-sample predictions out.

    summary = score_features("runs/mdf/seed0", "new/unaligned_50.pkl", "preds.jsonl", split="valid")

The files and resume rules are the omni scorer's (`omni_msa.scoring_io`, `omni_msa.score`):
`preds.jsonl` holds one row per scored id, `preds.errors.jsonl` the samples that could not be
scored (id, field, reason) and `preds.metrics.json` the summary of `summarise_predictions` with
the checkpoint, the protocol and the error count beside it. Re-running with the same output
resumes: ids with a prediction are kept, every other id (failed ones included) is scored again.
Rows are written batch by batch, so a killed run loses at most the batch in flight. Rows carry
the checkpoint, the features file and the protocol they were scored with; resuming an output
scored with other ones is refused, so one file never mixes two models or two protocols.

Predictions are `classic_msa.evaluation.predict`'s (eval mode, the protocol applied per sample
through the shared layer, masks a pure function of (protocol, seed, sample id)).

Features are checked against the checkpoint's model config (`<modality>_dim`): a file in which no
sample has the dimension the model takes for a modality is another feature set and is refused
with one `DataError` naming the modality; a single sample with another dimension, non-finite
values or an impossible length goes to the errors file and the rest are scored. (The MMSA pickle
reader replaces non-finite values with 0, as it does for training; the summary counts them in
`nonfinite_replaced`.)

Features files are read through `omni_msa.data.feature_files` (MMSA pickles, features.npz + manifest).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omni_msa.compare.family import process_device
from omni_msa.data.feature_files import read_feature_file
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.record import MODALITIES, SPLITS, DataError, LoadResult, Sample, check_unique_ids
from omni_msa.files import read_json, read_jsonl, write_json
from omni_msa.parse import ParseStatus
from omni_msa.score import summarise_predictions
from omni_msa.scoring_io import PredictionWriter, errors_path_for, metrics_path_for, read_predictions

from classic_msa.data import COMPLETE
from classic_msa.evaluation import predict
from classic_msa.model import FeatureModel
from classic_msa.sweep import checkpoint_dirs
from classic_msa.trainer import CONFIG_FILE, load_checkpoint

# What every row records about how it was scored: a resumed run must agree on all of them.
STAMP_KEYS = ("checkpoint", "features", "protocol")

def load_feature_samples(path: str | Path, dataset: str, *, split: str | None = None,
                         layout: str | None = None, manifest: str | Path | None = None,
                         feature_set: str | None = None) -> LoadResult:
    """The samples of a features file (of `split` only, when given), through the one feature-file
    reader (`omni_msa.data.feature_files`: an MMSA pickle or a features.npz with its manifest);
    samples that fail its checks are in `skipped`. A file that cannot be read at all is a `DataError`."""
    path = Path(path)
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {SPLITS}", field="split", source=path)
    try:
        loaded = read_feature_file(path, dataset=dataset, feature_set=feature_set, layout=layout, manifest=manifest,
                                   splits=SPLITS if split is None else (split,), skip_invalid=True)
    except DataError:
        raise
    except ValueError as error:  # the options do not fit the file (e.g. a layout the name does not say)
        raise DataError(str(error), source=path) from error
    if split is not None:
        loaded = replace(loaded, samples=[s for s in loaded.samples if s.split == split])
    if not loaded.samples and not loaded.skipped:
        raise DataError("no samples" + (f" in split {split!r}" if split else ""), field="split" if split else None,
                        source=path)
    return loaded


@dataclass
class ClassicScorer:
    """A trained classic model on its device, and the config.json it was rebuilt from."""

    checkpoint: Path
    model: FeatureModel
    config: dict[str, Any]
    device: torch.device

    @property
    def dataset(self) -> str:
        return str(self.config["dataset"])

    @property
    def model_name(self) -> str:
        return str(self.config["model"])

    @property
    def input_dims(self) -> dict[str, int]:
        """The feature dimension the model takes per modality (its config's `<modality>_dim`)."""
        options = self.config["model_config"]
        return {m: int(options[f"{m}_dim"]) for m in MODALITIES if f"{m}_dim" in options}


def load_classic_scorer(checkpoint: str | Path, device: str | torch.device | None = None) -> ClassicScorer:
    """The model of one trained checkpoint: a seed directory (`RUN/seed0`), or a run directory
    holding one seed, on `device` (default: the process's, as training and sweeps use)."""
    found = checkpoint_dirs(checkpoint)
    if len(found) > 1:
        raise DataError(f"{len(found)} checkpoints ({', '.join(p.name for p in found)}); pass one of them, "
                        f"e.g. {found[0]}", field="checkpoint", source=checkpoint)
    path = found[0]
    device = torch.device(device) if device is not None else process_device()
    return ClassicScorer(path, load_checkpoint(path, device=device), read_json(path / CONFIG_FILE), device)


def _feature_dim(sample: Sample, modality: str) -> int | None:
    array = sample.features.get(modality)
    return int(np.shape(array)[-1]) if array is not None and np.ndim(array) == 2 else None


def check_feature_set(samples: Sequence[Sample], scorer: ClassicScorer, *, source: str | Path | None = None) -> None:
    """Refuse features of another feature set: a modality in which no sample has the dimension
    the checkpoint's model takes."""
    for modality, dim in scorer.input_dims.items():
        found = {_feature_dim(sample, modality) for sample in samples}
        if samples and dim not in found:
            shown = ", ".join("none" if d is None else str(d) for d in sorted(found, key=lambda d: d or -1))
            raise DataError(f"no sample has {modality} features of dimension {dim}, what {scorer.model_name} of "
                            f"{scorer.checkpoint} takes (found: {shown}); these are features of another set",
                            field=modality, source=source)


def _modality_problem(sample: Sample, modality: str, dim: int) -> tuple[str, str] | None:
    """(reason, field) when the sample's `modality` features do not fit a model taking `dim`."""
    array = sample.features.get(modality)
    if array is None:
        return "no features for this modality", modality
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[1] != dim or array.dtype.kind not in "fiu":
        return f"shape {array.shape} (dtype {array.dtype}), but the model takes (length, {dim}) numbers", modality
    nonfinite = int(np.count_nonzero(~np.isfinite(array)))
    if nonfinite:
        return f"{nonfinite} non-finite values", modality
    length = sample.sequence_length(modality)
    if not 0 <= length <= array.shape[0]:
        return f"length {length} outside [0, {array.shape[0]}]", f"{modality}_lengths"
    return None


def sample_problem(sample: Sample, dims: dict[str, int], *, source: str | Path | None = None) -> DataError | None:
    """Why a model taking `dims` (`ClassicScorer.input_dims`) cannot score this sample (None when it can)."""
    for modality, dim in dims.items():
        problem = _modality_problem(sample, modality, dim)
        if problem is not None:
            return DataError(problem[0], sample_id=sample.id, field=problem[1], source=source)
    return None


def _check_resumable(out: Path, stamp: dict[str, Any]) -> None:
    """An existing output continues only the job that wrote it."""
    if not out.exists():
        return
    for row in read_predictions(out):
        for key in STAMP_KEYS:
            if row.get(key) != stamp[key]:
                raise DataError(f"already scored with {key} {row.get(key)!r}, not {stamp[key]!r}; "
                                f"pass another --out to score this job", sample_id=row["id"], field=key, source=out)


def _score_batch(scorer: ClassicScorer, batch: list[Sample], protocol: MissingnessProtocol,
                 writer: PredictionWriter, stamp: dict[str, Any]) -> None:
    _, preds, _, latency = predict(scorer.model, batch, protocol=protocol, batch_size=len(batch),
                                   device=scorer.device)
    for sample, pred, latency_ms in zip(batch, preds.tolist(), latency.tolist()):
        if not math.isfinite(pred):
            writer.write_error(sample.id, f"the model gave a non-finite prediction ({pred})", field="pred")
            continue
        draw = protocol.draw(sample.id)
        writer.write({"id": sample.id, "split": sample.split, "label": float(sample.label), "pred": pred,
                      "readout": scorer.model_name, "status": ParseStatus.OK.value, "latency_ms": latency_ms,
                      "present": list(draw.kept), "intra": dict(draw.intra), "batch_size": len(batch), **stamp})


def _record_unscorable(writer: PredictionWriter, loaded: LoadResult, dims: dict[str, int],
                       source: str | Path | None) -> list[Sample]:
    """Write the errors of the samples the reader skipped and of those the model cannot take; return
    the samples left to score (those without a prediction yet)."""
    done = writer.done_ids
    for error in loaded.skipped:
        if error.sample_id not in done:
            writer.write_error(error.sample_id or "unknown", error)
    ready = []
    for sample in loaded.samples:
        if sample.id in done:
            continue
        problem = sample_problem(sample, dims, source=source)
        if problem is None:
            ready.append(sample)
        else:
            writer.write_error(sample.id, problem)
    return ready


def score_samples(scorer: ClassicScorer, loaded: LoadResult, out: str | Path, *,
                  protocol: MissingnessProtocol = COMPLETE, batch_size: int = 256,
                  source: str | Path | None = None) -> dict[str, Any]:
    """Score the samples a reader returned into `out` (resuming what is there), record the ones it
    skipped and the ones the model cannot take in the errors file, and write and return the
    summary. `source`: the features file, named in errors and recorded in every row."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = Path(out)
    samples = list(loaded.samples)
    check_unique_ids(samples, source=source)
    check_feature_set(samples, scorer, source=source)
    stamp = {"checkpoint": str(scorer.checkpoint.resolve()), "features": None if source is None else
             str(Path(source).resolve()), "protocol": protocol.to_dict()}
    _check_resumable(out, stamp)
    with PredictionWriter(out) as writer:
        ready = _record_unscorable(writer, loaded, scorer.input_dims, source)
        for start in range(0, len(ready), batch_size):
            _score_batch(scorer, ready[start:start + batch_size], protocol, writer, stamp)
    return _write_summary(out, scorer, stamp, loaded.nonfinite_replaced)


def _write_summary(out: Path, scorer: ClassicScorer, stamp: dict[str, Any],
                   replaced: dict[str, int]) -> dict[str, Any]:
    summary: dict[str, Any] = {**stamp, "model": scorer.model_name, "dataset": scorer.dataset,
                               "errors": len(read_jsonl(errors_path_for(out))),
                               "nonfinite_replaced": dict(replaced)}
    if read_predictions(out):
        summary.update(summarise_predictions(out, scorer.dataset))
    write_json(metrics_path_for(out), summary)
    return summary


def score_features(checkpoint: str | Path, features: str | Path, out: str | Path, *, split: str | None = None,
                   layout: str | None = None, manifest: str | Path | None = None,
                   protocol: MissingnessProtocol = COMPLETE, batch_size: int = 256,
                   device: str | torch.device | None = None) -> dict[str, Any]:
    """Score a features file (a features.npz reads `manifest`, default the `manifest.csv` beside it)
    with a trained classic checkpoint, in one call (see the module docstring)."""
    scorer = load_classic_scorer(checkpoint, device)
    loaded = load_feature_samples(features, scorer.dataset, split=split, layout=layout, manifest=manifest)
    return score_samples(scorer, loaded, out, protocol=protocol, batch_size=batch_size, source=features)
