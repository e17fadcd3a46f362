"""Times the shared data layer on a MOSI-sized synthetic set (2199 samples, unaligned shapes).

    python scripts/bench_data_layer.py --out results/data_layer.md [--work /tmp/bench_data]

Measures: writing and reading the MMSA pickle, drawing missingness for every id, and applying the
draws to one epoch of features. Prints the table and writes it with this command to --out.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from omni_msa.data.missing import MissingnessProtocol, apply_to_features
from omni_msa.data.mmsa import read_mmsa_pickle
from omni_msa.data.synthetic import make_synthetic

MOSI_SPLITS = (1284, 229, 686)


def timed(fn, repeats: int = 3):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/data_layer.md"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/omni_msa_bench_data"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    n = sum(MOSI_SPLITS)
    fractions = tuple(count / n for count in MOSI_SPLITS)
    rows = []
    start = time.perf_counter()
    make_synthetic(n, args.work, seed=args.seed, with_media=False, split_fractions=fractions)
    rows.append(("generate features + write pickle (once)", time.perf_counter() - start, n))
    pickle_path = args.work / "unaligned.pkl"
    size_mb = pickle_path.stat().st_size / 2**20

    loaded, seconds = timed(lambda: read_mmsa_pickle(pickle_path, dataset="mosi", layout="unaligned"))
    rows.append(("read + validate MMSA pickle", seconds, len(loaded.samples)))
    samples = loaded.samples
    ids = [s.id for s in samples]
    protocols = {
        "inter 0.5": MissingnessProtocol(inter_rate=0.5, seed=args.seed),
        "inter 0.3 + intra uniform (LNLN)": MissingnessProtocol(inter_rate=0.3, intra_rate="uniform", seed=args.seed),
    }
    for name, protocol in protocols.items():
        draws, seconds = timed(lambda protocol=protocol: [protocol.draw(i) for i in ids])
        rows.append((f"draw specs for all ids, {name}", seconds, len(ids)))
        _, seconds = timed(lambda draws=draws: [apply_to_features(s, d) for s, d in zip(samples, draws)])
        rows.append((f"apply masks to one epoch of features, {name}", seconds, len(ids)))

    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    lines = [
        "# Data layer timings (MOSI-sized synthetic set)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"2 CPU cores. {n} samples (train/valid/test {'/'.join(map(str, MOSI_SPLITS))}), unaligned "
        f"MOSI shapes (text 50 x 768, audio 375 x 5, vision 500 x 20); pickle {size_mb:.0f} MB. "
        "Times are the median of 3 runs (generation: one run).",
        "",
        "| step | seconds | samples | ms per sample |",
        "| --- | ---: | ---: | ---: |",
        *(f"| {name} | {sec:.3f} | {count} | {1000 * sec / count:.3f} |" for name, sec, count in rows),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
