"""Content fingerprints of a run's data: bytes, not paths or modification times."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest

from omni_msa.data import fingerprint
from omni_msa.data.fingerprint import CHUNK_BYTES, data_fingerprint, file_sha256
from omni_msa.data.record import DataError

MANIFEST = "id,split,label,text\na$_$1,train,1.0,good\na$_$2,test,-1.0,bad\n"


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "clips.csv"
    path.write_text(MANIFEST)
    return path


def test_the_fingerprint_follows_the_bytes_not_the_path_or_mtime(manifest, tmp_path):
    before = data_fingerprint("mosi", "test", manifests={"train": manifest, "test": manifest})
    copy = tmp_path / "elsewhere" / "copy.csv"
    copy.parent.mkdir()
    shutil.copy(manifest, copy)
    stat = manifest.stat()
    os.utime(manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert data_fingerprint("mosi", "test", manifests={"train": copy, "test": manifest}).digest == before.digest
    assert before.files["manifest:train"] == hashlib.sha256(MANIFEST.encode()).hexdigest()

    manifest.write_text(MANIFEST.replace("-1.0", "-1.5"))
    edited = data_fingerprint("mosi", "test", manifests={"train": copy, "test": manifest})
    assert edited.digest != before.digest
    assert edited.files["manifest:train"] == before.files["manifest:train"] != edited.files["manifest:test"]


def test_dataset_split_and_reader_options_are_part_of_it(manifest):
    base = data_fingerprint("mosi", "test", manifests={"test": manifest}, skip_invalid=False)
    others = [data_fingerprint("mosei", "test", manifests={"test": manifest}, skip_invalid=False),
              data_fingerprint("mosi", "valid", manifests={"test": manifest}, skip_invalid=False),
              data_fingerprint("mosi", "test", manifests={"test": manifest}, skip_invalid=True),
              data_fingerprint("mosi", "test", manifests={"test": manifest}, features=manifest, skip_invalid=False)]
    assert len({base.digest, *(f.digest for f in others)}) == 5
    assert base.to_dict()["options"] == {"skip_invalid": False} and len(base.digest) == 16


def test_the_synthetic_set_is_identified_by_its_generation_spec():
    spec = {"n": 40, "seed": 0, "shape": "mosi", "media": True}
    same = data_fingerprint("mosi", "test", synthetic={**spec, "media": False})
    assert data_fingerprint("mosi", "test", synthetic=spec).digest == same.digest, "media files do not change samples"
    assert data_fingerprint("mosi", "test", synthetic={**spec, "n": 41}).digest != same.digest
    assert same.files == {} and same.synthetic == {"n": 40, "seed": 0, "shape": "mosi"}


def test_each_file_version_is_hashed_once_and_large_files_stream(tmp_path, monkeypatch):
    monkeypatch.setattr(fingerprint, "_file_digests", {})
    big = tmp_path / "features.pkl"
    content = os.urandom(2 * CHUNK_BYTES + 123)
    big.write_bytes(content)
    assert file_sha256(big) == hashlib.sha256(content).hexdigest()
    stat = big.stat()
    # same size and modification time: the cached digest is used, the file is not read again
    big.write_bytes(bytes(len(content)))
    os.utime(big, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_sha256(big) == hashlib.sha256(content).hexdigest()
    os.utime(big, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert file_sha256(big) == hashlib.sha256(bytes(len(content))).hexdigest()
    assert len(fingerprint._file_digests) == 2


def test_a_missing_file_names_its_role_and_path(tmp_path):
    with pytest.raises(DataError, match=r"field 'features'.*missing\.pkl"):
        data_fingerprint("mosi", "test", features=tmp_path / "missing.pkl")
