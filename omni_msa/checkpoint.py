"""Checkpoint files (design.md section 7): readout config, adapter, head, trainer state, metrics.

The base model is never saved (a GGUF base cannot be re-saved, and a 7B base is not ours to
copy); the config points back at it. Trainable weights are saved twice on purpose: as a peft
adapter (`adapter/`, loadable by peft alone) and, with the head, as one safetensors file that
restores every trainable tensor exactly.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

CONFIG_FILE = "readout_config.json"
TRAINABLE_FILE = "trainable.safetensors"
HEAD_FILE = "head.safetensors"
ADAPTER_DIR = "adapter"
TRAINER_STATE_DIR = "trainer_state"
METRICS_FILE = "metrics.json"


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().contiguous() for name, p in module.named_parameters() if p.requires_grad}


def load_trainable_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(module.named_parameters())
    missing = {name for name, p in params.items() if p.requires_grad} - set(state)
    unknown = set(state) - set(params)
    if missing or unknown:
        raise ValueError(f"checkpoint does not match the model: missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(unknown)[:5]}")
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))


def save_checkpoint(directory: Path, readout: nn.Module, config: dict[str, Any], metrics: dict[str, Any] | None,
                    trainer_state: dict[str, Any] | None = None) -> None:
    """Write a checkpoint atomically: into a temporary sibling, then renamed over `directory`."""
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str))
    save_file(trainable_state(readout), str(tmp / TRAINABLE_FILE))
    head = getattr(readout, "head", None)
    if head is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, str(tmp / HEAD_FILE))
    backbone = readout.backbone
    if hasattr(backbone, "save_pretrained"):
        backbone.save_pretrained(str(tmp / ADAPTER_DIR))
    if metrics is not None:
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    if trainer_state is not None:
        state_dir = tmp / TRAINER_STATE_DIR
        state_dir.mkdir()
        tensors = trainer_state.pop("tensors")
        torch.save(tensors, state_dir / "optimizer_scheduler_rng.pt")
        (state_dir / "state.json").write_text(json.dumps(trainer_state, indent=2))
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    if old.exists():
        shutil.rmtree(old)


def load_trainer_state(directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    state_dir = directory / TRAINER_STATE_DIR
    state = json.loads((state_dir / "state.json").read_text())
    tensors = torch.load(state_dir / "optimizer_scheduler_rng.pt", weights_only=False)
    return state, tensors


def load_weights(directory: Path, readout: nn.Module) -> None:
    load_trainable_state(readout, load_file(str(directory / TRAINABLE_FILE)))


def read_config(directory: Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a checkpoint: {CONFIG_FILE} missing")
    return json.loads(path.read_text())


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
