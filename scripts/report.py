"""Write a comparison's summary and plots from its rows: `omni-msa report`.

    python scripts/report.py RESULTS_DIR

Reads RESULTS_DIR/runs.jsonl (written by `omni-msa compare`) and writes RESULTS_DIR/summary.md
and the PNG plots next to it; nothing else is read, so editing a row and rerunning changes the
report accordingly.
"""

from __future__ import annotations

from omni_msa.cli import run_script


def main(argv: list[str] | None = None) -> None:
    run_script("report", "scripts/report.py", argv)


if __name__ == "__main__":
    main()
