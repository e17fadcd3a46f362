"""Content fingerprints of the data a run reads.

A fingerprint is the sha256 of the bytes of every manifest and feature file a run reads (not
their paths or modification times), plus the dataset, the evaluation split and the reader
options that decide which samples are read; for the built-in synthetic set it is the
generation spec instead of the files. Editing a label changes it; touching a file or copying
the data elsewhere does not. It goes into the comparison grid's run keys and run directories and
into the contenders' settings, so a finished run is reused only on the data it was trained on.

Each file is hashed once per process and version of the file (its size and modification time
are the cache key, its content is the hash), streamed, so large feature pickles cost one read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omni_msa.data.record import DataError

DIGEST_CHARS = 16
CHUNK_BYTES = 1 << 20
# The synthetic generation spec keys that decide the samples (ids, splits, labels, text,
# features); whether media files were written as well does not change them.
SYNTHETIC_KEYS = ("n", "seed", "shape")

_file_digests: dict[tuple[str, int, int, int, int], str] = {}


def file_sha256(path: str | Path, *, role: str | None = None) -> str:
    """sha256 (hex) of a file's bytes, computed once per process for each version of the file."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as error:
        raise DataError(f"cannot fingerprint the data: {error.strerror or error}", field=role, source=path) from None
    key = (str(path.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    digest = _file_digests.get(key)
    if digest is None:
        sha = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
                sha.update(chunk)
        digest = _file_digests[key] = sha.hexdigest()
    return digest


@dataclass(frozen=True)
class DataFingerprint:
    """What identifies the data of a run; `digest` is the short hash of all of it."""

    dataset: str
    split: str
    files: dict[str, str] = field(default_factory=dict)          # role -> sha256 of the file's bytes
    synthetic: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)        # reader options (skip_invalid, layout)

    @property
    def digest(self) -> str:
        text = json.dumps({"dataset": self.dataset, "split": self.split, "files": self.files,
                           "synthetic": self.synthetic, "options": self.options}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]

    def to_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "dataset": self.dataset, "split": self.split, "files": dict(self.files),
                "synthetic": self.synthetic, "options": dict(self.options)}


def data_fingerprint(dataset: str, split: str, *, manifests: Mapping[str, str | Path | None] | None = None,
                     features: str | Path | None = None, synthetic: Mapping[str, Any] | None = None,
                     **options: Any) -> DataFingerprint:
    """The fingerprint of the data read for `dataset`, evaluated (or validated) on `split`.

    `manifests` maps a split to the manifest it is read from (one file may serve several
    splits); `features` is the MMSA pickle, if any; `synthetic` the generation spec of the
    built-in set (then its generated files are not hashed); `options` are the reader options
    that select samples, e.g. `skip_invalid=True`, `features_layout="unaligned"`."""
    files: dict[str, str] = {}
    spec = None
    if synthetic is not None:
        spec = {key: synthetic[key] for key in SYNTHETIC_KEYS}
    else:
        for name, path in sorted((manifests or {}).items()):
            if path is not None:
                files[f"manifest:{name}"] = file_sha256(path, role=f"manifest:{name}")
        if features is not None:
            files["features"] = file_sha256(features, role="features")
    kept = {key: value for key, value in sorted(options.items()) if value is not None}
    return DataFingerprint(dataset=dataset, split=split, files=files, synthetic=spec, options=kept)
