"""An on-disk cache of the frozen media encoders' outputs, so the audio tower and the vision encoder
run once per processed clip instead of once per epoch, validation and scoring protocol.

Exact only where the towers are deterministic functions of their inputs: no parameter of the tower
requires a gradient and no adapter (peft tuner layer) sits in it. That is checked on every call,
so a tower that is trained, or that LoRA targets, simply runs as before (the transformers towers
apply no dropout). Calls that pass precomputed tensors or ask for attentions or hidden states also
run the tower.

Hook point: the Thinker model's (`decoder_of(model)`, `Qwen2_5OmniThinkerModel`)
`get_audio_features`, `get_video_features` and `get_image_features`, replaced on the instance by
wrappers with the same signature. Both its forward and `generate` (which pre-computes image and
video features through those methods, reading their parameter names) go through them, so
batching, left padding, audio-in-video interleaving, rope positions and generation are untouched:
only the features that fill the media placeholder tokens come from the cache.

Entries are per media item (one audio or video per sample here): a batch is split by the
processor's lengths (the feature attention mask's sums, `video_grid_thw` / `image_grid_thw`), each
item is looked up, the towers run once on the misses only, their output is split back per item
and stored, and the batch is reassembled in order. The key of an item is a blake2b of
- the tensors that enter the tower for it: for audio the valid mel frames (`input_features`
  selected by its `feature_attention_mask`, exactly what the tower reads), for vision its rows of
  `pixel_values_videos` (or `pixel_values`) and its grid row;
- the tower's weights fingerprint (every parameter and buffer: names, dtypes, shapes, values),
  memoised while no tensor is replaced or changed in place (tensor version counters; writes
  through `.data` bypass them, use `torch.no_grad()` or `load_state_dict`);
- the tower's dtype, device type and attention implementation (the numerics of the result).
A masked clip (intra masking changes the processed inputs) therefore misses and a complete clip
hits; a dropped modality has no input and needs no entry.

Files are `root/<modality>/<key>.safetensors`, written atomically (`omni_msa.files.atomic_write`),
so processes sharing a directory see no file or a complete one, and writers of the same key write
the same values. An unreadable entry, or one of the wrong length, is a miss and is rewritten.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from omni_msa.backbone import decoder_of
from omni_msa.files import atomic_write

logger = logging.getLogger(__name__)

CACHE_VERSION = "encoder-outputs-v1"  # bump when what an entry holds changes
AUDIO, VIDEO, IMAGE = "audio", "video", "image"
_ENTRY = "features"

Compute = Callable[[list[int]], Sequence[torch.Tensor]]


def _update(digest: Any, tensor: torch.Tensor) -> None:
    """Feed a tensor's dtype, shape and bytes to `digest`."""
    flat = tensor.detach().reshape(-1).contiguous().cpu()
    digest.update(f"{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    digest.update(flat.view(torch.uint8).numpy())


def _named_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [*module.named_parameters(), *module.named_buffers()]


def weights_fingerprint(module: nn.Module) -> str:
    """blake2b of every parameter and buffer of `module`: names, dtypes, shapes and values."""
    digest = hashlib.blake2b(digest_size=20)
    for name, tensor in _named_tensors(module):
        digest.update(name.encode())
        _update(digest, tensor)
    return digest.hexdigest()


def runs_exactly(tower: nn.Module) -> bool:
    """Whether the tower's output is a fixed function of its input: nothing in it is trained and no
    adapter sits in it."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    if any(param.requires_grad for param in tower.parameters()):
        return False
    return not any(isinstance(module, BaseTunerLayer) for module in tower.modules())


def _cacheable(tower: nn.Module, kwargs: dict[str, Any]) -> bool:
    """A call the cache can serve: a dict result, no precomputed tensors (`cu_seqlens`, ...), no
    extra outputs asked for (`output_attentions`, ...), from a tower that runs exactly. Other
    keywords (`generate` passes e.g. its `tokenizer` down) do not reach the tower's numerics."""
    if kwargs.get("return_dict") is False:
        return False
    if any(isinstance(value, torch.Tensor) or (name.startswith("output_") and value) for name, value in kwargs.items()):
        return False
    return runs_exactly(tower)


class EncoderOutputCache:
    """Encoder outputs under `root/<modality>/<key>.safetensors`, with hits and misses per modality."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()
        self._fingerprints: dict[int, tuple[tuple[Any, ...], str]] = {}

    def fingerprint(self, tower: nn.Module) -> str:
        """The tower's weights fingerprint, hashed again only when one of its tensors was replaced
        (a new storage) or written in place (its version counter moved)."""
        stamp = tuple((name, t.data_ptr(), t._version, t.dtype, tuple(t.shape), t.device)
                      for name, t in _named_tensors(tower))
        known = self._fingerprints.get(id(tower))
        if known is None or known[0] != stamp:
            known = (stamp, weights_fingerprint(tower))
            self._fingerprints[id(tower)] = known
        return known[1]

    def tower_key(self, tower: nn.Module, modality: str) -> str:
        """What every entry's key of this tower holds: its weights fingerprint and its numerics (dtype,
        device type, attention implementation)."""
        param = next(tower.parameters())
        numerics = f"{param.dtype}|{param.device.type}|{getattr(tower.config, '_attn_implementation', None)}"
        return f"{CACHE_VERSION}|{modality}|{self.fingerprint(tower)}|{numerics}"

    @staticmethod
    def key(tower_key: str, inputs: Sequence[torch.Tensor]) -> str:
        """The entry name of one item: the tower's key and the tensors that enter the tower for it."""
        digest = hashlib.blake2b(tower_key.encode(), digest_size=20)
        for tensor in inputs:
            _update(digest, tensor)
        return digest.hexdigest()

    def entry_path(self, modality: str, key: str) -> Path:
        return self.root / modality / f"{key}.safetensors"

    def load(self, modality: str, key: str, rows: int, device: torch.device) -> torch.Tensor | None:
        """The stored output with `rows` rows, or None (absent, unreadable or of another length)."""
        path = self.entry_path(modality, key)
        if not path.is_file():
            return None
        try:
            tensor = load_file(str(path), device=str(device)).get(_ENTRY)
        except (OSError, SafetensorError):
            return None
        return tensor if tensor is not None and tensor.shape[0] == rows else None

    def store(self, modality: str, key: str, tensor: torch.Tensor) -> None:
        """Write one entry atomically; a cache that cannot write only logs a warning."""
        path = self.entry_path(modality, key)
        data = {_ENTRY: tensor.detach().to("cpu", copy=True).contiguous()}
        try:
            atomic_write(path, lambda temporary: save_file(data, str(temporary)))
        except OSError as error:
            logger.warning("encoder cache: cannot write %s: %s", path, error)

    def outputs(self, tower: nn.Module, modality: str, items: Sequence[Sequence[torch.Tensor]],
                rows: Sequence[int], device: torch.device, compute: Compute) -> list[torch.Tensor]:
        """Each item's output, from its entry or, for the misses together, `compute(miss indices)`
        (one output per miss, in order), which are then stored."""
        tower_key = self.tower_key(tower, modality)
        keys = [self.key(tower_key, parts) for parts in items]
        found = [self.load(modality, key, n, device) for key, n in zip(keys, rows)]
        missing = [i for i, output in enumerate(found) if output is None]
        self.hits[modality] += len(items) - len(missing)
        self.misses[modality] += len(missing)
        if missing:
            for index, output in zip(missing, compute(missing), strict=True):
                self.store(modality, keys[index], output)
                found[index] = output
        return found

    def counts(self) -> dict[str, dict[str, int]]:
        """Hits and misses per modality (for run summaries)."""
        return {"hits": dict(self.hits), "misses": dict(self.misses)}


def _cached_audio(original: Callable[..., Any], thinker: nn.Module, cache: EncoderOutputCache) -> Callable[..., Any]:
    """`get_audio_features` served per audio from the cache."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    @wraps(original)
    def get_audio_features(input_features: torch.Tensor, feature_attention_mask: torch.Tensor | None = None,
                           audio_feature_lengths: torch.Tensor | None = None, **kwargs: Any) -> Any:
        tower = thinker.audio_tower
        if feature_attention_mask is None or not _cacheable(tower, kwargs):
            return original(input_features, feature_attention_mask, audio_feature_lengths, **kwargs)
        mask = feature_attention_mask.bool()
        lengths = tower._get_feat_extract_output_lengths(mask.sum(-1))[1].tolist()
        items = [(features[:, valid],) for features, valid in zip(input_features, mask)]

        def compute(rows: list[int]) -> Sequence[torch.Tensor]:
            hidden = original(input_features[rows], feature_attention_mask[rows], **kwargs).last_hidden_state
            return hidden.split([lengths[i] for i in rows])

        hidden = torch.cat(cache.outputs(tower, AUDIO, items, lengths, input_features.device, compute))
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=hidden)

    return get_audio_features


def _vision_features(original: Callable[..., Any], thinker: nn.Module, cache: EncoderOutputCache, modality: str,
                     pixels: torch.Tensor, grid: torch.Tensor | None, kwargs: dict[str, Any]) -> Any:
    """Video or image features per item (its rows of `pixels`, its grid row) from the cache. The
    pre-merger hidden states (`last_hidden_state`) are not cached and come back as None; the
    Thinker reads only the merged `pooler_output`."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    tower = thinker.visual
    if grid is None or not _cacheable(tower, kwargs):
        return original(pixels, grid, **kwargs)
    sizes = grid.prod(-1).tolist()
    pieces = pixels.split(sizes)
    merged_rows = [size // tower.spatial_merge_size ** 2 for size in sizes]

    def compute(rows: list[int]) -> Sequence[torch.Tensor]:
        return original(torch.cat([pieces[i] for i in rows]), grid[rows], **kwargs).pooler_output

    outputs = cache.outputs(tower, modality, list(zip(pieces, grid)), merged_rows, pixels.device, compute)
    return BaseModelOutputWithPooling(pooler_output=tuple(outputs))


def _cached_video(original: Callable[..., Any], thinker: nn.Module, cache: EncoderOutputCache) -> Callable[..., Any]:
    @wraps(original)  # generate() reads the parameter names (pixel_values_videos, video_grid_thw)
    def get_video_features(pixel_values_videos: torch.Tensor, video_grid_thw: torch.Tensor | None = None,
                           **kwargs: Any) -> Any:
        return _vision_features(original, thinker, cache, VIDEO, pixel_values_videos, video_grid_thw, kwargs)

    return get_video_features


def _cached_image(original: Callable[..., Any], thinker: nn.Module, cache: EncoderOutputCache) -> Callable[..., Any]:
    @wraps(original)
    def get_image_features(pixel_values: torch.Tensor, image_grid_thw: torch.Tensor | None = None,
                           **kwargs: Any) -> Any:
        return _vision_features(original, thinker, cache, IMAGE, pixel_values, image_grid_thw, kwargs)

    return get_image_features


def install_thinker_cache(model: nn.Module, root: str | Path) -> EncoderOutputCache:
    """Serve the Qwen2.5-Omni Thinker's audio, video and image features from a cache under `root`
    (installed once per model; a second call returns the first cache)."""
    thinker = decoder_of(model)
    installed = getattr(thinker, "encoder_output_cache", None)
    if installed is not None:
        return installed
    cache = EncoderOutputCache(root)
    thinker.get_audio_features = _cached_audio(thinker.get_audio_features, thinker, cache)
    thinker.get_video_features = _cached_video(thinker.get_video_features, thinker, cache)
    thinker.get_image_features = _cached_image(thinker.get_image_features, thinker, cache)
    thinker.encoder_output_cache = cache
    exact = [name for name, tower in (("audio tower", thinker.audio_tower), ("vision encoder", thinker.visual))
             if runs_exactly(tower)]
    logger.info("encoder cache at %s; cached now: %s", cache.root, ", ".join(exact) or "none (trained or adapted)")
    return cache
