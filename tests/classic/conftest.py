from pathlib import Path

import pytest
import torch

from omni_msa.data.record import Sample
from omni_msa.data.synthetic import make_synthetic


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # Tiny models: intra-op threads only add synchronisation cost, badly so on a loaded machine.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture(scope="session")
def synthetic(synthetic_dir) -> dict[str, list[Sample]]:
    """240 synthetic samples (MOSI unaligned shapes) by split; also written to unaligned.pkl."""
    samples = make_synthetic(240, synthetic_dir, seed=0, with_media=False)
    return {split: [s for s in samples if s.split == split] for split in ("train", "valid", "test")}


TINY_MDF = {"dim": 16, "lstm_hidden": 8, "mapper_hidden": 16, "extractor_hidden": 16, "predictor_hidden": 16,
            "generator_hidden": 16}
