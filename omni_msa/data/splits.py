"""The samples of one split of a manifest, with what the reader skipped."""

from __future__ import annotations

import logging
from pathlib import Path

from omni_msa.data.manifest import read_manifest
from omni_msa.data.record import DataError, Sample

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
