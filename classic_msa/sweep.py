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

Rows have the schema of `classic_msa.experiment` (model, dataset, seed = training seed, split,
train_protocol, eval_protocol (its `seed` is the mask seed), eval_label, metrics, n_params,
wall_time_s, eval_time_s, n_samples, checkpoint) plus `grid`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omni_msa.data.missing import sweep
from omni_msa.data.mmsa import read_mmsa_pickle
from omni_msa.data.record import Sample

from classic_msa.config import RunConfig
from classic_msa.evaluation import evaluate
from classic_msa.experiment import METRICS_FILE, load_samples
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
    return json.loads((checkpoint / CONFIG_FILE).read_text())


def training_seed(checkpoint: Path) -> int:
    return int(_saved_config(checkpoint)["train"]["seed"])


def load_test_samples(checkpoint: str | Path, run_config: RunConfig | None = None) -> tuple[str, list[Sample]]:
    """(dataset, test samples) for the run the checkpoint belongs to."""
    checkpoint = Path(checkpoint)
    saved = _saved_config(checkpoint)
    if run_config is not None:
        if run_config.data.dataset != saved["dataset"]:
            raise ValueError(f"config dataset {run_config.data.dataset!r} but the checkpoint was trained on "
                             f"{saved['dataset']!r}")
        return run_config.data.dataset, load_samples(run_config.data, Path(run_config.output_dir))["test"]
    for run_dir in (checkpoint, checkpoint.parent):
        pickle = run_dir / SYNTHETIC_PICKLE
        if pickle.is_file():
            loaded = read_mmsa_pickle(pickle, dataset=saved["dataset"], layout="unaligned", splits=("test",))
            return saved["dataset"], [s for s in loaded.samples if s.split == "test"]
    raise FileNotFoundError(f"cannot find the data of {checkpoint}: pass the run's --config "
                            f"(no {SYNTHETIC_PICKLE} next to it)")


def sweep_checkpoint(checkpoint: str | Path, samples: Sequence[Sample], *, dataset: str, grid: str,
                     eval_seeds: Sequence[int] | None = None, intra_rate: float | str = 0.0,
                     batch_size: int = 256) -> list[dict[str, Any]]:
    """One row per (evaluation seed, protocol of `grid`) for one trained checkpoint."""
    checkpoint = Path(checkpoint)
    saved = _saved_config(checkpoint)
    model = load_checkpoint(checkpoint)
    seed = int(saved["train"]["seed"])
    train_protocol = TrainConfig.from_dict(saved["train"]).protocol("train").to_dict()
    wall_time = None
    if (checkpoint / METRICS_FILE).is_file():
        wall_time = json.loads((checkpoint / METRICS_FILE).read_text()).get("wall_time_s")
    n_params = model.n_params()
    rows = []
    for eval_seed in (eval_seeds if eval_seeds is not None else [seed]):
        for protocol in sweep(grid, seed=eval_seed, intra_rate=intra_rate):
            started = time.perf_counter()
            result = evaluate(model, samples, dataset=dataset, protocol=protocol, batch_size=batch_size)
            rows.append({
                "model": saved["model"],
                "dataset": dataset,
                "seed": seed,
                "split": "test",
                "train_protocol": train_protocol,
                "eval_protocol": protocol.to_dict(),
                "eval_label": protocol.label,
                "metrics": result.metrics,
                "n_params": n_params,
                "wall_time_s": wall_time,
                "eval_time_s": time.perf_counter() - started,
                "n_samples": len(result.ids),
                "checkpoint": str(checkpoint),
                "grid": grid,
            })
    return rows


def sweep_run(path: str | Path, *, grid: str, run_config: RunConfig | None = None,
              seeds: Sequence[int] | None = None, eval_seeds: Sequence[int] | None = None,
              intra_rate: float | str = 0.0, batch_size: int = 256) -> list[dict[str, Any]]:
    """`sweep_checkpoint` over every selected checkpoint of a run (data read once)."""
    dirs = checkpoint_dirs(path, seeds)
    dataset, samples = load_test_samples(dirs[0], run_config)
    rows = []
    for checkpoint in dirs:
        logger.info("%s: %s grid on %d test samples", checkpoint, grid, len(samples))
        rows += sweep_checkpoint(checkpoint, samples, dataset=dataset, grid=grid, eval_seeds=eval_seeds,
                                 intra_rate=intra_rate, batch_size=batch_size)
    return rows
