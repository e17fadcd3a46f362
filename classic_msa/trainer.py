"""The generic trainer for feature-level models.

AdamW (weight decay only on parameters with ndim >= 2, the rule of `omni_msa.optim`), warm-up
then cosine or plateau schedule per stage, gradient clipping, early stopping and checkpoint
selection on valid MAE (never test), missingness during training (re-drawn per epoch) and
validation, multi-stage training, and exact resume.

Stages run in order. A stage freezes named parameter groups, enables loss terms with weights,
and gets a fresh optimizer and schedule. With `select_on_valid` it stops early after `patience`
epochs without a better valid MAE and hands its best weights to the next stage; without it
(e.g. a pre-training stage whose valid MAE means little) it runs all its epochs and hands over
the last weights.

Determinism: before every epoch torch is re-seeded from (seed, global epoch), the loader derives
its shuffle seed from the same pair and its masks from (protocol, global epoch) (the shared rules
of `omni_msa.seeding`), so an epoch's randomness does not depend on how the run got there. With
`out_dir` the trainer writes after every epoch: `trainer_state.safetensors` (weights, optimizer,
schedule, counters, history; one atomic file), `best.safetensors` (the stage's best weights, when
improved), and at the end `model.safetensors` (the selected weights) next to `config.json`.
`fit(resume=True)` continues from the state file and ends with the same weights as an
uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from omni_msa.config_layer import build, check_literals
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.record import Sample
from omni_msa.datasets import get_dataset
from omni_msa.optim import param_groups
from omni_msa.seeding import derive_seed

from classic_msa.checkpoint import load_state, load_weights, save_state, save_weights, write_json
from classic_msa.data import FeatureLoader
from classic_msa.evaluation import evaluate
from classic_msa.model import FeatureModel, build_model
from classic_msa.schedule import LRSchedule

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
BEST_FILE = "best.safetensors"
STATE_FILE = "trainer_state.safetensors"


@dataclass(frozen=True)
class Stage:
    """One training stage: which parameter groups it freezes and which loss terms it trains on."""

    name: str = "main"
    """Shown in logs and history records."""
    epochs: int = 30
    """Epochs of this stage (fewer with early stopping)."""
    frozen: list[str] = field(default_factory=list)
    """Named parameter groups (`FeatureModel.parameter_groups()`) held fixed during the stage."""
    losses: dict[str, float] | None = None
    """Loss-term names -> weights; terms not listed are off. None: the model's `default_loss_weights()`."""
    lr: float | None = None
    """The stage's learning rate; None: `TrainConfig.lr`."""
    select_on_valid: bool = True
    """Early stopping and best-epoch selection on valid MAE; False (e.g. a pre-training stage whose
    valid MAE means little) runs every epoch and hands the last weights to the next stage."""


@dataclass(frozen=True)
class TrainConfig:
    """Trainer settings (the `train` section of a classic run config)."""

    lr: float = 1e-3
    """AdamW learning rate of every group without its own (`group_lr`, `Stage.lr`)."""
    weight_decay: float = 0.01
    """AdamW weight decay, on parameters with ndim >= 2 only (`omni_msa.optim.param_groups`)."""
    batch_size: int = 32
    eval_batch_size: int = 256
    schedule: Literal["cosine", "plateau", "constant"] = "cosine"
    """Per stage: warm-up then cosine decay to `min_lr_ratio`, reduce-on-plateau of valid MAE, or constant."""
    warmup_ratio: float = 0.05
    """Share of each stage's steps spent warming up."""
    min_lr_ratio: float = 0.01
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    grad_clip: float = 1.0
    """Gradient-norm clipping; 0 disables it."""
    patience: int = 8
    """Epochs without a better valid MAE before a stage stops; 0 disables early stopping."""
    seed: int = 0
    """The run's seed (set per run from the run config's `seeds`); protocols without a seed take it."""
    group_lr: dict[str, float] = field(default_factory=dict)
    """Named parameter groups with a learning rate of their own."""
    train_protocol: dict[str, Any] | None = None
    """A `MissingnessProtocol` dict (None: complete data), re-drawn every epoch
    (`omni_msa.seeding.epoch_protocol`); e.g. {inter_rate: 0.3, intra_rate: uniform} is the LNLN regime."""
    valid_protocol: dict[str, Any] | None = None
    """The `MissingnessProtocol` dict of validation (None: complete data)."""
    stages: list[Stage] = field(default_factory=lambda: [Stage()])
    """The stages, run in order; each gets a fresh optimizer and schedule."""

    def __post_init__(self) -> None:
        check_literals(self)
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("batch sizes must be >= 1")
        if not self.stages or any(stage.epochs < 0 for stage in self.stages):
            raise ValueError("at least one stage is needed, each with epochs >= 0")
        self.protocol("train")
        self.protocol("valid")

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], *, at: str = "") -> TrainConfig:
        """A train config from a mapping (`at`: the section it sits in, for error messages)."""
        return build(cls, spec, at=at)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def protocol(self, which: str) -> MissingnessProtocol:
        """The "train" or "valid" missingness protocol (complete data when unset)."""
        spec = self.train_protocol if which == "train" else self.valid_protocol
        return build(MissingnessProtocol, {"seed": self.seed, **(spec or {})}, at=f"{which}_protocol")


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    valid_metrics: dict[str, float]
    wall_time_s: float


@dataclass
class _Progress:
    """Where training is; everything resume needs besides weights, optimizer and schedule."""

    stage: int = 0
    epoch: int = 0
    best_score: float = float("inf")   # the selection metric, signed so that lower is better
    best_epoch: int = -1
    bad_epochs: int = 0
    stopped: bool = False
    finished: bool = False
    wall_time_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


EpochCallback = Callable[[dict[str, Any]], None]


class Trainer:
    """Trains a `FeatureModel` (see the module docstring). `progress` shows tqdm bars."""

    def __init__(self, model: FeatureModel, config: TrainConfig, *, dataset: str,
                 out_dir: str | Path | None = None, progress: bool = False,
                 device: str | torch.device = "cpu") -> None:
        self.model = model.to(device)
        self.config = config
        self.dataset = dataset
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.device = device
        self.groups = _checked_groups(model)
        for stage in config.stages:
            unknown = sorted(set(stage.frozen) - set(self.groups))
            if unknown:
                raise ValueError(f"stage {stage.name!r} freezes unknown groups {unknown}; "
                                 f"{model.name} has {sorted(self.groups)}")
        unknown = sorted(set(config.group_lr) - set(self.groups))
        if unknown:
            raise ValueError(f"group_lr names unknown groups {unknown}; {model.name} has {sorted(self.groups)}")

    # --- public API ------------------------------------------------------------------------

    def run_config(self) -> dict[str, Any]:
        """What config.json holds: enough to rebuild the model and re-run the training."""
        return {"model": self.model.name, "model_config": self.model.config_dict(),
                "train": self.config.to_dict(), "dataset": self.dataset}

    def fit(self, train: Sequence[Sample], valid: Sequence[Sample], *, resume: bool = False,
            on_epoch_end: EpochCallback | None = None) -> FitResult:
        """Train on `train`, select on `valid`; `on_epoch_end` gets each history record."""
        progress = self._start(resume)
        if progress.stage == 0 and progress.epoch == 0:
            self.model.fit_statistics(train)
        cfg = self.config
        train_loader = FeatureLoader(train, batch_size=cfg.batch_size, protocol=cfg.protocol("train"),
                                     shuffle=True, redraw=True, seed=cfg.seed)
        valid_protocol = cfg.protocol("valid")
        started = time.perf_counter() - progress.wall_time_s
        resumed_optimizer = self._resume_state
        while progress.stage < len(cfg.stages):
            stage = cfg.stages[progress.stage]
            optimizer, schedule = self._begin_stage(stage, len(train_loader))
            if resumed_optimizer is not None:
                optimizer.load_state_dict(resumed_optimizer["optimizer"])
                schedule.load_state_dict(resumed_optimizer["schedule"])
                resumed_optimizer = None
            bar = tqdm(total=stage.epochs, initial=progress.epoch, desc=f"{self.model.name}:{stage.name}",
                       disable=not self.progress, leave=False)
            while progress.epoch < stage.epochs and not progress.stopped:
                global_epoch = sum(s.epochs for s in cfg.stages[:progress.stage]) + progress.epoch
                torch.manual_seed(derive_seed(cfg.seed, "torch", global_epoch))
                train_terms = self._train_epoch(train_loader, global_epoch, stage, optimizer, schedule)
                metrics = evaluate(self.model, valid, dataset=self.dataset, protocol=valid_protocol,
                                   batch_size=cfg.eval_batch_size, device=self.device).metrics
                score = self._selection_score(metrics)
                schedule.step_epoch(score)
                improved = self._track_best(progress, stage, score)
                record = {"stage": stage.name, "epoch": progress.epoch, "train": train_terms,
                          "valid": metrics, "lr": optimizer.param_groups[0]["lr"], "improved": improved}
                progress.history.append(record)
                progress.epoch += 1
                progress.wall_time_s = time.perf_counter() - started
                self._save_progress(progress, optimizer, schedule)
                selection = get_dataset(self.dataset).selection_metric
                logger.info("%s %s epoch %d: train %s | valid %s %.4f%s", self.model.name, stage.name,
                            record["epoch"], _fmt(train_terms), selection, metrics[selection], " *" if improved else "")
                bar.update(1)
                bar.set_postfix(loss=f"{train_terms['total']:.4f}", valid=f"{metrics[selection]:.4f}")
                if on_epoch_end is not None:
                    on_epoch_end(record)
            bar.close()
            self._end_stage(progress, stage)
        progress.finished = True
        self._set_frozen([])
        valid_metrics = evaluate(self.model, valid, dataset=self.dataset, protocol=valid_protocol,
                                 batch_size=cfg.eval_batch_size, device=self.device).metrics
        progress.wall_time_s = time.perf_counter() - started
        if self.out_dir is not None:
            save_weights(self.model, self.out_dir / MODEL_FILE)
            save_state(self.out_dir / STATE_FILE, {"progress": asdict(progress), "valid_metrics": valid_metrics})
        return FitResult(history=progress.history, valid_metrics=valid_metrics, wall_time_s=progress.wall_time_s)

    # --- stages and epochs -----------------------------------------------------------------

    def _begin_stage(self, stage: Stage, batches_per_epoch: int) -> tuple[torch.optim.Optimizer, LRSchedule]:
        self._set_frozen(stage.frozen)
        cfg = self.config
        groups = param_groups({name: params for name, params in self.groups.items() if name not in stage.frozen},
                              lr=stage.lr if stage.lr is not None else cfg.lr, weight_decay=cfg.weight_decay,
                              group_lr=cfg.group_lr)
        if not groups:
            raise ValueError(f"stage {stage.name!r} freezes every parameter")
        optimizer = torch.optim.AdamW(groups)
        total = stage.epochs * batches_per_epoch
        schedule = LRSchedule(optimizer, kind=cfg.schedule, total_steps=total,
                              warmup_steps=round(cfg.warmup_ratio * total), min_lr_ratio=cfg.min_lr_ratio,
                              plateau_factor=cfg.plateau_factor, plateau_patience=cfg.plateau_patience)
        return optimizer, schedule

    def _train_epoch(self, loader: FeatureLoader, global_epoch: int, stage: Stage,
                     optimizer: torch.optim.Optimizer, schedule: LRSchedule) -> dict[str, float]:
        weights = stage.losses if stage.losses is not None else self.model.default_loss_weights()
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        sums: dict[str, float] = defaultdict(float)
        seen = 0
        self.model.train()
        for batch in loader.epoch(global_epoch):
            out = self.model(batch.to(self.device))
            missing = sorted(set(weights) - set(out))
            if missing:
                raise KeyError(f"stage {stage.name!r} enables loss terms {missing} that {self.model.name} "
                               f"does not return (it returns {sorted(k for k in out if k != 'pred')})")
            total = sum(w * out[k] for k, w in weights.items() if w != 0)
            if not torch.is_tensor(total) or not torch.isfinite(total):
                raise FloatingPointError(f"non-finite training loss {total} in stage {stage.name!r}, "
                                         f"epoch {global_epoch}, batch starting with sample {batch.ids[0]!r}")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if self.config.grad_clip > 0:
                nn.utils.clip_grad_norm_(trainable, self.config.grad_clip)
            optimizer.step()
            schedule.step_batch()
            size = len(batch)
            seen += size
            sums["total"] += float(total.detach()) * size
            for name in weights:
                sums[name] += float(out[name].detach()) * size
        return {name: value / seen for name, value in sums.items()}

    def _selection_score(self, metrics: dict[str, float]) -> float:
        """The dataset's selection metric, negated where higher is better, so lower is better."""
        spec = get_dataset(self.dataset)
        value = metrics[spec.selection_metric]
        return value if spec.lower_is_better else -value

    def _track_best(self, progress: _Progress, stage: Stage, score: float) -> bool:
        if not stage.select_on_valid:
            return False
        if score < progress.best_score:
            progress.best_score, progress.best_epoch, progress.bad_epochs = score, progress.epoch, 0
            self._best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            if self.out_dir is not None:
                save_weights(self.model, self.out_dir / BEST_FILE)
            return True
        progress.bad_epochs += 1
        if self.config.patience and progress.bad_epochs >= self.config.patience:
            progress.stopped = True
        return False

    def _end_stage(self, progress: _Progress, stage: Stage) -> None:
        if stage.select_on_valid and progress.best_epoch >= 0:
            self.model.load_state_dict(self._best_weights)
            logger.info("%s %s: selected epoch %d (valid score %.4f)", self.model.name, stage.name,
                        progress.best_epoch, progress.best_score)
        progress.stage += 1
        progress.epoch, progress.best_score, progress.best_epoch = 0, float("inf"), -1
        progress.bad_epochs, progress.stopped = 0, False

    def _set_frozen(self, frozen: Sequence[str]) -> None:
        for name, params in self.groups.items():
            for p in params:
                p.requires_grad_(name not in frozen)

    # --- checkpoints -----------------------------------------------------------------------

    def _start(self, resume: bool) -> _Progress:
        self._best_weights: dict[str, torch.Tensor] = {}
        self._resume_state: dict[str, Any] | None = None
        if self.out_dir is None:
            if resume:
                raise ValueError("resume needs an out_dir")
            return _Progress()
        config_path, state_path = self.out_dir / CONFIG_FILE, self.out_dir / STATE_FILE
        if resume and state_path.is_file():
            saved = json.loads(config_path.read_text())
            if saved != json.loads(json.dumps(self.run_config())):
                raise ValueError(f"{config_path} differs from this run's config; cannot resume")
            state = load_state(state_path)
            progress = _Progress(**state["progress"])
            if progress.finished:
                load_weights(self.model, self.out_dir / MODEL_FILE)
            else:
                self.model.load_state_dict(state["model"])
                self._resume_state = {"optimizer": state["optimizer"], "schedule": state["schedule"]}
                if progress.best_epoch >= 0:
                    self._best_weights = load_file(str(self.out_dir / BEST_FILE))
            logger.info("resuming %s at stage %d, epoch %d", self.out_dir, progress.stage, progress.epoch)
            return progress
        if state_path.is_file() and not resume:
            raise FileExistsError(f"{self.out_dir} already holds a run; pass resume=True or use a new directory")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_json(config_path, self.run_config())
        return _Progress()

    def _save_progress(self, progress: _Progress, optimizer: torch.optim.Optimizer, schedule: LRSchedule) -> None:
        if self.out_dir is None:
            return
        save_state(self.out_dir / STATE_FILE, {
            "progress": asdict(progress),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
        })


def load_checkpoint(out_dir: str | Path, device: str | torch.device = "cpu") -> FeatureModel:
    """The selected model of a finished run: rebuilt from config.json, weights from model.safetensors."""
    out_dir = Path(out_dir)
    saved = json.loads((out_dir / CONFIG_FILE).read_text())
    model = build_model(saved["model"], saved["model_config"])
    load_weights(model, out_dir / MODEL_FILE)
    return model.to(device).eval()


def _checked_groups(model: FeatureModel) -> dict[str, list[nn.Parameter]]:
    """The model's parameter groups, checked to cover every parameter exactly once."""
    groups = model.parameter_groups()
    owner: dict[int, str] = {}
    for name, params in groups.items():
        for p in params:
            if id(p) in owner:
                raise ValueError(f"{model.name}: a parameter is in groups {owner[id(p)]!r} and {name!r}")
            owner[id(p)] = name
    orphans = [n for n, p in model.named_parameters() if id(p) not in owner]
    if orphans:
        raise ValueError(f"{model.name}: parameters in no group: {orphans[:5]}")
    return groups


def _fmt(terms: Mapping[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in terms.items())
