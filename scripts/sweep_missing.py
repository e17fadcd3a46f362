"""Evaluate trained classic checkpoints on the test split under a standard missingness grid: `omni-msa sweep`.

    python scripts/sweep_missing.py --checkpoint runs/mdf_synthetic [--checkpoint runs/sg_dtam_synthetic ...] \
        --grid inter|intra|modes [--seeds 0 1 2] [--eval-seeds 0 1 2] [--intra-rate 0.0] \
        [--config scripts/configs/mdf_synthetic.yaml [section.key=value ...]] [--out DIR]

--checkpoint: a run directory (its seed<k>/ checkpoints) or one seed directory; repeatable
(one per model). --seeds: which training seeds to evaluate (default all found).
--eval-seeds: mask seeds (default: each checkpoint's own training seed). --config: the run's
YAML (+ overrides) to re-read its data; needed unless the run is synthetic (then its
data/unaligned.pkl is used); with several checkpoints it applies to all of them.
Writes to --out (default <first checkpoint>/sweep): sweep_<grid>.jsonl (one row per model,
training seed, evaluation seed and protocol; classic_msa.experiment's row schema),
sweep_<grid>.md (mean +- std tables) and PNG plots (omni_msa.report).
"""

from __future__ import annotations

from omni_msa.cli import run_script


def main(argv: list[str] | None = None) -> None:
    run_script("sweep", "scripts/sweep_missing.py", argv)


if __name__ == "__main__":
    main()
