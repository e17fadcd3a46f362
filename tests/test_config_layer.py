"""The one config layer: typed dataclasses from mappings and YAML files, unknown keys refused with their
dotted path and the file, `section.key=value` overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from omni_msa.config_layer import SHORTHAND, ConfigError, build, check_literals, load, to_plain
from omni_msa.data.missing import MissingnessProtocol


@dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    kind: Literal["a", "b"] = "a"
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_literals(self)
        if self.lr < 0:
            raise ValueError(f"lr must be >= 0, got {self.lr}")


@dataclass(frozen=True)
class Named:
    name: str
    weight: int = 1


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    maybe: Inner | None = None
    items: list[Inner] = field(default_factory=list)
    named: list[Named] = field(default_factory=list, metadata={SHORTHAND: "name"})
    weights: dict[str, float] = field(default_factory=dict)
    pair: tuple[int, int] = (0, 0)
    modes: frozenset[str] | None = None
    target: str | list[str] | None = None
    flag: bool = False
    count: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WithProtocol:
    """A config that builds another one in its `__post_init__` (like the classic run config's train)."""

    train: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        build(MissingnessProtocol, self.train, at="train")


def test_nested_sections_defaults_and_int_to_float():
    cfg = build(Outer, {"name": "x", "inner": {"lr": 1, "kind": "b"}, "weights": {"task": 1, "aux": 0.5}})
    assert cfg.inner == Inner(lr=1.0, kind="b") and isinstance(cfg.inner.lr, float)
    assert cfg.weights == {"task": 1.0, "aux": 0.5} and all(isinstance(v, float) for v in cfg.weights.values())
    assert cfg.maybe is None and cfg.items == [] and cfg.pair == (0, 0) and cfg.flag is False


def test_lists_tuples_sets_unions_and_none():
    cfg = build(Outer, {"name": "x", "maybe": {"tags": ["t"]}, "items": [{}, {"lr": 0.5}], "pair": [1, 2],
                        "modes": ["text", "audio"], "target": ["q", "v"], "count": None, "extra": {"a": [1]}})
    assert cfg.maybe == Inner(tags=["t"]) and cfg.items == [Inner(), Inner(lr=0.5)]
    assert cfg.pair == (1, 2) and cfg.modes == frozenset({"text", "audio"}) and cfg.target == ["q", "v"]
    assert cfg.count is None and cfg.extra == {"a": [1]}
    assert build(Outer, {"name": "x", "target": "q.*", "maybe": None}).target == "q.*"


def test_a_scalar_item_is_the_shorthand_of_its_key():
    cfg = build(Outer, {"name": "x", "named": ["a", {"name": "b", "weight": 2}]})
    assert cfg.named == [Named("a"), Named("b", 2)]


@pytest.mark.parametrize("raw, message", [
    ({"name": "x", "inner": {"lrr": 1}}, "<dict>: unknown key 'inner.lrr' (known: kind, lr, tags)"),
    ({"name": "x", "nmae": 1}, "<dict>: unknown key 'nmae' (known: count, extra, flag, inner, items, maybe, "),
    ({"name": "x", "items": [{}, {"kindd": "a"}]}, "<dict>: unknown key 'items[1].kindd'"),
    ({"name": "x", "maybe": {"lrr": 1}}, "<dict>: unknown key 'maybe.lrr'"),
    ({"name": "x", "named": [{"name": "a", "wieght": 1}]}, "<dict>: unknown key 'named[0].wieght'"),
])
def test_unknown_keys_name_their_dotted_path(raw, message):
    with pytest.raises(ConfigError) as caught:
        build(Outer, raw)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("raw, message", [
    ({"name": "x", "inner": {"kind": "c"}}, "<dict>: inner.kind: expected one of 'a', 'b', got 'c' (str)"),
    ({"name": "x", "inner": {"lr": "fast"}}, "<dict>: inner.lr: expected a number, got 'fast' (str)"),
    ({"name": "x", "inner": {"lr": True}}, "<dict>: inner.lr: expected a number, got True (bool)"),
    ({"name": "x", "flag": 1}, "<dict>: flag: expected true or false, got 1 (int)"),
    ({"name": "x", "count": 2.5}, "<dict>: count: expected an integer, got 2.5 (float)"),
    ({"name": "x", "pair": [1]}, "<dict>: pair: expected a list of 2 items, got 1"),
    ({"name": "x", "items": {"lr": 1}}, "<dict>: items: expected a list, got {'lr': 1} (dict)"),
    ({"name": "x", "inner": None}, "<dict>: inner: expected a mapping (section Inner), got None (NoneType)"),
    ({"name": "x", "target": 3}, "<dict>: target: expected a string or a list or null, got 3 (int)"),
    ({"name": "x", "weights": {"task": "high"}}, "<dict>: weights.task: expected a number, got 'high'"),
    ({"inner": {}}, "<dict>: name: missing required key"),
    ({"name": "x", "inner": {"lr": -1}}, "<dict>: inner: lr must be >= 0, got -1.0"),
])
def test_wrong_values_name_the_key_and_what_was_expected(raw, message):
    with pytest.raises(ConfigError) as caught:
        build(Outer, raw)
    assert str(caught.value).startswith(message), str(caught.value)


def test_literals_are_checked_when_built_in_code_too():
    with pytest.raises(ConfigError, match="kind: expected one of 'a', 'b', got 'z'"):
        Inner(kind="z")


def test_a_config_built_inside_another_reports_the_full_path_and_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^<dict>: unknown key 'train\.intra' \(known: inter_rate, intra_rate, "):
        build(WithProtocol, {"train": {"intra": 0.3}})
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  inter_rate: 2.0\n")
    with pytest.raises(ConfigError, match=f"^{path}: train: inter_rate must be in \\[0, 1\\], got 2.0"):
        load(WithProtocol, path)


def test_files_are_named_in_errors_and_overrides_reach_nested_keys(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("name: x\ninner:\n  lr: 1.0e-3\nmaybe: null\n")
    cfg = load(Outer, path, ["inner.lr=5e-4", "inner.tags=[a, b]", "maybe.kind=b", "weights.task=2"])
    assert cfg.inner == Inner(lr=5e-4, tags=["a", "b"]) and cfg.maybe == Inner(kind="b") and cfg.weights == {"task": 2}
    with pytest.raises(ConfigError) as caught:
        load(Outer, path, ["inner.lrr=1"])
    assert str(caught.value) == f"{path}: unknown key 'inner.lrr' (known: kind, lr, tags)"
    assert caught.value.key == "inner.lrr" and caught.value.source == str(path)
    with pytest.raises(ValueError, match="is not key=value"):
        load(Outer, path, ["inner.lr"])
    with pytest.raises(ValueError, match="'name' is not a section"):
        load(Outer, path, ["name.first=y"])


def test_broken_yaml_and_a_non_mapping_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [x\n")
    with pytest.raises(ConfigError, match=f"^{path}: not valid YAML"):
        load(Outer, path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match=f"^{path}: expected a mapping at the top level"):
        load(Outer, path)


def test_plain_data_round_trips():
    cfg = build(Outer, {"name": "x", "items": [{"kind": "b"}], "named": ["n"], "pair": [3, 4], "modes": ["b", "a"]})
    plain = to_plain(cfg)
    assert plain["pair"] == [3, 4] and plain["modes"] == ["a", "b"] and plain["items"][0]["kind"] == "b"
    assert build(Outer, plain) == cfg
