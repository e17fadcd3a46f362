"""Training for every trained readout, under `accelerate launch` (one code path), as a recipe in
torchtune's shape: `setup`, `load_checkpoint`, `train` (epochs of steps), `evaluate`,
`save_checkpoint`, `cleanup`.

Per epoch the batch order is a pure function of (seed, epoch), missingness of (protocol, seed,
epoch, sample id), and checkpoints are written at optimizer-step boundaries with the optimizer,
scheduler and RNG states, so a run killed and resumed ends where an uninterrupted run ends.
Evaluation on `valid` selects the best checkpoint on the dataset's selection metric (MAE for
MOSI, MOSEI and SIMS); `test` is never looked at.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from omni_msa.assemble import assemble
from omni_msa.checkpoint import load_trainer_state, load_weights, rng_state, save_checkpoint, set_rng_state
from omni_msa.config import OmniRunConfig
from omni_msa.data.batching import group_batches
from omni_msa.data.fingerprint import data_fingerprint
from omni_msa.data.record import DataError, Sample
from omni_msa.data.splits import carve_dev, read_split
from omni_msa.data.synthetic import make_synthetic
from omni_msa.datasets import get_dataset
from omni_msa.files import write_json
from omni_msa.metrics import regression_metrics
from omni_msa.optim import groups_by_prefix, param_groups
from omni_msa.parse import StatusCounts
from omni_msa.prediction import predict_samples
from omni_msa.resources import peak_memory_mb, peak_memory_scope, reset_peak_memory
from omni_msa.seeding import derive_seed, epoch_protocol

logger = logging.getLogger(__name__)

BEST_DIR = "checkpoint-best"
LAST_DIR = "checkpoint-last"
SUMMARY_FILE = "train_summary.json"


@dataclass
class TrainerState:
    epoch: int = 0
    batches_done: int = 0
    global_step: int = 0
    best_value: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    elapsed_s: float = 0.0          # training wall time over every call of the run, to the last checkpoint
    history: list[dict[str, Any]] = field(default_factory=list)
    best_residuals: list[float] = field(default_factory=list)
    """|prediction - label| on the selection split at the best step: split-conformal calibration."""


def load_samples(cfg: OmniRunConfig) -> tuple[list[Sample], list[Sample], list[DataError]]:
    """Train samples, the samples the run selects on (valid, or the dev split carved from train with
    `data.dev_fraction`), and the invalid ones the readers skipped (only with `data.skip_invalid`;
    otherwise the first invalid sample stops the run)."""
    data = cfg.data
    if data.synthetic_n is not None:
        samples = make_synthetic(data.synthetic_n, Path(cfg.output_dir) / "synthetic", seed=data.synthetic_seed,
                                 with_media=cfg.backbone.spec.multimodal)
        train = [s for s in samples if s.split == "train"]
        valid = [s for s in samples if s.split == "valid"]
        skipped: list[DataError] = []
    else:
        train, train_skipped = read_split(data.train, "train", data.dataset, data.skip_invalid)
        valid, valid_skipped = read_split(data.valid, "valid", data.dataset, data.skip_invalid)
        skipped = train_skipped + (valid_skipped if Path(data.valid) != Path(data.train) else [])
    if data.dev_fraction is not None:
        train, valid = carve_dev(train, data.dev_fraction, data.dev_seed)
    return train[:data.max_train_samples], valid[:data.max_valid_samples], skipped


def run_data_fingerprint(cfg: OmniRunConfig) -> dict[str, Any]:
    """What the model was trained and selected on: the manifests' content, or the synthetic spec."""
    data = cfg.data
    if data.synthetic_n is not None:
        spec = {"n": data.synthetic_n, "seed": data.synthetic_seed, "shape": data.dataset}
        return data_fingerprint(data.dataset, "valid", synthetic=spec, **dev_options(data)).to_dict()
    return data_fingerprint(data.dataset, "valid", manifests={"train": data.train, "valid": data.valid},
                            skip_invalid=data.skip_invalid, **dev_options(data)).to_dict()


def dev_options(data: Any) -> dict[str, Any]:
    """The dev-split settings that decide which samples are trained and selected on (none without one)."""
    return {} if data.dev_fraction is None else {"dev_fraction": data.dev_fraction, "dev_seed": data.dev_seed}


def process_shard(batches: list[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """This process's batches. Every process must take the same number of steps, so the list is
    padded by cycling from its start (as torch's DistributedSampler does) when it does not divide."""
    if world_size > 1 and len(batches) % world_size:
        batches = batches + batches[:world_size - len(batches) % world_size]
    return batches[rank::world_size]


class TrainingRecipe:
    """One training run of the readout `cfg` names; see the module docstring."""

    def __init__(self, cfg: OmniRunConfig, *, show_progress: bool = True) -> None:
        if not cfg.readout.entry.trained:
            raise ValueError(f"readout {cfg.readout.kind!r} is never trained (it scores the bare backbone); "
                             f"score it instead")
        self.cfg = cfg
        self.opt = cfg.optim
        self.out_dir = Path(cfg.output_dir)
        self.show_progress = show_progress
        self.state = TrainerState()
        self.dataset = get_dataset(cfg.data.dataset)

    # --- setup -------------------------------------------------------------------------------

    def setup(self) -> None:
        """Accelerator, data, model, optimizer and scheduler; seeds after loading and preparation,
        which may draw random numbers the first time a process does them."""
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.out_dir.mkdir(parents=True, exist_ok=True)
        reset_peak_memory()
        # cpu=True without CUDA: accelerate then also joins the gloo process group of a torchrun launch
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=self.opt.mixed_precision,
                                       log_with="tensorboard", project_dir=str(self.out_dir))
        self.train_samples, valid_samples, self.reader_skipped = load_samples(self.cfg)
        self.assembled = assemble(self.cfg)
        logger.info("trainable parameters: %s", self.assembled.trainable)
        logger.info("speed settings: %s", self.assembled.speed.line())
        self.valid_prepared, self.valid_errors = self.prepare_all(valid_samples, self.cfg.eval_missing)
        first_epoch, self.train_errors = self.prepare_all(self.train_samples, self.epoch_protocol(0))
        bad_ids = {e.sample_id for e in self.train_errors}
        self.train_samples = [s for s in self.train_samples if s.id not in bad_ids]
        if self.train_errors or self.valid_errors:
            logger.warning("skipped %d train and %d valid samples that failed to prepare", len(self.train_errors),
                           len(self.valid_errors))
        self.total_steps = self.opt.max_steps or self.steps_per_epoch(first_epoch) * self.opt.epochs
        self._setup_optimizer()
        self.accelerator.init_trackers("train", config={"readout": self.cfg.readout.kind, "seed": self.opt.seed})
        set_seed(self.opt.seed)
        self.run_config = {**self.cfg.to_dict(), "trainable": self.assembled.trainable,
                           "data_fingerprint": run_data_fingerprint(self.cfg)}

    def _setup_optimizer(self) -> None:
        from transformers import get_scheduler

        readout, opt = self.assembled.readout, self.opt
        groups = param_groups(groups_by_prefix(readout.named_parameters(), {"head": "head."}, rest="body"),
                              lr=opt.lr, weight_decay=opt.weight_decay, group_lr={"head": opt.head_lr})
        self.trainable_params = [p for group in groups for p in group["params"]]
        optimizer = torch.optim.AdamW(groups)
        scheduler = get_scheduler(opt.scheduler, optimizer, num_warmup_steps=int(opt.warmup_ratio * self.total_steps),
                                  num_training_steps=self.total_steps)
        self.readout, self.optimizer, self.scheduler = self.accelerator.prepare(readout, optimizer, scheduler)

    def epoch_protocol(self, epoch: int) -> Any:
        return epoch_protocol(self.cfg.train_missing, epoch)

    def prepare_all(self, samples: list[Sample], protocol: Any) -> tuple[list[Any], list[DataError]]:
        """Prepare every sample under a protocol; bad ones raise, or are skipped and returned."""
        prepared, errors = [], []
        for sample in samples:
            try:
                prepared.append(self.assembled.builder.prepare(sample, protocol.draw(sample.id)))
            except DataError as error:
                if not self.cfg.data.skip_invalid:
                    raise
                errors.append(error)
        return prepared, errors

    def epoch_batches(self, prepared: list[Any], epoch: int | None) -> list[list[int]]:
        """This process's batches of an epoch (grouped by modality set, so an epoch can hold a
        few more than n / batch_size); `epoch=None` keeps the unshuffled order."""
        seed = None if epoch is None else derive_seed(self.opt.seed, "shuffle", epoch)
        batches = group_batches([p.group for p in prepared], [p.length for p in prepared], self.opt.batch_size,
                                seed=seed)
        return process_shard(batches, self.accelerator.process_index, self.accelerator.num_processes)

    def steps_per_epoch(self, prepared: list[Any]) -> int:
        return math.ceil(len(self.epoch_batches(prepared, None)) / self.opt.grad_accum)

    # --- checkpoints -------------------------------------------------------------------------

    def load_checkpoint(self) -> None:
        """Resume from `checkpoint-last` if an earlier call of this run left one."""
        last_dir = self.out_dir / LAST_DIR
        if not (last_dir / "trainer_state").is_dir():
            return
        saved, tensors = load_trainer_state(last_dir)
        self.state = TrainerState(**saved)
        load_weights(last_dir, self.accelerator.unwrap_model(self.readout))
        self.optimizer.load_state_dict(tensors["optimizer"])
        self.scheduler.load_state_dict(tensors["scheduler"])
        set_rng_state(tensors["rng"])
        logger.info("resumed from %s at step %d", last_dir, self.state.global_step)

    def save_checkpoint(self, directory: Path, metrics: dict[str, Any] | None = None, *,
                        with_state: bool) -> None:
        if not self.accelerator.is_main_process:
            return
        trainer_state = None
        if with_state:
            self.state.elapsed_s = self.elapsed()
            tensors = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                       "rng": rng_state()}
            trainer_state = {**self.state.__dict__, "tensors": tensors}
        save_checkpoint(directory, self.accelerator.unwrap_model(self.readout), self.run_config, metrics,
                        trainer_state)

    # --- evaluation --------------------------------------------------------------------------

    def predict_valid(self) -> tuple[np.ndarray, list[str], np.ndarray]:
        """Predictions, statuses and per-sample latencies on the prepared valid samples, through
        the prediction path batch scoring uses; a sample that fails stops the run."""
        results = predict_samples(self.assembled, self.valid_prepared, self.opt.eval_batch_size,
                                  self.accelerator.device).complete()
        return (np.array([r.pred for r in results]), [r.status for r in results],
                np.array([r.latency_ms for r in results]))

    def evaluate(self) -> dict[str, Any]:
        """Score valid, log it, and keep the best checkpoint on the dataset's selection metric."""
        start = time.perf_counter()
        preds, statuses, latency = self.predict_valid()
        labels = np.array([p.label for p in self.valid_prepared])
        metrics = regression_metrics(preds, labels, self.cfg.data.dataset)
        state = self.state
        row = {"step": state.global_step, "epoch": state.epoch, "split": "valid", **metrics,
               "status_counts": StatusCounts.of(statuses).counts, "latency_ms_mean": float(np.mean(latency)),
               "eval_seconds": time.perf_counter() - start}
        state.history.append(row)
        self.accelerator.log({f"valid/{k}": v for k, v in metrics.items()}, step=state.global_step)
        value = metrics[self.dataset.selection_metric]
        if self.dataset.is_better(value, state.best_value):
            state.best_value, state.best_step, state.evals_without_improvement = value, state.global_step, 0
            state.best_residuals = np.round(np.abs(preds - labels), 5).tolist()
            self.save_checkpoint(self.out_dir / BEST_DIR, row, with_state=False)
        else:
            state.evals_without_improvement += 1
        logger.info("step %d valid %s", state.global_step, {k: round(v, 4) for k, v in metrics.items()})
        return row

    # --- training ----------------------------------------------------------------------------

    def train(self, stop_after_steps: int | None = None) -> dict[str, Any]:
        """Epochs until `optim.epochs`, `optim.max_steps` or early stopping; `stop_after_steps`
        ends this call after that many optimizer steps (after writing `checkpoint-last`), as if
        the process had been killed there."""
        self.call_start, self.elapsed_before = time.perf_counter(), self.state.elapsed_s
        self.steps_this_call, self.step_times, stopped_early = 0, [], False
        self.readout.train()
        self.progress = tqdm(total=self.total_steps, initial=self.state.global_step,
                             desc=f"train {self.cfg.readout.kind}",
                             disable=not self.show_progress or not self.accelerator.is_local_main_process)
        while self.state.epoch < self.opt.epochs and self.state.global_step < self.total_steps and not stopped_early:
            if not self.train_epoch(stop_after_steps):
                self.progress.close()
                return {"stopped_at_step": self.state.global_step}
            stopped_early = self.end_epoch()
        self.progress.close()
        if not self.state.history or self.state.history[-1].get("split") != "valid":
            self.evaluate()
        self.save_checkpoint(self.out_dir / LAST_DIR, with_state=True)
        return self.write_summary(stopped_early)

    def train_epoch(self, stop_after_steps: int | None) -> bool:
        """The rest of the current epoch; False when `stop_after_steps` ended the call."""
        state, opt = self.state, self.opt
        prepared, errors = self.prepare_all(self.train_samples, self.epoch_protocol(state.epoch))
        known = {e.sample_id for e in self.train_errors}
        self.train_errors += [e for e in errors if e.sample_id not in known]
        shard = self.epoch_batches(prepared, state.epoch)
        for index in range(state.batches_done, len(shard)):
            if state.global_step >= self.total_steps:
                break
            if not self.train_batch([prepared[i] for i in shard[index]], index, len(shard)):
                continue
            if opt.eval_every_steps and state.global_step % opt.eval_every_steps == 0:
                self.evaluate()
            stop_now = stop_after_steps is not None and self.steps_this_call >= stop_after_steps
            if stop_now or (opt.checkpoint_every_steps and state.global_step % opt.checkpoint_every_steps == 0):
                self.save_checkpoint(self.out_dir / LAST_DIR, with_state=True)
            if stop_now:
                return False
        return True

    def train_batch(self, items: list[Any], index: int, n_batches: int) -> bool:
        """Forward and backward one batch; True when it completed an optimizer step."""
        step_start = time.perf_counter()
        accelerator, opt = self.accelerator, self.opt
        batch = self.assembled.builder.collate(items, with_answers=self.assembled.entry.with_answers,
                                               padding_side="right").to(accelerator.device)
        group_start = index - index % opt.grad_accum
        group_size = min(opt.grad_accum, n_batches - group_start)
        sync = index + 1 == group_start + group_size
        with contextlib.nullcontext() if sync else accelerator.no_sync(self.readout):
            loss = self.readout(batch)
            accelerator.backward(loss / group_size)
        self.state.batches_done = index + 1
        if not sync:
            return False
        if opt.max_grad_norm:
            accelerator.clip_grad_norm_(self.trainable_params, opt.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        self.state.global_step += 1
        self.steps_this_call += 1
        self.step_times.append(time.perf_counter() - step_start)
        self.log_step(loss.item())
        return True

    def log_step(self, loss: float) -> None:
        step = self.state.global_step
        self.accelerator.log({"train/loss": loss, "train/lr": self.scheduler.get_last_lr()[0]}, step=step)
        self.state.history.append({"step": step, "epoch": self.state.epoch, "split": "train", "loss": loss})
        self.progress.update(1)
        self.progress.set_postfix(loss=f"{loss:.4f}")

    def end_epoch(self) -> bool:
        """Close a finished epoch (evaluate unless that happens every K steps, checkpoint);
        True when early stopping ends the run."""
        state = self.state
        state.epoch += 1
        state.batches_done = 0
        if not self.opt.eval_every_steps:
            self.evaluate()
        self.save_checkpoint(self.out_dir / LAST_DIR, with_state=True)
        patience = self.opt.early_stopping_patience
        return bool(patience and state.evals_without_improvement >= patience)

    def elapsed(self) -> float:
        """Seconds this run has trained, the earlier calls of a resumed run included."""
        return self.elapsed_before + time.perf_counter() - self.call_start

    def write_summary(self, stopped_early: bool) -> dict[str, Any]:
        """`train_summary.json`, the marker of a finished run, written atomically by the main process."""
        state = self.state
        best = next((r for r in state.history if r["split"] == "valid" and r["step"] == state.best_step), {})
        summary = {
            "readout": self.cfg.readout.kind, "seed": self.opt.seed, "steps": state.global_step,
            "selection_metric": self.dataset.selection_metric, "selected_on": self.cfg.data.selection_split,
            "best_valid": state.best_value,
            "best_valid_mae": best.get("mae"), "best_step": state.best_step, "stopped_early": stopped_early,
            "trainable": self.assembled.trainable, "peak_memory_mb": peak_memory_mb(),
            "peak_memory_scope": peak_memory_scope(),
            "step_time_s_median": float(np.median(self.step_times)) if self.step_times else None,
            "speed_settings": self.assembled.speed.to_dict(),
            "encoder_cache": None if self.assembled.encoder_cache is None else self.assembled.encoder_cache.counts(),
            "wall_time_s": self.elapsed(),
            "skipped_invalid": [{"id": e.sample_id, "field": e.field, "reason": e.reason}
                                for e in self.reader_skipped + self.train_errors + self.valid_errors],
            "history": state.history,
            "best_residuals": state.best_residuals,
        }
        if self.accelerator.is_main_process:
            write_json(self.out_dir / SUMMARY_FILE, summary)
        return summary

    def cleanup(self) -> None:
        """Close the trackers and wait until the main process has written its files. Unlike
        `Accelerator.end_training`, the process group stays up: scoring may follow in this process."""
        for tracker in self.accelerator.trackers:
            tracker.finish()
        self.accelerator.wait_for_everyone()


def train(cfg: OmniRunConfig, *, stop_after_steps: int | None = None, show_progress: bool = True) -> dict[str, Any]:
    """Train, evaluate on valid, keep the best checkpoint; resumes from `checkpoint-last`."""
    recipe = TrainingRecipe(cfg, show_progress=show_progress)
    recipe.setup()
    recipe.load_checkpoint()
    try:
        return recipe.train(stop_after_steps)
    finally:
        recipe.cleanup()
