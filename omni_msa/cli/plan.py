"""`omni-msa plan`: the dry-run QLoRA plan for the Qwen2.5-Omni-7B and -3B Thinkers.

No weights and no GPU: the Thinkers are built on the meta device from the architecture JSONs
in scripts/configs (formulas: omni_msa/plan.py). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from omni_msa.cli.common import command_options

ARCH_FILES = {"7B": "qwen25omni_7b_thinker_arch.json", "3B": "qwen25omni_3b_thinker_arch.json"}
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
EXPLORE_TARGETS = {
    "language-model projections (default)": None,
    "plain list of the 7 projection names": PROJECTIONS,
    "peft 'all-linear'": "all-linear",
}


def add_plan(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "plan", parents=[command_options()], help="dry-run QLoRA plan (parameters, GPU memory) for Qwen2.5-Omni",
        description=__doc__.split("\n\n")[1].replace("\n", " "))
    parser.add_argument("--ranks", type=int, nargs="+", default=[8, 16, 64])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--text-tokens", type=int, default=128)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--frame-size", type=int, nargs=2, default=[364, 644], metavar=("H", "W"))
    parser.add_argument("--audio-seconds", type=float, default=4.0)
    parser.add_argument("--explore", action="store_true", help="which LoRA settings give the published 1.14%%")
    parser.add_argument("--configs", default="scripts/configs",
                        help=f"folder of {' and '.join(ARCH_FILES.values())} (default: %(default)s)")
    parser.add_argument("--run-config", default="scripts/configs/qwen25omni_7b_mosi.yaml",
                        help="the training config whose speed settings on a CUDA GPU to print (default: %(default)s)")
    parser.set_defaults(run=run_plan)


def run_plan(args: argparse.Namespace) -> None:
    from omni_msa.backbone import LoraSettings
    from omni_msa.plan import count_parameters, load_arch

    paths = {name: Path(args.configs) / file for name, file in ARCH_FILES.items()}
    for path in paths.values():
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run from the repository root or pass --configs")
    configs = {name: load_arch(path) for name, path in paths.items()}
    counts = {(name, r): count_parameters(config, LoraSettings(r=r, alpha=2 * r))
              for name, config in configs.items() for r in args.ranks}
    print_parameters(counts)
    print_memory(args, configs, counts)
    print_encoder_share(args, configs)
    print_speed_settings(args.run_config)
    if args.explore:
        print_explore(configs["7B"])


def millions(n: int) -> str:
    return f"{n / 1e6:,.2f} M"


def print_parameters(counts: dict[tuple[str, int], Any]) -> None:
    print("## Parameters (LoRA on the language model's q/k/v/o/gate/up/down, head Linear(hidden, 1))\n")
    print("| model | r | LoRA | head | trainable | total | share |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (name, r), c in counts.items():
        print(f"| {name} | {r} | {millions(c.lora)} | {c.head:,} | {c.trainable:,} | {c.total:,} "
              f"| {100 * c.share:.3f}% |")


def print_memory(args: argparse.Namespace, configs: dict[str, Any], counts: dict[tuple[str, int], Any]) -> None:
    from omni_msa.backbone import LoraSettings
    from omni_msa.plan import Workload, estimate_memory

    height, width = args.frame_size
    print(f"\n## Peak GPU memory, GiB (text {args.text_tokens} tokens, {args.frames} frames of "
          f"{height}x{width}, {args.audio_seconds:g} s audio per sample)\n")
    print("| model | r | batch | checkpointing | seq | weights | LoRA+Adam | activations | discriminative "
          "| generative |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for (name, r), c in counts.items():
        lora = LoraSettings(r=r, alpha=2 * r)
        for batch in args.batch_sizes:
            for checkpointing in (True, False):
                work = Workload(batch_size=batch, text_tokens=args.text_tokens, video_frames=args.frames,
                                frame_height=height, frame_width=width, audio_seconds=args.audio_seconds,
                                gradient_checkpointing=checkpointing)
                disc = estimate_memory(configs[name], c, lora, work).gib()
                gen = estimate_memory(configs[name], c, lora, replace(work, readout="generative"))
                weights = disc["quantized_weights"] + disc["unquantized_weights"]
                print(f"| {name} | {r} | {batch} | {'on' if checkpointing else 'off'} "
                      f"| {gen.sequence_length} | {weights:.2f} | {disc['trainable_state']:.2f} "
                      f"| {disc['activations']:.2f} | {disc['peak']:.1f} | {gen.gib()['peak']:.1f} |")


def print_explore(config_7b: Any) -> None:
    from omni_msa.backbone import LoraSettings
    from omni_msa.plan import count_parameters

    print("\n## Which LoRA settings give the published 1.14% (7B)\n")
    print("| targets | r | LoRA in LM / audio / vision | share | share with 4-bit weights counted packed |")
    print("| --- | --- | --- | --- | --- |")
    for label, targets in EXPLORE_TARGETS.items():
        for r in (8, 16, 32, 64):
            c = count_parameters(config_7b, LoraSettings(r=r, target_modules=targets))
            parts = " / ".join(millions(c.lora_by_component[k]) for k in ("language_model", "audio_tower", "visual"))
            print(f"| {label} | {r} | {parts} | {100 * c.share:.3f}% | {100 * c.naive_4bit_share:.3f}% |")


def print_encoder_share(args: argparse.Namespace, configs: dict[str, Any]) -> None:
    """The frozen encoders' share of a training step's FLOPs: what the encoder-output cache saves per
    epoch from the second epoch on (formula: omni_msa/flops.py)."""
    from omni_msa.flops import step_flops, weight_counts
    from omni_msa.plan import Workload

    height, width = args.frame_size
    print(f"\n## Frozen encoders' share of a training step, TFLOP per sample (text {args.text_tokens} tokens, "
          f"{args.frames} frames of {height}x{width}, {args.audio_seconds:g} s audio)\n")
    print("| model | checkpointing | vision | audio | language model (fwd + bwd [+ recompute]) | encoder share: "
          "saved per epoch from epoch 2 | saved over 4 epochs | saved per scoring pass (forward only) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, config in configs.items():
        weights = weight_counts(config)
        for checkpointing in (True, False):
            work = Workload(text_tokens=args.text_tokens, video_frames=args.frames, frame_height=height,
                            frame_width=width, audio_seconds=args.audio_seconds, gradient_checkpointing=checkpointing)
            f = step_flops(config, work, weights)
            print(f"| {name} | {'on' if checkpointing else 'off'} | {f.vision / 1e12:.2f} | {f.audio / 1e12:.2f} "
                  f"| {f.language_model / 1e12:.2f} | {100 * f.encoder_share:.1f} % | {75 * f.encoder_share:.1f} % "
                  f"| {100 * f.scoring_share:.1f} % |")
    print("\nFLOPs = 2 x weights x positions per linear or convolution layer, plus 4 x layers x queries x keys x "
          "width for attention; the encoders run forward only, the language model forward, backward (input "
          "gradients) and, with checkpointing, the recomputed forward. The whole formula: omni_msa/flops.py.")


def print_speed_settings(run_config: str) -> None:
    """What `run_config` will use on one CUDA GPU, chosen by the same function as the run itself."""
    from omni_msa.config import OmniRunConfig
    from omni_msa.config_layer import load
    from omni_msa.readouts import get_readout, readout_names
    from omni_msa.speed_settings import flash_attention_installed, speed_settings

    cfg = load(OmniRunConfig, run_config)
    backbone, readout = cfg.backbone, cfg.readout.kind
    masked = [name for name in readout_names() if get_readout(name).custom_attention_mask]
    print(f"\n## Speed settings of `{run_config}` on one CUDA GPU (dry run)\n")
    print("| flash-attn | readouts | compute dtype | attention | gradient checkpointing |")
    print("| --- | --- | --- | --- | --- |")
    for installed in (True, False):
        for custom_mask, readouts in ((False, "the others"), (True, ", ".join(masked) + " (4-D attention mask)")):
            speed = speed_settings(backbone, custom_mask=custom_mask, cuda=True, flash_installed=installed)
            print(f"| {'installed' if installed else 'not installed'} | {readouts} | {speed.compute_dtype} "
                  f"| {speed.attention} | {'on' if speed.gradient_checkpointing else 'off'} |")
    print(f"\nThis config's readout: `{readout}`. flash-attn on this machine: "
          f"{'installed' if flash_attention_installed() else 'not installed'}. "
          "Every run groups its batches by the set of present modalities and by length, and writes the "
          "settings it used into train_summary.json (`speed_settings`).")
