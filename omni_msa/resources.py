"""Peak memory of a run: CUDA max allocated on GPU, the process's peak resident set on CPU.

On Linux the peak resident set (VmHWM) can be reset by writing 5 to /proc/self/clear_refs, so
each run of a grid reports its own peak rather than the process's peak so far; where that is not
possible the value is the process peak since it started (`peak_memory_scope` says which).
"""

from __future__ import annotations

import resource
from pathlib import Path

import torch

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")
_per_run = False


def reset_peak_memory() -> None:
    """Start a new peak-memory window for the current run."""
    global _per_run
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        _per_run = True
        return
    try:
        _CLEAR_REFS.write_text("5")
        _per_run = True
    except OSError:
        _per_run = False


def peak_memory_mb() -> float:
    """CUDA max allocated on GPU, else the peak resident set size, in MiB."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_scope() -> str:
    """"run" when the last `reset_peak_memory` took effect, else "process"."""
    return "run" if _per_run else "process"
