"""Evaluate trained classic checkpoints on the test split under a standard missingness grid.

A checkpoint is a trainer directory (config.json + model.safetensors, e.g. `<run>/seed0`) or a
run directory written by `classic_msa.experiment` (its `seed<k>/` subdirectories are used).
The test data is re-read through the shared layer: from the run config (`--config`, the same
YAML and overrides used for training), or, for synthetic runs without it, from the
`<run>/data/unaligned.pkl` that the experiment wrote.

Masks are a pure function of (protocol, seed, sample id) (omni_msa.data.missing), so every
model evaluated with the same evaluation seed sees exactly the same masks. Evaluation seeds:
by default each checkpoint is evaluated with its own training seed as the mask seed (what
`experiment.py` does); `eval_seeds` evaluates every checkpoint under each listed mask seed.

Rows follow the one result-row schema (`omni_msa.report.ResultRow`, as `classic_msa.experiment`
and the comparison grid write it): seed = training seed, eval_protocol's `seed` = the mask
seed, `grid` = the sweep, `wall_time_s` the training's (from the checkpoint's metrics.json).
Checkpoints are evaluated on `device` (default: the current CUDA device when there is one).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from omni_msa.compare.family import process_device
from omni_msa.data.fingerprint import DataFingerprint, data_fingerprint
from omni_msa.data.missing import sweep
from omni_msa.data.mmsa import read_mmsa_pickle
from omni_msa.data.record import DataError, Sample
from omni_msa.files import read_json
from omni_msa.report import result_row

from classic_msa.config import ClassicRunConfig
from classic_msa.evaluation import evaluate
from classic_msa.experiment import METRICS_FILE, classic_data_fingerprint, load_samples, trainable_summary
from classic_msa.trainer import CONFIG_FILE, TrainConfig, load_checkpoint

logger = logging.getLogger(__name__)

SYNTHETIC_PICKLE = Path("data") / "unaligned.pkl"


def checkpoint_dirs(path: str | Path, seeds: Sequence[int] | None = None) -> list[Path]:
    """The trainer directories under `path` (itself, or its `seed<k>` children), by training seed."""
    path = Path(path)
    if (path / CONFIG_FILE).is_file():
        found = [path]
    else:
        found = sorted((p for p in path.glob("seed*") if (p / CONFIG_FILE).is_file()),
                       key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
    if not found:
        raise FileNotFoundError(f"{path}: no checkpoint ({CONFIG_FILE}) in it or in its seed*/ subdirectories")
    if seeds is not None:
        by_seed = {training_seed(p): p for p in found}
        missing = sorted(set(seeds) - set(by_seed))
        if missing:
            raise FileNotFoundError(f"{path}: no checkpoint for training seed(s) {missing}; found {sorted(by_seed)}")
        found = [by_seed[s] for s in seeds]
    unfinished = [str(p) for p in found if not (p / "model.safetensors").is_file()]
    if unfinished:
        raise FileNotFoundError(f"unfinished checkpoint(s) without model.safetensors: {unfinished}")
    return found


def _saved_config(checkpoint: Path) -> dict[str, Any]:
    return read_json(checkpoint / CONFIG_FILE)


def training_seed(checkpoint: Path) -> int:
    return int(_saved_config(checkpoint)["train"]["seed"])


@dataclass
class SweepData:
    """The evaluation samples of a run (its `data.evaluate_on` split), and the fingerprint of what
    they were read from."""

    dataset: str
    samples: list[Sample]
    fingerprint: DataFingerprint
    split: str = "test"


def load_test_samples(checkpoint: str | Path, run_config: ClassicRunConfig | None = None) -> SweepData:
    """The evaluation samples of the run the checkpoint belongs to (its config's `data.evaluate_on`
    split; the built-in synthetic set's test split without a config)."""
    checkpoint = Path(checkpoint)
    saved = _saved_config(checkpoint)
    if run_config is not None:
        if run_config.data.dataset != saved["dataset"]:
            raise DataError(f"config dataset {run_config.data.dataset!r} but the checkpoint was trained on "
                            f"{saved['dataset']!r}", field="dataset", source=checkpoint)
        split = run_config.data.evaluate_on
        samples = load_samples(run_config.data, Path(run_config.output_dir))[split]
        return SweepData(run_config.data.dataset, samples, classic_data_fingerprint(run_config.data), split)
    for run_dir in (checkpoint, checkpoint.parent):
        pickle = run_dir / SYNTHETIC_PICKLE
        if pickle.is_file():
            loaded = read_mmsa_pickle(pickle, dataset=saved["dataset"], layout="unaligned", splits=("test",))
            return SweepData(saved["dataset"], [s for s in loaded.samples if s.split == "test"],
                            data_fingerprint(saved["dataset"], "test", features=pickle, skip_invalid=False,
                                             features_layout="unaligned"))
    raise FileNotFoundError(f"cannot find the data of {checkpoint}: pass the run's --config "
                            f"(no {SYNTHETIC_PICKLE} next to it)")


def sweep_checkpoint(checkpoint: str | Path, data: SweepData, *, grid: str, eval_seeds: Sequence[int] | None = None,
                     intra_rate: float | str = 0.0, batch_size: int = 256,
                     device: str | torch.device | None = None) -> list[dict[str, Any]]:
    """One row per (evaluation seed, protocol of `grid`) for one trained checkpoint."""
    checkpoint = Path(checkpoint)
    device = torch.device(device) if device is not None else process_device()
    saved = _saved_config(checkpoint)
    model = load_checkpoint(checkpoint, device=device)
    seed = int(saved["train"]["seed"])
    metrics_file = checkpoint / METRICS_FILE
    trained = {"wall_time_s": read_json(metrics_file).get("wall_time_s") if metrics_file.is_file() else None,
               "trainable": trainable_summary(model), "n_params": model.n_params()}
    common = {"model": saved["model"], "family": "classic", "dataset": data.dataset, "seed": seed, "split": data.split,
              "train_protocol": TrainConfig.from_dict(saved["train"]).protocol("train"), "eval_batch_size": batch_size,
              "device": str(device), "settings": {"model": saved["model"], "model_config": saved["model_config"],
                                                  "train": saved["train"], "data": data.fingerprint.to_dict()},
              "data_fingerprint": data.fingerprint.digest, "checkpoint": str(checkpoint), "grid": grid, **trained}
    rows = []
    for eval_seed in (eval_seeds if eval_seeds is not None else [seed]):
        for protocol in sweep(grid, seed=eval_seed, intra_rate=intra_rate):
            started = time.perf_counter()
            result = evaluate(model, data.samples, dataset=data.dataset, protocol=protocol, batch_size=batch_size,
                              device=device)
            rows.append(result_row(evaluation=protocol, ids=result.ids, preds=result.preds, labels=result.labels,
                                   latency_ms=result.latency_ms, eval_time_s=time.perf_counter() - started,
                                   **common))
    return rows


def sweep_run(path: str | Path, *, grid: str, run_config: ClassicRunConfig | None = None,
              seeds: Sequence[int] | None = None, eval_seeds: Sequence[int] | None = None,
              intra_rate: float | str = 0.0, batch_size: int = 256,
              device: str | torch.device | None = None) -> list[dict[str, Any]]:
    """`sweep_checkpoint` over every selected checkpoint of a run (data read once)."""
    dirs = checkpoint_dirs(path, seeds)
    data = load_test_samples(dirs[0], run_config)
    rows = []
    for checkpoint in dirs:
        logger.info("%s: %s grid on %d test samples", checkpoint, grid, len(data.samples))
        rows += sweep_checkpoint(checkpoint, data, grid=grid, eval_seeds=eval_seeds, intra_rate=intra_rate,
                                 batch_size=batch_size, device=device)
    return rows
