"""CH-SIMS: labels in [-1, 1], MMSA's binned two-, three- and five-class metrics."""

from omni_msa.datasets.base import DatasetSpec, register_dataset
from omni_msa.metrics import SIMS_LABELS, sims_metrics

register_dataset(DatasetSpec(
    name="sims", label_range=(-1.0, 1.0), metrics=sims_metrics,
    metric_keys=("mae", "corr", "acc2", "acc3", "acc5", "f1"),
    paper_columns=(("MAE", ("mae",)), ("Corr", ("corr",)), ("Acc-2", ("acc2",)), ("Acc-3", ("acc3",)),
                   ("Acc-5", ("acc5",)), ("F1", ("f1",))),
    curve_metrics=("mae", "acc5", "f1"), default_feature_sets=("sims_unaligned_39",), labels=SIMS_LABELS,
    unimodal_labels=True))
