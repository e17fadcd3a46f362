"""MMSA-FET's per-clip feature dicts, on pickles of plain numpy arrays written here."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from omni_msa.data.mmsa_fet import read_mmsa_fet, with_mmsa_fet
from omni_msa.data.record import DataError, Sample


def clip(steps: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """What MMSA-FET writes for one clip (float64 audio/vision, float32 text, int64 ids)."""
    rng = np.random.default_rng(seed)
    ids = np.concatenate([[101], rng.integers(1000, 2000, steps - 2), [102]])
    return {"audio": rng.normal(size=(steps, 25)), "vision": rng.normal(size=(steps, 171)),
            "text": rng.normal(size=(steps, 768)).astype(np.float32),
            "text_bert": np.stack([ids, np.ones(steps, np.int64), np.zeros(steps, np.int64)])}


def write(path: Path, data: dict[str, np.ndarray]) -> Path:
    path.write_bytes(pickle.dumps(data, protocol=4))
    return path


def test_reads_one_clip(tmp_path):
    data = clip()
    features = read_mmsa_fet(write(tmp_path / "v_1.feat_original.pkl", data), sample_id="v$_$1")
    assert {m: (a.shape, a.dtype) for m, a in features.features.items()} == {
        "text": ((6, 768), np.float32), "audio": ((6, 25), np.float32), "vision": ((6, 171), np.float32)}
    np.testing.assert_allclose(features.features["audio"], data["audio"].astype(np.float32))
    assert features.lengths == {"text": 6, "audio": 6, "vision": 6}
    assert features.text_bert.dtype == np.int64 and features.text_bert[0, 0] == 101


def test_padded_text_length_comes_from_the_attention_mask(tmp_path):
    data = clip(8)
    data["text_bert"][1, 6:] = 0
    assert read_mmsa_fet(write(tmp_path / "c.pkl", data)).lengths == {"text": 6, "audio": 8, "vision": 8}


def test_a_missing_key_names_the_field(tmp_path):
    data = clip()
    del data["vision"]
    with pytest.raises(DataError) as error:
        read_mmsa_fet(write(tmp_path / "c.pkl", data), sample_id="v$_$1")
    assert (error.value.sample_id, error.value.field, error.value.source) == ("v$_$1", "vision",
                                                                              str(tmp_path / "c.pkl"))
    assert "missing" in error.value.reason


@pytest.mark.parametrize(("key", "array", "message"), [
    ("audio", np.zeros((6, 24)), r"shape \(6, 24\), expected L x 25 \(feature set mmsa_fet_egemaps_openface_bert\)"),
    ("vision", np.zeros(171), r"shape \(171,\), expected L x 171"),
    ("text_bert", np.zeros((2, 6), np.int64), r"shape \(2, 6\), expected \(3, 6\)"),
    ("audio", np.zeros((5, 25)), r"steps .* differ"),
    ("vision", np.full((6, 171), np.nan), "non-finite"),
    ("text_bert", np.full((3, 6), 0.5), "token ids must be whole numbers"),
])
def test_a_wrong_array_names_the_field(tmp_path, key, array, message):
    data = clip()
    data[key] = array
    with pytest.raises(DataError, match=rf"sample 'v\$_\$1', field '{key}', in .*c\.pkl: {message}"):
        read_mmsa_fet(write(tmp_path / "c.pkl", data), sample_id="v$_$1")


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "c.pkl"
    path.write_bytes(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85q\x01Rq\x02.")
    with pytest.raises(DataError, match="refused to load the global 'os.system'"):
        read_mmsa_fet(path)
    with pytest.raises(DataError, match="not a dict"):
        read_mmsa_fet(write(tmp_path / "l.pkl", [1, 2]))     # type: ignore[arg-type]


def test_the_samples_of_a_manifest_get_their_clips_features(tmp_path):
    write(tmp_path / "vidA_1.feat_original.pkl", clip(5, seed=1))
    write(tmp_path / "vidA_2.feat_original.pkl", clip(7, seed=2))
    samples = [Sample(id="vidA$_$1", split="train", label=1.0, text="good"),
               Sample(id="vidA$_$2", split="train", label=-1.0, text="bad")]
    loaded = with_mmsa_fet(samples, tmp_path)
    assert [s.features["vision"].shape for s in loaded] == [(5, 171), (7, 171)]
    assert [(s.id, s.label, s.text) for s in loaded] == [(s.id, s.label, s.text) for s in samples]
    assert loaded[1].text_bert.shape == (3, 7) and loaded[1].sequence_length("text") == 7
    with pytest.raises(DataError, match=r"sample 'vidB\$_\$3'.*vidB_3.feat_original.pkl: file not found"):
        with_mmsa_fet([Sample(id="vidB$_$3", split="test", label=0.0, text="x")], tmp_path)
