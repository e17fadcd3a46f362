"""Building blocks shared by the classic feature-level models, each small and independently tested."""

from classic_msa.blocks.attention import CrossModalAttention, PrependTokenEncoder, padding_mask
from classic_msa.blocks.losses import difference_loss, orthogonality_loss
from classic_msa.blocks.mutual_info import MINE, InfoNCE, JSDMutualInformation, MIEstimator
from classic_msa.blocks.normalize import FeatureStandardizer
from classic_msa.blocks.recurrent import BiLSTMEncoder
from classic_msa.blocks.soft_dtw import soft_dtw, soft_dtw_from_cost

__all__ = [
    "MINE",
    "BiLSTMEncoder",
    "CrossModalAttention",
    "FeatureStandardizer",
    "InfoNCE",
    "JSDMutualInformation",
    "MIEstimator",
    "PrependTokenEncoder",
    "difference_loss",
    "orthogonality_loss",
    "padding_mask",
    "soft_dtw",
    "soft_dtw_from_cost",
]
