"""One classic-model experiment: load data, train per seed on `train` (selected on `valid`),
evaluate the evaluation split (`data.evaluate_on`, default `test`) under each protocol.

Output (`output_dir`):
    results.jsonl            one row per (seed, evaluation protocol), all seeds
    seed<k>/                 the trainer's checkpoint (config.json, model.safetensors, ...),
                             metrics.json (valid metrics of the selected model, `evaluate_on` and
                             the metrics per evaluation protocol under `evaluation`, parameters,
                             wall time) and rows.jsonl (this seed's rows)
Rows follow the one result-row schema (`omni_msa.report.ResultRow`, the comparison grid's):
model, family ("classic"), dataset, seed, split (the evaluation split), train_protocol and eval_protocol
(`MissingnessProtocol.to_dict()`), eval_label, metrics, n_samples, sample_set, latency, n_params,
peak_memory_mb and wall_time_s of the training (resumed runs included), eval_time_s, device,
settings, data_fingerprint, checkpoint.
With `resume`, a seed whose rows exist is kept as it is and an interrupted one continues from
its trainer state, so results.jsonl ends with exactly one row per seed and protocol.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import torch

from omni_msa.compare.family import process_device
from omni_msa.data.feature_files import feature_manifest, read_feature_file
from omni_msa.data.fingerprint import DataFingerprint, data_fingerprint
from omni_msa.data.record import MODALITIES, DataError, Sample
from omni_msa.data.synthetic import make_synthetic
from omni_msa.files import read_jsonl, write_json, write_jsonl
from omni_msa.report import result_row
from omni_msa.resources import peak_memory_mb, peak_memory_scope, reset_peak_memory

from classic_msa.config import ClassicRunConfig, DataConfig
from classic_msa.evaluation import evaluate
from classic_msa.model import FeatureModel, build_model, model_class
from classic_msa.seeding import seed_everything
from classic_msa.trainer import FitResult, TrainConfig, Trainer

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"
ROWS_FILE = "rows.jsonl"
METRICS_FILE = "metrics.json"


def used_splits(data: DataConfig) -> tuple[str, ...]:
    """train, valid and the evaluation split, in that order."""
    return tuple(dict.fromkeys(("train", "valid", data.evaluate_on)))


def load_samples(data: DataConfig, output_dir: Path) -> dict[str, list[Sample]]:
    """Samples of train, valid and the evaluation split, through the shared dataset layer."""
    if data.path is not None:
        loaded = read_feature_file(data.path, dataset=data.dataset, feature_set=data.feature_set, layout=data.layout,
                                   manifest=data.manifest, splits=used_splits(data), skip_invalid=data.skip_invalid)
        logger.info("%s: %s", data.path, loaded.summary())
        samples = loaded.samples
    else:
        target = Path(data.synthetic_dir) if data.synthetic_dir else output_dir / "data"
        samples = make_synthetic(data.synthetic_n, target, seed=data.synthetic_seed,
                                 dataset_shape=data.dataset, with_media=False)
    splits = {split: [s for s in samples if s.split == split] for split in used_splits(data)}
    empty = [split for split, group in splits.items() if not group]
    if empty:
        raise DataError(f"no samples in split(s) {empty}", field="split", source=data.path or "the synthetic set")
    return splits


def classic_data_fingerprint(data: DataConfig, split: str | None = None) -> DataFingerprint:
    """The fingerprint of the data a classic run reads, evaluated on `split` (default the
    evaluation split): its feature file's bytes (and a features.npz's manifest), or the synthetic spec."""
    synthetic = None if data.path is not None else {"n": data.synthetic_n, "seed": data.synthetic_seed,
                                                    "shape": data.dataset}
    manifest = feature_manifest(data.path, data.manifest) if data.path is not None else None
    return data_fingerprint(data.dataset, split or data.evaluate_on, features=data.path, synthetic=synthetic,
                            manifests={"features": manifest} if manifest is not None else None,
                            skip_invalid=data.skip_invalid, features_layout=data.layout, feature_set=data.feature_set)


def trainable_summary(model: FeatureModel) -> dict[str, Any]:
    """{"trainable", "total", "share"} parameters of a classic model."""
    trainable, total = model.n_params(trainable_only=True), model.n_params()
    return {"trainable": trainable, "total": total, "share": trainable / total if total else None}


def input_dims(model_name: str, options: dict[str, Any], train: list[Sample]) -> dict[str, Any]:
    """The model options with `<modality>_dim` filled from the data (a conflicting value is an error)."""
    known = {f.name for f in dataclasses.fields(model_class(model_name).config_class)}
    options = dict(options)
    for modality in MODALITIES:
        key = f"{modality}_dim"
        if key not in known:
            continue
        actual = int(train[0].features[modality].shape[-1])
        if options.setdefault(key, actual) != actual:
            raise DataError(f"model option {key}={options[key]} but the data's {modality} features "
                            f"have dimension {actual}", sample_id=train[0].id, field=modality)
    return options


def run_experiment(config: ClassicRunConfig, *, resume: bool = False, progress: bool = False,
                   device: str | torch.device | None = None) -> list[dict[str, Any]]:
    """Train and evaluate every seed on `device` (default: the current CUDA device when there is
    one, else the CPU); returns (and writes) all result rows."""
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = torch.device(device) if device is not None else process_device()
    splits = load_samples(config.data, out_dir)
    rows: list[dict[str, Any]] = []
    for seed in config.seeds:
        rows += _run_seed(config, seed, splits, resume=resume, progress=progress, device=device)
    write_jsonl(out_dir / RESULTS_FILE, rows)
    return rows


def train_seed(model_name: str, options: dict[str, Any], train_config: TrainConfig,
               splits: dict[str, list[Sample]], *, dataset: str, out_dir: Path, device: torch.device,
               resume: bool, progress: bool = False) -> tuple[FeatureModel, FitResult]:
    """Build the model for the data's dims under the seed of `train_config` and train it on
    `splits["train"]`, selecting on `splits["valid"]` (peak memory counted from here)."""
    seed_everything(train_config.seed)
    model = build_model(model_name, input_dims(model_name, options, splits["train"]))
    reset_peak_memory()
    trainer = Trainer(model, train_config, dataset=dataset, out_dir=out_dir, progress=progress, device=device)
    return model, trainer.fit(splits["train"], splits["valid"], resume=resume)


def _run_seed(config: ClassicRunConfig, seed: int, splits: dict[str, list[Sample]], *, resume: bool,
              progress: bool, device: torch.device) -> list[dict[str, Any]]:
    seed_dir = Path(config.output_dir) / f"seed{seed}"
    if resume and (seed_dir / ROWS_FILE).is_file():
        logger.info("seed %d already evaluated in %s; keeping its rows", seed, seed_dir)
        return read_jsonl(seed_dir / ROWS_FILE)
    dataset = config.data.dataset
    train_config = config.train_config(seed)
    model, fit = train_seed(config.model_name, config.model_options, train_config, splits,
                            dataset=dataset, out_dir=seed_dir, device=device, resume=resume, progress=progress)
    trained = {"trainable": trainable_summary(model), "n_params": model.n_params(), "wall_time_s": fit.wall_time_s,
               "peak_memory_mb": peak_memory_mb(), "peak_memory_scope": peak_memory_scope()}
    logger.info("%s seed %d: %d parameters, valid %s, %.1f s", config.model_name, seed, trained["n_params"],
                fit.valid_metrics, fit.wall_time_s)
    fingerprint = classic_data_fingerprint(config.data)
    split = config.data.evaluate_on
    rows = []
    for protocol in config.protocols(seed):
        started = time.perf_counter()
        result = evaluate(model, splits[split], dataset=dataset, protocol=protocol,
                          batch_size=train_config.eval_batch_size, device=device)
        rows.append(result_row(
            model=config.model_name, family="classic", dataset=dataset, seed=seed, split=split,
            train_protocol=train_config.protocol("train"), evaluation=protocol, ids=result.ids, preds=result.preds,
            labels=result.labels, latency_ms=result.latency_ms, eval_batch_size=train_config.eval_batch_size,
            eval_time_s=time.perf_counter() - started, device=str(device),
            settings={"model": config.model, "train": config.train, "data": fingerprint.to_dict()},
            data_fingerprint=fingerprint.digest, checkpoint=str(seed_dir),
            training={"best_valid_mae": fit.valid_metrics.get("mae")}, **trained))
    write_json(seed_dir / METRICS_FILE, {
        "model": config.model_name, "dataset": dataset, "seed": seed, "n_params": trained["n_params"],
        "wall_time_s": fit.wall_time_s, "valid": fit.valid_metrics, "evaluate_on": split,
        "evaluation": [{"eval_protocol": r["eval_protocol"], "eval_label": r["eval_label"], "metrics": r["metrics"]}
                 for r in rows],
    })
    write_jsonl(seed_dir / ROWS_FILE, rows)
    return rows
