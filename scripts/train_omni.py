"""Fine-tune an omni readout (discriminative or generative) from a YAML config.

    accelerate launch scripts/train_omni.py --config scripts/configs/<name>.yaml [section.key=value ...]

On CPU: accelerate launch --cpu --num_processes 1 --mixed_precision no --dynamo_backend no scripts/train_omni.py ...
"""

from __future__ import annotations

import argparse
import json
import logging

from omni_msa.config import load_config
from omni_msa.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description="Fine-tune an omni readout.")
    parser.add_argument("--config", required=True)
    parser.add_argument("overrides", nargs="*", help="section.key=value (value parsed as YAML)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    summary = train(load_config(args.config, args.overrides))
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))


if __name__ == "__main__":
    main()
