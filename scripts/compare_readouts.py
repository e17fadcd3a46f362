"""Run a readout-ablation comparison grid, then write its report: `omni-msa compare`.

    python scripts/compare_readouts.py --config scripts/configs/compare_demo.yaml [key=value ...]
    accelerate launch --num_processes 2 scripts/compare_readouts.py --config ...      # GPUs
    torchrun --standalone --nproc_per_node 2 scripts/compare_readouts.py --config ...  # CPU processes

Rows go to <results_dir>/runs.jsonl as they are computed; finished runs are skipped when the
grid is started again. Omni readouts run on every process (training and scoring are sharded);
classic models run on the main process.
"""

from __future__ import annotations

from omni_msa.cli import run_script


def main(argv: list[str] | None = None) -> None:
    run_script("compare", "scripts/compare_readouts.py", argv)


if __name__ == "__main__":
    main()
