"""Predicting and scoring a feature model on samples under a missingness protocol."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.record import Sample
from omni_msa.metrics import regression_metrics

from classic_msa.data import COMPLETE, FeatureLoader
from classic_msa.model import FeatureModel


@dataclass
class Evaluation:
    """Metrics (omni_msa.metrics.regression_metrics) and the per-sample predictions behind them."""

    metrics: dict[str, float]
    ids: list[str]
    preds: np.ndarray
    labels: np.ndarray
    protocol: MissingnessProtocol


@torch.no_grad()
def predict(model: FeatureModel, samples: Sequence[Sample], *, protocol: MissingnessProtocol = COMPLETE,
            batch_size: int = 256, device: str | torch.device = "cpu") -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, predictions, labels) in the order of `samples`, in eval mode."""
    was_training = model.training
    model.eval()
    ids, preds, labels = [], [], []
    try:
        for batch in FeatureLoader(samples, batch_size=batch_size, protocol=protocol).epoch():
            out = model(batch.to(device))
            ids.extend(batch.ids)
            preds.append(out["pred"].detach().float().cpu().numpy().reshape(-1))
            labels.append(batch.labels.numpy())
    finally:
        model.train(was_training)
    return ids, np.concatenate(preds), np.concatenate(labels)


def evaluate(model: FeatureModel, samples: Sequence[Sample], *, dataset: str,
             protocol: MissingnessProtocol = COMPLETE, batch_size: int = 256,
             device: str | torch.device = "cpu") -> Evaluation:
    ids, preds, labels = predict(model, samples, protocol=protocol, batch_size=batch_size, device=device)
    return Evaluation(metrics=regression_metrics(preds, labels, dataset), ids=ids, preds=preds,
                      labels=labels, protocol=protocol)
