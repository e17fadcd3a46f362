"""Real CMU-MOSI utterance-level features (`mosi_utterance/features.npz` + `manifest.csv`)."""

from omni_msa.feature_sets.base import FeatureSetSpec, PublishedResult, register_feature_set

_TEST_VIDEOS = ("on the authors' 31 test videos (binary labels); our valid split is 8 of them and the other "
                "23 are held out, so the figures compare in kind, not on the same utterances")

register_feature_set(FeatureSetSpec(
    name="mosi_utterance", level="utterance", aligned=True, file_name="features.npz",
    dims={"text": 100, "audio": 73, "vision": 100},
    provenance=(
        "The utterance-level CMU-MOSI features published with Poria et al., ACL 2017, \"Context-Dependent "
        "Sentiment Analysis in User-Generated Videos\" (bc-LSTM; repository soujanyaporia/"
        "multimodal-sentiment-analysis): text 100-d CNN features, audio 73 acoustic descriptors averaged "
        "over the utterance (COVAREP-like; column 0 F0 in Hz, column 1 voicing), vision 100-d 3D-CNN "
        "features; continuous MOSI labels joined by id. The text and video CNNs were trained on the "
        "authors' 62 training videos, so those videos' utterances are seen by the extractors: train = 38 "
        "of them (889 utterances), valid = 8 of the authors' test videos (211 utterances). Select and "
        "report on valid; never carve a valid split out of train (about 20 points optimistic)."),
    published=(
        PublishedResult("Poria et al. 2017, SVM per utterance", "binary accuracy (%)",
                        {"text": 75.5, "audio": 58.5, "vision": 53.1, "text+audio+vision": 77.9}, _TEST_VIDEOS),
        PublishedResult("Poria et al. 2017, bc-LSTM (context across a video's utterances)", "binary accuracy (%)",
                        {"text": 78.1, "audio": 60.3, "vision": 55.8, "text+audio+vision": 80.3}),
    ),
))
