"""The one trainer-state file of both families: a nested state in one safetensors file, no pickle.

A state (an optimizer's or scheduler's `state_dict`, RNG states, the trainer's counters) is split
into its arrays and the rest. Torch tensors and numpy arrays become the file's tensors; the rest
is JSON, stored in the same file's metadata with each array replaced by a reference, so one
atomic write holds the whole state. Tags keep what JSON cannot say: dicts with non-string keys
(optimizer states are keyed by int), tuples (Python's and numpy's RNG states), numpy arrays
(numpy's RNG key) and non-finite floats (a best-so-far of inf). Loading parses JSON and copies
tensor bytes; nothing in the file can name code to run. Anything else (a function, an object)
cannot be stored: saving it is an error naming where in the state it sits.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from omni_msa.files import atomic_write

STATE_KEY = "state_json"
"""The metadata entry that holds the JSON part."""

_TENSOR, _NDARRAY, _ITEMS, _TUPLE, _FLOAT = "__tensor__", "__ndarray__", "__items__", "__tuple__", "__float__"
_TAGS = frozenset({_TENSOR, _NDARRAY, _ITEMS, _TUPLE, _FLOAT})
_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def save_state(path: str | Path, state: Any) -> None:
    """Write a nested state (torch tensors, numpy arrays, numbers, strings, None, and lists,
    tuples and dicts of them) to one file, atomically."""
    tensors: dict[str, torch.Tensor] = {}
    encoded = json.dumps(_encode(state, tensors, "state"), allow_nan=False)
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={STATE_KEY: encoded}))


def load_state(path: str | Path) -> Any:
    """The state `save_state` wrote, with tensors on the CPU."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except SafetensorError as exc:
        raise ValueError(f"{path}: not a state file (safetensors: {exc})") from None
    if STATE_KEY not in metadata:
        raise ValueError(f"{path}: not a state file (no {STATE_KEY!r} in its metadata)")
    try:
        return _decode(json.loads(metadata[STATE_KEY]), tensors)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: damaged state: {exc}") from None


def _encode(obj: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    if isinstance(obj, torch.Tensor):
        return {_TENSOR: _add(tensors, obj.detach().cpu().contiguous())}
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject or obj.dtype.kind not in "biuf":
            raise TypeError(f"cannot store a numpy array of dtype {obj.dtype} at {where}")
        return {_NDARRAY: _add(tensors, torch.from_numpy(np.ascontiguousarray(obj)).clone())}
    if isinstance(obj, np.generic):
        return _encode(obj.item(), tensors, where)
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not _TAGS & obj.keys():
            return {k: _encode(v, tensors, f"{where}[{k!r}]") for k, v in obj.items()}
        return {_ITEMS: [[_encode(k, tensors, f"{where} key"), _encode(v, tensors, f"{where}[{k!r}]")]
                         for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {_TUPLE: [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, float) and not math.isfinite(obj):
        return {_FLOAT: repr(float(obj))}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} at {where}: a state holds only tensors, numpy arrays, "
                    "numbers, strings, None, and lists, tuples and dicts of them")


def _add(tensors: dict[str, torch.Tensor], tensor: torch.Tensor) -> str:
    key = str(len(tensors))
    tensors[key] = tensor
    return key


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1 and not _TAGS.isdisjoint(obj):
        (tag, value), = obj.items()
        if tag == _TENSOR:
            return tensors[value]
        if tag == _NDARRAY:
            return tensors[value].numpy()
        if tag == _ITEMS:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in value}
        if tag == _TUPLE:
            return tuple(_decode(v, tensors) for v in value)
        return _NON_FINITE[value]
    return {k: _decode(v, tensors) for k, v in obj.items()}
