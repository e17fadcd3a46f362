"""The parser of `omni-msa` and the one place that turns bad input into exit status 2."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import traceback
from collections.abc import Sequence

from omni_msa.cli import classic, extract, media, omni, plan
from omni_msa.cli.common import UsageError
from omni_msa.data.record import DataError

# Errors that mean the input is wrong: one line on stderr and exit status 2 (argparse's own
# usage errors exit 2 too). Anything else is a bug and keeps its traceback.
BAD_INPUT = (UsageError, DataError, FileNotFoundError)
COMMANDS = (omni.add_train, omni.add_score, omni.add_compare, omni.add_tune, omni.add_report, plan.add_plan,
            classic.add_train_classic, classic.add_sweep, classic.add_score_classic, media.add_check_media,
            extract.add_extract)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omni-msa", description="Omni-modal LLM readouts and classic models for multimodal sentiment analysis.",
        epilog="GPUs: accelerate launch -m omni_msa train ...; CPU processes: torchrun --standalone "
               "--nproc_per_node N -m omni_msa score ...")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a bad-input error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """`omni-msa ARGS` (also `python -m omni_msa ARGS`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _dispatch(argv, invocation=["omni-msa", *argv])


def run_script(command: str, script: str, argv: Sequence[str] | None = None) -> None:
    """`python SCRIPT ARGS` is `omni-msa COMMAND ARGS`; results record the script's command line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _dispatch([command, *argv], invocation=["python", script, *argv])


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _dispatch(argv: list[str], invocation: list[str]) -> None:
    args = build_parser().parse_args(argv)
    args.invocation = shlex.join(invocation)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.run(args)
    except BAD_INPUT as error:
        if args.debug:
            traceback.print_exc()
        else:
            print(f"error: {one_line(error)}", file=sys.stderr)
        raise SystemExit(2) from None
