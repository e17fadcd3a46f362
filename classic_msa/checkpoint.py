"""Checkpoint files: weights and nested states as safetensors (no pickle anywhere).

A nested state (an optimizer's `state_dict`, the trainer's counters) is split into its tensors
and the rest, which is JSON with each tensor replaced by a reference and goes into the same
safetensors file's metadata, so one atomic write holds the whole state. Dicts with non-string
keys (optimizer states are keyed by int) and tuples are tagged so they come back as they were.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

_TENSOR, _ITEMS, _TUPLE = "__tensor__", "__items__", "__tuple__"
_STATE_KEY = "state_json"


def save_weights(model: nn.Module, path: str | Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _atomic(Path(path), lambda tmp: save_file(state, str(tmp)))


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load weights saved by `save_weights`; missing or unexpected keys are an error."""
    state = load_file(str(path))
    model.load_state_dict(state, strict=True)


def save_state(path: str | Path, state: Any) -> None:
    """Write a nested state (tensors, numbers, strings, lists, dicts, tuples) to one file."""
    tensors: dict[str, torch.Tensor] = {}
    encoded = json.dumps(_encode(state, tensors))
    _atomic(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata={_STATE_KEY: encoded}))


def load_state(path: str | Path) -> Any:
    with safe_open(str(path), framework="pt") as handle:
        encoded = json.loads(handle.metadata()[_STATE_KEY])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    return _decode(encoded, tensors)


def write_json(path: str | Path, obj: Any) -> None:
    _atomic(Path(path), lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = obj.detach().cpu().contiguous()
        return {_TENSOR: key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {_ITEMS: [[k, _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {_TUPLE: [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint state")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR}:
            return tensors[obj[_TENSOR]]
        if set(obj) == {_ITEMS}:
            return {k: _decode(v, tensors) for k, v in obj[_ITEMS]}
        if set(obj) == {_TUPLE}:
            return tuple(_decode(v, tensors) for v in obj[_TUPLE])
        return {k: _decode(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


def _atomic(path: Path, write) -> None:
    """Write via a temporary file and rename, so an interrupted save never leaves a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    write(tmp)
    os.replace(tmp, path)
