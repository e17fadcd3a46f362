"""bf16 on CPU: this machine's matmul peak in float32 and bfloat16, and SmolLM2-135M-Instruct's
discriminative training step time in each precision, in one run.

    python scripts/bench_bf16_cpu.py --config scripts/configs/smollm2_mosi_disc.yaml \
        --out results/bf16_cpu.md [--steps 12 --warmup-steps 2]

Precisions of the training step (same config, seed, batches and LoRA):
- ``fp32``: every weight and activation in float32 (``compute_dtype=float32``, today's CPU default);
- ``bf16 weights``: ``compute_dtype=bfloat16``, the frozen base weights in bfloat16, the LoRA
  weights and the head kept in float32 by peft (``autocast_adapter_dtype``).
The matmul peak is the median over repeats of square ``n x n`` products (2 n^3 FLOP each) after a
warm-up; the step time is the median optimizer-step time after ``--warmup-steps`` steps.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import tempfile
import time

import torch

from omni_msa.config import OmniRunConfig
from omni_msa.config_layer import load
from omni_msa.files import atomic_write_text
from omni_msa.train import TrainingRecipe

VARIANTS = {
    "fp32": ["backbone.compute_dtype=float32"],
    "bf16 weights": ["backbone.compute_dtype=bfloat16"],
}


def matmul_tflops(dtype: torch.dtype, n: int, repeats: int) -> float:
    """Median achieved TFLOP/s of an n x n by n x n matmul in `dtype`."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e12


def step_times(config: str, overrides: list[str], steps: int) -> list[float]:
    """Optimizer-step times (s) of the first `steps` steps of a fresh training run."""
    with tempfile.TemporaryDirectory() as out_dir:
        cfg = load(OmniRunConfig, config, [*overrides, f"output_dir={out_dir}", "optim.eval_every_steps=0",
                                           "optim.checkpoint_every_steps=0"])
        recipe = TrainingRecipe(cfg, show_progress=False)
        recipe.setup()
        recipe.train(stop_after_steps=steps)
        return list(recipe.step_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="scripts/configs/smollm2_mosi_disc.yaml")
    parser.add_argument("--out", default="results/bf16_cpu.md")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--matmul-n", type=int, default=2048)
    parser.add_argument("--matmul-repeats", type=int, default=10)
    args = parser.parse_args()

    peaks = {name: matmul_tflops(dtype, args.matmul_n, args.matmul_repeats)
             for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16))}
    lines = [
        "# bf16 on CPU: matmul peak and SmolLM2 training step time",
        "",
        f"Command: `python {shlex.join(sys.argv)}`",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads.",
        "",
        f"## Matmul ({args.matmul_n} x {args.matmul_n}, median of {args.matmul_repeats})",
        "",
        "| dtype | TFLOP/s |",
        "|---|---:|",
        *(f"| {name} | {value:.3f} |" for name, value in peaks.items()),
        "",
        f"bfloat16 / float32: {peaks['bfloat16'] / peaks['float32']:.2f}x",
        "",
        f"## SmolLM2 discriminative training step ({args.config}; median of steps "
        f"{args.warmup_steps + 1}-{args.steps})",
        "",
        "| precision | overrides | median step (s) | vs fp32 |",
        "|---|---|---:|---:|",
    ]
    medians = {}
    for name, overrides in VARIANTS.items():
        times = step_times(args.config, overrides, args.steps)[args.warmup_steps:]
        medians[name] = statistics.median(times)
        print(name, [round(t, 2) for t in times], flush=True)
    for name, overrides in VARIANTS.items():
        lines.append(f"| {name} | `{' '.join(overrides)}` | {medians[name]:.2f} | "
                     f"{medians['fp32'] / medians[name]:.2f}x |")
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
