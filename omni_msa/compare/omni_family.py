"""The omni family: one contender per readout, all built from one shared run config.

Each trained readout is an ordinary `omni_msa.train` run (so it resumes after a kill), scored
with the batch scorer (`omni_msa.score.score_file`: sharded under accelerate, resumable,
per-sample latency, an errors file). The zero-shot readout is the generative readout on the
bare backbone. A run is finished when its `train_summary.json` (written last by training) reads
as a complete summary; otherwise training is started again and resumes from its last checkpoint.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np

from omni_msa.backbone import BackboneConfig
from omni_msa.compare.config import CompareConfig, ReadoutSpec
from omni_msa.compare.family import EvalResult, FitInfo, SharedData, finished_record, process_device, with_data
from omni_msa.config import OmniRunConfig, config_from_dict
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.record import MODALITIES, DataError
from omni_msa.readouts import get_readout
from omni_msa.scoring_io import errors_path_for, read_predictions

TRAIN_SUMMARY = "train_summary.json"
# what a finished run's summary must hold for the grid to reuse it
SUMMARY_KEYS = ("trainable", "wall_time_s", "peak_memory_mb", "steps", "best_valid_mae")


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for section, values in overrides.items():
        out[section] = {**out.get(section, {}), **values}
    return out


class OmniReadout:
    family = "omni"

    def __init__(self, spec: ReadoutSpec, cfg: CompareConfig) -> None:
        self.spec = spec
        self.name = spec.name
        self.checkpoint_choice = cfg.omni_checkpoint
        self.eval_batch_size = cfg.eval_batch_size
        self.raw = _merged(cfg.omni_base, spec.overrides)
        self.raw["readout"] = {**self.raw.get("readout", {}), "kind": spec.name}
        self.eval_protocols = cfg.omni.eval_protocols
        self.modalities = MODALITIES if BackboneConfig(**self.raw["backbone"]).spec.multimodal else ("text",)
        reads = get_readout(spec.name).reads
        # a readout that scores the model another one trains: that one's training, as this comparison configures it
        self.trainer = (OmniReadout(next((r for r in cfg.readouts if r.name == reads), ReadoutSpec(reads)), cfg)
                        if reads and not spec.zero_shot else None)
        self._loaded: tuple[str, Any, OmniRunConfig] | None = None
        self._zero_shot_cfg: OmniRunConfig | None = None

    def settings(self, data: SharedData | None = None) -> dict[str, Any]:
        settings = copy.deepcopy(self.raw)
        settings["zero_shot"] = self.spec.zero_shot
        if self.spec.zero_shot:        # nothing is trained: optimisation settings do not apply
            settings.pop("optim", None)
        else:
            settings["checkpoint"] = self.checkpoint_choice
        if self.trainer is not None:
            settings["optim"] = copy.deepcopy(self.trainer.raw.get("optim", {}))
            settings["trained_by"] = self.trainer.name
        return with_data(settings, data, features=False)

    def training(self, data: SharedData) -> tuple[str, dict[str, Any]]:
        """The run this contender's fit trains or reuses: its own, or that of the readout it reads."""
        if self.trainer is not None:
            return self.trainer.training(data)
        return self.name, self.settings(data)

    def run_config(self, seed: int, train_protocol: MissingnessProtocol, run_dir: Path,
                   data: SharedData) -> OmniRunConfig:
        raw = copy.deepcopy(self.raw)
        raw["optim"] = {**raw.get("optim", {}), "seed": seed}
        raw["output_dir"] = str(run_dir)
        raw["media_cache_dir"] = data.media_cache_dir
        raw["data"] = {"dataset": data.dataset, "train": data.manifest["train"], "valid": data.manifest["valid"],
                       "skip_invalid": data.skip_invalid, "dev_fraction": data.dev_fraction, "dev_seed": data.dev_seed}
        raw["train_missing"] = train_protocol.to_dict()
        raw["eval_missing"] = train_protocol.selection_protocol.to_dict()
        return config_from_dict(raw)

    def fit(self, seed: int, train_protocol: MissingnessProtocol, run_dir: Path, data: SharedData) -> FitInfo:
        if self.trainer is not None:
            # the trained model's curve and selection residuals are the trainer's readout's, not this one's
            fit = self.trainer.fit(seed, train_protocol, run_dir, data)
            fit.extra = {k: v for k, v in fit.extra.items() if k not in ("curve", "calibration_residuals")}
            return fit
        cfg = self.run_config(seed, train_protocol, run_dir, data)
        device = str(process_device())
        if self.spec.zero_shot:
            self._zero_shot_cfg = cfg
            return FitInfo(checkpoint=None, trainable={"trainable": 0, "total": None, "share": 0.0},
                           wall_time_s=0.0, peak_memory_mb=None, device=device)
        summary = finished_record(run_dir / TRAIN_SUMMARY, SUMMARY_KEYS)
        if summary is None:
            from omni_msa.train import train

            summary = train(cfg, show_progress=True)
        checkpoint = run_dir / ("checkpoint-best" if self.checkpoint_choice == "best" else "checkpoint-last")
        return FitInfo(checkpoint=str(checkpoint), trainable=summary["trainable"], wall_time_s=summary["wall_time_s"],
                       peak_memory_mb=summary["peak_memory_mb"], peak_memory_scope=summary.get("peak_memory_scope"),
                       extra={"train_steps": summary["steps"], "best_valid_mae": summary["best_valid_mae"],
                              "skipped_invalid": len(summary.get("skipped_invalid", [])),
                              "selected_on": summary.get("selected_on", "valid"), "curve": selection_curve(summary),
                              "calibration_residuals": summary.get("best_residuals", [])},
                       device=device)

    def _scorer(self, fit: FitInfo, data: SharedData) -> tuple[Any, OmniRunConfig]:
        """The readout to score with: the fitted checkpoint reloaded, or the bare backbone."""
        from omni_msa.score import load_scorer, zero_shot_scorer

        key = fit.checkpoint or "zero-shot"
        if self._loaded is None or self._loaded[0] != key:
            self.release()
            if fit.checkpoint is None:
                if self._zero_shot_cfg is None:
                    raise RuntimeError(f"{self.name}: evaluate() before fit()")
                assembled, cfg = zero_shot_scorer(self._zero_shot_cfg), self._zero_shot_cfg
            else:
                assembled, cfg = load_scorer(fit.checkpoint, self.raw["readout"])
            self._warm_up(assembled, data)
            self._loaded = (key, assembled, cfg)
        return self._loaded[1], self._loaded[2]

    def _warm_up(self, assembled: Any, data: SharedData) -> None:
        """One untimed batch, so one-off costs (lazy initialisation, allocator growth) stay out
        of the latency figures."""
        protocol = MissingnessProtocol()
        items = []
        for sample in data.eval_samples:
            if len(items) == self.eval_batch_size:
                break
            try:
                items.append(assembled.builder.prepare(sample, protocol.draw(sample.id)))
            except DataError:     # scoring records it in the errors file; here it is only skipped
                continue
        if not items:
            return
        from omni_msa.prediction import predict_samples
        from omni_msa.score import place_on

        device = process_device()
        place_on(assembled.readout, device)
        predict_samples(assembled, [i for i in items if i.group == items[0].group], len(items), device)

    def evaluate(self, fit: FitInfo, protocol: MissingnessProtocol, data: SharedData,
                 out_path: Path) -> EvalResult | None:
        from omni_msa.score import score_file

        assembled, cfg = self._scorer(fit, data)
        started = time.perf_counter()
        summary = score_file(assembled, cfg, data.eval_samples, out_path, protocol=protocol,
                             batch_size=self.eval_batch_size)
        if summary is None:
            return None
        rows = read_predictions(out_path)
        errors_file = errors_path_for(out_path)
        errors = len(read_predictions(errors_file)) if errors_file.is_file() else 0
        return EvalResult(ids=[r["id"] for r in rows], labels=np.array([r["label"] for r in rows]),
                          preds=np.array([r["pred"] for r in rows]),
                          latency_ms=np.array([r["latency_ms"] for r in rows]),
                          statuses=[r["status"] for r in rows] if get_readout(self.spec.name).parsed else None,
                          errors=errors, predictions=str(out_path), eval_time_s=time.perf_counter() - started,
                          device=str(process_device()), extra=_extras(rows))

    def release(self) -> None:
        self._loaded = None


def _extras(rows: list[dict[str, Any]]) -> dict[str, np.ndarray] | None:
    """The per-sample extras every prediction row holds (None when there are none)."""
    keys = set.intersection(*(set(r.get("extra") or {}) for r in rows)) if rows else set()
    return {k: np.array([r["extra"][k] for r in rows]) for k in sorted(keys)} or None


def selection_curve(summary: dict[str, Any]) -> list[list[float]]:
    """[[step, MAE], ...] of every validation on the selection split (the learning curve)."""
    return [[row["step"], row["mae"]] for row in summary.get("history", []) if row.get("split") == "valid"]


def omni_contenders(cfg: CompareConfig) -> list[OmniReadout]:
    return [OmniReadout(spec, cfg) for spec in cfg.readouts]
