"""Run a readout-ablation comparison grid, then write its report.

    python scripts/compare_readouts.py --config scripts/configs/compare_demo.yaml [key=value ...]
    accelerate launch --num_processes 2 scripts/compare_readouts.py --config ...      # GPUs
    torchrun --standalone --nproc_per_node 2 scripts/compare_readouts.py --config ...  # CPU processes

Rows go to <results_dir>/runs.jsonl as they are computed; finished runs are skipped when the
grid is started again. Omni readouts run on every process (training and scoring are sharded);
classic models run on the main process.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path

import torch
from accelerate import PartialState

from omni_msa.compare.config import load_compare_config
from omni_msa.compare.grid import prepare_data, run_grid
from omni_msa.compare.omni_family import omni_contenders
from omni_msa.compare.report import SKIPPED_FILE, write_summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--no-report", action="store_true", help="only run the grid")
    parser.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_compare_config(args.config, args.overrides)
    state = PartialState(cpu=not torch.cuda.is_available())
    contenders = omni_contenders(cfg)
    if cfg.classic:
        from classic_msa.contender import classic_contenders

        if state.is_main_process:
            contenders += classic_contenders(cfg)
    multimodal = any(c.settings().get("backbone", {}).get("kind") == "qwen2_5_omni_thinker" for c in contenders)
    with state.main_process_first():
        data = prepare_data(cfg, multimodal=multimodal)
    started = time.perf_counter()
    counts = run_grid(cfg, contenders, data, is_main_process=state.is_main_process)
    state.wait_for_everyone()
    if not state.is_main_process:
        return
    command = "python scripts/compare_readouts.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    results = Path(cfg.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    (results / "command.txt").write_text(command + "\n")
    print(f"{counts['written']} rows written, {counts['skipped']} already there, "
          f"{time.perf_counter() - started:.0f} s -> {results / 'runs.jsonl'}")
    if data.reader_errors:
        print(f"{len(data.reader_errors)} invalid samples skipped by the readers (listed in the summary)")
    (results / SKIPPED_FILE).write_text(json.dumps(data.reader_errors, indent=2))
    if not args.no_report:
        print(f"summary: {write_summary(results)}")


if __name__ == "__main__":
    main()
