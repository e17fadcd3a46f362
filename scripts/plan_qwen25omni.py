"""Dry-run QLoRA plan for the Qwen2.5-Omni-7B and -3B Thinkers: `omni-msa plan`.

    python scripts/plan_qwen25omni.py [--ranks 8 16 64] [--batch-sizes 1 4] [--text-tokens 128]
        [--frames 8] [--frame-size 364 644] [--audio-seconds 4] [--explore]

No weights and no GPU: the Thinkers are built on the meta device from
scripts/configs/qwen25omni_{7b,3b}_thinker_arch.json (formulas: omni_msa/plan.py).
Prints Markdown tables; --explore adds the LoRA settings compared with the published 1.14%.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omni_msa.cli import run_script

CONFIGS = Path(__file__).resolve().parent / "configs"


def main(argv: list[str] | None = None) -> None:
    # the architecture files next to this script, from any working directory
    argv = sys.argv[1:] if argv is None else argv
    run_script("plan", "scripts/plan_qwen25omni.py", ["--configs", str(CONFIGS), *argv])


if __name__ == "__main__":
    main()
