"""Classic feature-level MSA baselines, built on omni_msa's shared dataset layer and metrics."""
