"""The speed settings of a run: attention kernel, gradient checkpointing, compute dtype and batch
grouping, chosen where the backbone config says ``auto`` and written into every training summary.

The choices:
- attention ``auto``: FlashAttention-2 on CUDA when flash-attn is installed, the compute dtype is
  bfloat16 or float16 (its kernels take nothing else) and the readout needs no 4-D attention mask
  (the answer grid's tree mask, which flash attention ignores); otherwise PyTorch SDPA. An explicit
  name is kept, but ``flash_attention_2`` is refused here, not at load or mid-run, where flash-attn
  is not installed or the readout needs such a mask.
- gradient checkpointing ``auto``: on for a quantized backbone on CUDA. That is QLoRA's own recipe and
  peft's ``prepare_model_for_kbit_training`` default; `omni-msa plan` puts activations at 58 of 72 GiB
  for the 7B Thinker at batch 4 without it. Off otherwise: the CPU runs here are compute-bound, not
  memory-bound, and recomputing the forward pass costs about a third more compute.
- compute dtype ``auto``: bfloat16 on CUDA, float32 on CPU (`omni_msa.backbone.resolve_dtype`).
- batches: always grouped by the set of present modalities and by length
  (`omni_msa.data.batching.group_batches`), so padding stays small.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from omni_msa.backbone import BackboneConfig

AUTO = "auto"
FLASH = "flash_attention_2"
HALF = (torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class SpeedSettings:
    device: str
    compute_dtype: str
    attention: str
    gradient_checkpointing: bool
    length_grouping: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One line for a log or a dry run."""
        return (f"{self.device}: {self.compute_dtype}, attention {self.attention}, gradient checkpointing "
                f"{'on' if self.gradient_checkpointing else 'off'}, batches grouped by modality set and length")


def flash_attention_installed() -> bool:
    from transformers.utils import is_flash_attn_2_available

    return bool(is_flash_attn_2_available())


def choose_attention(requested: str, *, cuda: bool, dtype: torch.dtype, flash_installed: bool,
                     custom_mask: bool = False) -> str:
    if requested == FLASH and not flash_installed:
        raise ValueError("attn_implementation 'flash_attention_2': flash-attn is not installed (or this is no "
                         "CUDA machine); use 'auto' or 'sdpa'")
    if requested == FLASH and custom_mask:
        raise ValueError("attn_implementation 'flash_attention_2': this readout scores under a 4-D attention "
                         "mask, which flash attention ignores; use 'auto' or 'sdpa'")
    if requested != AUTO:
        return requested
    return FLASH if cuda and flash_installed and dtype in HALF and not custom_mask else "sdpa"


def choose_gradient_checkpointing(requested: bool | str, *, cuda: bool, quantized: bool) -> bool:
    if requested == AUTO:
        return cuda and quantized
    return bool(requested)


def speed_settings(cfg: BackboneConfig, *, custom_mask: bool = False, cuda: bool | None = None,
                   flash_installed: bool | None = None) -> SpeedSettings:
    """What a run of `cfg` uses on this machine, or on a CUDA machine (`cuda=True`) for a dry run;
    `custom_mask`: the readout needs a 4-D attention mask (`ReadoutEntry.custom_attention_mask`)."""
    from omni_msa.backbone import resolve_dtype

    cuda = torch.cuda.is_available() if cuda is None else cuda
    flash_installed = (cuda and flash_attention_installed()) if flash_installed is None else flash_installed
    dtype = resolve_dtype(cfg.compute_dtype, cuda=cuda)
    return SpeedSettings(
        device="cuda" if cuda else "cpu",
        compute_dtype=str(dtype).removeprefix("torch."),
        attention=choose_attention(cfg.attn_implementation, cuda=cuda, dtype=dtype, flash_installed=flash_installed,
                                   custom_mask=custom_mask),
        gradient_checkpointing=choose_gradient_checkpointing(cfg.gradient_checkpointing, cuda=cuda,
                                                             quantized=cfg.quantization != "none"),
    )
