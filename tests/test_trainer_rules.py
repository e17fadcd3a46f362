"""The rules both trainers share: seed derivation (omni_msa.seeding) and weight decay (omni_msa.optim)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from omni_msa.data.missing import MissingnessProtocol
from omni_msa.optim import groups_by_prefix, param_groups
from omni_msa.seeding import derive_seed, epoch_protocol


def test_derived_seeds_are_pinned_and_stable_across_processes():
    # The classic results were produced with these values: a changed rule changes them.
    assert derive_seed(0, "epoch", 1) == 1517651785
    assert derive_seed(4, "torch", 0) == 1514080026
    assert derive_seed(np.int64(7), "shuffle", np.int32(3)) == derive_seed(7, "shuffle", 3) == 1824408217
    assert derive_seed(1, "epoch", 0) != derive_seed(0, "epoch", 1)
    with pytest.raises(TypeError):
        derive_seed(0.5, "epoch")


def test_epoch_protocols_are_redrawn_per_epoch_as_a_pure_function_of_protocol_and_epoch():
    protocol = MissingnessProtocol(inter_rate=0.3, intra_rate="uniform", seed=5)
    first, again, second = epoch_protocol(protocol, 0), epoch_protocol(protocol, 0), epoch_protocol(protocol, 1)
    assert first == again and first.seed == derive_seed(5, "epoch", 0) and first.seed != second.seed
    assert (first.inter_rate, first.intra_rate) == (0.3, "uniform")
    assert epoch_protocol(protocol.with_seed(6), 0).seed != first.seed
    ids = [f"s{i}" for i in range(40)]
    assert [first.draw(i).kept for i in ids] != [second.draw(i).kept for i in ids]


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 4)
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 1)
        self.scale = nn.Parameter(torch.ones(()))


def test_weight_decay_only_on_parameters_with_two_or_more_dimensions():
    block = _Block()
    block.embed.weight.requires_grad_(False)
    groups = groups_by_prefix(block.named_parameters(), {"head": "head."}, rest="body")
    assert [len(groups["body"]), len(groups["head"])] == [6, 2]
    out = param_groups(groups, lr=1e-4, weight_decay=0.1, group_lr={"head": 1e-2, "absent": 5.0})
    assert [(g["group"], g["lr"], g["weight_decay"], len(g["params"])) for g in out] == [
        ("body", 1e-4, 0.1, 1), ("body", 1e-4, 0.0, 4), ("head", 1e-2, 0.1, 1), ("head", 1e-2, 0.0, 1)]
    assert out[0]["params"][0] is block.proj.weight and out[2]["params"][0] is block.head.weight
    decayed = {id(p) for g in out if g["weight_decay"] for p in g["params"]}
    assert decayed == {id(block.proj.weight), id(block.head.weight)}          # not the frozen embedding
    assert all(p.ndim < 2 for g in out if not g["weight_decay"] for p in g["params"])
    torch.optim.AdamW(out).step()      # a valid AdamW spec
    assert param_groups({"body": [block.embed.weight]}, lr=1.0, weight_decay=0.1) == []
