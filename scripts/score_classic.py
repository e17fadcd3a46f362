"""Score a features file with a trained classic checkpoint: `omni-msa score-classic`.

    python scripts/score_classic.py --checkpoint runs/mdf_mosi/seed0 --features unaligned_50.pkl --split valid \
        --out preds.jsonl

Missingness: --inter-rate, --intra-rate (number or "uniform"), --keep text,audio, --missing-seed.
Re-running with the same --out resumes. Samples that cannot be scored go to <out>.errors.jsonl;
metrics and latency to <out>.metrics.json; see classic_msa.scoring.
"""

from __future__ import annotations

from omni_msa.cli import run_script


def main(argv: list[str] | None = None) -> None:
    run_script("score-classic", "scripts/score_classic.py", argv)


if __name__ == "__main__":
    main()
