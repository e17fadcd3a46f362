"""Classic feature models as contenders of the comparison harness (omni_msa.compare.family).

The model, its options and its trainer settings come from the model's own YAML config; the
comparison supplies the data (the MMSA features of the same samples the omni readouts see),
the seed and the training protocol, which replaces the YAML's `train.train_protocol` so every
contender of a grid trains under the same missingness.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from omni_msa.compare.config import ClassicSpec, CompareConfig
from omni_msa.compare.family import EvalResult, FitInfo, SharedData
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.mmsa import read_mmsa_pickle
from omni_msa.data.record import Sample
from omni_msa.resources import peak_memory_mb, peak_memory_scope, reset_peak_memory

from classic_msa.checkpoint import write_json
from classic_msa.config import load_classic_config
from classic_msa.evaluation import evaluate
from classic_msa.experiment import input_dims
from classic_msa.model import FeatureModel, build_model
from classic_msa.seeding import seed_everything
from classic_msa.trainer import TrainConfig, Trainer

FIT_FILE = "fit.json"


class ClassicContender:
    family = "classic"

    def __init__(self, spec: ClassicSpec, eval_batch_size: int) -> None:
        self.run_config = load_classic_config(spec.config, spec.overrides)
        self.eval_batch_size = eval_batch_size
        self.name = self.run_config.model_name
        self._features: dict[str, list[Sample]] | None = None
        self._model: tuple[str, FeatureModel] | None = None

    def settings(self) -> dict[str, Any]:
        train = {k: v for k, v in self.run_config.train.items() if k != "train_protocol"}
        return {"model": self.run_config.model, "train": train}

    def _samples(self, data: SharedData) -> dict[str, list[Sample]]:
        """Feature samples per split, restricted to the ids of the comparison's samples."""
        if self._features is None:
            if data.features is None:
                raise ValueError(f"{self.name}: the comparison has no MMSA features (data.features)")
            loaded = read_mmsa_pickle(data.features, dataset=data.dataset, layout=data.features_layout,
                                      skip_invalid=data.skip_invalid)
            by_split: dict[str, list[Sample]] = {}
            for split, wanted in data.samples.items():
                ids = {s.id for s in wanted}
                by_split[split] = [s for s in loaded.samples if s.split == split and s.id in ids]
                missing = ids - {s.id for s in by_split[split]}
                if missing:
                    raise ValueError(f"{data.features}: no features for {len(missing)} {split} samples of the "
                                     f"comparison, e.g. {sorted(missing)[:3]}")
            self._features = by_split
        return self._features

    def fit(self, seed: int, train_protocol: MissingnessProtocol, run_dir: Path, data: SharedData) -> FitInfo:
        if self.run_config.threads:
            torch.set_num_threads(self.run_config.threads)
        splits = self._samples(data)
        seed_everything(seed)
        model = build_model(self.name, input_dims(self.name, self.run_config.model_options, splits["train"]))
        train_config = TrainConfig.from_dict({**self.run_config.train, "seed": seed,
                                              "train_protocol": train_protocol.to_dict()})
        fit_path = run_dir / FIT_FILE
        reset_peak_memory()
        trainer = Trainer(model, train_config, dataset=data.dataset, out_dir=run_dir)
        result = trainer.fit(splits["train"], splits["valid"], resume=True)
        if fit_path.is_file():          # a finished run: keep the figures of the run that trained it
            info = json.loads(fit_path.read_text())
        else:
            info = {"wall_time_s": result.wall_time_s, "peak_memory_mb": peak_memory_mb(),
                    "peak_memory_scope": peak_memory_scope(), "valid_mae": result.valid_metrics["mae"]}
            write_json(fit_path, info)
        self._model = (str(run_dir), model)
        n = model.n_params(trainable_only=True)
        return FitInfo(checkpoint=str(run_dir), trainable={"trainable": n, "total": model.n_params(), "share": 1.0},
                       wall_time_s=info["wall_time_s"], peak_memory_mb=info["peak_memory_mb"],
                       peak_memory_scope=info["peak_memory_scope"], extra={"best_valid_mae": info["valid_mae"]})

    def evaluate(self, fit: FitInfo, protocol: MissingnessProtocol, data: SharedData,
                 out_path: Path) -> EvalResult | None:
        if self._model is None or self._model[0] != fit.checkpoint:
            raise RuntimeError(f"{self.name}: evaluate() before fit() for {fit.checkpoint}")
        model = self._model[1]
        samples = self._samples(data)[data.evaluate_on]
        batch_size = self.eval_batch_size      # the comparison's, so latencies are per sample at one batch size
        evaluate(model, samples[:batch_size], dataset=data.dataset, protocol=MissingnessProtocol(),
                 batch_size=batch_size)     # warm-up, untimed
        started = time.perf_counter()
        result = evaluate(model, samples, dataset=data.dataset, protocol=protocol, batch_size=batch_size)
        return EvalResult(ids=result.ids, labels=result.labels, preds=result.preds, latency_ms=result.latency_ms,
                          eval_time_s=time.perf_counter() - started)

    def release(self) -> None:
        self._model = None


def classic_contenders(cfg: CompareConfig) -> list[ClassicContender]:
    return [ClassicContender(spec, cfg.eval_batch_size) for spec in cfg.classic]
