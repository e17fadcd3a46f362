"""The restricted unpickler: plain data of numpy 1.x and 2.x under every protocol loads; a pickle
that names anything else is refused before any of it runs."""

from __future__ import annotations

import os
import pickle
import pickletools
import warnings
from pathlib import Path

import numpy as np
import pytest

from omni_msa.data.mmsa import read_mmsa_pickle, write_mmsa_pickle
from omni_msa.data.record import DataError, Sample
from omni_msa.safe_pickle import UnsafePickleError, allowed_globals, safe_load

from conftest import assert_same_structure

MMSA_FET_DIR = Path("/work/shared/data/mosi_clips/mmsa_fet")
SYSTEM = f"{os.system.__module__}.system"  # posix.system on Linux


class Payload:
    """Unpickling this runs `touch marker`, as a malicious pickle would run anything."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def plain_data() -> dict:
    """What MMSA and MMSA-FET pickles hold: arrays of several dtypes and layouts, str arrays (MMSA's
    `id` and `raw_text` are object or unicode arrays), numpy scalars, lists, tuples, sets, bytes."""
    rng = np.random.default_rng(0)
    return {
        "train": {
            "id": np.array(["vidA$_$1", "vidA$_$2"], dtype=object),
            "raw_text": np.array(["it was good", "a sad part"]),
            "annotations": ["Positive", "Negative"],
            "text": rng.normal(size=(2, 4, 3)).astype(np.float32),
            "audio": np.asfortranarray(rng.normal(size=(2, 5))),
            "vision": rng.normal(size=(2, 6, 4))[:, ::2],  # not contiguous
            "text_bert": rng.integers(0, 30000, size=(2, 3, 4), dtype=np.int64),
            "regression_labels": np.array([1.4, -0.6]),
            "flags": np.array([True, False]),
            "raw_bytes": np.array([b"ab", b""]),
        },
        "meta": {"n": np.int64(2), "mean": np.float32(0.25), "ok": np.bool_(True), "name": np.str_("mosi"),
                 "empty": b"", "blob": b"\x00\xff", "buffer": bytearray(b"xy"), "tags": {"a", "b"},
                 "frozen": frozenset({1}), "z": 1 + 2j, "shape": (2, 4), "none": None, "nan": float("nan")},
    }


def with_numpy1_names(data: bytes) -> bytes:
    """The pickle with numpy 2's module names (`numpy._core...`) written as numpy 1.x wrote them
    (`numpy.core...`): in GLOBAL opcodes (protocols 0-3) and in the length-prefixed strings
    STACK_GLOBAL takes (protocols 4-5); `pickletools.optimize` then redoes the frames."""
    for submodule in (b"multiarray", b"numeric"):
        new, old = b"numpy.core." + submodule, b"numpy._core." + submodule
        data = data.replace(b"c" + old + b"\n", b"c" + new + b"\n")
        data = data.replace(bytes([0x8C, len(old)]) + old, bytes([0x8C, len(new)]) + new)
    assert b"numpy._core" not in data
    return pickletools.optimize(data)


def dump(tmp_path: Path, obj, protocol: int, name: str = "data.pkl") -> Path:
    path = tmp_path / name
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", range(6))
def test_plain_data_round_trips_under_every_protocol(tmp_path, protocol):
    original = plain_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy.core deprecation either
        assert_same_structure(safe_load(dump(tmp_path, original, protocol)), original)


@pytest.mark.parametrize("protocol", range(6))
def test_numpy1_module_names_load_under_numpy2(tmp_path, protocol):
    original = plain_data()
    data = with_numpy1_names(pickle.dumps(original, protocol=protocol))
    assert b"numpy.core." in data
    (tmp_path / "old.pkl").write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same_structure(safe_load(tmp_path / "old.pkl"), original)


def test_allowed_globals_are_exactly_the_plain_data_ones():
    names = {f"{module}.{name}" for module, name in allowed_globals()}
    numpy_names = {f"{package}.{function}" for package in ("numpy.core", "numpy._core")
                   for function in ("multiarray._reconstruct", "multiarray.scalar", "numeric._frombuffer")}
    builtin_names = {f"{module}.{name}" for module in ("builtins", "__builtin__")
                     for name in ("set", "frozenset", "bytes", "bytearray", "complex")}
    assert names == numpy_names | builtin_names | {"numpy.ndarray", "numpy.dtype", "_codecs.encode"}


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_os_system_payload_is_refused_and_does_not_run(tmp_path, protocol):
    marker = tmp_path / "ran"
    path = dump(tmp_path, {"train": {"raw_text": [Payload(marker)]}}, protocol)
    with pytest.raises(UnsafePickleError) as refused:
        safe_load(path)
    assert isinstance(refused.value, pickle.UnpicklingError)
    assert refused.value.global_name == SYSTEM and refused.value.source == str(path)
    assert str(path) in str(refused.value) and repr(SYSTEM) in str(refused.value)
    assert not marker.exists()


@pytest.mark.parametrize("module, name", [
    ("builtins", "eval"), ("builtins", "getattr"), ("numpy", "load"), ("numpy.core.multiarray", "fromfile"),
    ("numpy", "core.multiarray._reconstruct"),  # a dotted name is not the allowed (module, name)
    ("torch._utils", "_rebuild_tensor_v2"),
])
def test_other_globals_are_refused(tmp_path, module, name):
    path = tmp_path / "g.pkl"
    path.write_bytes(b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R.")
    with pytest.raises(UnsafePickleError, match=f"{module}.{name}"):
        safe_load(path)


def mmsa_samples() -> list[Sample]:
    rng = np.random.default_rng(1)
    shapes = {"text": (50, 768), "audio": (375, 5), "vision": (500, 20)}
    return [Sample(id=f"vid$_${i}", split=split, label=float(i) - 1.5, text=f"utterance {i}",
                   features={m: rng.normal(size=(shape[0] - i, shape[1])).astype(np.float32) + 1.0
                             for m, shape in shapes.items()})
            for i, split in enumerate(["train", "train", "valid", "test"])]


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_read_mmsa_pickle_refuses_an_os_system_payload(tmp_path, protocol):
    path = tmp_path / "unaligned_50.pkl"
    write_mmsa_pickle(mmsa_samples(), path, dataset="mosi")
    data = safe_load(path)
    data["train"]["raw_text"] = np.array([Payload(tmp_path / "ran"), "fine"], dtype=object)
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    with pytest.raises(DataError) as refused:
        read_mmsa_pickle(path, dataset="mosi")
    assert refused.value.source == str(path) and repr(SYSTEM) in refused.value.reason
    assert isinstance(refused.value.__cause__, UnsafePickleError)
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_read_mmsa_pickle_reads_the_published_layout_with_numpy1_names(tmp_path, protocol):
    """MMSA's files: object arrays of str for `id` and `raw_text`, extra keys, numpy 1.x names."""
    samples = mmsa_samples()
    path = tmp_path / "unaligned_50.pkl"
    write_mmsa_pickle(samples, path, dataset="mosi")
    data = safe_load(path)
    for part in data.values():
        part["id"] = part["id"].astype(object)
        part["raw_text"] = part["raw_text"].astype(object)
        part["annotations"] = ["Positive"] * len(part["id"])
    path.write_bytes(with_numpy1_names(pickle.dumps(data, protocol=protocol)))
    loaded = read_mmsa_pickle(path, dataset="mosi").samples
    assert [(s.id, s.split, s.label, s.text) for s in loaded] == [(s.id, s.split, s.label, s.text) for s in samples]
    for got, want in zip(loaded, samples):
        assert got.lengths["audio"] == want.features["audio"].shape[0]
        assert np.array_equal(got.features["vision"][: want.features["vision"].shape[0]], want.features["vision"])


@pytest.mark.skipif(not MMSA_FET_DIR.is_dir(), reason="needs the shared MOSI clips (/work/shared/data)")
def test_real_mmsa_fet_feature_files_load():
    paths = sorted(MMSA_FET_DIR.glob("*.pkl"))
    assert paths
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            features = safe_load(path)
        assert set(features) == {"audio", "vision", "text", "text_bert"}, path
        steps = features["text"].shape[0]
        assert features["audio"].shape == (steps, 25) and features["vision"].shape == (steps, 171), path
        assert features["text"].shape == (steps, 768) and features["text_bert"].shape == (3, steps), path
        assert features["text_bert"].dtype == np.int64 and np.all(features["text_bert"][1] == 1), path
        assert all(np.isfinite(features[m]).all() for m in ("audio", "vision", "text")), path
