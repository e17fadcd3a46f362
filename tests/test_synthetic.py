"""The built-in synthetic set: round trips, decodable media, element alignment, determinism and
per-modality learnability."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sklearn.linear_model import Ridge

from omni_msa.data.manifest import read_manifest
from omni_msa.data.media import read_audio, read_video_audio, read_video_frames
from omni_msa.data.mmsa import read_mmsa_pickle
from omni_msa.data.record import MODALITIES, SPLITS, Sample
from omni_msa.data.synthetic import CHUNK, SAMPLE_RATE, audio_features, make_synthetic, vision_features
from omni_msa.feature_sets import get_feature_set

ID_PATTERN = re.compile(r"^synth\d{3}\$_\$\d+$")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Sample]]:
    out = tmp_path_factory.mktemp("synthetic")
    return out, make_synthetic(60, out, seed=0)


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    return make_synthetic(300, tmp_path_factory.mktemp("large"), seed=0, with_media=False)


def _fingerprint(samples: list[Sample]) -> list[tuple]:
    return [(s.id, s.split, s.label, s.text, s.text_bert.tobytes(), dict(s.lengths),
             *(s.features[m].tobytes() for m in MODALITIES)) for s in samples]


def test_ids_and_splits_by_video(generated: tuple[Path, list[Sample]]) -> None:
    _, samples = generated
    assert len(samples) == 60
    assert all(ID_PATTERN.match(s.id) for s in samples)
    split_of_video: dict[str, set[str]] = {}
    for s in samples:
        split_of_video.setdefault(s.id.split("$_$")[0], set()).add(s.split)
    assert all(len(splits) == 1 for splits in split_of_video.values())
    assert max(sum(s.id.startswith(v) for s in samples) for v in split_of_video) > 1
    counts = {split: sum(s.split == split for s in samples) for split in SPLITS}
    assert counts["train"] > counts["valid"] > 0 and counts["test"] > 0


def test_round_trip_through_pickle_and_manifest(generated: tuple[Path, list[Sample]]) -> None:
    out, samples = generated
    shapes = {m: get_feature_set("synthetic_mosi").shape(m) for m in MODALITIES}
    loaded = read_mmsa_pickle(out / "unaligned.pkl", dataset="mosi", layout="unaligned").samples
    by_id = {s.id: s for s in loaded}
    assert sorted(by_id) == sorted(s.id for s in samples)
    for s in samples:
        back = by_id[s.id]
        assert (back.split, back.label, back.text, back.lengths) == (s.split, s.label, s.text, s.lengths)
        np.testing.assert_array_equal(back.text_bert, s.text_bert)
        for m in MODALITIES:
            assert s.features[m].shape == shapes[m] and s.features[m].dtype == np.float32
            np.testing.assert_array_equal(back.features[m], s.features[m])

    rows = read_manifest(out / "manifest.csv", dataset="mosi").samples
    assert [(r.id, r.split, r.label, r.text, r.video, r.audio) for r in rows] == \
        [(s.id, s.split, s.label, s.text, s.video, s.audio) for s in samples]


def test_media_decode_and_agree_with_features(generated: tuple[Path, list[Sample]]) -> None:
    _, samples = generated
    for s in samples:
        assert sf.info(str(s.audio)).samplerate == SAMPLE_RATE
        wave = read_audio(s.audio)
        muxed = read_video_audio(s.video)
        assert abs(len(muxed) - len(wave)) <= 1024  # at most one AAC frame
        n = min(len(muxed), len(wave))
        assert np.abs(muxed[:n] - wave[:n]).mean() < 0.2 * np.abs(wave).mean()
        frames = read_video_frames(s.video)
        assert frames.dtype == np.uint8 and frames.shape[1:] == (32, 32, 3)
        # features are real signal processing of the media (wav: 16-bit; mp4: lossy codec)
        audio, recomputed = s.features["audio"][: s.lengths["audio"]], audio_features(wave)
        others = [0, 1, 2, 4]  # column 3, the dominant frequency, is noise in the silent chunks
        np.testing.assert_allclose(recomputed[:, others], audio[:, others], atol=0.02)
        assert np.mean(np.isclose(recomputed[:, 3], audio[:, 3], atol=0.02)) > 0.8
        vision = s.features["vision"][: s.lengths["vision"]]
        assert np.abs(vision_features(frames) - vision).mean() < 0.02


def test_elements_line_up_across_features_and_media(generated: tuple[Path, list[Sample]]) -> None:
    _, samples = generated
    for s in samples:
        words = s.text.split()
        assert 4 <= len(words) <= 12 and s.text == s.text.lower()
        assert len(words) == s.lengths["text"] - 2 == s.text_bert[1].sum() - 2
        assert s.text_bert[0, 0] == 101 and s.text_bert[0, len(words) + 1] == 102
        assert len(set(s.text_bert[0, 1:len(words) + 1])) == len(set(words))
        wave, sr = sf.read(str(s.audio))
        assert sr == SAMPLE_RATE and len(wave) % CHUNK == 0
        assert len(wave) // CHUNK == s.lengths["audio"] <= 375
        assert len(read_video_frames(s.video)) == s.lengths["vision"]
        for m in MODALITIES:
            assert not s.features[m][s.lengths[m]:].any()
            assert s.features[m][: s.lengths[m]].any(axis=1).all()


def test_deterministic_from_seed(generated: tuple[Path, list[Sample]], tmp_path: Path) -> None:
    _, samples = generated
    again = make_synthetic(60, tmp_path / "again", seed=0)
    assert _fingerprint(again) == _fingerprint(samples)
    for a, b in zip(again, samples):
        assert a.audio.read_bytes() == b.audio.read_bytes()
        np.testing.assert_array_equal(read_video_audio(a.video), read_video_audio(b.video))
        np.testing.assert_array_equal(read_video_frames(a.video), read_video_frames(b.video))
    no_media = make_synthetic(60, tmp_path / "fast", seed=0, with_media=False)
    assert _fingerprint(no_media) == _fingerprint(samples)
    assert all(s.audio is None and s.video is None for s in no_media)
    assert not (tmp_path / "fast" / "media").exists()
    other = make_synthetic(60, tmp_path / "other", seed=1, with_media=False)
    assert [s.label for s in other] != [s.label for s in samples]
    assert [s.text for s in other] != [s.text for s in samples]


def test_other_dataset_shape(tmp_path: Path) -> None:
    make_synthetic(20, tmp_path, seed=3, dataset_shape="sims", with_media=False)
    loaded = read_mmsa_pickle(tmp_path / "unaligned.pkl", dataset="sims", layout="unaligned").samples
    assert len(loaded) == 20
    for s in loaded:
        assert -1.0 <= s.label <= 1.0 and set(s.extra_labels) == {"T", "A", "V"}
        assert {m: s.features[m].shape for m in MODALITIES} == {m: get_feature_set("sims_unaligned_39").shape(m)
                                                                for m in MODALITIES}


def _pooled(samples: list[Sample], modality: str) -> np.ndarray:
    return np.stack([s.features[modality][: s.lengths[modality]].mean(axis=0) for s in samples])


def test_labels_are_mosi_like(large: list[Sample]) -> None:
    labels = np.array([s.label for s in large])
    assert labels.min() >= -3.0 and labels.max() <= 3.0
    np.testing.assert_allclose(labels * 5, np.round(labels * 5), atol=1e-9)
    assert 0.02 <= np.mean(labels == 0) <= 0.10
    assert labels.std() > 1.0


def test_each_modality_is_learnable_text_best(large: list[Sample]) -> None:
    labels = np.array([s.label for s in large])
    train = np.array([s.split == "train" for s in large])
    baseline = np.abs(labels[~train] - labels[train].mean()).mean()
    mae = {}
    for m in MODALITIES:
        features = _pooled(large, m)
        model = Ridge(alpha=1.0).fit(features[train], labels[train])
        mae[m] = np.abs(model.predict(features[~train]) - labels[~train]).mean()
    assert mae["text"] < 0.5 * baseline
    assert mae["audio"] < 0.85 * baseline and mae["vision"] < 0.85 * baseline
    assert mae["text"] < mae["audio"] and mae["text"] < mae["vision"]
    fused = np.concatenate([_pooled(large, m) for m in MODALITIES], axis=1)
    model = Ridge(alpha=1.0).fit(fused[train], labels[train])
    assert np.abs(model.predict(fused[~train]) - labels[~train]).mean() < mae["text"]
