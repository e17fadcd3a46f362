"""The CLI's wiring of the classic family: `train-classic`, `sweep`, `score-classic`, and classic
contenders for `compare`.

This is the one module under omni_msa that imports classic_msa, and only the CLI (omni_msa.cli)
imports it: omni_msa's library modules never import classic_msa (dependencies point one way,
design.md section 2). classic_msa and torch are imported inside the functions, so building the
parser stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from omni_msa.cli.common import (
    OVERRIDES_HELP,
    UsageError,
    add_missingness_options,
    command_options,
    intra_rate,
    missingness_protocol,
    user_input,
)
from omni_msa.data.record import SPLITS


def classic_contenders(cfg: Any) -> list[Any]:
    """The classic models a comparison config names, as contenders of the grid."""
    from classic_msa.contender import classic_contenders as build

    with user_input():
        return build(cfg)


def add_train_classic(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train-classic", parents=[command_options()], help="train and evaluate a classic feature-level model",
        description="Train and evaluate a classic feature-level model (MDF, ...) from a YAML config. Writes "
                    "<output_dir>/results.jsonl (one row per seed and evaluation protocol) and per seed a "
                    "checkpoint directory with metrics.json; see classic_msa.experiment.")
    parser.add_argument("--config", required=True, help="e.g. scripts/configs/mdf_synthetic.yaml")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in output_dir")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("overrides", nargs="*", help=OVERRIDES_HELP + ", e.g. data.path=X.pkl seeds=[0,1,2]")
    parser.set_defaults(run=run_train_classic)


def run_train_classic(args: argparse.Namespace) -> None:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from omni_msa.metrics import format_metrics

    from classic_msa.config import load_classic_config
    from classic_msa.experiment import run_experiment

    with user_input():
        config = load_classic_config(args.config, args.overrides)
    with logging_redirect_tqdm():
        rows = run_experiment(config, resume=args.resume, progress=not args.quiet)
    for row in rows:
        print(f"seed {row['seed']} {row['eval_label']:<24} {format_metrics(row['metrics'], row['dataset'])}")
    print(f"{len(rows)} rows in {config.output_dir}/results.jsonl; {rows[0]['n_params']} parameters")


def add_sweep(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "sweep", parents=[command_options()], help="evaluate classic checkpoints under a missingness grid",
        description="Evaluate trained classic checkpoints on the test split under a standard missingness grid. "
                    "Writes to --out (default <first checkpoint>/sweep): sweep_<grid>.jsonl (one row per model, "
                    "training seed, evaluation seed and protocol), sweep_<grid>.md (mean +- std tables) and PNG "
                    "plots. --config (the run's YAML and overrides) re-reads its data; it is needed unless the "
                    "run is synthetic, and with several checkpoints it applies to all of them.")
    parser.add_argument("--checkpoint", required=True, action="append", help="run or seed directory (repeatable)")
    parser.add_argument("--grid", required=True, choices=["inter", "intra", "modes"])
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds to evaluate (default: all)")
    parser.add_argument("--eval-seeds", type=int, nargs="+", help="mask seeds (default: the training seed)")
    parser.add_argument("--intra-rate", type=intra_rate, default=0.0,
                        help="intra rate on top of the inter grid (or 'uniform')")
    parser.add_argument("--config", help="the run's YAML config, to re-read its data")
    parser.add_argument("--out", help="output directory (default <first checkpoint>/sweep)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny models: 1)")
    parser.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    parser.set_defaults(run=run_sweep)


def run_sweep(args: argparse.Namespace) -> None:
    import torch

    from omni_msa.files import atomic_write_text, write_jsonl
    from omni_msa.report import metrics_table, write_report

    from classic_msa.config import load_classic_config
    from classic_msa.sweep import sweep_run

    torch.set_num_threads(args.threads)
    with user_input():
        run_config = load_classic_config(args.config, args.overrides) if args.config else None
    rows = []
    for checkpoint in args.checkpoint:
        rows += sweep_run(checkpoint, grid=args.grid, run_config=run_config, seeds=args.seeds,
                          eval_seeds=args.eval_seeds, intra_rate=args.intra_rate, batch_size=args.batch_size)
    out = Path(args.out) if args.out else Path(args.checkpoint[0]) / "sweep"
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / f"sweep_{args.grid}.jsonl", rows)
    report = write_report(rows, out, prefix="")
    atomic_write_text(out / f"sweep_{args.grid}.md",
                      f"# Missingness sweep: {args.grid}\n\n`{args.invocation}`\n\n" + report["markdown"]
                      + "\n## All metrics\n\n" + metrics_table(rows))
    print(f"{len(rows)} rows -> {out / f'sweep_{args.grid}.jsonl'}; {len(report['plots'])} plots in {out}")


def add_score_classic(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "score-classic", parents=[command_options()], help="score a features file with a trained classic checkpoint",
        description="Score a features file (an MMSA pickle, or a features.npz with its manifest) with a "
                    "checkpoint of `omni-msa train-classic`, on data "
                    "it was not trained on. The same files and resume rules as `omni-msa score`: one row per "
                    "sample in --out, the samples that could not be scored (id, field, reason) in "
                    "<out>.errors.jsonl, metrics in <out>.metrics.json; re-running with the same --out resumes. "
                    "The features must be of the set the model was trained on (its input dimensions).")
    parser.add_argument("--checkpoint", required=True, help="a seed directory (RUN/seed0), or a run with one seed")
    parser.add_argument("--features", required=True, help="a features file, e.g. unaligned_50.pkl or features.npz")
    parser.add_argument("--manifest", default=None, help="a features.npz's manifest (default: manifest.csv beside it)")
    parser.add_argument("--split", choices=SPLITS, help="score this split only (default: all)")
    parser.add_argument("--layout", choices=["aligned", "unaligned"],
                        help="an MMSA pickle's layout, when its file name does not say")
    parser.add_argument("--out", required=True, help="the predictions JSONL, e.g. preds.jsonl")
    parser.add_argument("--batch-size", type=int, default=256)
    add_missingness_options(parser)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny models: 1)")
    parser.set_defaults(run=run_score_classic)


def run_score_classic(args: argparse.Namespace) -> None:
    import torch

    from omni_msa.files import dumps

    from classic_msa.scoring import score_features

    protocol = missingness_protocol(args)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    torch.set_num_threads(args.threads)
    summary = score_features(args.checkpoint, args.features, args.out, split=args.split, layout=args.layout,
                             manifest=args.manifest,
                             protocol=protocol, batch_size=args.batch_size)
    print(dumps(summary, indent=2))
