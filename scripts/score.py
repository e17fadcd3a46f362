"""Score a manifest with a trained checkpoint, or zero-shot with a bare backbone: `omni-msa score`.

    python scripts/score.py --checkpoint runs/x/checkpoint-best --manifest valid.csv --out preds.jsonl
    python scripts/score.py --backbone smollm2 --kind causal_lm --manifest valid.csv --out zs.jsonl
    torchrun --standalone --nproc_per_node 2 scripts/score.py --checkpoint ... (each process takes a shard;
    on GPUs `accelerate launch --num_processes N`)

Missingness: --inter-rate, --intra-rate (number or "uniform"), --keep text,audio, --missing-seed.
Re-running with the same --out resumes. Failed samples go to <out>.errors.jsonl; metrics,
parse-status counts and latency to <out>.metrics.json.
"""

from __future__ import annotations

from omni_msa.cli import run_script


def main(argv: list[str] | None = None) -> None:
    run_script("score", "scripts/score.py", argv)


if __name__ == "__main__":
    main()
