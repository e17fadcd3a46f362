"""The samples of one split of a manifest, with what the reader skipped."""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path

from omni_msa.data.manifest import read_manifest
from omni_msa.data.record import DataError, Sample, video_of

logger = logging.getLogger(__name__)


def read_split(path: str | Path, split: str, dataset: str, skip_invalid: bool) -> tuple[list[Sample], list[DataError]]:
    """The samples of one split in a manifest (a file may hold several splits), and the invalid
    rows of the file that the reader skipped (only with `skip_invalid`)."""
    loaded = read_manifest(path, dataset=dataset, skip_invalid=skip_invalid)
    if loaded.skipped:
        logger.warning("%s: skipped %d invalid samples (first: %s)", path, len(loaded.skipped), loaded.skipped[0])
    samples = [s for s in loaded.samples if s.split == split]
    if not samples:
        found = sorted({s.split for s in loaded.samples})
        raise DataError(f"no samples of split {split!r} (its splits: {found})", field="split", source=path)
    return samples, loaded.skipped


def carve_dev(train: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(train, dev): a dev split of whole videos carved from `train`, so no speaker or topic of dev
    is trained on. The videos are ranked by a hash of (seed, video id) and the first
    round(fraction x videos) (at least one, never all) go to dev: a pure function of the seed and the
    ids, the same on every machine and in every process, whatever the order of the manifest."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"dev fraction must be in (0, 1), got {fraction}")
    videos = sorted({video_of(s.id) for s in train})
    if len(videos) < 2:
        raise DataError(f"a dev split of whole videos needs at least 2 training videos, got {len(videos)}",
                        field="dev_fraction")
    ranked = sorted(videos, key=lambda v: hashlib.sha256(f"{seed}:{v}".encode()).hexdigest())
    dev_videos = set(ranked[:min(max(1, math.floor(fraction * len(videos) + 0.5)), len(videos) - 1)])
    return [s for s in train if video_of(s.id) not in dev_videos], [s for s in train if video_of(s.id) in dev_videos]
