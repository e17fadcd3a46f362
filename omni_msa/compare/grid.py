"""Running a comparison grid: shared data once, then per contender, training protocol and seed
one fit and one row per evaluation protocol, appended to `<results_dir>/runs.jsonl` as it is
computed. A row's `run_key` names everything that defines it (contender settings fingerprint,
the data's content fingerprint, seed, protocols), so starting the grid again skips what is
finished and reruns only what changed or is missing: edit a manifest and the runs on it are
trained and scored again, in new run directories; touch it without changing it and nothing is.
Rows follow the one result-row schema (`omni_msa.report.ResultRow`)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omni_msa.compare.config import CompareConfig
from omni_msa.compare.family import Contender, EvalResult, FitInfo, SharedData
from omni_msa.data.feature_files import feature_manifest
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.synthetic import make_synthetic
from omni_msa.files import append_jsonl, read_json, read_jsonl, write_json, write_jsonl
from omni_msa.report import result_row
from omni_msa.resources import peak_memory_mb, reset_peak_memory

if TYPE_CHECKING:
    from omni_msa.extract.source import MediaFeatures

logger = logging.getLogger(__name__)

ROWS_FILE = "runs.jsonl"


def fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", text) or "complete"


def run_key(contender: Contender, data: SharedData, seed: int, train: MissingnessProtocol,
            evaluation: MissingnessProtocol) -> str:
    protocols = (f"train={json.dumps(train.to_dict(), sort_keys=True)}|"
                 f"eval={json.dumps(evaluation.to_dict(), sort_keys=True)}")
    settings = fingerprint(contender.settings(data))
    return f"{contender.name}|{settings}|data={data.fingerprint.digest}|seed={seed}|{protocols}"


def run_dir(cfg: CompareConfig, contender: Contender, data: SharedData, seed: int, train: MissingnessProtocol) -> Path:
    """Where a contender trains (or finds the training it reads) for one seed and training protocol;
    the settings fingerprint in its name covers the data, so a run on other data never resumes this one."""
    name, settings = contender.training(data)
    return (Path(cfg.output_dir) / "runs" / f"{name}-{fingerprint(settings)}" / f"train-{slug(train.label)}"
            / f"seed{seed}")


def training_plan(cfg: CompareConfig, contender: Contender, plan: int, seed: int
                  ) -> tuple[MissingnessProtocol, list[MissingnessProtocol]] | None:
    """Training plan `plan` of one contender and seed: (training protocol, evaluation protocols).
    The comparison's training protocols come first, each evaluated under the contender's protocols
    (its own, else the comparison's); then each modality set, trained, selected and evaluated on that
    set alone; None for a set the contender's inputs do not strictly contain (a text-only readout is
    not trained again on text: its complete-data run is that)."""
    if plan < len(cfg.train_protocols):
        train = cfg.train_protocol(cfg.train_protocols[plan], seed)
        return train, cfg.eval_protocols_for(seed, contender.eval_protocols)
    keep = frozenset(cfg.modality_sets[plan - len(cfg.train_protocols)])
    if not keep < frozenset(contender.modalities):
        return None
    protocol = MissingnessProtocol(keep=keep, seed=seed)
    return protocol, [protocol]


def prepare_data(cfg: CompareConfig, *, multimodal: bool) -> SharedData:
    """The samples of the comparison: the synthetic set is generated once under output_dir/data
    (media only when a raw-media model, or extraction, needs them); manifests are read through the
    shared layer. `multimodal`: the omni readouts read media."""
    from omni_msa.data.splits import read_split

    out = Path(cfg.output_dir)
    media_features = _media_features(cfg, out, multimodal=multimodal)
    multimodal = multimodal or media_features is not None
    if cfg.data.synthetic_n is not None:
        directory = out / "data"
        synthetic = {"n": cfg.data.synthetic_n, "seed": cfg.data.synthetic_seed, "shape": cfg.dataset,
                     "media": multimodal}
        marker = directory / "generated.json"
        # generated once: later processes and later runs of the grid read the same files
        if _generated_spec(marker) != synthetic:
            make_synthetic(cfg.data.synthetic_n, directory, seed=cfg.data.synthetic_seed, dataset_shape=cfg.dataset,
                           with_media=multimodal)
            write_json(marker, synthetic)
        manifest = str(directory / "manifest.csv")
        paths = {"train": manifest, "valid": manifest, "test": manifest}
        features: str | None = None if media_features else str(directory / "unaligned.pkl")
        layout: str | None = None if media_features else "unaligned"
        features_manifest = None
    else:
        synthetic = None
        paths = {"train": cfg.data.train, "valid": cfg.data.valid}
        if cfg.data.test:
            paths["test"] = cfg.data.test
        features, layout = cfg.data.features, cfg.data.features_layout
        features_manifest = feature_manifest(features, cfg.data.features_manifest) if features else None
    samples, errors = {}, []
    for split in dict.fromkeys(("train", "valid", cfg.evaluate_on)):
        samples[split], skipped = read_split(paths[split], split, cfg.dataset, cfg.data.skip_invalid)
        errors += [{"id": e.sample_id, "field": e.field, "reason": e.reason, "source": e.source} for e in skipped]
    unique_errors = list({json.dumps(e, sort_keys=True): e for e in errors}.values())
    return SharedData(dataset=cfg.dataset, evaluate_on=cfg.evaluate_on, manifest=paths, samples=samples,
                      features=features, features_manifest=str(features_manifest) if features_manifest else None,
                      feature_set=cfg.data.feature_set, features_layout=layout, skip_invalid=cfg.data.skip_invalid,
                      media_cache_dir=str(out / "media_cache"), reader_errors=unique_errors, synthetic=synthetic,
                      dev_fraction=cfg.data.dev_fraction, dev_seed=cfg.data.dev_seed, media_features=media_features)


def _media_features(cfg: CompareConfig, out: Path, *, multimodal: bool) -> MediaFeatures | None:
    """The features `data.extract` extracts, from media decoded as the omni readouts decode them
    (their `media` settings where they read media, else the extractor's defaults), cached under
    output_dir/feature_cache."""
    if cfg.data.extract is None:
        return None
    from omni_msa.config_layer import build
    from omni_msa.extract.run import DEFAULT_MEDIA
    from omni_msa.extract.source import MediaFeatures
    from omni_msa.media_inputs import MediaSettings

    media = build(MediaSettings, cfg.omni_base.get("media", {}), at="omni.base.media") if multimodal else DEFAULT_MEDIA
    return MediaFeatures(recipe=cfg.data.extract, media=media, cache_dir=str(out / "feature_cache"))


def _generated_spec(marker: Path) -> Any:
    """The spec the synthetic set under `marker`'s directory was generated with (None: none, or
    an unreadable marker, so it is generated again)."""
    try:
        return read_json(marker)
    except (OSError, ValueError):
        return None


def make_row(cfg: CompareConfig, contender: Contender, data: SharedData, key: str, seed: int,
             train: MissingnessProtocol, evaluation: MissingnessProtocol, fit: FitInfo,
             result: EvalResult) -> dict[str, Any]:
    return result_row(
        model=contender.name, family=contender.family, dataset=cfg.dataset, seed=seed, split=cfg.evaluate_on,
        train_protocol=train, evaluation=evaluation, ids=result.ids, preds=result.preds, labels=result.labels,
        latency_ms=result.latency_ms, statuses=result.statuses, n_errors=result.errors,
        eval_batch_size=cfg.eval_batch_size, trainable=fit.trainable, n_params=fit.trainable.get("trainable"),
        peak_memory_mb=fit.peak_memory_mb, peak_memory_scope=fit.peak_memory_scope, wall_time_s=fit.wall_time_s,
        eval_time_s=result.eval_time_s, device=result.device or fit.device, settings=contender.settings(data),
        data_fingerprint=data.fingerprint.digest, checkpoint=fit.checkpoint, predictions=result.predictions,
        run_key=key, training=fit.extra, extra=result.extra, inputs=list(contender.modalities))


def drop_stale_rows(rows_path: Path, contenders: Sequence[Contender], data: SharedData) -> int:
    """Remove the rows of these contenders computed on other data (an edited manifest or feature file)
    or with other settings (an edited config): their replacements are computed as the grid stands now,
    and a summary, which groups rows by model, must not average the two."""
    rows = read_jsonl(rows_path)
    current = {c.name: f"{c.name}|{fingerprint(c.settings(data))}|data={data.fingerprint.digest}|"
               for c in contenders}
    kept = [r for r in rows if r["model"] not in current or str(r.get("run_key", "")).startswith(current[r["model"]])]
    if len(kept) < len(rows):
        logger.warning("%s: %d rows were computed on other data or with other settings than this grid's; they are "
                       "replaced", rows_path, len(rows) - len(kept))
        write_jsonl(rows_path, kept)
    return len(rows) - len(kept)


def run_grid(cfg: CompareConfig, contenders: Sequence[Contender], data: SharedData, *,
             is_main_process: bool = True) -> dict[str, int]:
    """Fit and evaluate every (contender, training protocol, seed) whose rows are missing.
    Returns counts of rows written and skipped."""
    rows_path = Path(cfg.results_dir) / ROWS_FILE
    if is_main_process:
        drop_stale_rows(rows_path, contenders, data)
    done = {row["run_key"] for row in read_jsonl(rows_path)}
    counts = {"written": 0, "skipped": 0}
    for contender in contenders:
        for plan in range(len(cfg.train_protocols) + len(cfg.modality_sets)):
            for seed in cfg.seeds:
                planned = training_plan(cfg, contender, plan, seed)
                if planned is None:
                    continue
                train, protocols = planned
                keys = [run_key(contender, data, seed, train, p) for p in protocols]
                todo = [(k, p) for k, p in zip(keys, protocols) if k not in done]
                counts["skipped"] += len(protocols) - len(todo)
                if not todo:
                    logger.info("%s seed %d train %s: finished, skipped", contender.name, seed, train.label)
                    continue
                directory = run_dir(cfg, contender, data, seed, train)
                logger.info("%s seed %d train %s: %d evaluations in %s", contender.name, seed, train.label,
                            len(todo), directory)
                fit = contender.fit(seed, train, directory, data)
                for key, protocol in todo:
                    started = time.perf_counter()
                    reset_peak_memory()
                    # per contender: contenders that read one model share its run directory
                    out_path = directory / "eval" / contender.name / f"{slug(protocol.label)}.jsonl"
                    result = contender.evaluate(fit, protocol, data, out_path)
                    if result is None or not is_main_process:
                        continue
                    result.eval_time_s = result.eval_time_s or time.perf_counter() - started
                    row = make_row(cfg, contender, data, key, seed, train, protocol, fit, result)
                    row["eval_peak_memory_mb"] = peak_memory_mb()
                    append_jsonl(rows_path, row)
                    done.add(key)
                    counts["written"] += 1
                contender.release()
    return counts
