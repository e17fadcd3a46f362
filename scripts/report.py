"""Write a comparison's summary and plots from its rows.

    python scripts/report.py RESULTS_DIR

Reads RESULTS_DIR/runs.jsonl (written by scripts/compare_readouts.py) and writes
RESULTS_DIR/summary.md and the PNG plots next to it; nothing else is read, so editing a row and
rerunning changes the report accordingly.
"""

from __future__ import annotations

import argparse

from omni_msa.compare.report import write_summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Summary and plots of a comparison's rows.")
    parser.add_argument("results_dir")
    args = parser.parse_args(argv)
    print(write_summary(args.results_dir))


if __name__ == "__main__":
    main()
