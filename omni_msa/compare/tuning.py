"""A small recipe search for the trained readouts of a comparison, the same for each: every
combination of a grid of optimisation settings, trained under one step budget and selected on the
comparison's dev split (never on the split it reports on), and the best combination per readout.

    candidates = {"lr": [1e-4, 2e-4, 4e-4], "head_lr": [1e-3, 3e-3]}   # optim.* settings

Every searched readout gets the same candidates and the same budget (search `head_lr` for the
readouts with a head only: `readouts`, else a readout without one trains the same recipe once per
value). Rows go to `<results_dir>/tuning.jsonl` as each run finishes (a killed search resumes: finished runs are
reused), the table to `tuning.md`; the chosen settings are what a user commits to the config as the
readouts' `optim` overrides.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from omni_msa.compare.config import CONVERGENCE_RULE, CompareConfig, ReadoutSpec
from omni_msa.compare.family import SharedData
from omni_msa.compare.grid import fingerprint, run_dir
from omni_msa.compare.omni_family import OmniReadout
from omni_msa.files import atomic_write_text, read_jsonl, write_jsonl
from omni_msa.readouts import get_readout

TUNING_ROWS = "tuning.jsonl"


def candidate_overrides(candidates: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the candidate values, as `optim` settings."""
    refused = sorted(set(candidates) & {*CONVERGENCE_RULE, "seed"})
    if refused:
        raise ValueError(f"{refused} are held fixed by the comparison; search other optim settings")
    if not candidates or any(not values for values in candidates.values()):
        raise ValueError("give at least one value for each searched setting")
    keys = sorted(candidates)
    return [dict(zip(keys, values)) for values in itertools.product(*(candidates[k] for k in keys))]


def tuned_readouts(cfg: CompareConfig, only: Sequence[str] | None = None) -> list[str]:
    """The readouts a search trains: those that train a model of their own (not zero-shot, not
    readers), or the ones of them `only` names."""
    names = [r.name for r in cfg.readouts if get_readout(r.name).trained and not get_readout(r.name).reads]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise ValueError(f"{unknown}: not a readout of this comparison that trains its own model (those: {names})")
    names = [n for n in names if not only or n in only]
    if not names:
        raise ValueError("no readout of this comparison trains a model of its own")
    return names


def search(cfg: CompareConfig, data: SharedData, candidates: Mapping[str, Sequence[Any]], *, max_steps: int,
           seed: int, readouts: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Train every candidate for every tuned readout on `seed` under `max_steps`, selected on dev."""
    if data.dev_fraction is None:
        raise ValueError("a recipe search selects on the dev split: set data.dev_fraction (searching on valid "
                         "would select the figures the comparison reports)")
    base = copy.deepcopy(cfg.omni_base)
    base["optim"] = {**base.get("optim", {}), "max_steps": max_steps}
    budget = replace(cfg, output_dir=str(Path(cfg.output_dir) / "tuning"), omni=replace(cfg.omni, base=base))
    rows_path = Path(cfg.results_dir) / TUNING_ROWS
    rows = {r["key"]: r for r in read_jsonl(rows_path)}
    train = cfg.train_protocol(cfg.train_protocols[0], seed)
    for name in tuned_readouts(cfg, readouts):
        for optim in candidate_overrides(candidates):
            contender = OmniReadout(ReadoutSpec(name, {"optim": optim}), budget)
            key = f"{name}|{fingerprint(contender.settings(data))}|seed={seed}"
            if key not in rows:
                fit = contender.fit(seed, train, run_dir(budget, contender, data, seed, train), data)
                rows[key] = {"key": key, "readout": name, "optim": optim, "seed": seed, "max_steps": max_steps,
                             "dev_mae": fit.extra["best_valid_mae"], "steps": fit.extra["train_steps"],
                             "wall_time_s": fit.wall_time_s}
                write_jsonl(rows_path, list(rows.values()))
            contender.release()
    return [r for r in rows.values() if r["seed"] == seed and r["max_steps"] == max_steps]


def tuning_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Every candidate's dev MAE per readout, the chosen one (lowest dev MAE) marked."""
    lines = ["| Readout | optim settings | dev MAE | steps | wall time s | chosen |", "|---|---|---:|---:|---:|---|"]
    for name in dict.fromkeys(r["readout"] for r in rows):
        mine = [r for r in rows if r["readout"] == name]
        best = min(mine, key=lambda r: r["dev_mae"])
        for r in mine:
            settings = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["optim"].items())
            lines.append(f"| {name} | {settings} | {r['dev_mae']:.4f} | {r['steps']} | {r['wall_time_s']:.0f} | "
                         f"{'**chosen**' if r is best else ''} |")
    return "\n".join(lines) + "\n"


def write_tuning(results_dir: str | Path, rows: Sequence[Mapping[str, Any]], command: str) -> Path:
    path = Path(results_dir) / "tuning.md"
    budget = sorted({r["max_steps"] for r in rows})
    text = (f"# Recipe search\n\n```\n{command}\n```\n\nSame candidates and the same budget "
            f"({'/'.join(map(str, budget))} optimizer steps) for every searched readout; selected on the dev split, "
            f"seed {sorted({r['seed'] for r in rows})}.\n\n{tuning_table(rows)}")
    atomic_write_text(path, text)
    return path
