"""Dataset specs: one module per dataset family in this package, each registering its specs.

A spec is everything that differs between datasets: the label range, the metric function and
its keys, the columns of the papers' tables, the metrics plotted against missingness, and the
feature sets it usually comes with. Code that would branch on a dataset's name reads its spec
instead; a new dataset is one module here (or a `register_dataset` call in the user's code).
Light: numpy and scikit-learn only, no torch.
"""

from __future__ import annotations

from omni_msa.datasets.base import DatasetSpec, dataset_names, get_dataset, register_dataset

__all__ = ["DatasetSpec", "dataset_names", "get_dataset", "register_dataset"]
