"""Evaluate trained classic checkpoints on the test split under a standard missingness grid.

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

import argparse
import sys
import logging
from pathlib import Path

import torch

from classic_msa.config import load_classic_config
from omni_msa.report import metrics_table, write_report, write_rows
from classic_msa.sweep import sweep_run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Evaluate classic checkpoints under a missingness grid.")
    parser.add_argument("--checkpoint", required=True, action="append", help="run or seed directory (repeatable)")
    parser.add_argument("--grid", required=True, choices=["inter", "intra", "modes"])
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds to evaluate (default: all)")
    parser.add_argument("--eval-seeds", type=int, nargs="+", help="mask seeds (default: the training seed)")
    parser.add_argument("--intra-rate", default="0.0", help="intra rate on top of the inter grid (or 'uniform')")
    parser.add_argument("--config", help="the run's YAML config, to re-read its data")
    parser.add_argument("--out", help="output directory (default <first checkpoint>/sweep)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny models: 1)")
    parser.add_argument("overrides", nargs="*", help="config overrides section.key=value")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    run_config = load_classic_config(args.config, args.overrides) if args.config else None
    intra = args.intra_rate if args.intra_rate == "uniform" else float(args.intra_rate)
    rows = []
    for checkpoint in args.checkpoint:
        rows += sweep_run(checkpoint, grid=args.grid, run_config=run_config, seeds=args.seeds,
                          eval_seeds=args.eval_seeds, intra_rate=intra, batch_size=args.batch_size)
    out = Path(args.out) if args.out else Path(args.checkpoint[0]) / "sweep"
    out.mkdir(parents=True, exist_ok=True)
    write_rows(out / f"sweep_{args.grid}.jsonl", rows)
    report = write_report(rows, out, prefix="")
    command = "python scripts/sweep_missing.py " + " ".join(sys.argv[1:] if argv is None else argv)
    (out / f"sweep_{args.grid}.md").write_text(
        f"# Missingness sweep: {args.grid}\n\n`{command}`\n\n" + report["markdown"] + "\n## All metrics\n\n"
        + metrics_table(rows))
    print(f"{len(rows)} rows -> {out / f'sweep_{args.grid}.jsonl'}; {len(report['plots'])} plots in {out}")


if __name__ == "__main__":
    main()
