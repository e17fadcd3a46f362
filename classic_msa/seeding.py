"""Global seeding of a classic run (sub-seeds come from `omni_msa.seeding.derive_seed`, shared by every trainer)."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
