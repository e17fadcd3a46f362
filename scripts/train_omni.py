"""Fine-tune an omni readout (discriminative or generative) from a YAML config: `omni-msa train`.

    accelerate launch scripts/train_omni.py --config scripts/configs/<name>.yaml [section.key=value ...]
    accelerate launch -m omni_msa train --config scripts/configs/<name>.yaml [section.key=value ...]   # the same

On CPU: accelerate launch --cpu --num_processes 1 --mixed_precision no --dynamo_backend no scripts/train_omni.py ...
"""

from __future__ import annotations

from omni_msa.cli import run_script


def main(argv: list[str] | None = None) -> None:
    run_script("train", "scripts/train_omni.py", argv)


if __name__ == "__main__":
    main()
