"""An on-disk cache of extracted rows: one `.npz` per (clip content, modality, extractor and its
parameters, media settings, what missingness does to that modality), so a second pass, another
protocol's shared modalities or a resumed run do not extract again.

The key is a hash of a JSON description; the clip content is the sha256 of its media files' bytes
(and the transcript), never their paths, so copies hit and edits miss. Entries are written
atomically (`omni_msa.files.atomic_write`): a killed run leaves whole entries or none, and the
next run resumes from them. An unreadable entry counts as a miss and is rewritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from omni_msa.extract.base import Rows
from omni_msa.files import atomic_write

logger = logging.getLogger(__name__)


class FeatureCache:
    """Rows under `root/<modality>/<key>.npz`, with hits and misses counted per modality."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()

    @staticmethod
    def key(parts: dict[str, Any]) -> str:
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()

    def entry(self, modality: str, key: str) -> Path:
        return self.root / modality / f"{key}.npz"

    def load(self, modality: str, key: str) -> Rows | None:
        try:
            with np.load(self.entry(modality, key), allow_pickle=False) as stored:
                rows = Rows.from_arrays({name: stored[name] for name in stored.files})
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            self.misses[modality] += 1
            return None
        self.hits[modality] += 1
        return rows

    def store(self, modality: str, key: str, rows: Rows) -> None:
        """Write one entry; a cache that cannot write only costs time (a warning)."""
        def write(temporary: Path) -> None:
            with temporary.open("wb") as handle:   # a handle: np.savez would append .npz to a name
                np.savez(handle, **rows.arrays())

        try:
            atomic_write(self.entry(modality, key), write)
        except OSError as error:
            logger.warning("feature cache: cannot write %s: %s", self.entry(modality, key), error)
