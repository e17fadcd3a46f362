"""One contract every registered classic model meets (peft's shared suite over every registered
method): on utterance-level features (one step per modality, no BERT token ids, as
`mosi_utterance`) and with a modality dropped, predictions and every loss term are finite, the
loss reaches the parameters, and a prediction follows its own input."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from omni_msa.data.missing import MissingnessProtocol
from omni_msa.data.record import Sample

from classic_msa.data import FeatureLoader
from classic_msa.experiment import input_dims
from classic_msa.model import build_model, model_names

DIMS = {"text": 100, "audio": 73, "vision": 100}


def utterances(n: int = 16, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    return [Sample(id=f"v{i}$_$1", split="train", label=float(rng.uniform(-3, 3)), text="x",
                   features={m: rng.normal(size=(1, d)).astype(np.float32) for m, d in DIMS.items()},
                   lengths=dict.fromkeys(DIMS, 1)) for i in range(n)]


def forward(model, samples, protocol=None):
    loader = FeatureLoader(samples, batch_size=len(samples), protocol=protocol or MissingnessProtocol())
    return model(next(iter(loader.epoch())))


@pytest.mark.parametrize("name", model_names())
def test_every_classic_model_takes_utterance_level_features_and_dropped_modalities(name):
    samples = utterances()
    torch.manual_seed(0)
    model = build_model(name, input_dims(name, {}, samples))
    for protocol in (None, MissingnessProtocol(keep=frozenset({"text", "audio"})), MissingnessProtocol(inter_rate=1.0)):
        out = forward(model, samples, protocol)
        assert out["pred"].shape == (len(samples),) and torch.isfinite(out["pred"]).all()
        terms = {k: v for k, v in out.items() if k != "pred"}
        assert "task" in terms and all(torch.isfinite(v) for v in terms.values()), terms
    model.zero_grad()
    forward(model, samples)["task"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    with torch.no_grad():
        before = forward(model, samples)["pred"]
        changed = [replace(samples[0], features={**samples[0].features, "text": samples[0].features["text"] + 3.0})]
        after = forward(model, changed + samples[1:])["pred"]
    assert not torch.isclose(after[0], before[0]), "a prediction must follow its own text"
