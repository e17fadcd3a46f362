"""Length handling and batch grouping shared by both model families (numpy only)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np


def pad_stack(arrays: Sequence[np.ndarray], length: int | None = None, pad_value: float = 0.0) -> np.ndarray:
    """Stack sequences (L_i x ...) into one N x L x ... array, padding at the end.

    `length` defaults to the longest sequence; a longer sequence than `length` is an error,
    never silently truncated.
    """
    if not arrays:
        raise ValueError("pad_stack needs at least one sequence")
    target = max(len(a) for a in arrays) if length is None else length
    tail = arrays[0].shape[1:]
    out = np.full((len(arrays), target, *tail), pad_value, dtype=arrays[0].dtype)
    for i, array in enumerate(arrays):
        if array.shape[1:] != tail:
            raise ValueError(f"sequence {i} has element shape {array.shape[1:]}, expected {tail}")
        if len(array) > target:
            raise ValueError(f"sequence {i} has length {len(array)} > {target}")
        out[i, :len(array)] = array
    return out


def length_mask(lengths: Sequence[int] | np.ndarray, max_len: int) -> np.ndarray:
    """N x max_len boolean mask, True on the first lengths[i] positions of row i."""
    lengths = np.asarray(lengths)
    return np.arange(max_len)[None, :] < lengths[:, None]


def group_batches(keys: Sequence[Hashable], lengths: Sequence[int], batch_size: int, *,
                  seed: int | None = None) -> list[list[int]]:
    """Indices grouped into batches that share a key (e.g. the set of present modalities) and
    have similar lengths. Every index appears exactly once; the last batch of a group may be
    smaller. With a seed, ties in length are broken and the batch order is shuffled
    deterministically; without one, batches come in a fixed sorted order (for scoring).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(keys) != len(lengths):
        raise ValueError(f"{len(keys)} keys but {len(lengths)} lengths")
    rng = np.random.default_rng(seed) if seed is not None else None
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for index, key in enumerate(keys):
        groups[key].append(index)
    batches = []
    for key in sorted(groups, key=repr):
        members = np.array(groups[key])
        tie_break = rng.permutation(len(members)) if rng is not None else np.arange(len(members))
        order = members[np.lexsort((tie_break, np.asarray(lengths)[members]))]
        batches.extend(order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size))
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches
