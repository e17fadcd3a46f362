"""What every subcommand shares: the bad-input errors, the per-subcommand options, argument types."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

OVERRIDES_HELP = "section.key=value overrides (values parsed as YAML)"


class UsageError(Exception):
    """Bad input the user can fix (a config that does not load, a bad argument value)."""


@contextmanager
def user_input() -> Iterator[None]:
    """Turn the ValueErrors of config loading (and YAML syntax errors) into `UsageError`s:
    inside this block a ValueError means the user's input is wrong, not the code."""
    import yaml

    try:
        yield
    except (ValueError, yaml.YAMLError) as error:
        raise UsageError(str(error)) from error


def command_options() -> argparse.ArgumentParser:
    """Options every subcommand takes, so `omni-msa score --debug ...` and the scripts accept them.
    The SUPPRESS default keeps a top-level `omni-msa --debug score ...` from being overwritten."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of a bad-input error instead of one line")
    return parent


def intra_rate(text: str) -> float | str:
    """An intra-modality missingness rate: a number, or "uniform" (a rate drawn per sample)."""
    if text == "uniform":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor 'uniform'") from None


def registered(names: str) -> Callable[[str], str]:
    """An argparse type accepting the names of one registry, given as "module:function" and looked
    up only when an argument is parsed (a registry may import torch; `--help` stays fast)."""
    def check(text: str) -> str:
        module, _, function = names.partition(":")
        known = getattr(importlib.import_module(module), function)()
        if text not in known:
            raise argparse.ArgumentTypeError(f"{text!r} is not registered; known: {', '.join(known)}")
        return text
    return check


def add_missingness_options(parser: argparse.ArgumentParser) -> None:
    """The missingness protocol to score under (`omni_msa.data.missing.MissingnessProtocol`)."""
    parser.add_argument("--inter-rate", type=float, default=0.0)
    parser.add_argument("--intra-rate", type=intra_rate, default=0.0, help="a number or 'uniform'")
    parser.add_argument("--keep", default=None, help="comma-separated kept modalities, e.g. text,audio")
    parser.add_argument("--missing-seed", type=int, default=0)


def missingness_protocol(args: argparse.Namespace) -> Any:
    """The protocol of `add_missingness_options`' arguments; a bad value is a `UsageError`."""
    from omni_msa.data.missing import MissingnessProtocol

    with user_input():
        keep = None if args.keep is None else frozenset(args.keep.split(","))
        return MissingnessProtocol(inter_rate=args.inter_rate, intra_rate=args.intra_rate, keep=keep,
                                   seed=args.missing_seed)
