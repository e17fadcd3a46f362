"""Dry-run QLoRA plan for the Qwen2.5-Omni-7B and -3B Thinkers: parameters and GPU memory.

    python scripts/plan_qwen25omni.py [--ranks 8 16 64] [--batch-sizes 1 4] [--text-tokens 128]
        [--frames 8] [--frame-size 364 644] [--audio-seconds 4] [--explore]

No weights and no GPU: the Thinkers are built on the meta device from
scripts/configs/qwen25omni_{7b,3b}_thinker_arch.json (formulas: omni_msa/plan.py).
Prints Markdown tables; --explore adds the LoRA settings compared with the published 1.14%.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from omni_msa.backbone import LoraSettings
from omni_msa.plan import ParamCounts, Workload, count_parameters, estimate_memory, load_arch

CONFIGS = Path(__file__).parent / "configs"
MODELS = {"7B": CONFIGS / "qwen25omni_7b_thinker_arch.json", "3B": CONFIGS / "qwen25omni_3b_thinker_arch.json"}
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
EXPLORE_TARGETS = {
    "language-model projections (default)": None,
    "plain list of the 7 projection names": PROJECTIONS,
    "peft 'all-linear'": "all-linear",
}


def millions(n: int) -> str:
    return f"{n / 1e6:,.2f} M"


def count_rows(name: str, r: int, c: ParamCounts) -> str:
    return (
        f"| {name} | {r} | {millions(c.lora)} | {c.head:,} | {c.trainable:,} | {c.total:,} "
        f"| {100 * c.share:.3f}% |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[8, 16, 64])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--text-tokens", type=int, default=128)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--frame-size", type=int, nargs=2, default=[364, 644], metavar=("H", "W"))
    parser.add_argument("--audio-seconds", type=float, default=4.0)
    parser.add_argument("--explore", action="store_true", help="which LoRA settings give 1.14%%")
    args = parser.parse_args()

    configs = {name: load_arch(path) for name, path in MODELS.items()}
    counts = {
        (name, r): count_parameters(config, LoraSettings(r=r, alpha=2 * r))
        for name, config in configs.items()
        for r in args.ranks
    }

    print("## Parameters (LoRA on the language model's q/k/v/o/gate/up/down, head Linear(hidden, 1))\n")
    print("| model | r | LoRA | head | trainable | total | share |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (name, r), c in counts.items():
        print(count_rows(name, r, c))

    print(
        f"\n## Peak GPU memory, GiB (text {args.text_tokens} tokens, {args.frames} frames of "
        f"{args.frame_size[0]}x{args.frame_size[1]}, {args.audio_seconds:g} s audio per sample)\n"
    )
    print("| model | r | batch | checkpointing | seq | weights | LoRA+Adam | activations | discriminative | generative |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for (name, r), c in counts.items():
        lora = LoraSettings(r=r, alpha=2 * r)
        for batch in args.batch_sizes:
            for checkpointing in (True, False):
                work = Workload(
                    batch_size=batch,
                    text_tokens=args.text_tokens,
                    video_frames=args.frames,
                    frame_height=args.frame_size[0],
                    frame_width=args.frame_size[1],
                    audio_seconds=args.audio_seconds,
                    gradient_checkpointing=checkpointing,
                )
                disc = estimate_memory(configs[name], c, lora, work).gib()
                gen = estimate_memory(configs[name], c, lora, replace(work, readout="generative"))
                weights = disc["quantized_weights"] + disc["unquantized_weights"]
                print(
                    f"| {name} | {r} | {batch} | {'on' if checkpointing else 'off'} "
                    f"| {gen.sequence_length} | {weights:.2f} | {disc['trainable_state']:.2f} "
                    f"| {disc['activations']:.2f} | {disc['peak']:.1f} | {gen.gib()['peak']:.1f} |"
                )

    if args.explore:
        print("\n## Which LoRA settings give the published 1.14% (7B)\n")
        print("| targets | r | LoRA in LM / audio / vision | share | share with 4-bit weights counted packed |")
        print("| --- | --- | --- | --- | --- |")
        for label, targets in EXPLORE_TARGETS.items():
            for r in (8, 16, 32, 64):
                c = count_parameters(configs["7B"], LoraSettings(r=r, target_modules=targets))
                parts = " / ".join(millions(c.lora_by_component[k]) for k in ("language_model", "audio_tower", "visual"))
                print(f"| {label} | {r} | {parts} | {100 * c.share:.3f}% | {100 * c.naive_4bit_share:.3f}% |")


if __name__ == "__main__":
    main()
