import numpy as np
import pytest
import torch

from omni_msa.data.missing import MissingnessProtocol, apply_to_features, feature_integrity
from omni_msa.data.record import MODALITIES

from classic_msa.data import FeatureLoader, collate, epoch_protocol


def test_complete_batch_is_the_samples_stacked_and_trimmed(synthetic):
    samples = synthetic["train"][:5]
    batch = collate(samples)
    assert batch.ids == [s.id for s in samples]
    torch.testing.assert_close(batch.labels, torch.tensor([s.label for s in samples]))
    for m in MODALITIES:
        longest = max(s.lengths[m] for s in samples)
        assert batch.features[m].shape == (5, longest, samples[0].features[m].shape[1])
        assert batch.features[m].dtype == torch.float32
        assert batch.lengths[m].tolist() == [s.lengths[m] for s in samples]
        np.testing.assert_array_equal(batch.features[m][2].numpy(), samples[2].features[m][:longest])
        assert batch.present[m].all() and (batch.integrity[m] == 1.0).all()
    # word tokens sit between [CLS] and [SEP]
    assert batch.text_tokens.sum(1).tolist() == [s.lengths["text"] - 2 for s in samples]
    assert not batch.text_tokens[:, 0].any()
    assert batch.text_bert.shape == (5, 3, batch.features["text"].shape[1])


def test_protocol_is_applied_per_sample_through_the_shared_layer(synthetic):
    samples = synthetic["valid"][:8]
    protocol = MissingnessProtocol(inter_rate=0.5, intra_rate=0.4, seed=3)
    batch = collate(samples, protocol)
    for i, sample in enumerate(samples):
        draw = protocol.draw(sample.id)
        expected = apply_to_features(sample, draw)
        integrity = feature_integrity(sample, draw)
        for m in MODALITIES:
            n = batch.features[m].shape[1]
            np.testing.assert_array_equal(batch.features[m][i].numpy(), expected.features[m][:n])
            assert batch.present[m][i].item() == draw.present[m]
            assert batch.integrity[m][i].item() == pytest.approx(integrity[m])
        np.testing.assert_array_equal(batch.text_bert[i].numpy(), expected.text_bert[:, :batch.text_bert.shape[2]])


def test_fixed_retention_mode_zeroes_the_dropped_modalities(synthetic):
    batch = collate(synthetic["test"][:4], MissingnessProtocol(keep=frozenset({"text"})))
    assert (batch.features["audio"] == 0).all() and (batch.features["vision"] == 0).all()
    assert (batch.integrity["audio"] == 0).all() and not batch.present["vision"].any()
    assert (batch.integrity["text"] == 1).all()


def _per_sample(loader, epoch):
    return {i: (b.features["audio"][k].numpy(), b.integrity["text"][k].item())
            for b in loader.epoch(epoch) for k, i in enumerate(b.ids)}


def test_training_masks_redraw_each_epoch_deterministically_in_any_batching(synthetic):
    samples = synthetic["train"][:24]
    protocol = MissingnessProtocol(inter_rate=0.3, intra_rate="uniform", seed=5)   # the LNLN regime
    loader = FeatureLoader(samples, batch_size=8, protocol=protocol, shuffle=True, redraw=True, seed=5)
    other = FeatureLoader(samples, batch_size=5, protocol=protocol, shuffle=True, redraw=True, seed=9)
    first, again, second = _per_sample(loader, 0), _per_sample(loader, 0), _per_sample(loader, 1)
    rebatched = _per_sample(other, 0)
    for sample_id, (audio, integrity) in first.items():
        np.testing.assert_array_equal(audio, again[sample_id][0])
        assert integrity == rebatched[sample_id][1]
    assert any(first[i][1] != second[i][1] for i in first)
    assert loader.protocol_for(1) == epoch_protocol(protocol, 1) != protocol
    # LNLN: intra rates spread over (0, 1), so integrity does too
    integrities = np.array([v[1] for v in first.values()])
    assert integrities.std() > 0.15


def test_shuffle_order_depends_on_seed_and_epoch_only(synthetic):
    samples = synthetic["train"][:20]
    loader = FeatureLoader(samples, batch_size=20, shuffle=True, seed=1)
    order = lambda e: next(iter(loader.epoch(e))).ids  # noqa: E731
    assert order(0) == order(0) != order(1)
    assert sorted(order(0)) == sorted(s.id for s in samples)
    assert len(loader) == 1 and len(FeatureLoader(samples, batch_size=6)) == 4
