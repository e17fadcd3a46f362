"""Training loop for both readouts, under `accelerate launch` (one code path).

Per epoch the batch order is a pure function of (seed, epoch), missingness of (protocol, seed,
epoch, sample id), and checkpoints are written at optimizer-step boundaries with the optimizer,
scheduler and RNG states, so a run killed and resumed ends where an uninterrupted run ends.
Evaluation on `valid` selects the best checkpoint by MAE; `test` is never looked at.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from omni_msa.assemble import Assembled, assemble
from omni_msa.checkpoint import (
    load_trainer_state,
    load_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from omni_msa.config import RunConfig
from omni_msa.data.batching import group_batches
from omni_msa.data.manifest import read_manifest
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.record import DataError, Sample
from omni_msa.data.synthetic import make_synthetic
from omni_msa.inputs import PreparedSample
from omni_msa.metrics import regression_metrics
from omni_msa.parse import StatusCounts
from omni_msa.resources import peak_memory_mb, peak_memory_scope, reset_peak_memory

logger = logging.getLogger(__name__)

BEST_DIR = "checkpoint-best"
LAST_DIR = "checkpoint-last"


@dataclass
class TrainerState:
    epoch: int = 0
    batches_done: int = 0
    global_step: int = 0
    best_mae: float = math.inf
    best_step: int | None = None
    evals_without_improvement: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def load_samples(cfg: RunConfig) -> tuple[list[Sample], list[Sample], list[DataError]]:
    """Train and valid samples, and the invalid ones the readers skipped (only with
    `data.skip_invalid`; otherwise the first invalid sample stops the run)."""
    data = cfg.data
    if data.synthetic_n is not None:
        samples = make_synthetic(data.synthetic_n, Path(cfg.output_dir) / "synthetic", seed=data.synthetic_seed,
                                 with_media=cfg.backbone.kind == "qwen2_5_omni_thinker")
        train = [s for s in samples if s.split == "train"]
        valid = [s for s in samples if s.split == "valid"]
        skipped: list[DataError] = []
    else:
        train, train_skipped = read_split(data.train, "train", data.dataset, data.skip_invalid)
        valid, valid_skipped = read_split(data.valid, "valid", data.dataset, data.skip_invalid)
        skipped = train_skipped + (valid_skipped if Path(data.valid) != Path(data.train) else [])
    return train[:data.max_train_samples], valid[:data.max_valid_samples], skipped


def read_split(path: str | Path, split: str, dataset: str, skip_invalid: bool) -> tuple[list[Sample], list[DataError]]:
    """The samples of one split in a manifest (a file may hold several splits), and the invalid
    rows of the file that the reader skipped (only with `skip_invalid`)."""
    loaded = read_manifest(path, dataset=dataset, skip_invalid=skip_invalid)
    if loaded.skipped:
        logger.warning("%s: skipped %d invalid samples (first: %s)", path, len(loaded.skipped), loaded.skipped[0])
    samples = [s for s in loaded.samples if s.split == split]
    if not samples:
        found = sorted({s.split for s in loaded.samples})
        raise ValueError(f"{path}: no samples of split {split!r} (its splits: {found})")
    return samples, loaded.skipped


def prepare_all(assembled: Assembled, samples: list[Sample], protocol: MissingnessProtocol,
                skip_invalid: bool) -> tuple[list[PreparedSample], list[DataError]]:
    """Prepare every sample under a protocol; bad ones raise, or are skipped and returned."""
    prepared, errors = [], []
    for sample in samples:
        try:
            prepared.append(assembled.builder.prepare(sample, protocol.draw(sample.id)))
        except DataError as error:
            if not skip_invalid:
                raise
            errors.append(error)
    return prepared, errors


def epoch_protocol(protocol: MissingnessProtocol, seed: int, epoch: int) -> MissingnessProtocol:
    """Training missingness is re-drawn every epoch, deterministically."""
    return protocol.with_seed(protocol.seed * 1_000_003 + seed * 1_009 + epoch)


def predict(assembled: Assembled, prepared: list[PreparedSample], batch_size: int,
            device: torch.device) -> dict[str, Any]:
    """Predictions for prepared samples, in their order, with statuses and per-batch timings."""
    readout = assembled.readout
    was_training = readout.training
    readout.eval()
    preds = np.zeros(len(prepared), dtype=np.float64)
    statuses = [""] * len(prepared)
    latencies = np.zeros(len(prepared), dtype=np.float64)
    batches = group_batches([p.group for p in prepared], [p.length for p in prepared], batch_size)
    for indices in batches:
        batch = assembled.builder.collate([prepared[i] for i in indices], padding_side="left").to(device)
        start = time.perf_counter()
        out = readout.predict(batch)
        elapsed_ms = 1000 * (time.perf_counter() - start) / len(indices)
        for j, i in enumerate(indices):
            preds[i] = float(out.values[j])
            statuses[i] = out.statuses[j]
            latencies[i] = elapsed_ms
    readout.train(was_training)
    return {"preds": preds, "statuses": statuses, "latency_ms": latencies}


def process_shard(batches: list[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """This process's batches. Every process must take the same number of steps, so the list is
    padded by cycling from its start (as torch's DistributedSampler does) when it does not divide."""
    if world_size > 1 and len(batches) % world_size:
        batches = batches + batches[:world_size - len(batches) % world_size]
    return batches[rank::world_size]


def _finish(accelerator: Any) -> None:
    """Close the trackers and wait until the main process has written its files. Unlike
    `Accelerator.end_training`, the process group stays up: scoring may follow in this process."""
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.wait_for_everyone()


def train(cfg: RunConfig, *, stop_after_steps: int | None = None, show_progress: bool = True) -> dict[str, Any]:
    """Train, evaluate on valid, keep the best checkpoint; resumes from `checkpoint-last`.

    `stop_after_steps` ends the process's work after that many optimizer steps in this call
    (after writing `checkpoint-last`), as if it had been killed there.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    opt = cfg.optim
    reset_peak_memory()
    # cpu=True without CUDA: accelerate then also joins the gloo process group of a torchrun launch
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=opt.mixed_precision,
                              log_with="tensorboard", project_dir=str(out_dir))
    train_samples, valid_samples, reader_skipped = load_samples(cfg)
    assembled = assemble(cfg)
    readout = assembled.readout
    logger.info("trainable parameters: %s", assembled.trainable)
    generative = cfg.readout.kind == "generative"

    valid_prepared, valid_errors = prepare_all(assembled, valid_samples, cfg.eval_missing, cfg.data.skip_invalid)
    first_epoch, train_errors = prepare_all(assembled, train_samples,
                                            epoch_protocol(cfg.train_missing, opt.seed, 0), cfg.data.skip_invalid)
    bad_ids = {e.sample_id for e in train_errors}
    train_samples = [s for s in train_samples if s.id not in bad_ids]
    if train_errors or valid_errors:
        logger.warning("skipped %d train and %d valid samples that failed to prepare", len(train_errors),
                       len(valid_errors))

    head_params = [p for n, p in readout.named_parameters() if p.requires_grad and n.startswith("head.")]
    body_params = [p for n, p in readout.named_parameters() if p.requires_grad and not n.startswith("head.")]
    groups = [{"params": body_params, "lr": opt.lr}]
    if head_params:
        groups.append({"params": head_params, "lr": opt.head_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=opt.weight_decay)
    # batches group by modality set, so an epoch can hold a few more than n / batch_size
    first_batches = group_batches([p.group for p in first_epoch], [p.length for p in first_epoch], opt.batch_size)
    steps_per_epoch = math.ceil(len(process_shard(first_batches, 0, accelerator.num_processes)) / opt.grad_accum)
    total_steps = opt.max_steps or steps_per_epoch * opt.epochs
    scheduler = get_scheduler(opt.scheduler, optimizer, num_warmup_steps=int(opt.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    readout, optimizer, scheduler = accelerator.prepare(readout, optimizer, scheduler)
    accelerator.init_trackers("train", config={"readout": cfg.readout.kind, "seed": opt.seed})

    # Seeded here, after loading and preparation, which may draw random numbers the first time a
    # process does them; a resumed run then restores the RNG state of its checkpoint.
    set_seed(opt.seed)
    state = TrainerState()
    last_dir = out_dir / LAST_DIR
    if (last_dir / "trainer_state").is_dir():
        saved, tensors = load_trainer_state(last_dir)
        state = TrainerState(**saved)
        load_weights(last_dir, accelerator.unwrap_model(readout))
        optimizer.load_state_dict(tensors["optimizer"])
        scheduler.load_state_dict(tensors["scheduler"])
        set_rng_state(tensors["rng"])
        logger.info("resumed from %s at step %d", last_dir, state.global_step)

    run_config = {**cfg.to_dict(), "trainable": assembled.trainable}

    def checkpoint(directory: Path, metrics: dict[str, Any] | None, with_state: bool) -> None:
        if not accelerator.is_main_process:
            return
        trainer_state = None
        if with_state:
            trainer_state = {**state.__dict__, "tensors": {"optimizer": optimizer.state_dict(),
                                                          "scheduler": scheduler.state_dict(), "rng": rng_state()}}
        save_checkpoint(directory, accelerator.unwrap_model(readout), run_config, metrics, trainer_state)

    def evaluate() -> dict[str, Any]:
        start = time.perf_counter()
        result = predict(assembled, valid_prepared, opt.eval_batch_size, accelerator.device)
        labels = np.array([p.label for p in valid_prepared])
        metrics = regression_metrics(result["preds"], labels, cfg.data.dataset)
        row = {"step": state.global_step, "epoch": state.epoch, "split": "valid", **metrics,
               "status_counts": StatusCounts.of(result["statuses"]).counts,
               "latency_ms_mean": float(np.mean(result["latency_ms"])), "eval_seconds": time.perf_counter() - start}
        state.history.append(row)
        accelerator.log({f"valid/{k}": v for k, v in metrics.items()}, step=state.global_step)
        if metrics["mae"] < state.best_mae:
            state.best_mae, state.best_step, state.evals_without_improvement = metrics["mae"], state.global_step, 0
            checkpoint(out_dir / BEST_DIR, row, with_state=False)
        else:
            state.evals_without_improvement += 1
        logger.info("step %d valid %s", state.global_step, {k: round(v, 4) for k, v in metrics.items()})
        return row

    start_time = time.perf_counter()
    steps_this_call = 0
    step_times: list[float] = []
    stopped_early = False
    readout.train()
    progress = tqdm(total=total_steps, initial=state.global_step, disable=not show_progress or
                    not accelerator.is_local_main_process, desc=f"train {cfg.readout.kind}")
    trainable_params = [p for g in groups for p in g["params"]]
    while state.epoch < opt.epochs and state.global_step < total_steps and not stopped_early:
        protocol = epoch_protocol(cfg.train_missing, opt.seed, state.epoch)
        prepared = [assembled.builder.prepare(s, protocol.draw(s.id)) for s in train_samples]
        batches = group_batches([p.group for p in prepared], [p.length for p in prepared], opt.batch_size,
                                seed=opt.seed * 7919 + state.epoch)
        shard = process_shard(batches, accelerator.process_index, accelerator.num_processes)
        for index in range(state.batches_done, len(shard)):
            if state.global_step >= total_steps:
                break
            step_start = time.perf_counter()
            batch = assembled.builder.collate([prepared[i] for i in shard[index]], with_answers=generative,
                                              padding_side="right").to(accelerator.device)
            group_start = index - index % opt.grad_accum
            group_size = min(opt.grad_accum, len(shard) - group_start)
            sync = index + 1 == group_start + group_size
            with contextlib.nullcontext() if sync else accelerator.no_sync(readout):
                loss = readout(batch)
                accelerator.backward(loss / group_size)
            state.batches_done = index + 1
            if not sync:
                continue
            if opt.max_grad_norm:
                accelerator.clip_grad_norm_(trainable_params, opt.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            state.global_step += 1
            steps_this_call += 1
            step_times.append(time.perf_counter() - step_start)
            accelerator.log({"train/loss": loss.item(), "train/lr": scheduler.get_last_lr()[0]},
                            step=state.global_step)
            state.history.append({"step": state.global_step, "epoch": state.epoch, "split": "train",
                                  "loss": loss.item()})
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.4f}")
            if opt.eval_every_steps and state.global_step % opt.eval_every_steps == 0:
                evaluate()
            stop_now = stop_after_steps is not None and steps_this_call >= stop_after_steps
            if stop_now or (opt.checkpoint_every_steps and state.global_step % opt.checkpoint_every_steps == 0):
                checkpoint(last_dir, None, with_state=True)
            if stop_now:
                progress.close()
                _finish(accelerator)
                return {"stopped_at_step": state.global_step}
        if state.batches_done >= len(shard):
            state.epoch += 1
            state.batches_done = 0
            if not opt.eval_every_steps:
                evaluate()
            checkpoint(last_dir, None, with_state=True)
            stopped_early = bool(opt.early_stopping_patience
                                 and state.evals_without_improvement >= opt.early_stopping_patience)
    progress.close()
    if not state.history or state.history[-1].get("split") != "valid":
        evaluate()
    checkpoint(last_dir, None, with_state=True)
    summary = {
        "readout": cfg.readout.kind, "seed": opt.seed, "steps": state.global_step,
        "best_valid_mae": state.best_mae, "best_step": state.best_step, "stopped_early": stopped_early,
        "trainable": assembled.trainable, "peak_memory_mb": peak_memory_mb(),
        "peak_memory_scope": peak_memory_scope(),
        "step_time_s_median": float(np.median(step_times)) if step_times else None,
        "wall_time_s": time.perf_counter() - start_time,
        "skipped_invalid": [{"id": e.sample_id, "field": e.field, "reason": e.reason}
                            for e in reader_skipped + train_errors + valid_errors],
        "history": state.history,
    }
    if accelerator.is_main_process:
        (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    _finish(accelerator)
    return summary
