"""Batch scoring from a checkpoint (or zero-shot from a bare backbone), and one-sample scoring.

Scoring is resumable and shardable: each process of an `accelerate launch` scores its shard of
the ids still missing from the output, samples with bad data go to the errors file with the id,
the field and the reason, and rank 0 merges the parts so every id appears exactly once. Batches
run through the one prediction path (`omni_msa.prediction`): an out-of-memory batch is retried at
half size once and otherwise stops the run; only data errors are recorded per sample.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omni_msa.assemble import Assembled, assemble
from omni_msa.checkpoint import CONFIG_FILE, load_weights, read_config
from omni_msa.config import OmniRunConfig, config_from_dict
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.record import DataError, Sample
from omni_msa.files import write_json
from omni_msa.inputs import PreparedSample
from omni_msa.metrics import latency_summary, regression_metrics, undefined_metric_reasons
from omni_msa.parse import StatusCounts
from omni_msa.prediction import BatchOutcome, iter_predictions, predict_samples
from omni_msa.readouts import get_readout, readout_names
from omni_msa.scoring_io import PredictionWriter, merge_shards, metrics_path_for, part_path, read_predictions, shard_ids

logger = logging.getLogger(__name__)


def scorer_config(checkpoint: str | Path, readout: str | Mapping[str, Any] | None = None) -> OmniRunConfig:
    """The run config a checkpoint is scored with: the one it was trained with, or with `readout` (a
    name, or readout settings with its `kind`), a readout that reads the model this checkpoint's readout
    trains (its `reads`), e.g. constrained decoding over a supervised generative checkpoint. A readout
    that reads another model is a ValueError."""
    raw = read_config(Path(checkpoint))
    for written_by_training in ("trainable", "data_fingerprint"):
        raw.pop(written_by_training, None)
    trained_by = raw["readout"]["kind"]
    settings = {"kind": readout} if isinstance(readout, str) else dict(readout or {})
    kind = settings.get("kind", trained_by)
    if kind != trained_by and get_readout(kind).reads != trained_by:
        readers = [n for n in readout_names() if get_readout(n).reads == trained_by]
        raise ValueError(f"{checkpoint} was trained by the {trained_by!r} readout; {kind!r} reads "
                         f"{get_readout(kind).reads!r}'s model (readouts that read this one: {readers or 'none'})")
    raw["readout"] = {**raw["readout"], **settings}
    return config_from_dict(raw, where=str(Path(checkpoint) / CONFIG_FILE))


def load_scorer(checkpoint: str | Path, readout: str | Mapping[str, Any] | None = None, *,
                media_cache_dir: str | Path | None = None) -> tuple[Assembled, OmniRunConfig]:
    """Rebuild the readout a checkpoint was trained with (or `readout`, see `scorer_config`) and load
    its trained weights. `media_cache_dir`: the caches (decoded media, encoder outputs) to use
    instead of the training run's."""
    cfg = scorer_config(checkpoint, readout)
    if media_cache_dir is not None:
        cfg = dataclasses.replace(cfg, media_cache_dir=str(media_cache_dir))
    assembled = assemble(cfg)
    load_weights(Path(checkpoint), assembled.readout)
    assembled.readout.eval()
    return assembled, cfg


def check_zero_shot(cfg: OmniRunConfig) -> OmniRunConfig:
    """`cfg`, if its readout can score without training (zero-shot); else a ValueError."""
    if cfg.readout.entry.trained:
        untrained = [name for name in readout_names() if not get_readout(name).trained]
        raise ValueError(f"readout {cfg.readout.kind!r} must be trained before it can score; "
                         f"zero-shot readouts: {untrained}")
    return cfg


def zero_shot_scorer(cfg: OmniRunConfig) -> Assembled:
    """A readout that is never trained (zero-shot), on the bare backbone."""
    return assemble(check_zero_shot(cfg))


def score_shard(assembled: Assembled, samples: list[Sample], protocol: MissingnessProtocol, writer: PredictionWriter,
                *, readout: str, batch_size: int, device: torch.device, window: int = 256) -> int:
    """Score samples into `writer`, batch by batch; a sample that fails to prepare, or that fails
    on its own after its batch failed on its data, is recorded in the errors file and the rest go
    on. Samples are prepared (media decoded) a window at a time, so memory does not grow with the
    manifest. Returns the rows written; raises `PredictionOutOfMemory` when out of memory even at
    half the batch size."""
    written = 0
    for start in range(0, len(samples), window):
        prepared = []
        for sample in samples[start:start + window]:
            try:
                prepared.append(assembled.builder.prepare(sample, protocol.draw(sample.id)))
            except DataError as error:
                writer.write_error(sample.id, error)
        for outcome in iter_predictions(assembled, prepared, batch_size, device):
            written += _score_batch(outcome, prepared, writer, readout)
    return written


def _score_batch(outcome: BatchOutcome, prepared: list[PreparedSample], writer: PredictionWriter,
                 readout: str) -> int:
    """Write one batch's rows and errors; returns the rows written."""
    for error in outcome.errors:
        writer.write_error(error.id, error.reason, field=error.field,
                           **({"source": error.source} if error.source is not None else {}))
    for result in outcome.results:
        item = prepared[result.index]
        row: dict[str, Any] = {
            "id": result.id, "split": item.split, "label": item.label, "pred": result.pred,
            "readout": readout, "status": result.status, "latency_ms": result.latency_ms,
            "present": list(result.present), "intra": result.intra, "batch_size": result.batch_size,
        }
        if result.generated is not None:
            row["generated"] = result.generated
        if result.extra:
            row["extra"] = result.extra
        writer.write(row)
    return len(outcome.results)


def summarise_predictions(path: str | Path, dataset: str) -> dict[str, Any]:
    """Metrics, parse-status counts and latency over a predictions file. A metric that is
    undefined on these predictions is None, with `<metric>_reason` beside it."""
    rows = read_predictions(path)
    if not rows:
        raise ValueError(f"{path}: no predictions to summarise")
    preds = np.array([r["pred"] for r in rows])
    labels = np.array([r["label"] for r in rows])
    return {"n": len(rows), "metrics": _defined_metrics(regression_metrics(preds, labels, dataset), preds, labels),
            "status": StatusCounts.of(r["status"] for r in rows).as_dict(),
            "latency_ms": latency_summary([r["latency_ms"] for r in rows])}


def _defined_metrics(metrics: dict[str, float], preds: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Non-finite metrics as None with the reason beside them (JSON has no NaN)."""
    out: dict[str, Any] = {key: value if math.isfinite(value) else None for key, value in metrics.items()}
    out.update({f"{key}_reason": reason for key, reason in undefined_metric_reasons(metrics, preds, labels).items()})
    return out


def place_on(readout: torch.nn.Module, device: torch.device) -> None:
    """Move the readout to this process's device unless it is there already (a quantized backbone
    is placed by its device map when it loads, and bitsandbytes weights must not be moved again)."""
    if any(p.device != torch.device(device) for p in readout.parameters()):
        readout.to(device)


def score_file(assembled: Assembled, cfg: OmniRunConfig, samples: list[Sample], out: str | Path, *,
               protocol: MissingnessProtocol, batch_size: int = 16,
               invalid: Sequence[DataError] = ()) -> dict[str, Any] | None:
    """Score under the current accelerate process layout; rank 0 merges and returns the summary.

    `invalid` are samples the reader already rejected: rank 0 records them in the errors file."""
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    place_on(assembled.readout, state.device)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if state.is_main_process:
        merge_shards(out, state.num_processes)
    state.wait_for_everyone()
    done = {row["id"] for row in read_predictions(out)} if out.exists() else set()
    todo = {s.id: s for s in samples if s.id not in done}
    mine = [todo[i] for i in shard_ids(list(todo), state.process_index, state.num_processes)]
    with PredictionWriter(part_path(out, state.process_index)) as writer:
        if state.is_main_process:
            for error in invalid:
                writer.write_error(error.sample_id or "unknown", error)
        score_shard(assembled, mine, protocol, writer, readout=cfg.readout.kind,
                    batch_size=batch_size, device=state.device)
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    report = merge_shards(out, state.num_processes)
    summary = {"protocol": protocol.to_dict(), "merge": dataclasses.asdict(report)}
    if out.exists() and read_predictions(out):
        summary.update(summarise_predictions(out, cfg.data.dataset))
    write_json(metrics_path_for(out), summary)
    return summary


class Scorer:
    """Score single samples from a checkpoint, for embedding the model in other code.

        scorer = Scorer.from_checkpoint("runs/x/checkpoint-best")
        scorer.score("i loved this movie", audio="clip.wav", video="clip.mp4")
    """

    def __init__(self, assembled: Assembled, cfg: OmniRunConfig) -> None:
        self.assembled = assembled
        self.cfg = cfg

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path) -> Scorer:
        return cls(*load_scorer(checkpoint))

    def score(self, text: str, *, audio: str | Path | None = None, video: str | Path | None = None,
              protocol: MissingnessProtocol | None = None) -> dict[str, Any]:
        """The prediction, its parse status and the generated text (generative readout)."""
        sample = Sample(id="single", split="test", label=0.0, text=text,
                        audio=Path(audio) if audio else None, video=Path(video) if video else None)
        protocol = protocol or MissingnessProtocol()
        item = self.assembled.builder.prepare(sample, protocol.draw(sample.id))
        device = next(self.assembled.readout.parameters()).device
        result = predict_samples(self.assembled, [item], 1, device).complete()[0]
        return {"pred": result.pred, "status": result.status, "present": list(result.present),
                "generated": result.generated, "extra": result.extra}
