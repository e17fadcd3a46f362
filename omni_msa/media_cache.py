"""An on-disk cache of decoded, resized media arrays, so each file is decoded once per set of
processing parameters instead of once per epoch, protocol and readout.

Entries are keyed by the *content* of the source file (blake2b of its bytes), the kind of array
(e.g. video frames, audio, audio read out of a video) and a `cache_key()`: the processing settings
and, for video, the decoder that produced the frames (so decord's frames are never served where
PyAV decodes the file, nor the reverse). Arrays decoded together (frames and their rate) are
looked up together: a hit needs all of them under the key. A renamed or copied file therefore
hits; an edited file misses (its bytes changed), and a stale entry is never returned for it.
Within a process the content hash is memoised per (path, size, mtime), so repeated lookups of an
unchanged file do not re-read it; a file modified in the last two seconds is hashed anew each
time, since an edit within the file system's timestamp granularity could keep its mtime.

Entries are `.npy` files written atomically (`omni_msa.files.atomic_write`: a temporary file in
the same directory, then `os.replace`), so several processes may compute and write the same entry
at once: readers see either no file or a complete one, and the last writer wins with identical
content. An entry that cannot be read (e.g. truncated by a crash) counts as a miss and is rewritten.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from omni_msa.files import atomic_write

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_KIND = re.compile(r"^[A-Za-z0-9_]+$")
_RACY_NS = 2_000_000_000  # coarser than any file system's mtime granularity (FAT: 2 s)


class CacheKeyed(Protocol):
    def cache_key(self) -> str: ...


class MediaCache:
    """Decoded media under `root/<kind>/<key>.npy`, with hit and miss counters."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()

    def content_hash(self, path: str | Path) -> str:
        """blake2b of the file's bytes, memoised per (absolute path, size, mtime)."""
        path = Path(path).resolve()
        racy_after = time.time_ns() - _RACY_NS
        stat = path.stat()
        memo_key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            known = self._hashes.get(memo_key)
        if known is not None:
            return known
        digest = hashlib.blake2b(digest_size=20)
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        if stat.st_mtime_ns < racy_after:
            with self._lock:
                self._hashes[memo_key] = digest.hexdigest()
        return digest.hexdigest()

    def entry_path(self, path: str | Path, kind: str, settings: CacheKeyed) -> Path:
        if not _KIND.match(kind):
            raise ValueError(f"cache kind must be letters, digits or underscores, got {kind!r}")
        key = hashlib.blake2b(f"{self.content_hash(path)}\x1f{kind}\x1f{settings.cache_key()}".encode(),
                              digest_size=20).hexdigest()
        return self.root / kind / f"{key}.npy"

    def lookup(self, path: str | Path, kinds: Sequence[str], key: CacheKeyed) -> dict[str, np.ndarray] | None:
        """The arrays of every kind in `kinds` under `key`, or None (a miss) unless all are there.
        Counts one hit or one miss per kind."""
        arrays = {}
        for kind in kinds:
            array = self._read(self.entry_path(path, kind, key))
            if array is None:
                self._count(misses=len(kinds))
                return None
            arrays[kind] = array
        self._count(hits=len(kinds))
        return arrays

    def store(self, path: str | Path, arrays: Mapping[str, np.ndarray], key: CacheKeyed) -> None:
        """Write each array under (content of `path`, its kind, `key`); a failed write only logs a warning."""
        for kind, array in arrays.items():
            entry = self.entry_path(path, kind, key)
            try:
                self._write(entry, np.asarray(array))
            except OSError as error:  # a cache that cannot write (disk full, read-only) only costs time
                logger.warning("media cache: cannot write %s: %s", entry, error)

    def get_or_compute(self, path: str | Path, kind: str, settings: CacheKeyed,
                       compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array for (content of `path`, `kind`, `settings`), computing and storing
        it on a miss. Raises OSError if `path` cannot be read; a failed write only logs a warning."""
        found = self.lookup(path, (kind,), settings)
        if found is not None:
            return found[kind]
        array = np.asarray(compute())
        self.store(path, {kind: array}, settings)
        return array

    def clear(self) -> None:
        """Delete every entry (and stray temporary file) and reset the counters."""
        if self.root.is_dir():
            for kind_dir in self.root.iterdir():
                if kind_dir.is_dir() and _KIND.match(kind_dir.name):
                    for file in kind_dir.iterdir():
                        if file.suffix in (".npy", ".partial"):
                            file.unlink(missing_ok=True)
        with self._lock:
            self.hits = self.misses = 0

    def _count(self, *, hits: int = 0, misses: int = 0) -> None:
        with self._lock:
            self.hits += hits
            self.misses += misses

    @staticmethod
    def _read(entry: Path) -> np.ndarray | None:
        try:
            return np.load(entry, allow_pickle=False)
        except (OSError, ValueError, EOFError):  # absent, or unreadable: recompute
            return None

    @staticmethod
    def _write(entry: Path, array: np.ndarray) -> None:
        def write(temporary: Path) -> None:
            with open(temporary, "wb") as handle:  # a handle: np.save would append .npy to a name
                np.save(handle, array, allow_pickle=False)

        atomic_write(entry, write)
