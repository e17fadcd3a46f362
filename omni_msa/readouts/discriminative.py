"""The discriminative readout: the headless decoder's final hidden state at the last non-padding
position (from the attention mask, so left and right padding agree) goes through a float32
regression head. The lm_head is never run: one forward pass, no vocabulary logits."""

from __future__ import annotations

import torch
from torch import nn

from omni_msa.backbone import decoder_of, input_embedding_dim
from omni_msa.inputs import Batch, last_token_positions
from omni_msa.readouts.base import Predictions, ReadoutContext, ReadoutSettings, register_readout

LOSSES = {"mse": nn.functional.mse_loss, "l1": nn.functional.l1_loss, "huber": nn.functional.huber_loss}


def build_head(settings: ReadoutSettings, hidden_size: int) -> nn.Module:
    if settings.head == "linear":
        return nn.Linear(hidden_size, 1)
    return nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, settings.head_hidden), nn.GELU(),
                         nn.Dropout(settings.head_dropout), nn.Linear(settings.head_hidden, 1))


class DiscriminativeReadout(nn.Module):
    def __init__(self, backbone: nn.Module, settings: ReadoutSettings, label_range: tuple[float, float]) -> None:
        super().__init__()
        self.backbone = backbone
        self.settings = settings
        self.label_range = label_range
        self.head = build_head(settings, input_embedding_dim(backbone)).float()

    def scores(self, batch: Batch) -> torch.Tensor:
        hidden = decoder_of(self.backbone)(**batch.model_inputs, **batch.forward_kwargs).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        last = hidden[rows, last_token_positions(batch.model_inputs["attention_mask"]).to(hidden.device)]
        return self.head(last.float()).squeeze(-1)

    def forward(self, batch: Batch) -> torch.Tensor:
        """The training loss."""
        return LOSSES[self.settings.loss](self.scores(batch), batch.labels.to(torch.float32))

    @torch.no_grad()
    def predict(self, batch: Batch) -> Predictions:
        values = self.scores(batch).float().cpu()
        return Predictions(values=values, statuses=["ok"] * len(values))


@register_readout("discriminative")
def build(ctx: ReadoutContext) -> DiscriminativeReadout:
    return DiscriminativeReadout(ctx.backbone, ctx.settings, ctx.label_range)
