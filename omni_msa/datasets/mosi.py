"""CMU-MOSI and CMU-MOSEI: labels in [-3, 3], MMSA's seven-class, five-class and binary metrics."""

from omni_msa.datasets.base import DatasetSpec, register_dataset
from omni_msa.metrics import MOSI_LABELS, mosi_metrics

_KEYS = ("mae", "corr", "acc7", "acc5", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0")
_COLUMNS = (("MAE", ("mae",)), ("Corr", ("corr",)), ("Acc-7", ("acc7",)), ("Acc-5", ("acc5",)),
            ("Acc-2 has0 / non0", ("acc2_has0", "acc2_non0")), ("F1 has0 / non0", ("f1_has0", "f1_non0")))

for _name, _features in (("mosi", ("mosi_unaligned_50", "mosi_aligned_50", "mosi_utterance")),
                         ("mosei", ("mosei_unaligned_50", "mosei_aligned_50"))):
    register_dataset(DatasetSpec(
        name=_name, label_range=(-3.0, 3.0), metrics=mosi_metrics, metric_keys=_KEYS, paper_columns=_COLUMNS,
        curve_metrics=("mae", "acc5", "f1_non0"), default_feature_sets=_features, labels=MOSI_LABELS))
