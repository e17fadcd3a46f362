"""Regression-aware fine-tuning (RAFT; Lukasik et al., "Better autoregressive regression with LLMs
via regression-aware fine-tuning"): the model is trained on the expected value of its own
distribution over the answer grid (differentiable, through the lm_head) under the regression loss
(`loss`: mse, l1 or huber), not on the answer's tokens. It predicts as `generative_expected` does
(the median by default, `statistic: mean` for the mean)."""

from __future__ import annotations

import torch

from omni_msa.inputs import Batch
from omni_msa.readouts.answer_grid import answer_grid, grid_mean
from omni_msa.readouts.base import ReadoutContext, register_readout
from omni_msa.readouts.discriminative import LOSSES
from omni_msa.readouts.expected import ExpectedValueReadout


class RaftReadout(ExpectedValueReadout):
    def forward(self, batch: Batch) -> torch.Tensor:
        """The training loss: the regression loss of the grid's expected value against the label."""
        expected = grid_mean(self.log_probs(batch), self.grid.values)
        return LOSSES[self.settings.loss](expected, batch.labels.to(expected))


@register_readout("generative_raft", uses_lm_head=True, custom_attention_mask=True)
def build_raft(ctx: ReadoutContext) -> RaftReadout:
    return RaftReadout(ctx.backbone, ctx.settings, answer_grid(ctx.builder))
