"""Transformer blocks: an encoder with prepended tokens, and stackable cross-modal attention.

Masks follow torch's convention: a key padding mask is True at padded positions.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn


def padding_mask(lengths: Tensor, max_len: int) -> Tensor:
    """B x max_len bool mask, True at positions >= lengths[b] (padding).

    A row with length 0 would leave attention nothing to attend to (softmax over an empty set is
    NaN), so such rows keep position 0 unmasked: they attend to the (zero) padding content.
    """
    mask = torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]
    empty = ~(~mask).any(dim=1)
    mask[empty, 0] = False
    return mask


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """The Transformer's fixed sin/cos position table, length x dim."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


class PrependTokenEncoder(nn.Module):
    """Transformer encoder over a projected sequence with `num_tokens` tokens prepended.

    The prepended tokens are never masked, so every row has something to attend to even when
    the whole sequence is padding or zeroed by missingness; their outputs are the pooled
    summaries models read out (ALMT/LNLN-style). `tokens="learnable"` makes them trained
    parameters (normal init, std 0.02); `tokens="zero"` makes them fixed zeros, distinguished
    only by their positions (with `positional="none"` all k token outputs are then equal).
    `positional`: "learned" (a trained table over k + max_len positions), "sinusoidal" (fixed)
    or "none". Layers are pre-norm with a final LayerNorm.
    """

    def __init__(self, input_dim: int, dim: int, *, num_tokens: int = 1, num_layers: int = 2,
                 num_heads: int = 4, ff_dim: int | None = None, dropout: float = 0.1,
                 tokens: Literal["learnable", "zero"] = "learnable",
                 positional: Literal["learned", "sinusoidal", "none"] = "learned",
                 max_len: int = 512) -> None:
        super().__init__()
        if num_tokens < 1:
            raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
        self.num_tokens = num_tokens
        self.max_len = max_len
        self.proj = nn.Linear(input_dim, dim)
        if tokens == "learnable":
            self.tokens = nn.Parameter(torch.randn(1, num_tokens, dim) * 0.02)
        elif tokens == "zero":
            self.register_buffer("tokens", torch.zeros(1, num_tokens, dim), persistent=False)
        else:
            raise ValueError(f"tokens must be 'learnable' or 'zero', got {tokens!r}")
        if positional == "learned":
            self.positions = nn.Parameter(torch.randn(1, num_tokens + max_len, dim) * 0.02)
        elif positional == "sinusoidal":
            self.register_buffer("positions", sinusoidal_positions(num_tokens + max_len, dim)[None],
                                 persistent=False)
        elif positional == "none":
            self.positions = None
        else:
            raise ValueError(f"positional must be 'learned', 'sinusoidal' or 'none', got {positional!r}")
        layer = nn.TransformerEncoderLayer(dim, num_heads, ff_dim or 4 * dim, dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(dim),
                                            enable_nested_tensor=False)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x: B x L x input_dim; lengths: B real lengths (None = no padding).
        Returns (token states B x k x dim, sequence states B x L x dim)."""
        batch, length, _ = x.shape
        if length > self.max_len:
            raise ValueError(f"sequence of {length} is longer than max_len={self.max_len}")
        h = torch.cat([self.tokens.expand(batch, -1, -1), self.proj(x)], dim=1)
        if self.positions is not None:
            h = h + self.positions[:, : self.num_tokens + length]
        mask = None
        if lengths is not None:
            seq_mask = torch.arange(length, device=x.device)[None, :] >= lengths[:, None]
            mask = torch.cat([seq_mask.new_zeros(batch, self.num_tokens), seq_mask], dim=1)
        out = self.layers(h, src_key_padding_mask=mask)
        return out[:, : self.num_tokens], out[:, self.num_tokens:]


class CrossModalLayer(nn.Module):
    """One pre-norm cross-attention layer: x + Attn(LN(x), LN(y)), then x + FFN(LN(x))."""

    def __init__(self, dim: int, num_heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm_query = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, context: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        context = self.norm_context(context)
        attended, _ = self.attention(self.norm_query(x), context, context,
                                     key_padding_mask=key_padding_mask, need_weights=False)
        x = x + self.dropout(attended)
        return x + self.dropout(self.ff(self.norm_ff(x)))


class CrossModalAttention(nn.Module):
    """A stack of cross-modal layers: the query stream attends to a context stream (MulT-style).

    Both streams must already have width `dim`. The context's padding is masked from its
    lengths (a row of length 0 attends to position 0, see `padding_mask`). Returns the updated
    query stream, B x Lq x dim, after a final LayerNorm.
    """

    def __init__(self, dim: int, *, num_layers: int = 1, num_heads: int = 4, ff_dim: int | None = None,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CrossModalLayer(dim, num_heads, ff_dim or 4 * dim, dropout)
                                    for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, query: Tensor, context: Tensor, context_lengths: Tensor | None = None) -> Tensor:
        mask = None if context_lengths is None else padding_mask(context_lengths, context.shape[1])
        for layer in self.layers:
            query = layer(query, context, mask)
        return self.norm(query)
