"""Train and evaluate a classic feature-level model (MDF, ...) from a YAML config: `omni-msa train-classic`.

    python scripts/train_classic.py --config scripts/configs/<model>_<dataset>.yaml [--resume] [--quiet] \
        [section.key=value ...]

Overrides are parsed as YAML, e.g. `data.path=/data/MOSI/unaligned_50.pkl seeds=[0,1,2]
train.lr=5e-4`. Writes <output_dir>/results.jsonl (one row per seed and evaluation protocol)
and per seed a checkpoint directory with metrics.json; see classic_msa.experiment.
"""

from __future__ import annotations

from omni_msa.cli import run_script


def main(argv: list[str] | None = None) -> None:
    run_script("train-classic", "scripts/train_classic.py", argv)


if __name__ == "__main__":
    main()
