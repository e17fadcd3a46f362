"""Times decoding the synthetic set's media with an empty and with a warm media cache.

    python scripts/bench_media_cache.py --out results/media_cache.md [--n 40] [--work /tmp/bench_media]

First pass: every sample's video (decode, frame sampling, resize) and audio with the cache empty,
writing the entries. Second pass: the same with the cache warm, once in the same process (content
hashes memoised) and once through a fresh `MediaCache` on the same directory (files re-hashed, as
in a new process). Each pass is the median of --repeats runs; the cold pass clears the cache before
each run. Imports and the readers' first-use costs are paid by an untimed warm-up decode.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np

from omni_msa.data.record import Sample
from omni_msa.data.synthetic import make_synthetic
from omni_msa.media_cache import MediaCache
from omni_msa.media_inputs import MediaSettings, decode_sample_media

ACCEPTANCE_SPEEDUP = 5.0


def median_seconds(run: Callable[[], object], repeats: int, before: Callable[[], object] = lambda: None) -> float:
    times = []
    for _ in range(repeats):
        before()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/media_cache.md"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/omni_msa_bench_media"))
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    samples: list[Sample] = make_synthetic(args.n, args.work / "data", seed=args.seed)
    settings = MediaSettings()
    decode_sample_media(samples[0], settings)  # warm-up: imports, decord/PyAV first use

    cache = MediaCache(args.work / "cache")
    decode_all = lambda c: [decode_sample_media(s, settings, c) for s in samples]  # noqa: E731
    no_cache = median_seconds(lambda: decode_all(None), args.repeats)
    cold = median_seconds(lambda: decode_all(cache), args.repeats, before=cache.clear)
    cold_hits, cold_misses = cache.hits, cache.misses
    warm = median_seconds(lambda: decode_all(cache), args.repeats)
    warm_fresh = median_seconds(lambda: decode_all(MediaCache(cache.root)), args.repeats)
    entries = list(cache.root.rglob("*.npy"))
    size_mb = sum(e.stat().st_size for e in entries) / 2**20
    first = decode_all(None)
    frames = sum(len(m.video) for m in first)
    audio_seconds = sum(len(m.audio) for m in first) / settings.sample_rate
    speedup, speedup_fresh = cold / warm, cold / warm_fresh

    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    libraries = ", ".join(f"{name} {version(name)}" for name in
                          ("numpy", "torch", "av", "decord", "qwen-omni-utils"))
    rows = [
        ("no cache (decode + resize only)", no_cache),
        ("first pass, cache empty (decode + resize + write)", cold),
        ("second pass, cache warm, same process", warm),
        ("second pass, cache warm, fresh MediaCache (files re-hashed)", warm_fresh),
    ]
    verdict = "met" if min(speedup, speedup_fresh) >= ACCEPTANCE_SPEEDUP else "NOT met"
    lines = [
        "# Media cache: first pass vs warm cache",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPU cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; {libraries}. Load average (1 min) {load_before:.1f} before and "
        f"{os.getloadavg()[0]:.1f} after: the machine is shared, so absolute times vary between runs.",
        "",
        f"Data: {len(samples)} synthetic samples (`make_synthetic(n={args.n}, seed={args.seed})`), each an "
        f"mp4 (32 x 32 at 10 fps, AAC audio muxed in) and a 16 kHz wav; {frames} frames and "
        f"{audio_seconds:.1f} s of audio after decoding. Settings: `{settings}` (frames resized to "
        f"{first[0].video.shape[1]} x {first[0].video.shape[2]}). Per sample the cache holds the frames, "
        f"their fps and the audio: {len(entries)} entries, {size_mb:.1f} MB. First pass: {cold_misses} "
        f"misses, {cold_hits} hits. Times are the median of {args.repeats} runs.",
        "",
        "| pass | seconds | ms per sample |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {sec:.3f} | {1000 * sec / len(samples):.2f} |" for name, sec in rows),
        "",
        f"Speed-up of the second pass: {speedup:.1f}x in the same process, {speedup_fresh:.1f}x through a "
        f"fresh cache object. Acceptance bar (>= {ACCEPTANCE_SPEEDUP:g}x): {verdict}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
