"""Feature-set specs: the built-in sets, spec validation, unknown names, and which set a file is
checked against."""

from __future__ import annotations

import pytest

from omni_msa.data.record import MODALITIES
from omni_msa.datasets import dataset_names, get_dataset
from omni_msa.feature_sets import FeatureSetSpec, feature_set_for, feature_set_names, get_feature_set
from omni_msa.feature_sets.base import FEATURE_SETS


def shapes(name: str) -> dict[str, tuple[int | None, int]]:
    spec = get_feature_set(name)
    return {m: spec.shape(m) for m in MODALITIES}


def test_the_mmsa_layouts_are_specs_of_their_own():
    assert shapes("mosi_unaligned_50") == {"text": (50, 768), "audio": (375, 5), "vision": (500, 20)}
    assert shapes("mosi_aligned_50") == {"text": (50, 768), "audio": (50, 5), "vision": (50, 20)}
    assert shapes("mosei_unaligned_50") == {"text": (50, 768), "audio": (500, 74), "vision": (500, 35)}
    assert shapes("mosei_aligned_50") == {"text": (50, 768), "audio": (50, 74), "vision": (50, 35)}
    assert shapes("sims_unaligned_39") == {"text": (39, 768), "audio": (400, 33), "vision": (55, 709)}
    assert [get_feature_set(n).aligned for n in ("mosi_aligned_50", "mosi_unaligned_50")] == [True, False]
    assert get_feature_set("sims_unaligned_39").file_name == "unaligned_39.pkl"


def test_utterance_and_mmsa_fet_and_synthetic_sets():
    utterance = get_feature_set("mosi_utterance")
    assert utterance.level == "utterance" and utterance.aligned
    assert shapes("mosi_utterance") == {"text": (1, 100), "audio": (1, 73), "vision": (1, 100)}
    assert "Poria" in utterance.provenance and "valid" in utterance.provenance
    fet = get_feature_set("mmsa_fet_egemaps_openface_bert")
    assert shapes(fet.name) == {"text": (None, 768), "audio": (None, 25), "vision": (None, 171)}
    assert fet.level == "sequence" and fet.aligned and "eGeMAPS" in fet.provenance
    assert shapes("synthetic_mosi") == shapes("mosi_unaligned_50")
    assert shapes("synthetic_sims") == shapes("sims_unaligned_39")
    assert "omni_msa.data.synthetic" in get_feature_set("synthetic_mosi").provenance
    assert get_feature_set("mosi_unaligned_50").describe() == (
        "mosi_unaligned_50 (sequence, unaligned): text 50 x 768, audio 375 x 5, vision 500 x 20")
    assert fet.describe().endswith("text L x 768, audio L x 25, vision L x 171")


def test_every_dataset_default_set_is_registered():
    for name in dataset_names():
        for feature_set in get_dataset(name).default_feature_sets:
            assert feature_set in feature_set_names(), (name, feature_set)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown feature set 'mosi_unaligned'; known: \[.*'mosi_utterance'"):
        get_feature_set("mosi_unaligned")


@pytest.mark.parametrize(("changes", "message"), [
    ({"dims": {"text": 100, "audio": 73}}, "dims needs a positive integer for each of"),
    ({"dims": {"text": 100, "audio": 0, "vision": 5}}, "dims needs a positive integer"),
    ({"level": "frame"}, "level 'frame'"),
    ({"provenance": " "}, "needs a name and a provenance"),
    ({"level": "utterance", "seq_lens": {"text": 2, "audio": 1, "vision": 1}}, "sequence length 1"),
    ({"aligned": True, "seq_lens": {"text": 50, "audio": 375, "vision": 500}}, "share their steps"),
    ({"seq_lens": {"text": 50, "audio": 2.5, "vision": 1}}, "seq_lens needs a positive integer"),
])
def test_spec_validation(changes, message):
    spec = {"name": "x", "dims": {"text": 100, "audio": 73, "vision": 100}, "level": "sequence",
            "provenance": "made here"}
    with pytest.raises(ValueError, match=message):
        FeatureSetSpec(**{**spec, **changes})


def test_a_name_cannot_be_taken_twice():
    other = FeatureSetSpec(name="mosi_utterance", dims={"text": 1, "audio": 1, "vision": 1}, level="utterance",
                           provenance="another one")
    with pytest.raises(ValueError, match="'mosi_utterance' is registered already"):
        FEATURE_SETS.register(other.name, other)


def test_the_set_of_a_file():
    assert feature_set_for("mosi", "a/unaligned_50.pkl").name == "mosi_unaligned_50"
    assert feature_set_for("mosei", "a/aligned_50.pkl").name == "mosei_aligned_50"
    assert feature_set_for("sims", "a/unaligned_39.pkl").name == "sims_unaligned_39"
    assert feature_set_for("mosi", "a/features.npz").name == "mosi_utterance"
    assert feature_set_for("mosi", "a/x.pkl", layout="aligned").name == "mosi_aligned_50"
    assert feature_set_for("mosi", "a/x.pkl", feature_set="mmsa_fet_egemaps_openface_bert").level == "sequence"
    with pytest.raises(ValueError, match=r"from the file name 'unaligned_39.pkl' among mosi's default sets"):
        feature_set_for("mosi", "a/unaligned_39.pkl")
    with pytest.raises(ValueError, match="unknown layout 'word'"):
        feature_set_for("mosi", "a/x.pkl", layout="word")
    with pytest.raises(ValueError, match="unknown dataset 'iemocap'"):
        feature_set_for("iemocap", "a/unaligned_50.pkl")
