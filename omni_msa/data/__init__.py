"""The shared dataset layer: one sample record, readers, missingness protocols, synthetic data.

Importing it must stay light: no torch or transformers at module top.
"""

from omni_msa.data.record import (
    MODALITIES,
    SPLITS,
    DataError,
    LoadResult,
    Sample,
)

__all__ = ["MODALITIES", "SPLITS", "DataError", "LoadResult", "Sample"]
