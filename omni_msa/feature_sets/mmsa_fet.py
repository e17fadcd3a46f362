"""MMSA-FET's per-clip output with its default extractors (`mmsa_fet/<clip>.feat_original.pkl`)."""

from omni_msa.feature_sets.base import FeatureSetSpec, register_feature_set

register_feature_set(FeatureSetSpec(
    name="mmsa_fet_egemaps_openface_bert", level="sequence", aligned=True,
    dims={"text": 768, "audio": 25, "vision": 171},
    provenance=(
        "MMSA-FET (thuiar/MMSA-FET) run on a clip: audio openSMILE eGeMAPS low-level descriptors (25-d), "
        "vision OpenFace 2.0 2D landmarks and action units (171-d), text BERT hidden states (768-d) with "
        "`text_bert` (3 x L input ids, attention mask, segment ids); word-aligned, L = the clip's number "
        "of text tokens."),
))
