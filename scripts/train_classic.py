"""Train and evaluate a classic feature-level model (MDF, ...) from a YAML config.

    python scripts/train_classic.py --config scripts/configs/<model>_<dataset>.yaml [--resume] [--quiet] \
        [section.key=value ...]

Overrides are parsed as YAML, e.g. `data.path=/data/MOSI/unaligned_50.pkl seeds=[0,1,2]
train.lr=5e-4`. Writes <output_dir>/results.jsonl (one row per seed and evaluation protocol)
and per seed a checkpoint directory with metrics.json; see classic_msa.experiment.
"""

from __future__ import annotations

import argparse
import logging

from tqdm.contrib.logging import logging_redirect_tqdm

from omni_msa.metrics import format_metrics

from classic_msa.config import load_classic_config
from classic_msa.experiment import run_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description="Train and evaluate a classic feature-level model.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in output_dir")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("overrides", nargs="*", help="section.key=value (value parsed as YAML)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_classic_config(args.config, args.overrides)
    with logging_redirect_tqdm():
        rows = run_experiment(config, resume=args.resume, progress=not args.quiet)
    for row in rows:
        print(f"seed {row['seed']} {row['eval_label']:<24} {format_metrics(row['metrics'], row['dataset'])}")
    print(f"{len(rows)} rows in {config.output_dir}/results.jsonl; {rows[0]['n_params']} parameters")


if __name__ == "__main__":
    main()
