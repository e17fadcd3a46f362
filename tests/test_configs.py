"""Every YAML config under scripts/configs loads, and says how to launch it."""

from pathlib import Path

import pytest
import yaml

from omni_msa.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "scripts" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_and_has_its_launch_command(path):
    header = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
    assert "scripts/" in header and ("accelerate launch" in header or "python " in header), \
        f"{path.name} needs its launch command in a header comment"
    raw = yaml.safe_load(path.read_text())
    if "results_dir" in raw:
        check_comparison_config(path)
    elif "backbone" in raw:
        cfg = load_config(path)
        assert cfg.output_dir and cfg.backbone.name_or_path
    else:
        from classic_msa.config import load_classic_config

        load_classic_config(path)


def check_comparison_config(path: Path) -> None:
    """A comparison config loads, each readout's run config is valid, and so are its classic models."""
    from classic_msa.config import load_classic_config
    from omni_msa.compare.config import load_compare_config
    from omni_msa.compare.family import SharedData
    from omni_msa.compare.omni_family import omni_contenders
    from omni_msa.data.missing import MissingnessProtocol

    cfg = load_compare_config(path)
    data = SharedData(dataset=cfg.dataset, evaluate_on=cfg.evaluate_on,
                      manifest={"train": "train.csv", "valid": "valid.csv"}, samples={})
    for contender in omni_contenders(cfg):
        run = contender.run_config(cfg.seeds[0], MissingnessProtocol(), Path("runs/x"), data)
        assert run.readout.kind == contender.name
    for spec in cfg.classic:
        load_classic_config(spec.config, spec.overrides)


def test_overrides_reach_nested_sections():
    path = next(p for p in CONFIGS if p.name == "smollm2_mosi_disc.yaml")
    cfg = load_config(path, ["readout.kind=generative", "optim.lr=0.001", "train_missing.intra_rate=0.3"])
    assert cfg.readout.kind == "generative" and cfg.optim.lr == 0.001 and cfg.train_missing.intra_rate == 0.3
    with pytest.raises(ValueError, match="unknown keys in `optim`"):
        load_config(path, ["optim.learning_rate=0.1"])


def test_scientific_notation_overrides_are_numbers():
    path = next(p for p in CONFIGS if p.name == "smollm2_mosi_disc.yaml")
    assert load_config(path, ["optim.lr=1e-3"]).optim.lr == 0.001
