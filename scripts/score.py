"""Score a manifest with a trained checkpoint, or zero-shot with a bare backbone (generative).

    python scripts/score.py --checkpoint runs/x/checkpoint-best --manifest valid.csv --out preds.jsonl
    python scripts/score.py --backbone smollm2 --kind causal_lm --manifest valid.csv --out zs.jsonl
    torchrun --standalone --nproc_per_node 2 scripts/score.py --checkpoint ... (each process takes a shard;
    on GPUs `accelerate launch --num_processes N`)

Missingness: --inter-rate, --intra-rate (number or "uniform"), --keep text,audio, --missing-seed.
Re-running with the same --out resumes. Failed samples go to <out>.errors.jsonl; metrics,
parse-status counts and latency to <out>.metrics.json.
"""

from __future__ import annotations

import argparse
import json
import logging

from omni_msa.backbone import BackboneConfig
from omni_msa.config import DataSettings, OmniRunConfig
from omni_msa.data.manifest import read_manifest
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.readouts import ReadoutSettings
from omni_msa.score import load_scorer, score_file, zero_shot_scorer


def main() -> None:
    parser = argparse.ArgumentParser(description="Score a manifest.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a checkpoint directory written by train_omni.py")
    source.add_argument("--backbone", help="zero-shot generative scoring with this backbone (path, hub id or 'smollm2')")
    parser.add_argument("--kind", default="qwen2_5_omni_thinker", choices=["qwen2_5_omni_thinker", "causal_lm"])
    parser.add_argument("--quantization", default="none", choices=["none", "8bit", "4bit"])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--dataset", default=None, help="mosi, mosei or sims (default: the checkpoint's)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--inter-rate", type=float, default=0.0)
    parser.add_argument("--intra-rate", default="0")
    parser.add_argument("--keep", default=None, help="comma-separated kept modalities, e.g. text,audio")
    parser.add_argument("--missing-seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.checkpoint:
        assembled, cfg = load_scorer(args.checkpoint)
    else:
        cfg = OmniRunConfig(output_dir=".", backbone=BackboneConfig(name_or_path=args.backbone, kind=args.kind,
                                                                quantization=args.quantization),
                        data=DataSettings(dataset=args.dataset or "mosi", train=args.manifest, valid=args.manifest),
                        readout=ReadoutSettings(kind="generative_zero_shot"))
        assembled = zero_shot_scorer(cfg)
    dataset = args.dataset or cfg.data.dataset
    loaded = read_manifest(args.manifest, dataset=dataset, skip_invalid=True)
    intra = args.intra_rate if args.intra_rate == "uniform" else float(args.intra_rate)
    protocol = MissingnessProtocol(inter_rate=args.inter_rate, intra_rate=intra,
                                   keep=None if args.keep is None else frozenset(args.keep.split(",")),
                                   seed=args.missing_seed)
    summary = score_file(assembled, cfg, loaded.samples, args.out, protocol=protocol,
                         batch_size=args.batch_size, invalid=loaded.skipped)
    if summary is not None:
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
