"""Read pickles of plain data (MMSA and MMSA-FET feature files) without running code.

A pickle may name any importable global and call it while loading; that is how a pickle someone
sent you runs their code. `safe_load` resolves only the globals plain data needs: the builtin
containers and scalars pickle cannot write as opcodes (sets, bytes and bytearrays under old
protocols, complex numbers) and numpy's array, dtype and scalar reconstruction, under numpy 1.x
(`numpy.core`) and numpy 2.x (`numpy._core`) names, for pickle protocols 0-5. Every other global
is refused with `UnsafePickleError`, before it is imported or called.
"""

from __future__ import annotations

import builtins
import codecs
import importlib
import pickle
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

_BUILTIN_NAMES: tuple[str, ...] = ("set", "frozenset", "bytes", "bytearray", "complex")
_NUMPY_INTERNALS: dict[str, str] = {"_reconstruct": "multiarray", "scalar": "multiarray", "_frombuffer": "numeric"}
"""numpy's array and scalar reconstruction functions and the `numpy.core` submodule that holds each."""


def _numpy_internal(submodule: str, name: str) -> Callable[..., Any]:
    """`name` from numpy's private core package, `numpy._core` (numpy 2) or `numpy.core` (numpy 1)."""
    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"this numpy ({np.__version__}) has no {submodule}.{name}")


@cache
def allowed_globals() -> Mapping[tuple[str, str], Any]:
    """The globals `safe_load` resolves, by the (module, name) a pickle names them with (read-only)."""
    allowed: dict[tuple[str, str], Any] = {}
    for name in _BUILTIN_NAMES:
        for module in ("builtins", "__builtin__"):  # protocols 3-5 and 0-2
            allowed[(module, name)] = getattr(builtins, name)
    allowed[("_codecs", "encode")] = codecs.encode  # bytes under protocols 0-2
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    for name, submodule in _NUMPY_INTERNALS.items():
        function = _numpy_internal(submodule, name)
        for package in ("numpy.core", "numpy._core"):
            allowed[(f"{package}.{submodule}", name)] = function
    return MappingProxyType(allowed)


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle named a global outside `allowed_globals()`; nothing of it was imported or called."""

    def __init__(self, global_name: str, source: str | Path | None) -> None:
        self.global_name = global_name
        self.source = str(source) if source is not None else None
        self.reason = (f"refused to load the global {global_name!r}: only builtin containers and numpy "
                       "arrays, dtypes and scalars may be unpickled (loading anything else could run code)")
        if global_name.startswith("torch."):
            self.reason += "; this file holds torch objects: store numpy arrays (MMSA-FET: return_type='np')"
        super().__init__(f"{self.source}: {self.reason}" if self.source else self.reason)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only `allowed_globals()`; `source` names the file in errors."""

    def __init__(self, file: Any, *, source: str | Path | None = None) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return allowed_globals()[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"{module}.{name}", self.source) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"{self.source}: persistent ids are not supported (got {pid!r})")


def safe_load(path: str | Path) -> Any:
    """The object pickled in `path`, refusing every global plain data does not need.

    Raises `UnsafePickleError` (a `pickle.UnpicklingError`) naming the file and the refused
    `module.name`; any other malformed pickle raises what unpickling raises.
    """
    path = Path(path)
    with path.open("rb") as handle:
        return RestrictedUnpickler(handle, source=path).load()
