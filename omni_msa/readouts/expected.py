"""The expected-value readout: the model's own distribution over the answer grid
(`omni_msa.readouts.answer_grid`), renormalised, read out as its median (the optimum for absolute
error) or, with `statistic: mean`, its mean; each sample's standard deviation (an uncertainty) and
the probability the grid held are written beside the prediction. Nothing is decoded or parsed.

`generative_expected` scores the model the generative readout trains; trained on its own, its loss
is the generative one (cross-entropy on the answer's tokens, averaged over the batch's answer
tokens), read from the same grid pass. `generative_expected_zero_shot` scores the bare backbone.
"""

from __future__ import annotations

import torch
from torch import nn

from omni_msa.inputs import Batch
from omni_msa.readouts.answer_grid import AnswerGrid, answer_grid, grid_log_probs, summarise
from omni_msa.readouts.base import Predictions, ReadoutContext, ReadoutSettings, register_readout


class ExpectedValueReadout(nn.Module):
    def __init__(self, backbone: nn.Module, settings: ReadoutSettings, grid: AnswerGrid) -> None:
        super().__init__()
        self.backbone = backbone
        self.settings = settings
        self.grid = grid

    def log_probs(self, batch: Batch) -> torch.Tensor:
        """[B, K] log-probability of every answer on the grid."""
        return grid_log_probs(self.backbone, self.grid, batch)

    def forward(self, batch: Batch) -> torch.Tensor:
        """The training loss: the generative readout's cross-entropy on the label's answer tokens."""
        answers = torch.tensor([self.grid.index_of(float(label)) for label in batch.labels])
        log_probs = self.log_probs(batch)
        rows = torch.arange(len(answers), device=log_probs.device)
        return -log_probs[rows, answers.to(log_probs.device)].sum() / self.grid.token_counts[answers].sum()

    @torch.no_grad()
    def predict(self, batch: Batch) -> Predictions:
        summary = summarise(self.log_probs(batch), self.grid.values)
        values = summary.mean if self.settings.statistic == "mean" else summary.median
        return Predictions(values=values.float().cpu(), statuses=["ok"] * len(values),
                           extra={"std": summary.std.cpu(), "grid_mass": summary.grid_mass.cpu(),
                                  "low80": summary.low80.cpu(), "high80": summary.high80.cpu()})


def build_expected(ctx: ReadoutContext) -> ExpectedValueReadout:
    return ExpectedValueReadout(ctx.backbone, ctx.settings, answer_grid(ctx.builder))


register_readout("generative_expected", reads="generative", uses_lm_head=True,
                 custom_attention_mask=True)(build_expected)
register_readout("generative_expected_zero_shot", trained=False, uses_lm_head=True,
                 custom_attention_mask=True)(build_expected)
