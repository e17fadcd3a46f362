"""Readout cost on SmolLM2-135M-Instruct: the discriminative readout against a bare decoder forward
on the same batch (its floor), and the generative readout, all in one run.

    python scripts/bench_readout_latency.py --manifest ../shared/data/mosi/valid.csv \
        --out results/readout_latency.md [--samples 64 --repeats 5]

Same backbone with the same LoRA adapter (untrained: timing does not depend on the weights),
same prompts, left padding, batches of 1 and 16. Times are medians over repeats after one
warm-up pass; per sample = batch time / batch size.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from omni_msa.assemble import assemble
from omni_msa.backbone import BackboneConfig, decoder_of
from omni_msa.config import DataSettings, OmniRunConfig
from omni_msa.data.manifest import read_manifest
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.readouts import ReadoutSettings
from omni_msa.readouts.generative import GenerativeReadout


def median_ms(fn, batches, repeats: int) -> float:
    """Median over repeats of the total time for all batches, in ms (after one warm-up pass)."""
    for batch in batches:
        fn(batch)
    totals = []
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            fn(batch)
        totals.append(time.perf_counter() - start)
    return 1000 * float(np.median(totals))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--out", type=Path, default=Path("results/readout_latency.md"))
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--generative-repeats", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(0)

    cfg = OmniRunConfig(output_dir="/tmp/omni_msa_latency",
                        backbone=BackboneConfig(name_or_path="smollm2", kind="causal_lm"),
                        data=DataSettings(dataset="mosi", train=args.manifest, valid=args.manifest))
    assembled = assemble(cfg)
    disc = assembled.readout.eval()
    builder = assembled.builder
    tokenizer = builder.tokenizer
    gen = GenerativeReadout(disc.backbone, ReadoutSettings(kind="generative"), (-3.0, 3.0), builder.stop_token_ids,
                            tokenizer.pad_token_id, lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
                            tokenizer).eval()
    samples = read_manifest(args.manifest, dataset="mosi", skip_invalid=True).samples[:args.samples]
    protocol = MissingnessProtocol()
    items = [builder.prepare(s, protocol.draw(s.id)) for s in samples]
    decoder = decoder_of(disc.backbone)

    def bare(batch):
        with torch.no_grad():
            return decoder(**batch.model_inputs).last_hidden_state

    rows = []
    for batch_size in (1, 16):
        batches = [builder.collate(items[i:i + batch_size], padding_side="left")
                   for i in range(0, len(items), batch_size)]
        tokens = float(np.mean([b.model_inputs["attention_mask"].sum().item() / len(b.ids) for b in batches]))
        # interleave the two measurements so drifting machine load hits both alike
        floor = median_ms(bare, batches, args.repeats)
        readout = median_ms(disc.predict, batches, args.repeats)
        floor_again = median_ms(bare, batches, args.repeats)
        floor = min(floor, floor_again)
        generative = median_ms(gen.predict, batches, args.generative_repeats)
        n = len(items)
        rows.append((batch_size, tokens, floor / n, readout / n, readout / floor, generative / n, generative / readout))
        print(rows[-1], flush=True)

    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    lines = [
        "# Readout latency: discriminative vs bare decoder forward vs generative (SmolLM2-135M-Instruct, CPU)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, 2 CPU cores, torch "
        f"{torch.__version__}. {len(items)} MOSI valid transcripts in the shared prompt (text only), "
        f"LoRA r={cfg.lora.r} on the decoder projections, float32. Medians of {args.repeats} passes "
        f"(generative: {args.generative_repeats}) after a warm-up pass; ms per sample = pass time / samples.",
        "",
        "| batch | mean prompt tokens | bare decoder forward (ms/sample) | discriminative readout (ms/sample) "
        "| discriminative / bare | generative readout (ms/sample) | generative / discriminative |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(f"| {b} | {t:.0f} | {f:.2f} | {d:.2f} | {r:.3f}x | {g:.2f} | {gr:.1f}x |" for b, t, f, d, r, g, gr in rows),
        "",
        "The bare forward is the decoder stack alone (`decoder_of(model)`, final norm included, no lm_head): "
        "the least any readout of the last hidden state can cost. The discriminative readout adds the "
        "last-token gather and the float32 head. The generative readout runs the lm_head and greedy decoding "
        f"of up to {ReadoutSettings().max_new_tokens} new tokens with the KV cache, stopped at the end-of-turn "
        "token or a line break.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
