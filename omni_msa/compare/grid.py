"""Running a comparison grid: shared data once, then per contender, training protocol and seed
one fit and one row per evaluation protocol, appended to `<results_dir>/runs.jsonl` as it is
computed. A row's `run_key` names everything that defines it (contender settings fingerprint,
seed, protocols), so starting the grid again skips what is finished and reruns only what
changed or is missing."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


from omni_msa.compare.config import CompareConfig
from omni_msa.compare.family import Contender, EvalResult, FitInfo, SharedData
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.synthetic import make_synthetic
from omni_msa.metrics import latency_summary, regression_metrics
from omni_msa.parse import StatusCounts
from omni_msa.report import read_rows
from omni_msa.resources import peak_memory_mb, reset_peak_memory

logger = logging.getLogger(__name__)

ROWS_FILE = "runs.jsonl"


def fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", text) or "complete"


def run_key(contender: Contender, seed: int, train: MissingnessProtocol, evaluation: MissingnessProtocol) -> str:
    return (f"{contender.name}|{fingerprint(contender.settings())}|seed={seed}|"
            f"train={json.dumps(train.to_dict(), sort_keys=True)}|eval={json.dumps(evaluation.to_dict(), sort_keys=True)}")


def prepare_data(cfg: CompareConfig, *, multimodal: bool) -> SharedData:
    """The samples of the comparison: the synthetic set is generated once under output_dir/data
    (media only when a raw-media model needs them); manifests are read through the shared layer."""
    from omni_msa.train import read_split

    out = Path(cfg.output_dir)
    if cfg.data.synthetic_n is not None:
        directory = out / "data"
        spec = {"n": cfg.data.synthetic_n, "seed": cfg.data.synthetic_seed, "shape": cfg.dataset, "media": multimodal}
        marker = directory / "generated.json"
        # generated once: later processes and later runs of the grid read the same files
        if not marker.is_file() or json.loads(marker.read_text()) != spec:
            make_synthetic(cfg.data.synthetic_n, directory, seed=cfg.data.synthetic_seed, dataset_shape=cfg.dataset,
                           with_media=multimodal)
            marker.write_text(json.dumps(spec))
        manifest = str(directory / "manifest.csv")
        paths = {"train": manifest, "valid": manifest, "test": manifest}
        features: str | None = str(directory / "unaligned.pkl")
        layout: str | None = "unaligned"
    else:
        paths = {"train": cfg.data.train, "valid": cfg.data.valid}
        if cfg.data.test:
            paths["test"] = cfg.data.test
        features, layout = cfg.data.features, cfg.data.features_layout
    samples, errors = {}, []
    for split in dict.fromkeys(("train", "valid", cfg.evaluate_on)):
        samples[split], skipped = read_split(paths[split], split, cfg.dataset, cfg.data.skip_invalid)
        errors += [{"id": e.sample_id, "field": e.field, "reason": e.reason, "source": e.source} for e in skipped]
    unique_errors = list({json.dumps(e, sort_keys=True): e for e in errors}.values())
    return SharedData(dataset=cfg.dataset, evaluate_on=cfg.evaluate_on, manifest=paths, samples=samples,
                      features=features, features_layout=layout, skip_invalid=cfg.data.skip_invalid,
                      media_cache_dir=str(out / "media_cache"), reader_errors=unique_errors)


def make_row(cfg: CompareConfig, contender: Contender, key: str, seed: int, train: MissingnessProtocol,
             evaluation: MissingnessProtocol, fit: FitInfo, result: EvalResult) -> dict[str, Any]:
    statuses = result.statuses
    latency = latency_summary(result.latency_ms)
    return {
        "run_key": key,
        "model": contender.name,
        "family": contender.family,
        "dataset": cfg.dataset,
        "seed": seed,
        "split": cfg.evaluate_on,
        "train_protocol": train.to_dict(),
        "eval_protocol": evaluation.to_dict(),
        "eval_label": evaluation.label,
        "metrics": regression_metrics(result.preds, result.labels, cfg.dataset),
        "n_samples": len(result.ids),
        "n_errors": result.errors,
        "status_counts": StatusCounts.of(statuses).counts if statuses is not None else None,
        "latency_ms": latency,
        "eval_batch_size": cfg.eval_batch_size,
        "throughput_sps": 1000.0 / latency["mean"] if latency["mean"] > 0 else None,
        "trainable": fit.trainable,
        "n_params": fit.trainable.get("trainable"),
        "peak_memory_mb": fit.peak_memory_mb,
        "peak_memory_scope": fit.peak_memory_scope,
        "wall_time_s": fit.wall_time_s,
        "eval_time_s": result.eval_time_s,
        "settings": contender.settings(),
        "checkpoint": fit.checkpoint,
        "predictions": result.predictions,
        **fit.extra,
    }


def append_row(path: Path, row: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.is_file() else ""
    if text and not text.endswith("\n"):        # drop a partial line a killed run left
        path.write_text(text[:text.rfind("\n") + 1])
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def run_grid(cfg: CompareConfig, contenders: Sequence[Contender], data: SharedData, *,
             is_main_process: bool = True) -> dict[str, int]:
    """Fit and evaluate every (contender, training protocol, seed) whose rows are missing.
    Returns counts of rows written and skipped."""
    rows_path = Path(cfg.results_dir) / ROWS_FILE
    done = {row["run_key"] for row in read_rows([rows_path])}
    counts = {"written": 0, "skipped": 0}
    for contender in contenders:
        for train_spec in cfg.train_protocols:
            for seed in cfg.seeds:
                train = cfg.train_protocol(train_spec, seed)
                protocols = cfg.eval_protocols_for(seed)
                keys = [run_key(contender, seed, train, p) for p in protocols]
                todo = [(k, p) for k, p in zip(keys, protocols) if k not in done]
                counts["skipped"] += len(protocols) - len(todo)
                if not todo:
                    logger.info("%s seed %d train %s: finished, skipped", contender.name, seed, train.label)
                    continue
                run_dir = (Path(cfg.output_dir) / "runs" / f"{contender.name}-{fingerprint(contender.settings())}"
                           / f"train-{slug(train.label)}" / f"seed{seed}")
                logger.info("%s seed %d train %s: %d evaluations in %s", contender.name, seed, train.label,
                            len(todo), run_dir)
                fit = contender.fit(seed, train, run_dir, data)
                for key, protocol in todo:
                    started = time.perf_counter()
                    reset_peak_memory()
                    result = contender.evaluate(fit, protocol, data, run_dir / "eval" / f"{slug(protocol.label)}.jsonl")
                    if result is None or not is_main_process:
                        continue
                    result.eval_time_s = result.eval_time_s or time.perf_counter() - started
                    row = make_row(cfg, contender, key, seed, train, protocol, fit, result)
                    row["eval_peak_memory_mb"] = peak_memory_mb()
                    append_row(rows_path, row)
                    done.add(key)
                    counts["written"] += 1
                contender.release()
    return counts
