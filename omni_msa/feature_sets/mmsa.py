"""MMSA's processed feature pickles (thuiar/MMSA, `<dataset>/Processed/<file>`): BERT text features
with the acoustic and visual features of each dataset, padded to fixed lengths.

Unaligned: each modality at its own rate (text word pieces, audio and video frames); aligned:
audio and vision averaged over each text step. Public configs disagree on the order of (sequence
length, feature dimension), which is why every array is checked against these shapes on load.
"""

from omni_msa.feature_sets.base import FeatureSetSpec, register_feature_set

_MOSI = ("CMU-MOSI as processed by MMSA: text bert-base-uncased last hidden states (768-d per word "
         "piece, 50 pieces); audio 5-d COVAREP acoustic descriptors per frame; vision 20-d Facet facial "
         "expression features per frame (the CMU-MultimodalSDK features)")
_MOSEI = ("CMU-MOSEI as processed by MMSA: text bert-base-uncased last hidden states (768-d per word "
          "piece, 50 pieces); audio 74-d COVAREP descriptors per frame; vision 35-d Facet features per "
          "frame (the CMU-MultimodalSDK features)")
_SIMS = ("CH-SIMS as processed by MMSA: text bert-base-chinese last hidden states (768-d per token, "
         "39 tokens); audio 33-d LibROSA descriptors per frame; vision 709-d OpenFace 2.0 features "
         "(landmarks, head pose, action units) per frame")

for _name, _provenance, _lengths, _dims, _aligned, _file in (
    ("mosi_unaligned_50", _MOSI, (50, 375, 500), (768, 5, 20), False, "unaligned_50.pkl"),
    ("mosi_aligned_50", _MOSI, (50, 50, 50), (768, 5, 20), True, "aligned_50.pkl"),
    ("mosei_unaligned_50", _MOSEI, (50, 500, 500), (768, 74, 35), False, "unaligned_50.pkl"),
    ("mosei_aligned_50", _MOSEI, (50, 50, 50), (768, 74, 35), True, "aligned_50.pkl"),
    ("sims_unaligned_39", _SIMS, (39, 400, 55), (768, 33, 709), False, "unaligned_39.pkl"),
):
    register_feature_set(FeatureSetSpec(
        name=_name, level="sequence", aligned=_aligned, file_name=_file,
        seq_lens=dict(zip(("text", "audio", "vision"), _lengths)), dims=dict(zip(("text", "audio", "vision"), _dims)),
        provenance=f"{_provenance}; {'word-aligned' if _aligned else 'unaligned'}, published as {_file}"))
