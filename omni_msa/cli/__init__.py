"""The `omni-msa` console command (`omni_msa.cli:main`): the entry layer above the library.

Subcommands: train, score, compare, tune, report, plan, train-classic, sweep, score-classic, check-media,
extract. `python -m omni_msa`, `accelerate launch -m omni_msa train ...` and `torchrun ... -m
omni_msa ...` run the same `main`; the scripts in scripts/ call `run_script`. Bad input exits with
status 2 and one line `error: <message>` on stderr (`--debug`: the traceback instead).
"""

from omni_msa.cli.app import build_parser, main, run_script

__all__ = ["build_parser", "main", "run_script"]
