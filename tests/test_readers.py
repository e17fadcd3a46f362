"""Readers for MMSA feature pickles and raw-media manifests, on small data made here."""

from __future__ import annotations

import csv
import json
import logging
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from omni_msa.data.manifest import check_media_readable, read_manifest, to_hf_dataset, write_manifest
from omni_msa.data.mmsa import read_mmsa_pickle, stack_features, write_mmsa_pickle
from omni_msa.data.record import MODALITIES, DataError, Sample
from omni_msa.feature_sets import feature_set_for, get_feature_set


def shapes_of(feature_set: str) -> dict[str, tuple[int | None, int]]:
    spec = get_feature_set(feature_set)
    return {m: spec.shape(m) for m in MODALITIES}

# ---------------------------------------------------------------- helpers


def make_sample(sample_id: str, split: str, label: float, *, dataset: str = "mosi",
                feature_set: str | None = None, seed: int = 0, text: str = "a fine movie") -> Sample:
    """A sample with random non-zero features shorter than the lengths of the set (default: the
    dataset's unaligned MMSA set), and text_bert."""
    rng = np.random.default_rng(seed)
    shapes = shapes_of(feature_set or feature_set_for(dataset, "any.pkl", layout="unaligned").name)
    text_len, _ = shapes["text"]
    real = {m: max(1, shapes[m][0] - 3 - seed) for m in ("text", "audio", "vision")}
    features = {m: (rng.normal(size=(real[m] if m != "text" else text_len, shapes[m][1])) + 5.0)
                .astype(np.float32) for m in ("text", "audio", "vision")}
    mask = np.zeros(text_len, dtype=np.int64)
    mask[: real["text"]] = 1
    ids = np.where(mask == 1, rng.integers(1000, 2000, size=text_len), 0)
    text_bert = np.stack([ids, mask, np.zeros(text_len, dtype=np.int64)])
    extra = {"T": label / 2, "A": -label / 2, "V": 0.0} if dataset == "sims" else {}
    return Sample(id=sample_id, split=split, label=label, text=text, features=features,
                  lengths={"text": real["text"]}, text_bert=text_bert, extra_labels=extra)


def mosi_samples() -> list[Sample]:
    return [
        make_sample("vidA$_$1", "train", 2.4, seed=0, text="anyhow it was really good"),
        make_sample("vidA$_$2", "train", -1.2, seed=1, text="there is a sad part"),
        make_sample("vidB$_$1", "valid", 0.0, seed=2, text="it was okay"),
        make_sample("vidC$_$7", "test", -3.0, seed=3, text="terrible"),
    ]


def write_pickle(tmp_path: Path, samples: list[Sample] | None = None, *, dataset: str = "mosi",
                 name: str = "unaligned_50.pkl") -> Path:
    path = tmp_path / name
    write_mmsa_pickle(samples if samples is not None else mosi_samples(), path, dataset=dataset)
    return path


def edit_pickle(path: Path, edit) -> None:
    with path.open("rb") as handle:
        data = pickle.load(handle)
    edit(data)
    with path.open("wb") as handle:
        pickle.dump(data, handle)


def write_wav(path: Path, seconds: float = 0.25) -> Path:
    import soundfile

    t = np.arange(int(16000 * seconds)) / 16000
    soundfile.write(path, 0.1 * np.sin(2 * np.pi * 220 * t), 16000)
    return path


def write_mp4(path: Path, frames: int = 4, size: int = 32) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=4)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = np.full((size, size, 3), 40 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def media_samples(tmp_path: Path) -> list[Sample]:
    media = tmp_path / "media"
    media.mkdir()
    return [
        Sample(id="vidA$_$1", split="train", label=1.5, text="so good, really",
               video=write_mp4(media / "a1.mp4"), audio=write_wav(media / "a1.wav")),
        Sample(id="vidA$_$2", split="valid", label=-0.6, text="not my thing",
               audio=write_wav(media / "a2.wav")),
        Sample(id="vidB$_$1", split="test", label=0.0, text="text only, with a comma"),
    ]


# ---------------------------------------------------------------- MMSA pickles


def test_mmsa_round_trip_mosi_unaligned(tmp_path: Path) -> None:
    originals = mosi_samples()
    path = write_pickle(tmp_path, originals)
    result = read_mmsa_pickle(path, dataset="mosi")

    assert [s.id for s in result.samples] == [s.id for s in originals]
    assert result.skipped == []
    assert result.nonfinite_replaced == {"text": 0, "audio": 0, "vision": 0}
    shapes = shapes_of("mosi_unaligned_50")
    for original, loaded in zip(originals, result.samples):
        assert (loaded.split, loaded.label, loaded.text) == (original.split, original.label, original.text)
        np.testing.assert_array_equal(loaded.text_bert, original.text_bert)
        for modality in ("text", "audio", "vision"):
            array = loaded.features[modality]
            assert array.shape == shapes[modality] and array.dtype == np.float32
            real = original.features[modality].shape[0]
            np.testing.assert_array_equal(array[:real], original.features[modality])
            assert not array[real:].any()
            assert loaded.lengths[modality] == original.sequence_length(modality)
    assert result.samples[0].lengths == {"text": 47, "audio": 372, "vision": 497}


def test_mmsa_only_requested_splits(tmp_path: Path) -> None:
    path = write_pickle(tmp_path)
    result = read_mmsa_pickle(path, dataset="mosi", splits=("valid",))
    assert [s.id for s in result.samples] == ["vidB$_$1"]


def test_mmsa_lengths_derived_when_absent(tmp_path: Path) -> None:
    path = write_pickle(tmp_path)

    def drop_lengths_and_bert(data):
        for part in data.values():
            del part["audio_lengths"], part["vision_lengths"], part["text_bert"]

    edit_pickle(path, drop_lengths_and_bert)
    sample = read_mmsa_pickle(path, dataset="mosi").samples[0]
    assert sample.lengths == {"text": 50, "audio": 372, "vision": 497}
    assert sample.text_bert is None


def test_mmsa_sims_extra_labels(tmp_path: Path) -> None:
    samples = [make_sample("simsA$_$1", "train", 0.8, dataset="sims", text="很好"),
               make_sample("simsA$_$2", "valid", -0.4, dataset="sims", seed=1, text="不好")]
    path = write_pickle(tmp_path, samples, dataset="sims", name="unaligned_39.pkl")
    loaded = read_mmsa_pickle(path, dataset="sims").samples
    assert [s.extra_labels for s in loaded] == [{"T": 0.4, "A": -0.4, "V": 0.0},
                                                {"T": -0.2, "A": 0.2, "V": 0.0}]
    assert loaded[0].features["vision"].shape == (55, 709)
    assert loaded[0].text == "很好"


def test_feature_set_from_name_layout_or_file_name(tmp_path: Path) -> None:
    path = tmp_path / "features.pkl"
    with pytest.raises(ValueError, match=r"cannot tell the feature set .*features\.pkl.*mosi_unaligned_50"):
        write_mmsa_pickle(mosi_samples(), path, dataset="mosi")
    write_mmsa_pickle(mosi_samples(), path, dataset="mosi", layout="unaligned")
    assert len(read_mmsa_pickle(path, dataset="mosi", layout="unaligned").samples) == 4
    assert len(read_mmsa_pickle(path, dataset="mosi", feature_set="mosi_unaligned_50").samples) == 4
    with pytest.raises(DataError, match=r"'audio'.*\(2, 375, 5\).*N x 50 x 5 of feature set mosi_aligned_50"):
        read_mmsa_pickle(path, dataset="mosi", layout="aligned")
    with pytest.raises(ValueError, match=r"unknown feature set 'mosi_50'; known: \[.*'mosi_unaligned_50'"):
        read_mmsa_pickle(path, dataset="mosi", feature_set="mosi_50")
    with pytest.raises(ValueError, match="not both"):
        read_mmsa_pickle(path, dataset="mosi", feature_set="mosi_unaligned_50", layout="unaligned")


def test_aligned_layout_round_trip_from_the_file_name(tmp_path: Path) -> None:
    samples = [make_sample(f"v$_${i}", split, 0.5 * i, feature_set="mosi_aligned_50", seed=i)
               for i, split in enumerate(["train", "valid", "test"])]
    path = write_pickle(tmp_path, samples, name="aligned_50.pkl")
    loaded = read_mmsa_pickle(path, dataset="mosi").samples
    assert {m: a.shape for m, a in loaded[0].features.items()} == {"text": (50, 768), "audio": (50, 5),
                                                                   "vision": (50, 20)}
    assert [s.lengths["audio"] for s in loaded] == [47, 46, 45]


def test_a_set_without_fixed_lengths_takes_any_length(tmp_path: Path) -> None:
    """A sequence-level set with no fixed lengths (MMSA-FET's) reads a pickle of any L."""
    rng = np.random.default_rng(0)
    samples = [Sample(id=f"v$_${i}", split=split, label=0.1 * i, text="fine",
                      features={m: rng.normal(size=(7 - i, d)).astype(np.float32) + 3.0
                                for m, d in (("text", 768), ("audio", 25), ("vision", 171))})
               for i, split in enumerate(["train", "valid", "test"])]
    path = tmp_path / "fet.pkl"
    write_mmsa_pickle(samples, path, dataset="mosi", feature_set="mmsa_fet_egemaps_openface_bert")
    loaded = read_mmsa_pickle(path, dataset="mosi", feature_set="mmsa_fet_egemaps_openface_bert").samples
    assert [s.features["audio"].shape for s in loaded] == [(7, 25)] * 3
    assert [s.lengths["vision"] for s in loaded] == [7, 6, 5]
    edit_pickle(path, lambda data: data["valid"].__setitem__("vision", np.zeros((1, 7, 170), np.float32)))
    with pytest.raises(DataError, match=r"'vision'.*'valid'.*expected \(1, None, 171\) = N x L x 171"):
        read_mmsa_pickle(path, dataset="mosi", feature_set="mmsa_fet_egemaps_openface_bert")


def test_stack_features_pads_and_reports_lengths() -> None:
    samples = mosi_samples()[:2]
    stacked, lengths = stack_features(samples, "audio")
    assert stacked.shape == (2, 372, 5) and lengths.tolist() == [372, 371]
    assert not stacked[1, 371:].any()
    with pytest.raises(DataError, match=r"vidA\$_\$1.*'audio'.*longer than 100"):
        stack_features(samples, "audio", seq_len=100)


def test_mmsa_missing_key(tmp_path: Path) -> None:
    path = write_pickle(tmp_path)
    edit_pickle(path, lambda data: data["train"].pop("audio"))
    with pytest.raises(DataError) as info:
        read_mmsa_pickle(path, dataset="mosi")
    message = str(info.value)
    assert "'audio'" in message and "'train'" in message and str(path) in message


def test_mmsa_missing_split(tmp_path: Path) -> None:
    path = write_pickle(tmp_path)
    edit_pickle(path, lambda data: data.pop("valid"))
    with pytest.raises(DataError) as info:
        read_mmsa_pickle(path, dataset="mosi")
    assert "'valid'" in str(info.value) and str(path) in str(info.value)
    assert len(read_mmsa_pickle(path, dataset="mosi", splits=("train", "test")).samples) == 3


@pytest.mark.parametrize("bad_shape", [(2, 375, 6), (2, 5, 375), (2, 300, 5)],
                         ids=["wrong-dim", "transposed", "wrong-length"])
def test_mmsa_wrong_feature_shape(tmp_path: Path, bad_shape: tuple[int, ...]) -> None:
    path = write_pickle(tmp_path)

    def replace_audio(data):
        data["train"]["audio"] = np.zeros(bad_shape, dtype=np.float32)

    edit_pickle(path, replace_audio)
    with pytest.raises(DataError) as info:
        read_mmsa_pickle(path, dataset="mosi")
    message = str(info.value)
    assert "'audio'" in message and "'train'" in message
    assert str(bad_shape) in message and "(2, 375, 5)" in message


def test_mmsa_first_dimension_differs_from_ids(tmp_path: Path) -> None:
    path = write_pickle(tmp_path)

    def extra_row(data):
        data["test"]["vision"] = np.zeros((2, 500, 20), dtype=np.float32)

    edit_pickle(path, extra_row)
    with pytest.raises(DataError, match=r"'vision'.*2 rows but split 'test' has 1 ids"):
        read_mmsa_pickle(path, dataset="mosi")


def test_mmsa_nonfinite_features_replaced_and_counted(tmp_path: Path, caplog) -> None:
    path = write_pickle(tmp_path)

    def poison(data):
        data["train"]["audio"][0, 0, :3] = [np.nan, -np.inf, np.inf]
        data["train"]["vision"][1, 5, 0] = np.nan
        data["test"]["vision"][0, 0, 0] = -np.inf
        data["test"]["text"] = data["test"]["text"].astype(np.float64)
        data["test"]["text"][0, 0, 0] = np.nan

    edit_pickle(path, poison)
    with caplog.at_level(logging.WARNING, logger="omni_msa.data.mmsa"):
        result = read_mmsa_pickle(path, dataset="mosi")
    assert result.nonfinite_replaced == {"text": 1, "audio": 3, "vision": 2}
    assert "audio 3" in caplog.text and "vision 2" in caplog.text
    by_id = {s.id: s for s in result.samples}
    assert not by_id["vidA$_$1"].features["audio"][0, :3].any()
    assert by_id["vidA$_$2"].features["vision"][5, 0] == 0
    assert by_id["vidC$_$7"].features["text"].dtype == np.float32
    assert by_id["vidC$_$7"].features["text"][0, 0] == 0


@pytest.mark.parametrize(("dataset", "key", "value"), [
    ("mosi", "regression_labels", 3.5),
    ("sims", "regression_labels", 1.2),
    ("sims", "regression_labels_T", 1.2),
])
def test_mmsa_label_out_of_range(tmp_path: Path, dataset: str, key: str, value: float) -> None:
    if dataset == "sims":
        samples = [make_sample("simsA$_$1", "train", 0.2, dataset="sims"),
                   make_sample("simsA$_$2", "train", 0.4, dataset="sims", seed=1)]
        path = write_pickle(tmp_path, samples, dataset="sims", name="unaligned_39.pkl")
        bad_id = "simsA$_$2"
    else:
        path = write_pickle(tmp_path)
        bad_id = "vidA$_$2"

    def set_label(data):
        data["train"][key][1] = value

    edit_pickle(path, set_label)
    field = "label" if key == "regression_labels" else key
    with pytest.raises(DataError, match=rf"sample '{re.escape(bad_id)}', field '{field}'.*{value}"):
        read_mmsa_pickle(path, dataset=dataset)


def test_mmsa_duplicate_ids(tmp_path: Path) -> None:
    path = write_pickle(tmp_path)

    def duplicate(data):
        data["test"]["id"] = np.array(["vidA$_$1"])

    edit_pickle(path, duplicate)
    with pytest.raises(DataError, match=r"sample 'vidA\$_\$1', field 'id'.*duplicate"):
        read_mmsa_pickle(path, dataset="mosi")


def test_mmsa_empty_text(tmp_path: Path) -> None:
    path = write_pickle(tmp_path)

    def blank(data):
        data["valid"]["raw_text"] = np.array(["  "])

    edit_pickle(path, blank)
    with pytest.raises(DataError, match=r"sample 'vidB\$_\$1', field 'text'.*empty"):
        read_mmsa_pickle(path, dataset="mosi")


def test_mmsa_skip_invalid_keeps_good_samples(tmp_path: Path) -> None:
    path = write_pickle(tmp_path)

    def corrupt(data):
        data["train"]["regression_labels"][0] = 3.5
        data["valid"]["raw_text"] = np.array([""])

    edit_pickle(path, corrupt)
    result = read_mmsa_pickle(path, dataset="mosi", skip_invalid=True)
    assert [s.id for s in result.samples] == ["vidA$_$2", "vidC$_$7"]
    assert [(e.sample_id, e.field) for e in result.skipped] == [("vidA$_$1", "label"), ("vidB$_$1", "text")]
    assert "2 skipped" in result.summary()


def test_write_mmsa_rejects_too_long_sequence(tmp_path: Path) -> None:
    sample = make_sample("vidA$_$1", "train", 1.0)
    sample.features["vision"] = np.ones((501, 20), dtype=np.float32)
    with pytest.raises(DataError, match=r"vidA\$_\$1.*'vision'.*longer than 500"):
        write_mmsa_pickle([sample], tmp_path / "unaligned_50.pkl", dataset="mosi")


# ---------------------------------------------------------------- manifests


@pytest.mark.parametrize("name", ["manifest.csv", "manifest.jsonl"])
def test_manifest_round_trip_with_relative_media(tmp_path: Path, name: str) -> None:
    originals = media_samples(tmp_path)
    path = tmp_path / name
    write_manifest(originals, path)
    text = path.read_text(encoding="utf-8")
    assert "media/a1.mp4" in text and str(tmp_path) not in text

    result = read_manifest(path, dataset="mosi", decode_media=True)
    assert [(s.id, s.split, s.label, s.text, s.video, s.audio) for s in result.samples] == \
        [(s.id, s.split, s.label, s.text, s.video and s.video.resolve(), s.audio and s.audio.resolve())
         for s in originals]
    assert result.samples[0].video.is_absolute()

    dataset = to_hf_dataset(result.samples)
    assert dataset.column_names == ["id", "split", "label", "text", "video", "audio"]
    assert dataset[2]["video"] is None and dataset[0]["video"] == str(originals[0].video)


def test_manifest_real_mosi_layout_text_only(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "train.csv", ["id", "video_id", "clip_id", "split", "label", "text", "transcript"], [
        ["abcdEFGh123$_$1", "abcdEFGh123", 1, "train", 2.4, "anyhow it was good", "ANYHOW IT WAS GOOD"],
        ["abcdEFGh123$_$10", "abcdEFGh123", 10, "train", -1.2, "there is sad part", "THERE IS SAD PART"],
        ["xyz$_$3", "xyz", 3, "valid", 0, "uh i liked it, mostly", "UH I LIKED IT, MOSTLY"],
    ])
    result = read_manifest(path, dataset="mosi")
    assert [(s.id, s.split, s.label, s.text) for s in result.samples] == [
        ("abcdEFGh123$_$1", "train", 2.4, "anyhow it was good"),
        ("abcdEFGh123$_$10", "train", -1.2, "there is sad part"),
        ("xyz$_$3", "valid", 0.0, "uh i liked it, mostly"),
    ]
    assert all(s.video is None and s.audio is None and not s.features for s in result.samples)


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("label", "abc", "not a number"),
    ("label", "3.5", "outside"),
    ("split", "dev", "not one of"),
])
def test_manifest_bad_cell(tmp_path: Path, field: str, value: str, expected: str) -> None:
    row = {"id": "vid$_$2", "split": "train", "label": "1.0", "text": "fine"}
    row[field] = value
    path = write_csv(tmp_path / "m.csv", list(row), [["vid$_$1", "train", "0.5", "ok"], list(row.values())])
    with pytest.raises(DataError, match=rf"sample 'vid\$_\$2', field '{field}', in .*m\.csv:3: .*{expected}"):
        read_manifest(path, dataset="mosi")


def test_manifest_sims_label_range(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", ["id", "split", "label", "text"], [["s$_$1", "train", 1.2, "好"]])
    with pytest.raises(DataError, match=r"sample 's\$_\$1', field 'label'.*outside \[-1, 1\]"):
        read_manifest(path, dataset="sims")


def test_manifest_empty_text(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"id": "v$_$1", "split": "test", "label": 1, "text": ""}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"sample 'v\$_\$1', field 'text'.*empty transcript"):
        read_manifest(path, dataset="mosi")


def test_manifest_duplicate_ids(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", ["id", "split", "label", "text"],
                     [["v$_$1", "train", 1, "a"], ["v$_$1", "valid", 2, "b"]])
    with pytest.raises(DataError, match=r"sample 'v\$_\$1', field 'id'.*duplicate id"):
        read_manifest(path, dataset="mosi")


def test_manifest_missing_media_file(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", ["id", "split", "label", "text", "video"],
                     [["v$_$1", "train", 1, "a", ""], ["v$_$2", "train", 1, "b", "clips/missing.mp4"]])
    with pytest.raises(DataError, match=r"sample 'v\$_\$2', field 'video'.*not found.*missing\.mp4"):
        read_manifest(path, dataset="mosi")
    unchecked = read_manifest(path, dataset="mosi", check_media=False).samples
    assert unchecked[1].video == (tmp_path / "clips" / "missing.mp4").resolve()


@pytest.mark.parametrize(("field", "name"), [("video", "bad.mp4"), ("audio", "bad.wav"), ("audio", "bad.m4a")])
def test_manifest_unreadable_media(tmp_path: Path, field: str, name: str) -> None:
    (tmp_path / name).write_bytes(b"\x00\x13garbage, not media" * 40)
    path = write_csv(tmp_path / "m.csv", ["id", "split", "label", "text", field],
                     [["v$_$1", "train", 1, "a", name]])
    assert len(read_manifest(path, dataset="mosi").samples) == 1
    with pytest.raises(DataError, match=rf"sample 'v\$_\$1', field '{field}'.*{name}.*cannot decode"):
        read_manifest(path, dataset="mosi", decode_media=True)


def test_check_media_readable_requires_a_video_stream(tmp_path: Path) -> None:
    sample = Sample(id="v$_$1", split="train", label=0.0, text="a", video=write_wav(tmp_path / "a.wav"))
    with pytest.raises(DataError, match=r"sample 'v\$_\$1', field 'video'.*no video stream"):
        check_media_readable(sample)


@pytest.mark.parametrize("name", ["m.csv", "m.jsonl"])
def test_manifest_missing_required_column(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".csv"):
        write_csv(path, ["id", "split", "text"], [["v$_$1", "train", "a"]])
    else:
        path.write_text(json.dumps({"id": "v$_$1", "split": "train", "text": "a"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_manifest(path, dataset="mosi", skip_invalid=True)
    assert info.value.field == "label"
    assert "field 'label'" in str(info.value) and str(path) in str(info.value)


def test_manifest_skip_invalid_keeps_good_rows(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", ["id", "split", "label", "text", "audio"], [
        ["v$_$1", "train", 1, "good", ""],
        ["v$_$2", "train", 9, "label too big", ""],
        ["v$_$3", "valid", 0, "", ""],
        ["v$_$4", "test", -1, "no such audio", "gone.wav"],
        ["v$_$5", "test", -2, "also good", ""],
    ])
    result = read_manifest(path, dataset="mosi", skip_invalid=True)
    assert [s.id for s in result.samples] == ["v$_$1", "v$_$5"]
    assert [(e.sample_id, e.field) for e in result.skipped] == [
        ("v$_$2", "label"), ("v$_$3", "text"), ("v$_$4", "audio")]


# ---------------------------------------------------------------- import weight


def test_readers_import_light() -> None:
    code = ("import sys, omni_msa.data.mmsa, omni_msa.data.manifest, omni_msa.data.npz_features, "
            "omni_msa.data.mmsa_fet, omni_msa.data.feature_files, omni_msa.feature_sets; "
            "omni_msa.feature_sets.feature_set_names(); "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'av') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
