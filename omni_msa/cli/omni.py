"""The omni subcommands: train, score, compare (the readout comparison grid) and report.

Torch, transformers and accelerate are imported inside the `run_*` functions, so building the
parser (and `omni-msa --help`) stays fast.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from omni_msa.cli.common import (
    OVERRIDES_HELP,
    UsageError,
    add_missingness_options,
    command_options,
    missingness_protocol,
    registered,
    user_input,
)


def add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train", parents=[command_options()], help="fine-tune an omni readout from a YAML config",
        description="Fine-tune an omni readout (discriminative or generative). GPUs: accelerate launch -m omni_msa "
                    "train --config ...; CPU: accelerate launch --cpu --num_processes 1 --mixed_precision no "
                    "--dynamo_backend no -m omni_msa train --config ...")
    parser.add_argument("--config", required=True, help="a run config, e.g. scripts/configs/qwen25omni_7b_mosi.yaml")
    parser.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    parser.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> None:
    from omni_msa.config import load_config
    from omni_msa.files import dumps

    with user_input():
        cfg = load_config(args.config, args.overrides)
    from omni_msa.train import train

    summary = train(cfg)
    print(dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))


def add_score(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "score", parents=[command_options()], help="score a manifest with a checkpoint, or zero-shot",
        description="Score a manifest with a trained checkpoint, or zero-shot with a bare backbone (generative). "
                    "Re-running with the same --out resumes; failed samples go to <out>.errors.jsonl, metrics, "
                    "parse-status counts and latency to <out>.metrics.json. Sharded over processes under "
                    "torchrun --standalone --nproc_per_node N -m omni_msa score ... (GPUs: accelerate launch).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a checkpoint directory written by `omni-msa train`")
    source.add_argument("--backbone", help="zero-shot generative scoring with this backbone (path, hub id, 'smollm2')")
    parser.add_argument("--kind", default="qwen2_5_omni_thinker", type=registered("omni_msa.backbones:backbone_names"),
                        help="a registered backbone kind (omni_msa.backbones)")
    parser.add_argument("--readout", type=registered("omni_msa.readouts:readout_names"),
                        help="with --backbone: an untrained (zero-shot) readout (default generative_zero_shot); with "
                             "--checkpoint: a readout that reads the model it holds, e.g. generative_constrained over "
                             "a generative checkpoint (default: the checkpoint's own)")
    parser.add_argument("--quantization", default="none", choices=["none", "8bit", "4bit"])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--dataset", default=None, type=registered("omni_msa.datasets:dataset_names"),
                        help="a registered dataset, e.g. mosi, mosei, sims (default: the checkpoint's)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch-size", type=int, default=16)
    add_missingness_options(parser)
    parser.set_defaults(run=run_score)


def _zero_shot_config(args: argparse.Namespace, dataset: str) -> Any:
    from omni_msa.backbone import BackboneConfig
    from omni_msa.config import DataSettings, OmniRunConfig
    from omni_msa.readouts import ReadoutSettings

    backbone = BackboneConfig(name_or_path=args.backbone, kind=args.kind, quantization=args.quantization)
    data = DataSettings(dataset=dataset, train=args.manifest, valid=args.manifest)
    from omni_msa.score import check_zero_shot

    # output_dir holds the media cache of a multimodal backbone: beside the predictions, not in the working directory
    return check_zero_shot(OmniRunConfig(output_dir=str(Path(args.out).parent), backbone=backbone, data=data,
                                         readout=ReadoutSettings(kind=args.readout or "generative_zero_shot")))


def _checkpoint_dataset(checkpoint: str) -> str:
    from omni_msa.checkpoint import read_config

    return read_config(Path(checkpoint))["data"]["dataset"]


def run_score(args: argparse.Namespace) -> None:
    from omni_msa.data.manifest import read_manifest
    from omni_msa.files import dumps

    # The manifest is read first (the shared layer, no torch): bad input fails in a second, not after a load.
    trained_on = _checkpoint_dataset(args.checkpoint) if args.checkpoint else None
    if args.dataset and trained_on and args.dataset != trained_on:
        raise UsageError(f"--dataset {args.dataset} but {args.checkpoint} was trained on {trained_on}: its label "
                         f"range and metrics are {trained_on}'s")
    dataset = args.dataset or trained_on or "mosi"
    loaded = read_manifest(args.manifest, dataset=dataset, skip_invalid=True)
    protocol = missingness_protocol(args)
    with user_input():
        zero_shot_cfg = None if args.checkpoint else _zero_shot_config(args, dataset)
    from omni_msa.score import load_scorer, score_file, scorer_config, zero_shot_scorer

    if args.checkpoint:
        with user_input():
            scorer_config(args.checkpoint, args.readout)
        assembled, cfg = load_scorer(args.checkpoint, args.readout)
    else:
        assembled, cfg = zero_shot_scorer(zero_shot_cfg), zero_shot_cfg
    summary = score_file(assembled, cfg, loaded.samples, args.out, protocol=protocol,
                         batch_size=args.batch_size, invalid=loaded.skipped)
    if summary is not None:
        print(dumps(summary, indent=2))


def add_compare(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "compare", parents=[command_options()], help="run a readout comparison grid, then its report",
        description="Run a readout-ablation comparison grid, then write its report. Rows go to "
                    "<results_dir>/runs.jsonl as they are computed; finished runs are skipped when the grid is "
                    "started again. Omni readouts run on every process (training and scoring are sharded; "
                    "torchrun --standalone --nproc_per_node N -m omni_msa compare ..., GPUs: accelerate launch); "
                    "classic models run on the main process.")
    parser.add_argument("--config", required=True, help="e.g. scripts/configs/compare_demo.yaml")
    parser.add_argument("--no-report", action="store_true", help="only run the grid")
    parser.add_argument("--only", action="append", metavar="MODEL",
                        help="run only this contender's rows (repeatable; a readout or classic model name): to "
                             "order a long grid or split it across machines; the report covers every row")
    parser.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    parser.set_defaults(run=run_compare)


def run_compare(args: argparse.Namespace) -> None:
    from omni_msa.compare.config import load_compare_config

    with user_input():
        cfg = load_compare_config(args.config, args.overrides)
    import torch
    from accelerate import PartialState

    from omni_msa.backbone import BackboneConfig
    from omni_msa.compare.grid import prepare_data, run_grid
    from omni_msa.compare.omni_family import omni_contenders

    state = PartialState(cpu=not torch.cuda.is_available())
    contenders = omni_contenders(cfg)
    if cfg.classic and state.is_main_process:
        from omni_msa.cli.classic import classic_contenders

        contenders += classic_contenders(cfg)
    contenders = _selected(contenders, args.only)
    multimodal = bool(cfg.readouts) and BackboneConfig(**cfg.omni_base["backbone"]).spec.multimodal
    with state.main_process_first():
        data = prepare_data(cfg, multimodal=multimodal)
    started = time.perf_counter()
    counts = run_grid(cfg, contenders, data, is_main_process=state.is_main_process)
    state.wait_for_everyone()
    if state.is_main_process:
        _finish_comparison(args, Path(cfg.results_dir), data, counts, time.perf_counter() - started)


def _selected(contenders: list[Any], only: list[str] | None) -> list[Any]:
    """The contenders `--only` names (all without it); an unknown name is a usage error."""
    if not only:
        return contenders
    names = [c.name for c in contenders]
    unknown = [name for name in only if name not in names]
    if unknown:
        raise UsageError(f"--only {', '.join(unknown)}: not a contender of this comparison (known: {', '.join(names)})")
    return [c for c in contenders if c.name in only]


def whole_grid_command(invocation: str) -> str:
    """The command that computes every row: `invocation` without `--only` (which computes some) and
    `--no-report`."""
    import shlex

    words, out = shlex.split(invocation), []
    skip_next = False
    for word in words:
        if skip_next or word == "--no-report" or word.startswith("--only="):
            skip_next = False
            continue
        if word == "--only":
            skip_next = True
            continue
        out.append(word)
    return shlex.join(out)


def _finish_comparison(args: argparse.Namespace, results: Path, data: Any, counts: dict[str, int],
                       seconds: float) -> None:
    """The main process's files after the grid: the command line, the skipped samples, the report."""
    from omni_msa.compare.report import DATA_FILE, SKIPPED_FILE, write_summary
    from omni_msa.files import atomic_write_text, write_json

    atomic_write_text(results / "command.txt", whole_grid_command(args.invocation) + "\n")
    print(f"{counts['written']} rows written, {counts['skipped']} already there, {seconds:.0f} s "
          f"-> {results / 'runs.jsonl'}")
    if data.reader_errors:
        print(f"{len(data.reader_errors)} invalid samples skipped by the readers (listed in the summary)")
    write_json(results / SKIPPED_FILE, data.reader_errors)
    write_json(results / DATA_FILE, data.describe())
    if not args.no_report:
        print(f"summary: {write_summary(results)}")


def add_tune(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "tune", parents=[command_options()], help="a recipe search for a comparison's trained readouts, on dev",
        description="Train every combination of --grid values for each trained readout of a comparison (the same "
                    "candidates and --max-steps budget for each), select on the comparison's dev split "
                    "(data.dev_fraction), and write <results_dir>/tuning.md and tuning.jsonl (resumable). Commit the "
                    "chosen settings to the config as the readouts' optim overrides.")
    parser.add_argument("--config", required=True, help="a comparison config with data.dev_fraction")
    parser.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2",
                        help="optim setting and its candidate values, e.g. lr=1e-4,2e-4 (repeatable)")
    parser.add_argument("--max-steps", type=int, required=True, help="optimizer steps per candidate")
    parser.add_argument("--seed", type=int, default=None, help="default: the comparison's first seed")
    parser.add_argument("--readout", action="append", help="search only this readout (repeatable)")
    parser.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    parser.set_defaults(run=run_tune)


def _grid(entries: list[str]) -> dict[str, list[Any]]:
    from omni_msa.yaml_config import parse_yaml

    grid = {}
    for entry in entries:
        key, sep, values = entry.partition("=")
        if not sep or not key or not values:
            raise UsageError(f"--grid {entry!r}: expected KEY=V1,V2,...")
        grid[key.removeprefix("optim.")] = [parse_yaml(v) for v in values.split(",")]
    return grid


def run_tune(args: argparse.Namespace) -> None:
    from omni_msa.compare.config import load_compare_config
    from omni_msa.compare.grid import prepare_data
    from omni_msa.compare.tuning import candidate_overrides, search, tuned_readouts, write_tuning

    grid = _grid(args.grid)
    with user_input():
        cfg = load_compare_config(args.config, args.overrides)
        candidate_overrides(grid)
        tuned_readouts(cfg, args.readout)
        if cfg.data.dev_fraction is None:
            raise ValueError(f"{args.config}: a recipe search selects on the dev split; set data.dev_fraction")
    from omni_msa.backbone import BackboneConfig

    data = prepare_data(cfg, multimodal=BackboneConfig(**cfg.omni_base["backbone"]).spec.multimodal)
    rows = search(cfg, data, grid, max_steps=args.max_steps, seed=cfg.seeds[0] if args.seed is None else args.seed,
                  readouts=args.readout)
    print(f"{len(rows)} candidates -> {write_tuning(cfg.results_dir, rows, args.invocation)}")


def add_report(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "report", parents=[command_options()], help="a comparison's summary and plots from its rows",
        description="Write RESULTS_DIR/summary.md and the PNG plots from RESULTS_DIR/runs.jsonl (written by "
                    "`omni-msa compare`); nothing else is read, so editing a row and rerunning changes the report.")
    parser.add_argument("results_dir")
    parser.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> None:
    from omni_msa.compare.grid import ROWS_FILE
    from omni_msa.compare.report import write_summary

    rows = Path(args.results_dir) / ROWS_FILE
    if not rows.is_file():
        raise UsageError(f"{rows} not found: RESULTS_DIR is a comparison's results_dir, holding {ROWS_FILE}")
    print(write_summary(args.results_dir))
