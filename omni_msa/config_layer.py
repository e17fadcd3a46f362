"""One config layer for both model families and the comparison harness.

A config is a tree of (frozen) dataclasses whose field types say what a value may be. `build(cls, raw)`
turns a parsed YAML mapping into that tree: nested dataclasses, Optional and other unions, `list`,
`tuple`, `frozenset`, `dict`, `Literal`, `bool`/`int`/`float`/`str` (an int is accepted for a float)
and `Any`. A key a dataclass does not have is refused with its dotted path and the file:

    scripts/configs/x.yaml: unknown key 'optim.lrr' (known: batch_size, epochs, ...)

Validation beyond types lives in each dataclass's `__post_init__`; its `ValueError`s come back as
`ConfigError`s naming the file and the section. `load(cls, path, overrides)` reads a YAML file with
`section.key=value` overrides (`omni_msa.yaml_config`) and builds it. A field whose items may be
written as one scalar (a readout given by its name) says so with `field(metadata={SHORTHAND: "name"})`.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from omni_msa.yaml_config import load_yaml_config

T = TypeVar("T")
DICT_SOURCE = "<dict>"
SHORTHAND = "config_shorthand"   # field metadata: a scalar item stands for {<this key>: scalar}
_NONE = type(None)


class ConfigError(ValueError):
    """A wrong config key or value; the message names the source file (or `<dict>`) and the dotted key."""

    def __init__(self, detail: str, *, key: str = "", source: str = DICT_SOURCE,
                 known: Sequence[str] | None = None) -> None:
        self.detail, self.key, self.source = detail, key, source
        self.known = None if known is None else list(known)
        super().__init__(self._render())

    def _render(self) -> str:
        if self.known is not None:
            return f"{self.source}: {self.detail} '{self.key}' (known: {', '.join(self.known)})"
        return f"{self.source}: {self.key}: {self.detail}" if self.key else f"{self.source}: {self.detail}"

    def within(self, source: str, prefix: str = "") -> ConfigError:
        """The same error seen from an enclosing config: `prefix` before the key, `source` if unset."""
        return ConfigError(self.detail, key=join_key(prefix, self.key), known=self.known,
                           source=self.source if self.source != DICT_SOURCE else source)


def unknown_key(key: str, known: Sequence[str]) -> ConfigError:
    return ConfigError("unknown key", key=key, known=sorted(known))


def join_key(prefix: str, key: str) -> str:
    """`optim` + `lr` -> `optim.lr`; `stages` + `[0]` -> `stages[0]`."""
    if not prefix or not key:
        return prefix or key
    return f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}"


def build(cls: type[T], raw: Any, *, where: str = DICT_SOURCE, at: str = "") -> T:
    """`raw` (a mapping, e.g. parsed YAML) as a `cls` dataclass; `where` names the file in errors and
    `at` is the section `raw` sits in (for a config built inside another one's `__post_init__`)."""
    try:
        return _dataclass(cls, raw, at, None)
    except ConfigError as error:
        raise error.within(where) from None


def convert(tp: Any, value: Any, *, where: str = DICT_SOURCE, at: str = "") -> Any:
    """One value checked against (and converted to) the type `tp`, e.g. a single section of a config."""
    try:
        return _value(tp, value, at, None)
    except ConfigError as error:
        raise error.within(where) from None


def load(cls: type[T], path: str | Path, overrides: Sequence[str] | None = None) -> T:
    """A YAML config file, with `section.key=value` overrides applied, as a `cls` dataclass."""
    return build(cls, read(path, overrides), where=str(path))


def read(path: str | Path, overrides: Sequence[str] | None = None) -> dict[str, Any]:
    """A YAML config file as a mapping, with `section.key=value` overrides applied."""
    try:
        return load_yaml_config(path, list(overrides or []))
    except yaml.YAMLError as error:
        raise ConfigError(f"not valid YAML: {error}", source=str(path)) from None


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """The resolved type of every init field of a dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def check_literals(obj: Any) -> None:
    """Check the `Literal` fields of a dataclass instance (for `__post_init__`, so that a config built in
    code is held to the same choices as one built from a file)."""
    for name, tp in field_types(type(obj)).items():
        choices = _literal_choices(tp)
        if choices is not None:
            _check_choice(choices, getattr(obj, name), name)


def to_plain(obj: Any) -> dict[str, Any]:
    """A dataclass config as plain JSON-able data (nested values with a `to_dict` use it)."""
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.to_dict() if hasattr(value, "to_dict") else to_plain(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (frozenset, set)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --- the builder ---------------------------------------------------------------------------

def _dataclass(cls: type, value: Any, key: str, shorthand: str | None) -> Any:
    if shorthand is not None and not isinstance(value, Mapping):
        value = {shorthand: value}
    if not isinstance(value, Mapping):
        raise ConfigError(f"expected a mapping (section {cls.__name__}), got {_show(value)}", key=key)
    types_ = field_types(cls)
    for name in value:
        if name not in types_:
            raise unknown_key(join_key(key, str(name)), types_)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in value:
            kwargs[f.name] = _value(types_[f.name], value[f.name], join_key(key, f.name), f.metadata.get(SHORTHAND))
        elif f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError("missing required key", key=join_key(key, f.name))
    try:
        return cls(**kwargs)
    except ConfigError as error:
        raise error.within(DICT_SOURCE, key) from None
    except ValueError as error:
        raise ConfigError(str(error), key=key) from error


def _value(tp: Any, value: Any, key: str, shorthand: str | None) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _union(typing.get_args(tp), value, key, shorthand)
    if origin is Literal:
        return _check_choice(typing.get_args(tp), value, key)
    if dataclasses.is_dataclass(tp):
        return _dataclass(tp, value, key, shorthand)
    if tp in (list, tuple, frozenset, set) or origin in (list, tuple, frozenset, set):
        return _collection(tp, value, key, shorthand)
    if tp in (dict, Mapping) or origin in (dict, Mapping):
        return _mapping(tp, value, key)
    if tp in (bool, int, float, str, _NONE):
        return _scalar(tp, value, key)
    raise TypeError(f"config field {key!r}: the config layer cannot build type {tp!r}")


def _union(members: tuple[Any, ...], value: Any, key: str, shorthand: str | None) -> Any:
    if value is None:
        if _NONE in members:
            return None
        raise ConfigError(f"expected {_describe_all(members)}, got null", key=key)
    errors: list[tuple[Any, ConfigError]] = []
    for member in (m for m in members if m is not _NONE):
        try:
            return _value(member, value, key, shorthand)
        except ConfigError as error:
            errors.append((member, error))
    for member, error in errors:   # a mapping meant for a section: that section's own complaint
        if isinstance(value, Mapping) and dataclasses.is_dataclass(member):
            raise error
    if len(errors) == 1:
        raise errors[0][1]
    raise ConfigError(f"expected {_describe_all(members)}, got {_show(value)}", key=key)


def _collection(tp: Any, value: Any, key: str, shorthand: str | None) -> Any:
    kind = typing.get_origin(tp) or tp
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"expected a list, got {_show(value)}", key=key)
    args = typing.get_args(tp)
    if kind is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise ConfigError(f"expected a list of {len(args)} items, got {len(value)}", key=key)
        item_types = list(args)
    else:
        item_types = [args[0] if args else Any] * len(value)
    items = [_value(t, v, f"{key}[{i}]", shorthand) for i, (t, v) in enumerate(zip(item_types, value))]
    return items if kind is list else kind(items)


def _mapping(tp: Any, value: Any, key: str) -> dict[Any, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"expected a mapping, got {_show(value)}", key=key)
    key_type, value_type = typing.get_args(tp) or (Any, Any)
    return {_value(key_type, k, key, None): _value(value_type, v, join_key(key, str(k)), None)
            for k, v in value.items()}


def _scalar(tp: type, value: Any, key: str) -> Any:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, tp) and not (tp is not bool and isinstance(value, bool)):
        return value
    raise ConfigError(f"expected {_describe(tp)}, got {_show(value)}", key=key)


def _check_choice(choices: tuple[Any, ...], value: Any, key: str) -> Any:
    if value not in choices or isinstance(value, bool) != isinstance(choices[choices.index(value)], bool):
        raise ConfigError(f"expected one of {', '.join(map(repr, choices))}, got {_show(value)}", key=key)
    return value


def _literal_choices(tp: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    if typing.get_origin(tp) in (Union, types.UnionType):
        literals = [m for m in typing.get_args(tp) if typing.get_origin(m) is Literal]
        if len(literals) == 1 and set(typing.get_args(tp)) == {literals[0], _NONE}:
            return (*typing.get_args(literals[0]), None)
    return None


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", _NONE: "null"}


def _describe(tp: Any) -> str:
    if tp in _NAMES:
        return _NAMES[tp]
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    if dataclasses.is_dataclass(tp):
        return f"a {tp.__name__} mapping"
    kind = typing.get_origin(tp) or tp
    return "a mapping" if kind in (dict, Mapping) else "a list" if kind in (list, tuple, frozenset, set) else str(tp)


def _describe_all(members: tuple[Any, ...]) -> str:
    return " or ".join(_describe(m) for m in members)


def _show(value: Any) -> str:
    text = repr(value)
    return f"{text[:60]}... ({type(value).__name__})" if len(text) > 60 else f"{text} ({type(value).__name__})"
