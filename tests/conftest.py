"""Shared fixtures: a tiny random-weight Qwen2.5-Omni Thinker and a small synthetic set with media;
`gpu`-marked tests are skipped where CUDA is not available."""

from dataclasses import replace
from pathlib import Path

import pytest

from omni_msa.backbone import BackboneConfig, LoraSettings
from omni_msa.config import DataSettings, OmniRunConfig, OptimSettings
from omni_msa.media_inputs import MediaSettings
from omni_msa.readouts import ReadoutSettings


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is false)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


TINY_MEDIA = MediaSettings(fps=2.0, min_frames=2, max_frames=4, min_pixels=4 * 28 * 28, max_pixels=4 * 28 * 28)


@pytest.fixture(scope="session")
def tiny_thinker_dir(tmp_path_factory) -> Path:
    from omni_msa.tiny import save_tiny_thinker

    return save_tiny_thinker(tmp_path_factory.mktemp("tiny_thinker") / "model", seed=0)


@pytest.fixture(scope="session")
def synthetic_samples(tmp_path_factory):
    from omni_msa.data.synthetic import make_synthetic

    return make_synthetic(24, tmp_path_factory.mktemp("synthetic"), seed=0)


def tiny_run_config(model_dir: Path, out_dir: Path, *, readout: str = "discriminative", quantization: str = "none",
                    use_audio_in_video: bool = False, **optim) -> OmniRunConfig:
    return OmniRunConfig(
        output_dir=str(out_dir),
        backbone=BackboneConfig(name_or_path=str(model_dir), kind="qwen2_5_omni_thinker", quantization=quantization),
        data=DataSettings(dataset="mosi", synthetic_n=24, synthetic_seed=0),
        lora=LoraSettings(r=4, alpha=8, dropout=0.0),
        readout=ReadoutSettings(kind=readout),
        media=replace(TINY_MEDIA, use_audio_in_video=use_audio_in_video),
        optim=OptimSettings(**{"batch_size": 4, "eval_batch_size": 8, "lr": 2e-3, "head_lr": 1e-2,
                               "warmup_ratio": 0.0, "scheduler": "constant", **optim}),
    )


def assert_same_structure(loaded, original, where="value"):
    """`loaded` equals `original` exactly, recursively: the same types, dict keys in the same order,
    arrays and tensors of the same dtype, shape and values (NaN equal to NaN in float arrays)."""
    import numpy as np
    import torch

    assert type(loaded) is type(original), where
    if isinstance(original, torch.Tensor):
        assert loaded.dtype == original.dtype and torch.equal(loaded, original.cpu()), where
    elif isinstance(original, np.ndarray):
        assert loaded.dtype == original.dtype and loaded.shape == original.shape, where
        assert np.array_equal(loaded, original, equal_nan=original.dtype.kind == "f"), where
    elif isinstance(original, dict):
        assert list(loaded) == list(original), where
        for key in original:
            assert_same_structure(loaded[key], original[key], f"{where}[{key!r}]")
    elif isinstance(original, (list, tuple)):
        assert len(loaded) == len(original), where
        for i, (a, b) in enumerate(zip(loaded, original)):
            assert_same_structure(a, b, f"{where}[{i}]")
    elif isinstance(original, float) and original != original:
        assert loaded != loaded, where
    else:
        assert loaded == original, where
