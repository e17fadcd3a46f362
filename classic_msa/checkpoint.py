"""Checkpoint files of classic models: weights as safetensors, nested states in the trainer-state
format both families share (`omni_msa.state_file`); no pickle anywhere."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from omni_msa.files import atomic_write, write_json
from omni_msa.state_file import load_state, save_state

__all__ = ["load_state", "load_weights", "save_state", "save_weights", "write_json"]


def save_weights(model: nn.Module, path: str | Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, str(tmp)))


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load weights saved by `save_weights`; missing or unexpected keys are an error."""
    state = load_file(str(path))
    model.load_state_dict(state, strict=True)
