import multiprocessing as mp
from collections import Counter

import numpy as np
import pytest

from omni_msa.data.missing import (
    AUDIO_CHUNK_SECONDS,
    KEPT_SUBSETS,
    RETENTION_MODES,
    MissingnessProtocol,
    apply_to_features,
    apply_to_media,
    feature_integrity,
    media_integrity,
    sweep,
)
from omni_msa.data.record import MODALITIES, Sample

IDS = [f"vid{i // 7:04d}$_${i % 7}" for i in range(10_000)]


def _fingerprint(protocol: MissingnessProtocol, ids: list[str]) -> list[tuple]:
    out = []
    for sample_id in ids:
        draw = protocol.draw(sample_id)
        masks = tuple(tuple(np.flatnonzero(draw.mask(m, 37))) for m in MODALITIES)
        out.append((sample_id, tuple(sorted(draw.kept)), tuple(sorted(draw.intra.items())), masks))
    return out


def _fingerprint_in_child(args):
    spec, ids = args
    return _fingerprint(MissingnessProtocol.from_dict(spec), ids)


def test_draw_is_independent_of_order_batching_and_process():
    protocol = MissingnessProtocol(inter_rate=0.5, intra_rate="uniform", seed=7)
    ids = IDS[:300]
    reference = _fingerprint(protocol, ids)
    reversed_order = _fingerprint(protocol, ids[::-1])[::-1]
    batched = [row for start in range(0, 300, 32) for row in _fingerprint(protocol, ids[start:start + 32])]
    with mp.get_context("spawn").Pool(1) as pool:
        other_process = pool.map(_fingerprint_in_child, [(protocol.to_dict(), ids)])[0]
    assert reversed_order == reference
    assert batched == reference
    assert other_process == reference
    assert _fingerprint(protocol.with_seed(8), ids) != reference


@pytest.mark.parametrize("inter_rate", [0.0, 0.3, 0.7, 1.0])
def test_inter_rate_share_and_kept_subsets(inter_rate):
    protocol = MissingnessProtocol(inter_rate=inter_rate, seed=3)
    kept = [frozenset(protocol.draw(i).kept) for i in IDS]
    assert all(kept_set for kept_set in kept), "every sample keeps at least one modality"
    dropped = [k for k in kept if k != frozenset(MODALITIES)]
    assert abs(len(dropped) / len(IDS) - inter_rate) <= 0.02
    if inter_rate >= 0.3:
        counts = Counter(dropped)
        assert set(counts) == set(KEPT_SUBSETS)
        for subset in KEPT_SUBSETS:
            assert abs(counts[subset] / len(dropped) - 1 / 6) <= 0.02, subset


@pytest.mark.parametrize("intra_rate", [0.1, 0.4, 0.9])
def test_realised_element_masking_share(intra_rate):
    protocol = MissingnessProtocol(intra_rate=intra_rate, seed=1)
    masked = total = 0
    for sample_id in IDS:
        draw = protocol.draw(sample_id)
        assert draw.intra == {m: intra_rate for m in MODALITIES}
        for m, n in (("text", 20), ("audio", 60), ("vision", 45)):
            mask = draw.mask(m, n)
            masked += int(mask.sum())
            total += n
    assert abs(masked / total - intra_rate) <= 0.02


def test_uniform_intra_rate_is_drawn_per_sample_and_modality():
    protocol = MissingnessProtocol(intra_rate="uniform", seed=0)
    rates = np.array([[protocol.draw(i).intra[m] for m in MODALITIES] for i in IDS])
    assert abs(rates.mean() - 0.5) < 0.02
    assert abs(rates.std() - np.sqrt(1 / 12)) < 0.02
    assert abs(np.corrcoef(rates[:, 0], rates[:, 1])[0, 1]) < 0.05
    realised = np.array([protocol.draw(i).mask("audio", 400).mean() for i in IDS[:500]])
    assert np.abs(realised - rates[:500, 1]).max() < 0.1


@pytest.mark.parametrize("mode", RETENTION_MODES)
def test_fixed_keep_mode_is_honoured_for_every_sample(mode):
    protocol = MissingnessProtocol(keep=mode, intra_rate=0.2, seed=5)
    for sample_id in IDS[:2000]:
        draw = protocol.draw(sample_id)
        assert set(draw.kept) == set(mode)
        for m in MODALITIES:
            if m not in mode:
                assert draw.intra[m] == 1.0
                assert draw.mask(m, 10).all()
                assert draw.integrity(m, 10) == 0.0


def test_sweeps_are_nested():
    low = MissingnessProtocol(inter_rate=0.3, seed=2)
    high = MissingnessProtocol(inter_rate=0.6, seed=2)
    dropped_low = {i for i in IDS[:3000] if len(low.draw(i).kept) < 3}
    dropped_high = {i for i in IDS[:3000] if len(high.draw(i).kept) < 3}
    assert dropped_low < dropped_high
    a = MissingnessProtocol(intra_rate=0.3, seed=2).draw(IDS[0]).mask("text", 200)
    b = MissingnessProtocol(intra_rate=0.6, seed=2).draw(IDS[0]).mask("text", 200)
    assert (a & ~b).sum() == 0 and b.sum() > a.sum()


def test_sweep_grids():
    assert [p.inter_rate for p in sweep("inter")] == [round(0.1 * i, 1) for i in range(11)]
    assert [p.intra_rate for p in sweep("intra")] == [round(0.1 * i, 1) for i in range(10)]
    modes = sweep("modes", seed=4)
    assert len(modes) == 7 and {p.seed for p in modes} == {4}
    assert len({p.label for p in modes}) == 7
    with pytest.raises(ValueError, match="unknown grid"):
        sweep("diagonal")


@pytest.mark.parametrize("kwargs, message", [
    ({"inter_rate": 1.5}, "inter_rate"),
    ({"intra_rate": -0.1}, "intra_rate"),
    ({"intra_rate": "sometimes"}, "uniform"),
    ({"keep": {"smell"}}, "keep"),
    ({"keep": set()}, "keep"),
    ({"keep": {"text"}, "inter_rate": 0.2}, "cannot be combined"),
])
def test_protocol_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MissingnessProtocol(**kwargs)


def test_protocol_round_trips_through_dict():
    for protocol in [MissingnessProtocol(0.3, "uniform", None, 4), MissingnessProtocol(keep={"audio", "text"})]:
        assert MissingnessProtocol.from_dict(protocol.to_dict()) == protocol
    assert MissingnessProtocol().is_identity
    assert not MissingnessProtocol(intra_rate=0.1).is_identity


def _aligned_sample(sample_id: str, n_words: int = 9, n_chunks: int = 30, n_frames: int = 12,
                    sample_rate: int = 16_000):
    """A sample whose feature sequences line up element for element with its raw media:
    one BERT token per word, one audio frame per 40 ms chunk, one vision row per video frame."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(n_words)]
    text_len = n_words + 2
    text_bert = np.zeros((3, 50), dtype=np.int64)
    text_bert[0, :text_len] = [101, *range(1000, 1000 + n_words), 102]
    text_bert[1, :text_len] = 1
    features = {
        "text": np.pad(rng.normal(size=(text_len, 8)), ((0, 50 - text_len), (0, 0))).astype(np.float32),
        "audio": np.pad(rng.normal(size=(n_chunks, 5)) + 3, ((0, 375 - n_chunks), (0, 0))).astype(np.float32),
        "vision": np.pad(rng.normal(size=(n_frames, 4)) + 3, ((0, 500 - n_frames), (0, 0))).astype(np.float32),
    }
    sample = Sample(id=sample_id, split="train", label=1.0, text=" ".join(words), features=features,
                    lengths={"text": text_len, "audio": n_chunks, "vision": n_frames}, text_bert=text_bert)
    wave = rng.uniform(0.1, 1.0, size=n_chunks * round(AUDIO_CHUNK_SECONDS * sample_rate)).astype(np.float32)
    video = rng.integers(1, 255, size=(n_frames, 4, 4, 3), dtype=np.uint8)
    return sample, wave, video


def test_apply_to_features_masks_elements_and_keeps_special_tokens():
    sample, _, _ = _aligned_sample("clip$_$1")
    original = {m: a.copy() for m, a in sample.features.items()}
    draw = MissingnessProtocol(intra_rate=0.5, seed=0).draw(sample.id)
    masked = apply_to_features(sample, draw)
    text_mask = draw.mask("text", 9)
    assert 0 < text_mask.sum() < 9
    ids = masked.text_bert[0]
    assert ids[0] == 101 and ids[10] == 102
    assert np.array_equal(ids[1:10] == 100, text_mask)
    assert np.array_equal(masked.text_bert[1], sample.text_bert[1])
    assert np.array_equal((masked.features["text"][1:10] == 0).all(axis=1), text_mask)
    audio_mask = draw.mask("audio", 30)
    assert np.array_equal((masked.features["audio"][:30] == 0).all(axis=1), audio_mask)
    assert (masked.features["audio"][30:] == 0).all()
    for m in MODALITIES:
        assert np.array_equal(sample.features[m], original[m]), "input must not be mutated"


def test_dropped_modality_becomes_all_zeros():
    sample, _, _ = _aligned_sample("clip$_$2")
    draw = MissingnessProtocol(keep={"audio"}).draw(sample.id)
    masked = apply_to_features(sample, draw)
    assert not masked.features["text"].any() and not masked.features["vision"].any()
    assert (masked.text_bert[0, 1:10] == 100).all()
    assert np.array_equal(masked.features["audio"], sample.features["audio"])
    assert feature_integrity(sample, draw) == {"text": 0.0, "audio": 1.0, "vision": 0.0}


@pytest.mark.parametrize("protocol", [
    MissingnessProtocol(intra_rate=0.4, seed=11),
    MissingnessProtocol(inter_rate=0.8, intra_rate="uniform", seed=12),
    MissingnessProtocol(keep={"text", "vision"}, intra_rate=0.3, seed=13),
])
def test_features_and_raw_media_lose_the_same_elements(protocol):
    for k in range(40):
        sample, wave, video = _aligned_sample(f"clip$_${k}")
        draw = protocol.draw(sample.id)
        features = apply_to_features(sample, draw)
        media = apply_to_media(draw, text=sample.text, audio=wave, video=video, placeholder="<gone>")
        assert media.present == draw.kept
        if "text" in media.present:
            words_lost = np.array([w == "<gone>" for w in media.text.split()])
            assert np.array_equal(words_lost, features.text_bert[0, 1:10] == 100)
        else:
            assert media.text is None
        if "audio" in media.present:
            chunks_lost = (media.audio.reshape(30, -1) == 0).all(axis=1)
            assert np.array_equal(chunks_lost, (features.features["audio"][:30] == 0).all(axis=1))
        else:
            assert media.audio is None
        if "vision" in media.present:
            frames_lost = (media.video.reshape(12, -1) == 0).all(axis=1)
            assert np.array_equal(frames_lost, (features.features["vision"][:12] == 0).all(axis=1))
        else:
            assert media.video is None
        assert feature_integrity(sample, draw) == media_integrity(draw, text=sample.text, audio=wave, video=video)


def test_masks_of_different_lengths_share_positions_by_fraction():
    draw = MissingnessProtocol(intra_rate=0.5, seed=0).draw("clip$_$9")
    short, long = draw.mask("audio", 100), draw.mask("audio", 300)
    # element i of the short sequence and element 3 i + 1 of the long one are both centred on
    # (i + 0.5) / 100 of the utterance, so they share the uniform and the outcome
    assert np.array_equal(short, long[1::3])
    assert abs(short.mean() - long.mean()) < 0.1


def test_absent_media_are_not_reported_present():
    draw = MissingnessProtocol().draw("text-only$_$0")
    media = apply_to_media(draw, text="just words here")
    assert media.present == ("text",) and media.audio is None and media.video is None
    assert media.text == "just words here"


def test_a_model_trained_on_a_fixed_set_is_selected_on_that_set():
    fixed = MissingnessProtocol(keep=frozenset({"text", "audio"}), intra_rate=0.2, seed=3)
    assert fixed.selection_protocol == MissingnessProtocol(keep=frozenset({"text", "audio"}), seed=3)
    assert MissingnessProtocol(inter_rate=0.5, intra_rate="uniform", seed=3).selection_protocol.is_identity
