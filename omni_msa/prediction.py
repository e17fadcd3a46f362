"""The one prediction path: prepared samples in, one result or one error per sample out.

Batch scoring (`omni_msa.score.score_shard`) and validation during training both run through
`iter_predictions` (batch by batch, for writing as it goes) or `predict_samples` (everything, in
input order). Nothing here writes files.

Samples are batched by `group_batches` (one modality set per batch, similar lengths). A batch that
fails is handled by what failed it:

- out of memory (`torch.cuda.OutOfMemoryError`, `MemoryError`, or a RuntimeError whose message says
  so): the batch is retried once as two halves, each of which must then succeed; a second
  out-of-memory error, or one on a single sample, raises `PredictionOutOfMemory`: scoring some
  models on fewer samples than others would corrupt a comparison, so the run stops;
- a data error (a `DataError`, or a ValueError or RuntimeError raised while collating or predicting
  on that batch's inputs): the batch is retried one sample at a time, and only the samples that
  still fail become `SampleError`s; when every sample fails alone as well, with no `DataError`
  among them, the readout or the device is at fault and the error is raised;
- anything else propagates.

A sample whose prediction is not finite is a `SampleError` as well (NaN is not a score).
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from omni_msa.assemble import Assembled
from omni_msa.data.batching import group_batches
from omni_msa.data.record import DataError
from omni_msa.inputs import PreparedSample

logger = logging.getLogger(__name__)

_BATCH_FAILURES = (ValueError, RuntimeError, MemoryError)  # DataError is a ValueError
_OOM_MESSAGES = ("out of memory", "not enough memory")  # CUDA's and the CPU allocator's wording
_HALF_SIZE, _PER_SAMPLE = "half-size retry", "per-sample retry"


class Predicted(Protocol):
    """What a readout's `predict(batch)` returns (`omni_msa.readouts.Predictions`)."""

    values: torch.Tensor
    statuses: list[str]
    texts: list[str] | None
    extra: dict[str, torch.Tensor] | None


class PredictionOutOfMemory(RuntimeError):
    """Out of memory even at half the batch size (or on a single sample)."""


@dataclass(frozen=True)
class SampleResult:
    """One sample's prediction; `index` is its position in the input list."""

    index: int
    id: str
    pred: float
    status: str
    latency_ms: float  # the batch's predict time divided by its size
    generated: str | None  # the generated text (generative readouts), else None
    present: tuple[str, ...]
    intra: dict[str, float]
    batch_size: int  # the size of the batch it was predicted in (1 after a per-sample retry)
    extra: dict[str, float] = field(default_factory=dict)  # the readout's per-sample extras (`Predictions.extra`)


@dataclass(frozen=True)
class SampleError:
    """A sample that could not be predicted, with the field and file at fault where known."""

    index: int
    id: str
    reason: str
    field: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class BatchOutcome:
    results: list[SampleResult]
    errors: list[SampleError]


@dataclass(frozen=True)
class PredictionRun:
    """Every sample's outcome: `results` in input order (None where the sample failed) and the
    `errors`, also in input order."""

    results: list[SampleResult | None]
    errors: list[SampleError]

    def complete(self) -> list[SampleResult]:
        """Every result, in input order; a DataError naming the first failed sample if any failed."""
        if self.errors:
            first = self.errors[0]
            raise DataError(f"{first.reason} ({len(self.errors)} of {len(self.results)} samples failed)",
                            sample_id=first.id, field=first.field, source=first.source)
        return [result for result in self.results if result is not None]


def predict_samples(assembled: Assembled, prepared: Sequence[PreparedSample], batch_size: int,
                    device: torch.device | str) -> PredictionRun:
    """Predict every prepared sample (readout in eval mode, restored afterwards); outcomes in input order."""
    results: list[SampleResult | None] = [None] * len(prepared)
    errors: list[SampleError] = []
    for outcome in iter_predictions(assembled, prepared, batch_size, device):
        for result in outcome.results:
            results[result.index] = result
        errors.extend(outcome.errors)
    return PredictionRun(results=results, errors=sorted(errors, key=lambda error: error.index))


def iter_predictions(assembled: Assembled, prepared: Sequence[PreparedSample], batch_size: int,
                     device: torch.device | str) -> Iterator[BatchOutcome]:
    """One outcome per batch, in `group_batches`' fixed order; every sample appears in exactly one
    outcome, as a result or as an error. The readout is in eval mode while this runs."""
    readout = assembled.readout
    was_training = readout.training
    readout.eval()
    try:
        for indices in group_batches([p.group for p in prepared], [p.length for p in prepared], batch_size):
            yield _predict_batch(assembled, [(i, prepared[i]) for i in indices], torch.device(device))
    finally:
        readout.train(was_training)


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's out-of-memory error, Python's MemoryError, or a RuntimeError saying memory ran out."""
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and any(text in str(error).lower() for text in _OOM_MESSAGES)


@dataclass(frozen=True)
class _Failure:
    stage: str  # "collate" or "predict"
    error: Exception


def _predict_batch(assembled: Assembled, batch: list[tuple[int, PreparedSample]], device: torch.device, *,
                   retry: str | None = None) -> BatchOutcome:
    """`retry` names the retry this batch is part of (None for a first attempt): no further split then."""
    attempt = _attempt(assembled, batch, device)
    if isinstance(attempt, BatchOutcome):
        return attempt
    ids = [item.id for _, item in batch]
    if is_out_of_memory(attempt.error):
        if retry is not None or len(batch) == 1:
            when = "again at half the batch size" if retry == _HALF_SIZE else "on a single sample"
            raise PredictionOutOfMemory(f"out of memory {when} (a batch of {len(batch)}: {ids}); scoring stops "
                                        f"rather than skip samples; lower the batch size or free memory: "
                                        f"{attempt.error}") from attempt.error
        logger.warning("out of memory on a batch of %d at %s; retrying it as two halves", len(batch), attempt.stage)
        _release(attempt.error)
        half = (len(batch) + 1) // 2
        halves = (batch[:half], batch[half:])
        return _merge(_predict_batch(assembled, part, device, retry=_HALF_SIZE) for part in halves)
    if len(batch) == 1:
        return BatchOutcome(results=[], errors=[_sample_error(batch[0], attempt)])
    logger.warning("a batch of %d failed at %s (%s: %s); retrying its samples one at a time: %s", len(batch),
                   attempt.stage, type(attempt.error).__name__, attempt.error, ids)
    outcome = _merge(_predict_batch(assembled, [pair], device, retry=_PER_SAMPLE) for pair in batch)
    if not outcome.results and not isinstance(attempt.error, DataError):
        # every sample fails alone too, with no data error to name: the readout or the device is
        # at fault, not the samples, and recording each of them would hide it
        raise RuntimeError(f"every sample of a batch of {len(batch)} fails on its own at {attempt.stage}; "
                           f"not a data error: {type(attempt.error).__name__}: {attempt.error}") from attempt.error
    return outcome


def _attempt(assembled: Assembled, batch: list[tuple[int, PreparedSample]],
             device: torch.device) -> BatchOutcome | _Failure:
    """Collate and predict once; a failure of the kinds handled above is returned, not raised."""
    try:
        inputs = assembled.builder.collate([item for _, item in batch], padding_side="left").to(device)
    except _BATCH_FAILURES as error:
        return _Failure("collate", error)
    try:
        start = time.perf_counter()
        with torch.no_grad():
            out = assembled.readout.predict(inputs)
        latency_ms = 1000 * (time.perf_counter() - start) / len(batch)
    except _BATCH_FAILURES as error:
        return _Failure("predict", error)
    if len(out.values) != len(batch) or len(out.statuses) != len(batch):
        raise TypeError(f"the readout returned {len(out.values)} values and {len(out.statuses)} statuses "
                             f"for a batch of {len(batch)}")
    return _outcome(batch, out, latency_ms)


def _outcome(batch: list[tuple[int, PreparedSample]], out: Predicted, latency_ms: float) -> BatchOutcome:
    results, errors = [], []
    for j, (index, item) in enumerate(batch):
        value = float(out.values[j])
        if not math.isfinite(value):
            errors.append(SampleError(index, item.id, f"the readout gave a non-finite prediction ({value})"))
            continue
        results.append(SampleResult(index=index, id=item.id, pred=value, status=out.statuses[j],
                                    latency_ms=latency_ms, generated=out.texts[j] if out.texts is not None else None,
                                    present=tuple(item.present), intra=dict(item.intra), batch_size=len(batch),
                                    extra={k: float(v[j]) for k, v in (out.extra or {}).items()}))
    return BatchOutcome(results=results, errors=errors)


def _sample_error(pair: tuple[int, PreparedSample], failure: _Failure) -> SampleError:
    index, item = pair
    error = failure.error
    if isinstance(error, DataError):
        return SampleError(index, item.id, error.reason, field=error.field, source=error.source)
    return SampleError(index, item.id, f"{failure.stage} failed: {type(error).__name__}: {error}")


def _merge(outcomes: Iterable[BatchOutcome]) -> BatchOutcome:
    results: list[SampleResult] = []
    errors: list[SampleError] = []
    for outcome in outcomes:
        results += outcome.results
        errors += outcome.errors
    return BatchOutcome(results=results, errors=errors)


def _release(error: BaseException) -> None:
    """Free what the failed attempt held: its frames' tensors (kept alive by the traceback) and
    the CUDA allocator's cached blocks."""
    traceback.clear_frames(error.__traceback__)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
