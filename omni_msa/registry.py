"""One registry shape for every extension point (datasets, backbones, readouts, classic models).

Entries register themselves when their module is imported; a registry that names a package
imports every module of it before its first lookup, so the built-in entries need no
hand-written list and a new one is one module in that package (or a `register` call in the
user's code). Light: no torch.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str, package: str | None = None) -> None:
        self.what = what                # "dataset", "backbone kind", ... for messages
        self.package = package
        self._entries: dict[str, T] = {}
        self._discovered = package is None

    def register(self, name: str, entry: T) -> T:
        """Add `entry` under `name`; a different entry under a taken name is refused."""
        if name in self._entries and self._entries[name] != entry:
            raise ValueError(f"{self.what} {name!r} is registered already")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        self._discover()
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(f"unknown {self.what} {name!r}; known: {self.names()}") from None

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{self.package}.{module.name}")
