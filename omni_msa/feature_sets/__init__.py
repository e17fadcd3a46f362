"""Feature-set specs: one module per family of feature sets in this package, each registering its specs.

A spec names what a feature file holds: per-modality dimensions, sequence or utterance level (and
the fixed sequence lengths of padded layouts such as MMSA's), whether the modalities share their
steps, and where the features come from. Readers check a file against a named spec instead of
numbers of their own; a new feature set is one module here (or a `register_feature_set` call in
the user's code). Light: numpy only, no torch.
"""

from __future__ import annotations

from omni_msa.feature_sets.base import (
    LAYOUTS,
    FeatureSetSpec,
    PublishedResult,
    feature_set_for,
    feature_set_names,
    get_feature_set,
    register_feature_set,
)

__all__ = ["LAYOUTS", "FeatureSetSpec", "PublishedResult", "feature_set_for", "feature_set_names", "get_feature_set",
           "register_feature_set"]
