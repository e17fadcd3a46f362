"""The built-in synthetic set's features (`omni_msa.data.synthetic`), one set per dataset whose
unaligned MMSA layout they are written in (`synthetic_<dataset>`)."""

from dataclasses import replace

from omni_msa.feature_sets.base import get_feature_set, register_feature_set

_PROVENANCE = (
    "Computed by omni_msa.data.synthetic from the generated media of each utterance, in the shapes of {layout}: "
    "text one BERT-like 768-d row per word plus [CLS]/[SEP] (fixed word vectors plus a sentiment direction), "
    "audio one row per 40 ms chunk (log RMS, zero-crossing rate, spectral centroid, dominant frequency, "
    "spectral flatness, then band log energies), vision one row per frame (mean RGB, grey std, grid means)")

_LAYOUTS = (("mosi", "mosi_unaligned_50"), ("mosei", "mosei_unaligned_50"), ("sims", "sims_unaligned_39"))

for _dataset, _layout in _LAYOUTS:
    register_feature_set(replace(get_feature_set(_layout), name=f"synthetic_{_dataset}", file_name=None,
                                 provenance=_PROVENANCE.format(layout=_layout)))
