"""YAML config files and `section.key=value` command-line overrides, for every entry script."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-3` (no dot) as a string; this loader reads it as a float."""


_FLOAT = re.compile(r"""^[-+]?(?:
    [0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?    # 1.5, 1.5e-3, 2.
    |[0-9][0-9_]*[eE][-+]?[0-9]+                # 5e-4
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?              # .5
)$""", re.X)
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of `config` with `a.b.c=value` overrides applied; values are parsed as YAML. A section
    that is absent or null is created."""
    config = copy.deepcopy(config)
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key:
            raise ValueError(f"override {override!r} is not key=value")
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            if node.get(part) is None:      # an absent or `null` section (e.g. `train_protocol: null`)
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ValueError(f"override {override!r}: {part!r} is not a section")
        node[leaf] = parse_yaml(raw)
    return config


def load_yaml_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """A config file as a dict, with overrides applied."""
    raw = parse_yaml(Path(path).read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return apply_overrides(raw, overrides or [])
