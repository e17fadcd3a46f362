from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from classic_msa.checkpoint import load_state, save_state
from classic_msa.data import FeatureBatch
from classic_msa.model import FeatureModel, build_model, model_class, model_names, register_model
from classic_msa.schedule import LRSchedule
from classic_msa.seeding import seed_everything
from classic_msa.trainer import BEST_FILE, MODEL_FILE, TrainConfig, Trainer


@dataclass
class ToyConfig:
    text_dim: int = 768
    audio_dim: int = 5
    hidden: int = 8
    dropout: float = 0.2


@register_model("toy_regressor")
class Toy(FeatureModel):
    """Mean-pooled text and audio -> MLP; an extra "aux" term (activation energy) to toggle."""

    config_class = ToyConfig

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        self.encoder = nn.Sequential(nn.Linear(config.text_dim + config.audio_dim, config.hidden), nn.ReLU(),
                                     nn.Dropout(config.dropout))
        self.head = nn.Linear(config.hidden, 1)

    def forward(self, batch: FeatureBatch) -> dict[str, torch.Tensor]:
        tokens = batch.text_tokens[..., None].float()
        text = (batch.features["text"] * tokens).sum(1) / tokens.sum(1).clamp(min=1)
        audio = batch.features["audio"].sum(1) / batch.lengths["audio"].clamp(min=1)[:, None]
        hidden = self.encoder(torch.cat([text, audio], dim=-1))
        pred = self.head(hidden).squeeze(-1)
        return {"pred": pred, "task": F.l1_loss(pred, batch.labels), "aux": hidden.pow(2).mean()}


def _toy(seed: int = 0) -> Toy:
    seed_everything(seed)
    return build_model("toy_regressor")


def _config(**overrides) -> TrainConfig:
    spec = {"lr": 3e-3, "batch_size": 16, "patience": 2, "seed": 4,
            "train_protocol": {"inter_rate": 0.3, "intra_rate": "uniform"},
            "stages": [{"name": "warm", "epochs": 2, "frozen": ["head"], "losses": {"task": 1.0, "aux": 0.1}},
                       {"name": "main", "epochs": 3, "lr": 1e-3}]}
    spec.update(overrides)
    return TrainConfig.from_dict(spec)


class _Interrupt(Exception):
    pass


def test_resume_reaches_the_same_final_weights_as_an_uninterrupted_run(synthetic, tmp_path):
    train, valid = synthetic["train"][:64], synthetic["valid"]
    full = Trainer(_toy(), _config(), dataset="mosi", out_dir=tmp_path / "full").fit(train, valid)

    seen = []

    def crash_after_three(record):
        seen.append(record)
        if len(seen) == 3:   # mid second stage: optimizer, schedule, best weights all in play
            raise _Interrupt

    with pytest.raises(_Interrupt):
        Trainer(_toy(), _config(), dataset="mosi", out_dir=tmp_path / "cut").fit(train, valid,
                                                                             on_epoch_end=crash_after_three)
    with pytest.raises(FileExistsError):
        Trainer(_toy(), _config(), dataset="mosi", out_dir=tmp_path / "cut").fit(train, valid)
    resumed = Trainer(_toy(seed=123), _config(), dataset="mosi", out_dir=tmp_path / "cut").fit(
        train, valid, resume=True)

    a, b = load_file(str(tmp_path / "full" / MODEL_FILE)), load_file(str(tmp_path / "cut" / MODEL_FILE))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["valid"]["mae"] for r in resumed.history] == [r["valid"]["mae"] for r in full.history]
    assert resumed.valid_metrics == full.valid_metrics
    with pytest.raises(ValueError, match="differs"):
        Trainer(_toy(), _config(lr=1e-2), dataset="mosi", out_dir=tmp_path / "cut").fit(train, valid, resume=True)


def test_same_seed_same_weights_and_frozen_groups_stay_put(synthetic):
    train, valid = synthetic["train"][:48], synthetic["valid"]
    heads = []
    model = _toy()
    initial_head = model.head.weight.detach().clone()
    Trainer(model, _config(stages=[{"epochs": 2, "frozen": ["head"]}]), dataset="mosi").fit(
        train, valid, on_epoch_end=lambda r: heads.append(model.head.weight.detach().clone()))
    assert all(torch.equal(h, initial_head) for h in heads)
    twin = _toy()
    Trainer(twin, _config(stages=[{"epochs": 2, "frozen": ["head"]}]), dataset="mosi").fit(train, valid)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters()))
    assert not torch.equal(model.encoder[0].weight, _toy().encoder[0].weight)


def test_stage_loss_terms_are_switched_and_checked(synthetic):
    train, valid = synthetic["train"][:32], synthetic["valid"]
    result = Trainer(_toy(), _config(stages=[{"epochs": 1, "losses": {"aux": 1.0}}]), dataset="mosi").fit(train, valid)
    assert set(result.history[0]["train"]) == {"total", "aux"}
    default = Trainer(_toy(), _config(stages=[{"epochs": 1}]), dataset="mosi").fit(train, valid)
    assert set(default.history[0]["train"]) == {"total", "task"}
    unknown_term = _config(stages=[{"epochs": 1, "losses": {"nonexistent": 1.0}}])
    with pytest.raises(KeyError, match="nonexistent"):
        Trainer(_toy(), unknown_term, dataset="mosi").fit(train, valid)
    with pytest.raises(ValueError, match="unknown groups"):
        Trainer(_toy(), _config(stages=[{"epochs": 1, "frozen": ["decoder"]}]), dataset="mosi")


def test_early_stopping_and_selection_on_valid(synthetic, tmp_path):
    train, valid = synthetic["train"][:48], synthetic["valid"]
    frozen_lr = Trainer(_toy(), _config(lr=0.0, stages=[{"epochs": 10}]), dataset="mosi").fit(train, valid)
    assert len(frozen_lr.history) == 3      # epoch 0 improves, then patience 2 without improvement

    result = Trainer(_toy(), _config(patience=0, stages=[{"epochs": 6}]), dataset="mosi",
                     out_dir=tmp_path).fit(train, valid)
    maes = [r["valid"]["mae"] for r in result.history]
    assert len(maes) == 6
    assert result.valid_metrics["mae"] == pytest.approx(min(maes), abs=1e-6)
    best, final = load_file(str(tmp_path / BEST_FILE)), load_file(str(tmp_path / MODEL_FILE))
    assert all(torch.equal(best[k], final[k]) for k in best)


def _schedule(kind, **kwargs):
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1.0)
    return optimizer, LRSchedule(optimizer, kind=kind, **kwargs)


def test_warmup_then_cosine():
    optimizer, schedule = _schedule("cosine", total_steps=20, warmup_steps=4, min_lr_ratio=0.1)
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(20):
        schedule.step_batch()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))
    assert lrs[12] == pytest.approx(0.1 + 0.9 * 0.5)    # half way through the decay
    assert lrs[-1] == pytest.approx(0.1)


def test_plateau_reduces_after_patience_and_resumes_from_state():
    optimizer, schedule = _schedule("plateau", total_steps=10, plateau_factor=0.5, plateau_patience=1)
    for mae in (1.0, 0.9, 0.95, 0.95):
        schedule.step_epoch(mae)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)
    other_optimizer, other = _schedule("plateau", total_steps=10)
    other.load_state_dict(schedule.state_dict())
    assert other_optimizer.param_groups[0]["lr"] == pytest.approx(0.5)


def test_state_files_round_trip_nested_optimizer_state(tmp_path):
    state = {"optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(2, 2)}},
                           "param_groups": [{"betas": (0.9, 0.999), "params": [0]}]},
             "best": float("inf"), "names": ["a", None]}
    save_state(tmp_path / "s.safetensors", state)
    loaded = load_state(tmp_path / "s.safetensors")
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(loaded["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    assert loaded["best"] == float("inf") and loaded["names"] == ["a", None]


def test_registry_and_config_validation():
    assert {"mdf", "toy_regressor"} <= set(model_names())
    assert model_class("toy_regressor") is Toy
    with pytest.raises(ValueError, match="unknown model"):
        model_class("nope")
    with pytest.raises(ValueError, match="unknown toy_regressor config keys"):
        build_model("toy_regressor", {"hidden": 4, "width": 3})
    with pytest.raises(ValueError, match="unknown key 'learning_rate'"):
        TrainConfig.from_dict({"learning_rate": 1e-3})
    with pytest.raises(ValueError, match=r"unknown key 'stages\[0\]\.epoch'"):
        TrainConfig.from_dict({"stages": [{"epoch": 3}]})
    with pytest.raises(ValueError, match=r"unknown key 'train\.train_protocol\.intra' \(known: inter_rate, "):
        TrainConfig.from_dict({"train_protocol": {"intra": 0.5}}, at="train")
    with pytest.raises(ValueError, match="schedule: expected one of 'cosine', 'plateau', 'constant', got 'linear'"):
        TrainConfig.from_dict({"schedule": "linear"})
    with pytest.raises(ValueError, match="schedule: expected one of"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="group_lr"):
        Trainer(_toy(), TrainConfig(group_lr={"decoder": 1e-4}), dataset="mosi")


def test_each_stage_decays_only_matrices_of_its_trainable_groups_at_their_own_rate():
    model = _toy()
    config = _config(weight_decay=0.05, group_lr={"head": 1e-2})
    trainer = Trainer(model, config, dataset="mosi")
    warm, main = config.stages
    optimizer, _ = trainer._begin_stage(warm, batches_per_epoch=4)       # head frozen
    assert [(g["group"], g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == [
        ("encoder", 3e-3, 0.05), ("encoder", 3e-3, 0.0)]
    assert [p.ndim for g in optimizer.param_groups for p in g["params"]] == [2, 1]
    optimizer, _ = trainer._begin_stage(main, batches_per_epoch=4)       # stage lr 1e-3, head's own 1e-2
    assert [(g["group"], g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == [
        ("encoder", 1e-3, 0.05), ("encoder", 1e-3, 0.0), ("head", 1e-2, 0.05), ("head", 1e-2, 0.0)]
    assert optimizer.param_groups[2]["params"] == [model.head.weight]
