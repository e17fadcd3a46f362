"""Checkpoint files (design.md section 7): readout config, adapter, head, trainer state, metrics.

The base model is never saved (a GGUF base cannot be re-saved, and a 7B base is not ours to
copy); the config points back at it. Trainable weights are saved twice on purpose: as a peft
adapter (`adapter/`, loadable by peft alone) and, with the head, as one safetensors file that
restores every trainable tensor exactly. The trainer state (counters, optimizer, scheduler, RNG)
is one `omni_msa.state_file` file, the format classic models use too: nothing in a checkpoint
is a pickle, so opening one runs no code.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from omni_msa.files import read_json, write_json
from omni_msa.state_file import load_state, save_state

CONFIG_FILE = "readout_config.json"
TRAINABLE_FILE = "trainable.safetensors"
HEAD_FILE = "head.safetensors"
ADAPTER_DIR = "adapter"
TRAINER_STATE_DIR = "trainer_state"
TRAINER_STATE_FILE = "state.safetensors"
LEGACY_TRAINER_STATE_FILE = "optimizer_scheduler_rng.pt"
"""The torch pickle earlier versions wrote; refused, never unpickled."""
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
    """Write a checkpoint atomically: into a temporary sibling, then renamed over `directory`.

    `trainer_state` holds the trainer's counters and, under "tensors", the optimizer, scheduler
    and RNG states; `load_trainer_state` gives the two parts back.
    """
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write_json(tmp / CONFIG_FILE, config)
    save_file(trainable_state(readout), str(tmp / TRAINABLE_FILE))
    head = getattr(readout, "head", None)
    if head is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, str(tmp / HEAD_FILE))
    backbone = readout.backbone
    if hasattr(backbone, "save_pretrained"):
        backbone.save_pretrained(str(tmp / ADAPTER_DIR))
    if metrics is not None:
        write_json(tmp / METRICS_FILE, metrics)
    if trainer_state is not None:
        counters = {key: value for key, value in trainer_state.items() if key != "tensors"}
        save_state(tmp / TRAINER_STATE_DIR / TRAINER_STATE_FILE,
                   {"state": counters, "tensors": trainer_state["tensors"]})
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    if old.exists():
        shutil.rmtree(old)


def load_trainer_state(directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The trainer's counters and the "tensors" part (optimizer, scheduler, RNG) `save_checkpoint` wrote."""
    state_dir = Path(directory) / TRAINER_STATE_DIR
    path = state_dir / TRAINER_STATE_FILE
    if not path.is_file():
        if (state_dir / LEGACY_TRAINER_STATE_FILE).exists():
            raise ValueError(f"{state_dir / LEGACY_TRAINER_STATE_FILE}: trainer state in the old torch-pickle "
                             "format, which is never loaded (unpickling it could run code); resume from a "
                             "checkpoint written by this version, or start the run again")
        raise FileNotFoundError(f"{directory} has no trainer state ({TRAINER_STATE_DIR}/{TRAINER_STATE_FILE})")
    stored = load_state(path)
    if not isinstance(stored, dict) or set(stored) != {"state", "tensors"}:
        raise ValueError(f"{path}: not a trainer state (expected the keys 'state' and 'tensors')")
    return stored["state"], stored["tensors"]


def load_weights(directory: Path, readout: nn.Module) -> None:
    load_trainable_state(readout, load_file(str(directory / TRAINABLE_FILE)))


def read_config(directory: Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a checkpoint: {CONFIG_FILE} missing")
    return read_json(path)


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
