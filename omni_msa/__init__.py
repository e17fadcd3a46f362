"""omni-msa: omni-modal LLM readouts for multimodal sentiment analysis, with classic baselines.

`omni_msa.data` and `omni_msa.metrics` are the light shared layer (no transformers import);
everything LLM-related is imported from its own module.
"""

__version__ = "0.1.0"
