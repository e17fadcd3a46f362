"""Batch scoring from a checkpoint (or zero-shot from a bare backbone), and one-sample scoring.

Scoring is resumable and shardable: each process of an `accelerate launch` scores its shard of
the ids still missing from the output, failures go to the errors file with the id and the
reason, and rank 0 merges the parts so every id appears exactly once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omni_msa.assemble import Assembled, assemble
from omni_msa.checkpoint import CONFIG_FILE, load_weights, read_config
from omni_msa.config import OmniRunConfig, config_from_dict
from omni_msa.data.batching import group_batches
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.record import DataError, Sample
from omni_msa.metrics import latency_summary, regression_metrics
from omni_msa.parse import StatusCounts
from omni_msa.readouts import get_readout, readout_names
from omni_msa.scoring_io import PredictionWriter, merge_shards, part_path, read_predictions, shard_ids

logger = logging.getLogger(__name__)


def load_scorer(checkpoint: str | Path) -> tuple[Assembled, OmniRunConfig]:
    """Rebuild the readout a checkpoint was trained with and load its trained weights."""
    raw = read_config(Path(checkpoint))
    for written_by_training in ("trainable", "data_fingerprint"):
        raw.pop(written_by_training, None)
    cfg = config_from_dict(raw, where=str(Path(checkpoint) / CONFIG_FILE))
    assembled = assemble(cfg)
    load_weights(Path(checkpoint), assembled.readout)
    assembled.readout.eval()
    return assembled, cfg


def zero_shot_scorer(cfg: OmniRunConfig) -> Assembled:
    """A readout that is never trained (zero-shot), on the bare backbone."""
    if cfg.readout.entry.trained:
        untrained = [name for name in readout_names() if not get_readout(name).trained]
        raise ValueError(f"readout {cfg.readout.kind!r} must be trained before it can score; "
                         f"zero-shot readouts: {untrained}")
    return assemble(cfg)


def readout_name(cfg: OmniRunConfig, zero_shot: bool) -> str:
    return cfg.readout.kind


def score_shard(assembled: Assembled, samples: list[Sample], protocol: MissingnessProtocol, writer: PredictionWriter,
                *, readout: str, batch_size: int, device: torch.device, window: int = 256) -> int:
    """Score samples into `writer`; a sample that fails to prepare, or a batch that fails to run,
    is recorded in the errors file and the rest go on. Samples are prepared (media decoded) a
    window at a time, so memory does not grow with the manifest. Returns the rows written."""
    written = 0
    for start in range(0, len(samples), window):
        prepared = []
        for sample in samples[start:start + window]:
            try:
                prepared.append(assembled.builder.prepare(sample, protocol.draw(sample.id)))
            except DataError as error:
                writer.write_error(sample.id, error)
        for indices in group_batches([p.group for p in prepared], [p.length for p in prepared], batch_size):
            written += _score_batch(assembled, [prepared[i] for i in indices], writer, readout, device)
    return written


def _score_batch(assembled: Assembled, items: list, writer: PredictionWriter, readout: str,
                 device: torch.device) -> int:
    try:
        batch = assembled.builder.collate(items, padding_side="left").to(device)
        start = time.perf_counter()
        out = assembled.readout.predict(batch)
        latency_ms = 1000 * (time.perf_counter() - start) / len(items)
    except (DataError, ValueError, RuntimeError) as error:
        for item in items:
            writer.write_error(item.id, f"batch failed: {type(error).__name__}: {error}")
        return 0
    for j, item in enumerate(items):
        row: dict[str, Any] = {
            "id": item.id, "split": item.split, "label": item.label, "pred": float(out.values[j]),
            "readout": readout, "status": out.statuses[j], "latency_ms": latency_ms,
            "present": list(item.present), "intra": item.intra, "batch_size": len(items),
        }
        if out.texts is not None:
            row["generated"] = out.texts[j]
        writer.write(row)
    return len(items)


def summarise_predictions(path: str | Path, dataset: str) -> dict[str, Any]:
    """Metrics, parse-status counts and latency over a predictions file."""
    rows = read_predictions(path)
    if not rows:
        raise ValueError(f"{path}: no predictions to summarise")
    preds = np.array([r["pred"] for r in rows])
    labels = np.array([r["label"] for r in rows])
    return {"n": len(rows), "metrics": regression_metrics(preds, labels, dataset),
            "status": StatusCounts.of(r["status"] for r in rows).as_dict(),
            "latency_ms": latency_summary([r["latency_ms"] for r in rows])}


def score_file(assembled: Assembled, cfg: OmniRunConfig, samples: list[Sample], out: str | Path, *,
               protocol: MissingnessProtocol, zero_shot: bool = False, batch_size: int = 16,
               invalid: list[DataError] = ()) -> dict[str, Any] | None:
    """Score under the current accelerate process layout; rank 0 merges and returns the summary.

    `invalid` are samples the reader already rejected: rank 0 records them in the errors file."""
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
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
        score_shard(assembled, mine, protocol, writer, readout=readout_name(cfg, zero_shot),
                    batch_size=batch_size, device=state.device)
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    report = merge_shards(out, state.num_processes)
    summary = {"protocol": protocol.to_dict(), "merge": dataclasses.asdict(report)}
    if out.exists() and read_predictions(out):
        summary.update(summarise_predictions(out, cfg.data.dataset))
    out.with_name(out.name.removesuffix(".jsonl") + ".metrics.json").write_text(json.dumps(summary, indent=2))
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
        out = self.assembled.readout.predict(self.assembled.builder.collate([item]))
        return {"pred": float(out.values[0]), "status": out.statuses[0], "present": list(item.present),
                "generated": out.texts[0] if out.texts is not None else None}
