"""Classic feature models as contenders of the comparison harness (omni_msa.compare.family).

The model, its options and its trainer settings come from the model's own YAML config; the
comparison supplies the data (the features of the same samples the omni readouts see: an MMSA
pickle or a features.npz, `omni_msa.data.feature_files`, or features extracted from those samples'
raw media, `omni_msa.extract.source`, each evaluation protocol's from the media it damages),
the seed and the training protocol, which replaces the YAML's `train.train_protocol` so every
contender of a grid trains under the same missingness. Training and evaluation run on the
omni readouts' device (`omni_msa.compare.family.process_device`), so latencies compare like
with like.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from omni_msa.compare.config import ClassicSpec, CompareConfig
from omni_msa.compare.family import EvalResult, FitInfo, SharedData, finished_record, process_device, with_data
from omni_msa.data.feature_files import read_feature_file
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.record import MODALITIES, DataError, Sample
from omni_msa.extract.outputs import error_row
from omni_msa.files import write_json, write_jsonl
from omni_msa.resources import peak_memory_mb, peak_memory_scope
from omni_msa.scoring_io import errors_path_for

from classic_msa.config import load_classic_config
from classic_msa.evaluation import evaluate
from classic_msa.experiment import train_seed, trainable_summary
from classic_msa.model import FeatureModel
from classic_msa.trainer import TrainConfig

logger = logging.getLogger(__name__)

FIT_FILE = "fit.json"
EXTRACTION_ERRORS_FILE = "extraction_errors.jsonl"   # clips of train and valid whose features could not be extracted
FIT_KEYS = ("wall_time_s", "peak_memory_mb", "peak_memory_scope", "valid_mae")


class ClassicContender:
    family = "classic"
    modalities = MODALITIES          # every classic model reads all three (a dropped one as missing)
    eval_protocols = None            # the comparison's

    def __init__(self, spec: ClassicSpec, eval_batch_size: int, device: str | torch.device | None = None) -> None:
        self.run_config = load_classic_config(spec.config, spec.overrides)
        self.eval_batch_size = eval_batch_size
        self.device = torch.device(device) if device is not None else None
        self.name = self.run_config.model_name
        self._features: tuple[str, dict[str, list[Sample]]] | None = None   # (data digest, samples)
        self._model: tuple[str, FeatureModel] | None = None
        self.extraction_errors: list[DataError] = []   # train and valid clips that failed to extract

    @property
    def run_device(self) -> torch.device:
        """Where the model trains and is evaluated: the one given, else the omni readouts' device."""
        if self.device is None:
            self.device = process_device()
        return self.device

    def settings(self, data: SharedData | None = None) -> dict[str, Any]:
        train = {k: v for k, v in self.run_config.train.items() if k != "train_protocol"}
        settings = {"model": self.run_config.model, "train": train}
        if data is not None and data.media_features is not None:
            settings["features_from_media"] = data.media_features.key()
        return with_data(settings, data, features=True)

    def training(self, data: SharedData) -> tuple[str, dict[str, Any]]:
        return self.name, self.settings(data)

    def _samples(self, data: SharedData) -> dict[str, list[Sample]]:
        """Feature samples per split, of the comparison's samples (read again when the data changed):
        from the feature file, or extracted from the complete media."""
        if self._features is None or self._features[0] != data.fingerprint.digest:
            by_split = self._extracted(data) if data.media_features is not None else self._read(data)
            self._features = (data.fingerprint.digest, by_split)
        return self._features[1]

    def _read(self, data: SharedData) -> dict[str, list[Sample]]:
        """The feature file's samples of each split, restricted to the ids of the comparison's samples."""
        if data.features is None:
            raise DataError(f"{self.name} needs features of the comparison's samples", field="data.features")
        loaded = read_feature_file(data.features, dataset=data.dataset, feature_set=data.feature_set,
                                   layout=data.features_layout, manifest=data.features_manifest,
                                   splits=tuple(data.samples), skip_invalid=data.skip_invalid)
        by_split: dict[str, list[Sample]] = {}
        for split, wanted in data.samples.items():
            ids = {s.id for s in wanted}
            by_split[split] = [s for s in loaded.samples if s.split == split and s.id in ids]
            missing = ids - {s.id for s in by_split[split]}
            if missing:
                raise DataError(f"no features for {len(missing)} {split} samples of the comparison",
                                sample_id=sorted(missing)[0], field="features", source=data.features)
        return by_split

    def _extracted(self, data: SharedData) -> dict[str, list[Sample]]:
        """Each split's features from its complete media; the clips that fail are kept in
        `extraction_errors` (the fit writes them beside its run)."""
        by_split, self.extraction_errors = {}, []
        for split, wanted in data.samples.items():
            extraction = data.media_features.extract(wanted)
            if not extraction.samples:
                raise DataError(f"{self.name}: no {split} clip could be extracted ({len(extraction.errors)} "
                                f"errors, the first: {extraction.errors[0]})", field="data.extract")
            by_split[split] = extraction.samples
            self.extraction_errors += extraction.errors
        return by_split

    def fit(self, seed: int, train_protocol: MissingnessProtocol, run_dir: Path, data: SharedData) -> FitInfo:
        if self.run_config.threads:
            torch.set_num_threads(self.run_config.threads)
        train_config = TrainConfig.from_dict({**self.run_config.train, "seed": seed,
                                              "train_protocol": train_protocol.to_dict(),
                                              "valid_protocol": _selection_protocol(self.run_config.train,
                                                                                    train_protocol)})
        model, result = train_seed(self.name, self.run_config.model_options, train_config, self._samples(data),
                                   dataset=data.dataset, out_dir=run_dir, device=self.run_device, resume=True)
        info = finished_record(run_dir / FIT_FILE, FIT_KEYS)   # finished: keep the figures of the run that trained it
        if info is None:
            info = {"wall_time_s": result.wall_time_s, "peak_memory_mb": peak_memory_mb(),
                    "peak_memory_scope": peak_memory_scope(), "valid_mae": result.valid_metrics.get("mae")}
            write_json(run_dir / FIT_FILE, info)
        self._model = (str(run_dir), model)
        extra = {"best_valid_mae": info["valid_mae"]}
        if data.media_features is not None:   # trained and selected without the clips that failed to extract
            write_jsonl(run_dir / EXTRACTION_ERRORS_FILE, [error_row(e) for e in self.extraction_errors])
            extra["extraction_errors"] = len(self.extraction_errors)
        return FitInfo(checkpoint=str(run_dir), trainable=trainable_summary(model),
                       wall_time_s=info["wall_time_s"], peak_memory_mb=info["peak_memory_mb"],
                       peak_memory_scope=info["peak_memory_scope"], extra=extra, device=str(self.run_device))

    def evaluate(self, fit: FitInfo, protocol: MissingnessProtocol, data: SharedData,
                 out_path: Path) -> EvalResult | None:
        if self._model is None or self._model[0] != fit.checkpoint:
            raise RuntimeError(f"{self.name}: evaluate() before fit() for {fit.checkpoint}")
        model = self._model[1]
        samples, errors = self._eval_samples(protocol, data, out_path)
        batch_size = self.eval_batch_size      # the comparison's, so latencies are per sample at one batch size
        device = self.run_device
        evaluate(model, samples[:batch_size], dataset=data.dataset, protocol=MissingnessProtocol(),
                 batch_size=batch_size, device=device)     # warm-up, untimed
        started = time.perf_counter()
        result = evaluate(model, samples, dataset=data.dataset, protocol=protocol, batch_size=batch_size,
                          device=device, masked_at_media=data.media_features is not None)
        return EvalResult(ids=result.ids, labels=result.labels, preds=result.preds, latency_ms=result.latency_ms,
                          errors=errors, eval_time_s=time.perf_counter() - started, device=str(device))

    def _eval_samples(self, protocol: MissingnessProtocol, data: SharedData, out_path: Path
                      ) -> tuple[list[Sample], int]:
        """The evaluation split's feature samples under `protocol` and how many clips failed: extracted
        from the media `protocol` damages (the failures listed in the errors file beside `out_path`),
        or the feature file's."""
        if data.media_features is None:
            return self._samples(data)[data.evaluate_on], 0
        extraction = data.media_features.extract(data.eval_samples, protocol)
        errors_file = errors_path_for(out_path)
        write_jsonl(errors_file, [error_row(e) for e in extraction.errors])
        if not extraction.samples:
            raise DataError(f"{self.name}: no {data.evaluate_on} clip could be extracted under {protocol.label}",
                            field="data.extract", source=errors_file)
        if extraction.errors:
            logger.warning("%s under %s: %d clips failed to extract, listed in %s", self.name, protocol.label,
                           len(extraction.errors), errors_file)
        return extraction.samples, len(extraction.errors)

    def release(self) -> None:
        self._model = None


def _selection_protocol(train: dict[str, Any], protocol: MissingnessProtocol) -> dict[str, Any] | None:
    """The valid protocol of a fit: the model config's own, unless the comparison trains on a fixed
    modality set, which the model is then selected on too."""
    return protocol.selection_protocol.to_dict() if protocol.keep is not None else train.get("valid_protocol")


def classic_contenders(cfg: CompareConfig, device: str | torch.device | None = None) -> list[ClassicContender]:
    """The classic models of a comparison, on `device` (default: the omni readouts' device)."""
    return [ClassicContender(spec, cfg.eval_batch_size, device) for spec in cfg.classic]
