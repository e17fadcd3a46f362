"""Parameter counts and CPU speed of the classic models; writes results/classic_params.md.

    python scripts/bench_classic.py [--models mdf sg_dtam senti_ifusion promma] [--threads 1] \
        [--out results/classic_params.md]

Per model: parameters at its default config on MOSI shapes (text 768, audio 5, vision 20) and at
the CPU-sized config of scripts/configs/<model>_synthetic.yaml; training samples/s at batch 64
(forward + backward of the model's default loss terms + AdamW step, all parameters trainable),
inference ms per sample at batch 1 and at batch 64 (eval mode, no grad), on synthetic
MOSI-shaped data (unaligned: 50 text tokens, 375 audio frames, 500 vision frames) under complete
data. Medians over a few timed repetitions after a warm-up.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from omni_msa.data.synthetic import make_synthetic

from classic_msa.config import load_classic_config
from classic_msa.data import collate
from classic_msa.model import build_model, model_names

REPO = Path(__file__).resolve().parents[1]
MOSI_DIMS = {"text_dim": 768, "audio_dim": 5, "vision_dim": 20}
PAPER_PARAMS = {"sg_dtam": "125-155 K (paper)"}
PAPER_RANGES = {"sg_dtam": (125_000, 155_000)}


def _time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench(name: str, options: dict, samples, *, train_repeats: int, infer_repeats: int) -> dict:
    torch.manual_seed(0)
    model = build_model(name, {**options, **MOSI_DIMS})
    model.fit_statistics(samples)
    weights = model.default_loss_weights()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch64 = collate(samples[:64])
    batch1 = collate(samples[:1])

    def train_step():
        model.train()
        out = model(batch64)
        loss = sum(w * out[k] for k, w in weights.items() if k in out)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def infer(batch):
        model.eval()
        model(batch)

    train_s = _time(train_step, train_repeats)
    infer64 = _time(lambda: infer(batch64), infer_repeats)
    infer1 = _time(lambda: infer(batch1), infer_repeats * 5, warmup=3)
    return {"params": model.n_params(), "train_sps": 64 / train_s, "infer1_ms": 1000 * infer1,
            "infer64_ms": 1000 * infer64 / 64}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-repeats", type=int, default=5)
    parser.add_argument("--infer-repeats", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "results" / "classic_params.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = args.models or model_names()
    with tempfile.TemporaryDirectory() as tmp:
        samples = make_synthetic(96, tmp, seed=0, dataset_shape="mosi", with_media=False)
    shapes = {m: samples[0].features[m].shape for m in ("text", "audio", "vision")}
    results = {}
    for name in models:
        default = bench(name, {}, samples, train_repeats=args.train_repeats, infer_repeats=args.infer_repeats)
        config_path = REPO / "scripts" / "configs" / f"{name}_synthetic.yaml"
        cpu = None
        if config_path.is_file():
            options = load_classic_config(config_path).model_options
            cpu = bench(name, options, samples, train_repeats=args.train_repeats, infer_repeats=args.infer_repeats)
        results[name] = (default, cpu)
        print(name, default, cpu, flush=True)

    command = "python scripts/bench_classic.py " + " ".join(sys.argv[1:])
    lines = [
        "# Classic models: parameters and CPU speed", "",
        f"Command: `{command.strip()}`", "",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s), "
        f"torch {torch.__version__}, Python {platform.python_version()}. Data: synthetic MOSI-shaped "
        f"samples (unaligned; per sample text {tuple(shapes['text'])}, audio {tuple(shapes['audio'])}, "
        f"vision {tuple(shapes['vision'])}), complete modalities.", "",
        "- **Params (default)**: the model's config-class defaults with MOSI input dims "
        "(text 768, audio 5, vision 20).",
        "- **Params (synthetic cfg)**: the CPU-sized model of `scripts/configs/<model>_synthetic.yaml` "
        "(what `results/classic_synthetic.md` trains).",
        "- **Train**: samples/s at batch 64 (forward, the model's default loss terms, backward, AdamW step; "
        "all parameters trainable, so staged models are timed as if every stage were one). "
        f"Median of {args.train_repeats} steps after 1 warm-up step.",
        "- **Infer**: ms per sample in eval mode without grad, at batch 1 (median of "
        f"{args.infer_repeats * 5} calls) and at batch 64 (batch time / 64, median of {args.infer_repeats}).", "",
        "| Model | Params (default) | Paper | Train (samples/s, b64) | Infer b1 (ms/sample) | Infer b64 (ms/sample) "
        "| Params (synthetic cfg) | Train synth cfg (samples/s) | Infer b1 synth cfg (ms) | Infer b64 synth cfg (ms) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (d, c) in results.items():
        c_cells = (["–"] * 4 if c is None else
                   [f"{c['params']:,}", f"{c['train_sps']:.0f}", f"{c['infer1_ms']:.2f}", f"{c['infer64_ms']:.2f}"])
        lines.append(f"| {name} | {d['params']:,} | {PAPER_PARAMS.get(name, 'not reported')} | "
                     f"{d['train_sps']:.0f} | {d['infer1_ms']:.2f} | {d['infer64_ms']:.2f} | "
                     + " | ".join(c_cells) + " |")
    lines += ["", "Notes:"]
    for name, (low, high) in PAPER_RANGES.items():
        if name in results:
            n = results[name][0]["params"]
            lines.append(f"- {name}: {n:,} parameters at the paper defaults, "
                         f"{'inside' if low <= n <= high else 'OUTSIDE'} the paper's {low // 1000}-{high // 1000} K.")
    lines += ["- The other papers report no parameter count (ProMMA: only the abstract exists).",
              "- A model whose synthetic config keeps the default widths shows the same count in both columns.",
              "- Timings are single runs on a shared 2-core VM: expect a few tens of % run-to-run noise; "
              "compare orders of magnitude, not the last digit."]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
