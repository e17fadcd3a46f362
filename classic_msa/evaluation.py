"""Predicting and scoring a feature model on samples under a missingness protocol."""

from __future__ import annotations

import time
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
    latency_ms: np.ndarray          # per sample: its batch's forward time / batch size


@torch.no_grad()
def predict(model: FeatureModel, samples: Sequence[Sample], *, protocol: MissingnessProtocol = COMPLETE,
            batch_size: int = 256, device: str | torch.device = "cpu", masked_at_media: bool = False
            ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(ids, predictions, labels, per-sample latency in ms) in the order of `samples`, in eval mode,
    the model run on `device` (labels and ids are taken from the batch before it is moved).
    `masked_at_media`: see `classic_msa.data.collate`."""
    was_training = model.training
    model.eval()
    ids, preds, labels, latency = [], [], [], []
    try:
        for batch in FeatureLoader(samples, batch_size=batch_size, protocol=protocol,
                                   masked_at_media=masked_at_media).epoch():
            moved = batch.to(device)
            start = time.perf_counter()
            out = model(moved)
            pred = out["pred"].detach().float().cpu().numpy().reshape(-1)     # .cpu() waits for the device
            latency += [1000 * (time.perf_counter() - start) / len(pred)] * len(pred)
            ids.extend(batch.ids)
            preds.append(pred)
            labels.append(batch.labels.numpy())
    finally:
        model.train(was_training)
    return ids, np.concatenate(preds), np.concatenate(labels), np.array(latency)


def evaluate(model: FeatureModel, samples: Sequence[Sample], *, dataset: str,
             protocol: MissingnessProtocol = COMPLETE, batch_size: int = 256,
             device: str | torch.device = "cpu", masked_at_media: bool = False) -> Evaluation:
    ids, preds, labels, latency = predict(model, samples, protocol=protocol, batch_size=batch_size, device=device,
                                          masked_at_media=masked_at_media)
    return Evaluation(metrics=regression_metrics(preds, labels, dataset), ids=ids, preds=preds,
                      labels=labels, protocol=protocol, latency_ms=latency)
