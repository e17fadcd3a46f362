"""A classic model in the comparison harness on features extracted from the raw media
(`data.extract`, omni_msa.extract.source), on the synthetic set's generated clips.

The recipe registered here computes the synthetic set's own audio and vision descriptors from the
decoded media and a bag of words from the transcript, so a model can learn from what it extracts in
seconds; the real extractors are tested in tests/test_extract.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from omni_msa.compare.config import compare_config_from_dict
from omni_msa.compare.grid import ROWS_FILE, prepare_data, run_grid
from omni_msa.data.missing import AUDIO_CHUNK_SECONDS, MissingnessProtocol
from omni_msa.data.synthetic import CHUNK, VOCABULARY, audio_features, vision_features
from omni_msa.extract import ModalityExtractor, Recipe, Rows, register_extractor, register_recipe
from omni_msa.extract.base import zero_rows
from omni_msa.extract.extractors.dlib_face import frame_times
from omni_msa.feature_sets import FeatureSetSpec, register_feature_set
from omni_msa.files import read_jsonl
from omni_msa.media_inputs import MediaSettings
from omni_msa.scoring_io import errors_path_for

WORDS = {word: i for i, word in enumerate(VOCABULARY)}
DIMS = {"text": len(WORDS) + 1, "audio": 5, "vision": 20}
MEDIA = {"fps": 10.0, "min_frames": 2, "max_frames": 64, "min_pixels": 784, "max_pixels": 3136}


def _words(clip, params) -> Rows:
    words = clip.text.split()
    values = np.zeros((len(words) + 2, DIMS["text"]), np.float32)
    for row, word in enumerate(words, start=1):
        values[row, WORDS.get(word, len(WORDS))] = 1.0      # the placeholder (a masked word): the last column
    ids = np.array([101, *(1000 + WORDS.get(w, -900) for w in words), 102])
    return Rows(values=values, input_length=len(words), text_bert=np.stack([ids, np.ones_like(ids), 0 * ids]),
                word_ids=np.array([-1, *range(len(words)), -1]))


def _no_words(n, rate, params) -> Rows:
    ids = np.array([101, *[100] * n, 102])
    return Rows(values=np.zeros((n + 2, DIMS["text"]), np.float32), input_length=n,
                text_bert=np.stack([ids, np.ones_like(ids), 0 * ids]), word_ids=np.array([-1, *range(n), -1]))


def _voice(clip, params) -> Rows:
    values = audio_features(clip.wave)
    return Rows(values=values, input_length=len(clip.wave), times=(np.arange(len(values)) + 0.5) * AUDIO_CHUNK_SECONDS)


def _no_voice(n, rate, params) -> Rows:
    steps = n // CHUNK
    return zero_rows(steps, DIMS["audio"], input_length=n, times=(np.arange(steps) + 0.5) * AUDIO_CHUNK_SECONDS)


def _face(clip, params) -> Rows:
    return Rows(values=vision_features(clip.frames), input_length=len(clip.frames),
                times=frame_times(len(clip.frames), clip.fps), detected=np.ones(len(clip.frames), bool))


def _no_face(n, rate, params) -> Rows:
    return zero_rows(n, DIMS["vision"], input_length=n, times=frame_times(n, rate), vision=True)


for _name, _modality, _run, _drop in (("synth_words", "text", _words, _no_words),
                                      ("synth_voice", "audio", _voice, _no_voice),
                                      ("synth_face", "vision", _face, _no_face)):
    register_extractor(ModalityExtractor(name=_name, modality=_modality, dim=DIMS[_modality], version="1",
                                         extract=_run, dropped=_drop))
for _aligned in (False, True):
    register_feature_set(FeatureSetSpec(name="test_synthetic_media" + "_aligned" * _aligned, level="sequence",
                                        aligned=_aligned, dims=DIMS,
                                        provenance="the synthetic set's descriptors, tests/test_compare_extracted.py"))
register_recipe(Recipe("test_synthetic_media", {"text": "synth_words", "audio": "synth_voice",
                                                "vision": "synth_face"}))


def comparison(tmp_path, **data) -> dict:
    classic = tmp_path / "mdf_tiny.yaml"
    classic.write_text("output_dir: unused\nmodel: {name: mdf, dim: 32, lstm_hidden: 16, mapper_hidden: 32, "
                       "extractor_hidden: 32, predictor_hidden: 32, generator_hidden: 32}\n"
                       "data: {synthetic_n: 10}\n"
                       "train: {lr: 3.0e-3, batch_size: 16, patience: 0, stages: [{epochs: 12}]}\n")
    return {"output_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "results"), "dataset": "mosi",
            "data": {"synthetic_n": 160, "extract": "test_synthetic_media", **data}, "seeds": [0],
            "evaluate_on": "valid", "eval_protocols": [{}, {"keep": ["text"]}, {"intra_rate": 0.5}],
            "classic": [str(classic)],
            # a readout that reads media: extraction decodes as it does (the grid below runs the classic model only)
            "omni": {"base": {"backbone": {"name_or_path": "tiny-thinker"}, "media": MEDIA},
                     "readouts": ["discriminative"]}}


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The grid run once, with one valid clip's media corrupted after generation."""
    from classic_msa.contender import classic_contenders

    tmp_path = tmp_path_factory.mktemp("extracted")
    cfg = compare_config_from_dict(comparison(tmp_path))
    data = prepare_data(cfg, multimodal=True)
    broken = data.samples["valid"][3]
    for path in (broken.audio, broken.video):
        path.write_bytes(b"not a media file")
    counts = run_grid(cfg, classic_contenders(cfg, device="cpu"), data)
    return cfg, data, broken, counts, read_jsonl(tmp_path / "results" / ROWS_FILE)


def test_the_extraction_decodes_as_the_omni_readouts_do_and_names_its_feature_set(grid):
    cfg, data, *_ = grid
    assert data.media_features.media == MediaSettings(**MEDIA)
    assert data.features is None and data.describe()["feature_set"] == "test_synthetic_media"
    assert data.describe()["features_from_media"]["extractors"]["audio"]["extractor"] == "synth_voice"


def test_mdf_trained_on_extracted_features_beats_the_mean_predictor(grid):
    _, data, broken, counts, rows = grid
    assert counts == {"written": 3, "skipped": 0}
    complete = next(r for r in rows if r["eval_label"] == "inter=0")
    scored = complete["per_sample"]
    train_mean = np.mean([s.label for s in data.samples["train"]])
    mean_mae = np.mean(np.abs(np.array(scored["labels"]) - train_mean))
    assert complete["metrics"]["mae"] < 0.85 * mean_mae
    assert broken.id not in scored["ids"] and len(scored["ids"]) == len(data.samples["valid"]) - 1


def test_each_protocol_damages_the_media_the_features_come_from(grid):
    _, data, broken, _, rows = grid
    by_label = {r["eval_label"]: np.array(r["per_sample"]["preds"]) for r in rows}
    assert not np.allclose(by_label["inter=0"], by_label["keep=text"])
    assert not np.allclose(by_label["inter=0"], by_label["inter=0,intra=0.5"])
    valid = [s for s in data.samples["valid"] if s.id != broken.id]
    complete = {s.id: s for s in data.media_features.extract(valid).samples}
    text_only = data.media_features.extract(valid, MissingnessProtocol(keep=frozenset({"text"})))
    assert text_only.errors == [] and len(text_only.samples) == len(valid)
    for sample in text_only.samples:
        assert not sample.features["audio"].any() and not sample.features["vision"].any()
        assert np.array_equal(sample.features["text"], complete[sample.id].features["text"])
        assert sample.features["audio"].shape == complete[sample.id].features["audio"].shape


def test_a_clip_that_fails_to_extract_is_listed_and_the_rest_are_scored(grid):
    cfg, data, broken, _, rows = grid
    assert all(r["n_errors"] == 1 and r["n_samples"] == len(data.samples["valid"]) - 1 for r in rows)
    assert rows[0]["training"]["extraction_errors"] == 1
    run = rows[0]["checkpoint"]
    assert [e["id"] for e in read_jsonl(f"{run}/extraction_errors.jsonl")] == [broken.id]
    errors = read_jsonl(errors_path_for(f"{run}/eval/mdf/keep=text.jsonl"))
    assert [e["id"] for e in errors] == [broken.id] and errors[0]["field"] in ("audio", "video") and errors[0]["reason"]


def test_a_second_run_skips_every_row_and_another_recipe_is_other_settings(grid, tmp_path):
    from classic_msa.contender import classic_contenders

    cfg, data, *_ = grid
    assert run_grid(cfg, classic_contenders(cfg, device="cpu"), data) == {"written": 0, "skipped": 3}
    contender = classic_contenders(cfg, device="cpu")[0]
    other = compare_config_from_dict({**comparison(tmp_path), "omni": {"base": {"backbone": {"name_or_path": "x"}},
                                                                        "readouts": ["discriminative"]}})
    assert contender.settings(data) != contender.settings(prepare_data(other, multimodal=True))


@pytest.mark.parametrize(("data", "message"), [
    ({"features": "f.npz"}, "`extract` .* or `features`"),
    ({"extract": "no_such_recipe"}, "unknown extraction recipe 'no_such_recipe'"),
])
def test_wrong_extraction_settings_are_refused(tmp_path, data, message):
    with pytest.raises(ValueError, match=message):
        compare_config_from_dict(comparison(tmp_path, **data))
