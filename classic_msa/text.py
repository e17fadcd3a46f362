"""Text token states for the classic models: precomputed MMSA features or a wrapped HF encoder.

The papers fine-tune BERT; with no hub access every model reads the MMSA `text` features
(B x L x 768, already BERT outputs) by default. Given a local path, an HF encoder
(`AutoModel.from_pretrained`) is run instead on the MMSA `text_bert` ids, attention mask and
segment ids, after missingness has replaced masked token ids with [UNK].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from classic_msa.data import FeatureBatch


class TextStates(nn.Module):
    """B x L x output_dim token states. With `finetune=False` the wrapped encoder runs in eval
    mode without gradients (a frozen feature extractor); with True it trains with the model
    (give its group "text_encoder" a small learning rate via `group_lr`)."""

    def __init__(self, feature_dim: int, encoder_path: str | None = None, finetune: bool = False) -> None:
        super().__init__()
        self.finetune = finetune
        self.encoder: nn.Module | None = None
        self.output_dim = feature_dim
        if encoder_path is not None:
            from transformers import AutoModel  # heavy: imported only when a wrapped encoder is asked for

            self.encoder = AutoModel.from_pretrained(encoder_path)
            self.output_dim = int(self.encoder.config.hidden_size)

    def train(self, mode: bool = True) -> TextStates:
        super().train(mode)
        if self.encoder is not None and not self.finetune:
            self.encoder.eval()
        return self

    @property
    def wraps_encoder(self) -> bool:
        return self.encoder is not None

    def forward(self, batch: FeatureBatch) -> Tensor:
        if self.encoder is None:
            return batch.features["text"]
        if batch.text_bert is None:
            raise ValueError(f"a wrapped text encoder needs BERT ids (MMSA text_bert); batch starting "
                             f"with sample {batch.ids[0]!r} has none")
        ids, mask, segments = batch.text_bert.unbind(1)
        if self.finetune:
            return self.encoder(input_ids=ids, attention_mask=mask, token_type_ids=segments).last_hidden_state
        with torch.no_grad():
            return self.encoder(input_ids=ids, attention_mask=mask, token_type_ids=segments).last_hidden_state
