"""Every YAML config under scripts/configs is built by the one config layer, says how to launch it, and
refuses a misspelt key anywhere with the key and the file."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from omni_msa.config import OmniRunConfig, load_config
from omni_msa.config_layer import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "scripts" / "configs").glob("*.yaml"))
# Free-form mappings: their keys are names (loss terms, parameter groups), not settings.
FREE_FORM = {"losses", "group_lr"}


def family_loader(raw: dict):
    """The loader of a config's family, told apart by its top-level keys."""
    from omni_msa.compare.config import CompareConfig, load_compare_config

    from classic_msa.config import ClassicRunConfig, load_classic_config

    if "results_dir" in raw:
        return load_compare_config, CompareConfig
    if "backbone" in raw:
        return load_config, OmniRunConfig
    return load_classic_config, ClassicRunConfig


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_builds_and_has_its_launch_command(path):
    header = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
    assert "scripts/" in header and ("accelerate launch" in header or "python " in header), \
        f"{path.name} needs its launch command in a header comment"
    loader, cls = family_loader(yaml.safe_load(path.read_text()))
    cfg = loader(path)
    assert isinstance(cfg, cls) and cfg.output_dir
    if "results_dir" in path.read_text():
        check_comparison_config(cfg)


def check_comparison_config(cfg) -> None:
    """Each readout's run config is valid, and so are the comparison's classic models."""
    from omni_msa.compare.family import SharedData
    from omni_msa.compare.omni_family import omni_contenders
    from omni_msa.data.missing import MissingnessProtocol

    from classic_msa.config import load_classic_config

    data = SharedData(dataset=cfg.dataset, evaluate_on=cfg.evaluate_on,
                      manifest={"train": "train.csv", "valid": "valid.csv"}, samples={})
    for contender in omni_contenders(cfg):
        run = contender.run_config(cfg.seeds[0], MissingnessProtocol(), Path("runs/x"), data)
        assert run.readout.kind == contender.name
    for spec in cfg.classic:
        load_classic_config(spec.config, spec.overrides)


def key_locations(node, where=()):
    """(location, dotted key) of every settings key in a parsed config, nested sections and lists included."""
    if isinstance(node, dict):
        for key, value in node.items():
            location = (*where, key)
            yield location, dotted(location)
            if key not in FREE_FORM:
                yield from key_locations(value, location)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from key_locations(item, (*where, i))


def dotted(location) -> str:
    out = ""
    for part in location:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def misspelt(raw: dict, location) -> dict:
    raw = copy.deepcopy(raw)
    node = raw
    for part in location[:-1]:
        node = node[part]
    node[f"{location[-1]}x"] = node.pop(location[-1])
    return raw


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_a_misspelt_key_anywhere_is_refused_with_the_key_and_the_file(path, tmp_path):
    raw = yaml.safe_load(path.read_text())
    loader, _ = family_loader(raw)
    copy_path = tmp_path / path.name
    checked = 0
    for location, key in key_locations(raw):
        if location == ("model", "name"):            # the model's name picks its options' schema
            continue
        copy_path.write_text(yaml.safe_dump(misspelt(raw, location)))
        with pytest.raises(ConfigError) as caught:
            loader(copy_path)
        message = str(caught.value)
        assert message.startswith(f"{copy_path}: "), message
        if "eval_protocols" in location[:-1]:       # the protocol reader's message, in its section
            section = dotted(location[:location.index("eval_protocols") + 1])
            assert message.startswith(f"{copy_path}: {section}: ") and f"{location[-1]}x" in message
        else:
            assert f"unknown key '{key}x' (known: " in message, message
        checked += 1
    assert checked >= 10


def test_overrides_reach_nested_sections():
    path = next(p for p in CONFIGS if p.name == "smollm2_mosi_disc.yaml")
    cfg = load_config(path, ["readout.kind=generative", "optim.lr=0.001", "train_missing.intra_rate=0.3"])
    assert cfg.readout.kind == "generative" and cfg.optim.lr == 0.001 and cfg.train_missing.intra_rate == 0.3
    with pytest.raises(ConfigError, match=f"^{path}: unknown key 'optim.learning_rate' \\(known: batch_size, "):
        load_config(path, ["optim.learning_rate=0.1"])
    with pytest.raises(ConfigError, match=f"^{path}: optim.scheduler: expected one of 'linear', .* got 'cosin'"):
        load_config(path, ["optim.scheduler=cosin"])


def test_an_override_fills_a_null_section():
    from classic_msa.config import load_classic_config

    path = next(p for p in CONFIGS if p.name == "mdf_synthetic.yaml")     # train_protocol: null
    cfg = load_classic_config(path, ["train.train_protocol.intra_rate=uniform", "train.train_protocol.inter_rate=0.3"])
    protocol = cfg.train_config(5).protocol("train")
    assert (protocol.intra_rate, protocol.inter_rate, protocol.seed) == ("uniform", 0.3, 5)


def test_scientific_notation_overrides_are_numbers():
    path = next(p for p in CONFIGS if p.name == "smollm2_mosi_disc.yaml")
    assert load_config(path, ["optim.lr=1e-3"]).optim.lr == 0.001


def test_omni_protocols_without_a_seed_take_the_run_seed():
    path = next(p for p in CONFIGS if p.name == "tiny_thinker_synthetic.yaml")
    cfg = load_config(path, ["optim.seed=3", "train_missing.intra_rate=0.5"])
    assert cfg.train_missing.seed == 3 and cfg.train_missing.intra_rate == 0.5 and cfg.eval_missing.seed == 3
    pinned = load_config(path, ["optim.seed=3", "train_missing.seed=11"])
    assert pinned.train_missing.seed == 11 and pinned.eval_missing.seed == 3


def test_an_omni_config_round_trips_through_its_dict():
    from omni_msa.config import config_from_dict

    path = next(p for p in CONFIGS if p.name == "qwen25omni_3b_mosi.yaml")
    cfg = load_config(path, ["train_missing.keep=[text, audio]", "optim.seed=2"])
    plain = cfg.to_dict()
    assert plain["train_missing"]["keep"] == ["text", "audio"] and plain["media"]["use_audio_in_video"] is True
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(plain))) == cfg


def test_a_comparison_refuses_a_misspelt_key_in_a_readouts_overrides(tmp_path):
    from omni_msa.compare.config import load_compare_config

    path = next(p for p in CONFIGS if p.name == "compare_demo.yaml")
    override = "omni.readouts=[discriminative, {name: generative, overrides: {optim: {lrr: 0.1}}}]"
    with pytest.raises(ConfigError, match=f"^{path}: unknown key 'omni.readouts\\[1\\].overrides.optim.lrr'"):
        load_compare_config(path, [override])
    cfg = load_compare_config(path, [override.replace("lrr", "lr")])
    assert [r.name for r in cfg.readouts] == ["discriminative", "generative"] and cfg.omni_checkpoint == "best"
    assert cfg.readouts[1].overrides == {"optim": {"lr": 0.1}} and cfg.omni_base["lora"]["r"] == 8
