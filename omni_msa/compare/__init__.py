"""The readout-ablation harness: one controlled grid of runs for the omni readouts and, through
the same model-family interface, the classic feature models (wired in by the entry script, so
omni_msa never imports classic_msa)."""
