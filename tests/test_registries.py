"""The extension registries: lookups, refusals, and one contract every registered entry meets
(peft's shared test suite over every registered method, here over datasets, backbones and readouts)."""

import numpy as np
import pytest
import torch

from omni_msa.backbones import BackboneSpec, backbone_names, get_backbone
from omni_msa.datasets import dataset_names, get_dataset
from omni_msa.readouts import get_readout, readout_names
from omni_msa.registry import Registry

from conftest import tiny_run_config


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown dataset 'mosx'; known: \['mosei', 'mosi', 'sims'"):
        get_dataset("mosx")
    with pytest.raises(ValueError, match="unknown readout 'regression'; known: .*'discriminative'"):
        get_readout("regression")
    with pytest.raises(ValueError, match="unknown backbone kind 'llama'; known: .*'causal_lm'"):
        get_backbone("llama")


def test_a_name_is_registered_once():
    registry: Registry[int] = Registry("thing")
    assert registry.register("a", 1) == 1
    registry.register("a", 1)                       # the same entry again (a re-imported module) is fine
    with pytest.raises(ValueError, match="thing 'a' is registered already"):
        registry.register("a", 2)


def test_a_backbone_spec_must_say_what_stays_unquantized():
    common = {"kind": "x", "model_class": "m.M", "processor_class": "m.P", "lora_targets": ".*"}
    with pytest.raises(ValueError, match="must say which modules stay unquantized"):
        BackboneSpec(never_quantized=None, **common)
    with pytest.raises(ValueError, match=r"encoders \['model.vision'\] are not in never_quantized"):
        BackboneSpec(never_quantized=("lm_head",), encoder_prefixes=("model.vision",), multimodal=True, **common)
    with pytest.raises(ValueError, match="must name its encoder prefixes"):
        BackboneSpec(never_quantized=("lm_head",), multimodal=True, **common)


@pytest.mark.parametrize("name", dataset_names())
def test_every_dataset_computes_exactly_its_metric_keys(name):
    spec = get_dataset(name)
    low, high = spec.label_range
    rng = np.random.default_rng(0)
    labels = rng.uniform(low, high, 50)
    metrics = spec.metrics(labels + rng.normal(0, 0.3, 50), labels)
    assert tuple(metrics) == spec.metric_keys
    assert spec.is_better(0.1, 0.2) == spec.lower_is_better


@pytest.mark.parametrize("kind", backbone_names())
def test_every_backbone_keeps_its_encoders_and_lm_head_unquantized(kind):
    spec = get_backbone(kind)
    assert "lm_head" in spec.never_quantized
    assert all(prefix.startswith(spec.never_quantized) for prefix in spec.encoder_prefixes)


@pytest.mark.parametrize("name", readout_names())
def test_every_readout_predicts_one_value_per_sample_and_trains_if_it_is_trained(
        name, tiny_thinker_dir, synthetic_samples, tmp_path):
    from omni_msa.assemble import assemble
    from omni_msa.data.missing import MissingnessProtocol

    assembled = assemble(tiny_run_config(tiny_thinker_dir, tmp_path, readout=name))
    entry = assembled.entry
    items = [assembled.builder.prepare(s, MissingnessProtocol(keep={"text"}).draw(s.id)) for s in synthetic_samples[:3]]
    out = assembled.readout.predict(assembled.builder.collate(items, padding_side="left"))
    assert out.values.shape == (3,) and torch.isfinite(out.values).all() and len(out.statuses) == 3
    assert (out.texts is not None) == entry.parsed
    trainable = [p for p in assembled.readout.parameters() if p.requires_grad]
    assert bool(trainable) == entry.trained
    if entry.trained:
        batch = assembled.builder.collate(items, with_answers=entry.with_answers, padding_side="right")
        loss = assembled.readout(batch)
        loss.backward()
        assert torch.isfinite(loss) and any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
