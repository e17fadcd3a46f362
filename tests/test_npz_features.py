"""features.npz + manifest.csv: the reader, each of its errors, the writer, and the one entry to
feature files; on data made here."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from omni_msa.data.feature_files import feature_manifest, read_feature_file
from omni_msa.data.mmsa import write_mmsa_pickle
from omni_msa.data.npz_features import read_npz_features, write_npz_features
from omni_msa.data.record import MODALITIES, DataError, Sample

DIMS = {"text": 100, "audio": 73, "vision": 100}      # mosi_utterance


def utterance_samples(n: int = 9, seed: int = 0) -> list[Sample]:
    """Two thirds train, one third valid, utterance-level features of the mosi_utterance dims."""
    rng = np.random.default_rng(seed)
    return [Sample(id=f"vid{i // 3}$_${i % 3 + 1}", split="train" if i < 2 * n // 3 else "valid",
                   label=round(float(rng.uniform(-3, 3)), 1), text=f"utterance number {i}",
                   features={m: rng.normal(size=(1, d)).astype(np.float32) for m, d in DIMS.items()},
                   lengths=dict.fromkeys(MODALITIES, 1))
            for i in range(n)]


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, list[Sample]]:
    samples = utterance_samples()
    path = tmp_path / "features.npz"
    write_npz_features(samples, path, feature_set="mosi_utterance")
    return path, samples


def rewrite(path: Path, **arrays: np.ndarray | None) -> None:
    """Replace (or, with None, remove) arrays of an npz in place."""
    with np.load(path, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    for key, value in arrays.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    np.savez(path, **data)


def manifest_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def write_rows(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)


# --- reading -------------------------------------------------------------------------------

def test_round_trip_gives_the_one_sample_record(written):
    path, samples = written
    result = read_npz_features(path, dataset="mosi")
    assert result.skipped == [] and result.summary() == "9 samples"
    assert [(s.id, s.split, s.label, s.text) for s in result.samples] == [(s.id, s.split, s.label, s.text)
                                                                          for s in samples]
    for original, loaded in zip(samples, result.samples):
        assert loaded.lengths == {"text": 1, "audio": 1, "vision": 1} and loaded.text_bert is None
        for m in MODALITIES:
            assert loaded.features[m].shape == (1, DIMS[m]) and loaded.features[m].dtype == np.float32
            np.testing.assert_array_equal(loaded.features[m], original.features[m])
    assert manifest_rows(path.parent / "manifest.csv")[:2] == [["id", "split", "label", "text"],
                                                               [samples[0].id, "train", repr(samples[0].label),
                                                                "utterance number 0"]]
    with np.load(path, allow_pickle=False) as npz:
        assert str(npz["feature_set"]) == "mosi_utterance" and npz["audio"].shape == (9, 73)
    valid = read_npz_features(path, dataset="mosi", splits=("valid",)).samples
    assert [s.id for s in valid] == [s.id for s in samples if s.split == "valid"]


def test_the_published_layout_float32_labels_extra_columns_and_empty_text(tmp_path):
    """As in mosi_utterance: no feature_set array (the file name says it), float32 labels, more
    manifest columns, and a row whose text is empty (kept: the sample carries features)."""
    samples = utterance_samples(6)
    path = tmp_path / "features.npz"
    np.savez(path, id=np.array([s.id for s in samples]), split=np.array([s.split for s in samples]),
             label=np.array([s.label for s in samples], dtype=np.float32),
             **{m: np.concatenate([s.features[m] for s in samples]) for m in MODALITIES})
    write_rows(tmp_path / "manifest.csv", [["id", "video_id", "split", "label", "text", "transcript"]]
               + [[s.id, s.id.split("$")[0], s.split, str(s.label), "" if i == 1 else s.text, s.text.upper()]
                  for i, s in enumerate(samples)])
    loaded = read_npz_features(path, dataset="mosi").samples
    assert [s.label for s in loaded] == [s.label for s in samples], "labels as the manifest writes them"
    assert loaded[1].text == "" and loaded[0].text == samples[0].text
    other = tmp_path / "other.npz"
    path.rename(other)
    with pytest.raises(ValueError, match="cannot tell the feature set of .*other.npz"):
        read_npz_features(other, tmp_path / "manifest.csv", dataset="mosi")
    assert len(read_npz_features(other, tmp_path / "manifest.csv", dataset="mosi",
                                 feature_set="mosi_utterance").samples) == 6


def test_ids_are_matched_row_by_row(written):
    path, samples = written
    manifest = path.parent / "manifest.csv"
    rows = manifest_rows(manifest)
    write_rows(manifest, [rows[0], rows[2], rows[1], *rows[3:]])
    with pytest.raises(DataError) as error:
        read_npz_features(path, dataset="mosi")
    assert (error.value.sample_id, error.value.field, error.value.source) == (samples[0].id, "id", str(path))
    assert "the manifest's is 'vid0$_$2'" in str(error.value)


def test_a_manifest_row_missing_or_left_over(written):
    path, samples = written
    manifest = path.parent / "manifest.csv"
    rows = manifest_rows(manifest)
    write_rows(manifest, rows[:-1])
    with pytest.raises(DataError, match=r"sample 'vid2\$_\$3', field 'id'.*row 8 of the features has no manifest row"):
        read_npz_features(path, dataset="mosi")
    write_rows(manifest, [*rows, ["vid9$_$1", "valid", "0.5", "one more"]])
    with pytest.raises(DataError, match=r"sample 'vid9\$_\$1', field 'id', in .*manifest.csv: in the manifest but not"):
        read_npz_features(path, dataset="mosi")


def test_a_missing_modality_array(written):
    path, _ = written
    rewrite(path, vision=None)
    with pytest.raises(DataError, match=r"field 'vision', in .*features.npz: array missing \(the file has"):
        read_npz_features(path, dataset="mosi")


@pytest.mark.parametrize(("shape", "expected"), [((9, 72), "N x 73"), ((9, 2, 73), "N x 73"), ((8, 73), "N = 9")])
def test_a_wrong_dimension_names_the_field_and_the_set(written, shape, expected):
    path, _ = written
    rewrite(path, audio=np.zeros(shape, np.float32))
    with pytest.raises(DataError) as error:
        read_npz_features(path, dataset="mosi")
    assert error.value.field == "audio" and error.value.source == str(path)
    assert expected in error.value.reason and "feature set mosi_utterance" in error.value.reason


def test_a_non_finite_value_names_the_sample(written):
    path, samples = written
    with np.load(path) as npz:
        text = npz["text"].copy()
    text[4, 7] = np.nan
    rewrite(path, text=text)
    with pytest.raises(DataError) as error:
        read_npz_features(path, dataset="mosi")
    assert (error.value.sample_id, error.value.field) == (samples[4].id, "text") and "NaN" in error.value.reason
    result = read_npz_features(path, dataset="mosi", skip_invalid=True)
    assert [s.id for s in result.samples] == [s.id for i, s in enumerate(samples) if i != 4]
    assert [(e.sample_id, e.field) for e in result.skipped] == [(samples[4].id, "text")]


def test_a_split_outside_train_valid_test(written):
    path, samples = written
    manifest = path.parent / "manifest.csv"
    rows = manifest_rows(manifest)
    rows[3][1] = "dev"
    write_rows(manifest, rows)
    expected = rf"sample '{re.escape(samples[2].id)}', field 'split', in .*manifest.csv:4: split 'dev' is not one of"
    with pytest.raises(DataError, match=expected):
        read_npz_features(path, dataset="mosi")
    rows[3][1] = "train"
    write_rows(manifest, rows)
    splits = np.array([s.split for s in samples])
    splits[2] = "dev"
    rewrite(path, split=splits)
    with pytest.raises(DataError, match=r"field 'split', in .*features.npz: split 'dev' is not one of"):
        read_npz_features(path, dataset="mosi")
    splits[2] = "valid"
    rewrite(path, split=splits)
    with pytest.raises(DataError, match=r"field 'split'.*'valid' in the features but 'train' in the manifest"):
        read_npz_features(path, dataset="mosi")


def test_a_label_that_disagrees_with_the_manifest(written):
    path, samples = written
    labels = np.array([s.label for s in samples])
    labels[5] += 0.1
    rewrite(path, label=labels)
    with pytest.raises(DataError) as error:
        read_npz_features(path, dataset="mosi")
    assert (error.value.sample_id, error.value.field) == (samples[5].id, "label")


def test_nothing_is_unpickled(written):
    path, samples = written
    rewrite(path, id=np.array([s.id for s in samples], dtype=object))
    with pytest.raises(DataError, match=r"field 'id'.*cannot read without unpickling"):
        read_npz_features(path, dataset="mosi")


def test_the_stored_set_and_a_requested_one_must_agree(written):
    path, _ = written
    with pytest.raises(DataError, match="holds feature set 'mosi_utterance', not 'synthetic_mosi'"):
        read_npz_features(path, dataset="mosi", feature_set="synthetic_mosi")


def test_sequence_level_round_trip_with_lengths(tmp_path):
    rng = np.random.default_rng(1)
    dims = {"text": 768, "audio": 25, "vision": 171}
    samples = [Sample(id=f"v$_${i}", split=split, label=0.5 * i, text="fine",
                      features={m: rng.normal(size=(4 + i, d)).astype(np.float32) for m, d in dims.items()})
               for i, split in enumerate(["train", "valid", "test"])]
    path = tmp_path / "fet" / "features.npz"
    write_npz_features(samples, path, feature_set="mmsa_fet_egemaps_openface_bert")
    loaded = read_npz_features(path, dataset="mosi").samples
    assert [s.features["vision"].shape for s in loaded] == [(6, 171)] * 3
    assert [s.lengths for s in loaded] == [dict.fromkeys(MODALITIES, n) for n in (4, 5, 6)]
    np.testing.assert_array_equal(loaded[1].features["audio"][:5], samples[1].features["audio"])
    assert not loaded[1].features["audio"][5:].any()


# --- writing -------------------------------------------------------------------------------

def test_the_writer_checks_against_the_set(tmp_path):
    samples = utterance_samples(3)
    samples[1].features["audio"] = np.zeros((1, 72), np.float32)
    with pytest.raises(DataError, match=r"sample 'vid0\$_\$2', field 'audio'.*feature dimension 73"):
        write_npz_features(samples, tmp_path / "features.npz", feature_set="mosi_utterance")
    samples = utterance_samples(3)
    samples[2].features["vision"][0, 3] = np.inf
    with pytest.raises(DataError, match=r"sample 'vid0\$_\$3', field 'vision'.*non-finite"):
        write_npz_features(samples, tmp_path / "features.npz", feature_set="mosi_utterance")
    samples = utterance_samples(3)
    samples[0].features["text"] = np.zeros((2, 100), np.float32)
    with pytest.raises(DataError, match=r"sample 'vid0\$_\$1', field 'text'.*longer than 1"):
        write_npz_features(samples, tmp_path / "features.npz", feature_set="mosi_utterance")
    assert not list(tmp_path.iterdir()), "nothing is written when a sample is refused"


# --- the one entry to feature files ------------------------------------------------------------

def test_feature_files_by_kind(written, tmp_path):
    path, samples = written
    assert [s.id for s in read_feature_file(path, dataset="mosi", splits=("train",)).samples] == \
        [s.id for s in samples if s.split == "train"]
    assert feature_manifest(path) == path.parent / "manifest.csv"
    assert feature_manifest(tmp_path / "unaligned_50.pkl") is None
    with pytest.raises(DataError, match="a manifest .* goes with a features.npz only"):
        feature_manifest(tmp_path / "unaligned_50.pkl", tmp_path / "m.csv")
    with pytest.raises(DataError, match=r"unsupported feature file suffix '.h5'"):
        read_feature_file(tmp_path / "x.h5", dataset="mosi")
    with pytest.raises(DataError, match="layout 'unaligned' is MMSA's"):
        read_feature_file(path, dataset="mosi", layout="unaligned")
    utterance_pickle = tmp_path / "utterance.pkl"
    three_splits = [Sample(**{**vars(s), "split": ("train", "valid", "test")[i % 3]}) for i, s in enumerate(samples)]
    write_mmsa_pickle(three_splits, utterance_pickle, dataset="mosi", feature_set="mosi_utterance")
    loaded = read_feature_file(utterance_pickle, dataset="mosi", feature_set="mosi_utterance").samples
    assert {s.features["audio"].shape for s in loaded} == {(1, 73)}
