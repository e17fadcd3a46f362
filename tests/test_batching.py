import numpy as np
import pytest

from omni_msa.data.batching import group_batches, length_mask, pad_stack


def test_pad_stack_pads_at_the_end_and_refuses_to_truncate():
    out = pad_stack([np.ones((2, 3)), 2 * np.ones((4, 3))], pad_value=-1.0)
    assert out.shape == (2, 4, 3)
    assert (out[0, :2] == 1).all() and (out[0, 2:] == -1).all() and (out[1] == 2).all()
    assert pad_stack([np.ones((2, 3))], length=5).shape == (1, 5, 3)
    with pytest.raises(ValueError, match="length 4 > 3"):
        pad_stack([np.ones((4, 3))], length=3)
    with pytest.raises(ValueError, match="element shape"):
        pad_stack([np.ones((2, 3)), np.ones((2, 4))])


def test_length_mask():
    assert length_mask([0, 2, 3], 3).tolist() == [[False] * 3, [True, True, False], [True] * 3]


def test_group_batches_groups_by_key_and_length_and_keeps_every_index():
    rng = np.random.default_rng(0)
    keys = rng.choice(["text", "text+audio", "audio+vision"], size=103).tolist()
    lengths = rng.integers(1, 200, size=103).tolist()
    batches = group_batches(keys, lengths, batch_size=8, seed=1)
    flat = sorted(i for batch in batches for i in batch)
    assert flat == list(range(103))
    for batch in batches:
        assert len({keys[i] for i in batch}) == 1
        assert len(batch) <= 8
    # sorting by length inside a group keeps batches tight: far less padding than random batches
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.3 * sum(lengths)
    assert group_batches(keys, lengths, 8, seed=1) == batches
    assert group_batches(keys, lengths, 8, seed=2) != batches
    unshuffled = group_batches(keys, lengths, 8)
    assert unshuffled == group_batches(keys, lengths, 8)
