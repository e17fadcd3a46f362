"""The trainer-state file both families write: exact round trips of what training stores
(optimizer states keyed by int, RNG tuples, scheduler states), strict JSON, and loading that runs
no code whatever the file holds."""

from __future__ import annotations

import json
import math
import os
import pickle
import random
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from omni_msa.checkpoint import (
    LEGACY_TRAINER_STATE_FILE,
    METRICS_FILE,
    TRAINER_STATE_DIR,
    TRAINER_STATE_FILE,
    load_trainer_state,
    load_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from omni_msa.state_file import STATE_KEY, load_state, save_state

from conftest import assert_same_structure


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class TinyReadout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(3, 4)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.backbone(x))).squeeze(-1)


def trained_optimizer(steps: int = 3) -> tuple[TinyReadout, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = TinyReadout()
    optimizer = torch.optim.AdamW([{"params": model.backbone.parameters(), "lr": 1e-2},
                                   {"params": model.head.parameters(), "lr": 1e-3}], weight_decay=0.1)
    for _ in range(steps):
        model(torch.randn(5, 3)).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer


def strict_json(text: str):
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_optimizer_and_rng_states_round_trip_exactly(tmp_path):
    _, optimizer = trained_optimizer()
    state = {"optimizer": optimizer.state_dict(), "rng": rng_state(), "bf16": torch.randn(3).to(torch.bfloat16),
             "counters": {"best_mae": math.inf, "worst": -math.inf, "corr": math.nan, "step": 3, "flag": True,
                          "none": None, "neg_zero": -0.0, "big": 2**62}}
    assert list(state["optimizer"]["state"]) == [0, 1, 2, 3]  # int keys
    save_state(tmp_path / "s.safetensors", state)
    loaded = load_state(tmp_path / "s.safetensors")
    assert_same_structure(loaded, state)
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert math.copysign(1.0, loaded["counters"]["neg_zero"]) == -1.0


def test_restored_rng_state_replays_the_same_draws(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_state(tmp_path / "rng.safetensors", rng_state())
    first = (random.random(), np.random.rand(3), torch.rand(3))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(load_state(tmp_path / "rng.safetensors"))
    again = (random.random(), np.random.rand(3), torch.rand(3))
    assert first[0] == again[0] and np.array_equal(first[1], again[1]) and torch.equal(first[2], again[2])


def schedulers(optimizer: torch.optim.Optimizer) -> dict[str, object]:
    from transformers import get_scheduler

    return {
        "linear": get_scheduler("linear", optimizer, num_warmup_steps=2, num_training_steps=10),
        "cosine": get_scheduler("cosine", optimizer, num_warmup_steps=2, num_training_steps=10),
        "lambda": torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.9 ** step),
        "plateau": torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0),
    }


@pytest.mark.parametrize("kind", ["linear", "cosine", "lambda", "plateau"])
def test_scheduler_state_round_trips_and_resumes_the_same_schedule(tmp_path, kind):
    _, optimizer = trained_optimizer()
    scheduler = schedulers(optimizer)[kind]
    def step(scheduler, i: int) -> None:
        scheduler.optimizer.step()  # no gradients: changes nothing, but steps come in the order torch expects
        if kind == "plateau":
            scheduler.step(1.0 + i % 2)
        else:
            scheduler.step()

    for i in range(4):
        step(scheduler, i)
    save_state(tmp_path / "s.safetensors", {"scheduler": scheduler.state_dict(), "optimizer": optimizer.state_dict()})
    loaded = load_state(tmp_path / "s.safetensors")
    assert_same_structure(loaded["scheduler"], scheduler.state_dict())

    _, other_optimizer = trained_optimizer(steps=0)
    other = schedulers(other_optimizer)[kind]
    other_optimizer.load_state_dict(loaded["optimizer"])
    other.load_state_dict(loaded["scheduler"])
    for i in range(4, 9):
        step(scheduler, i)
        step(other, i)
        assert other.get_last_lr() == scheduler.get_last_lr()
    assert [g["lr"] for g in other_optimizer.param_groups] == [g["lr"] for g in optimizer.param_groups]


def test_functions_and_objects_are_refused_with_where_they_sit(tmp_path):
    class Warmup:  # a callable-object lambda: LambdaLR stores its __dict__, here holding a function
        def __init__(self) -> None:
            self.shape = lambda step: step

        def __call__(self, step: int) -> float:
            return 1.0

    _, optimizer = trained_optimizer(steps=0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [Warmup(), partial(pow, 0.5)])
    with pytest.raises(TypeError, match=r"function at state\['scheduler'\]\['lr_lambdas'\]\[0\]\['shape'\]"):
        save_state(tmp_path / "s.safetensors", {"scheduler": scheduler.state_dict()})
    with pytest.raises(TypeError, match="dtype object"):
        save_state(tmp_path / "s.safetensors", {"ids": np.array(["a"], dtype=object)})
    assert not (tmp_path / "s.safetensors").exists()


def test_dicts_that_look_like_tags_and_odd_keys_round_trip(tmp_path):
    state = {"a": {"__tensor__": "0"}, "b": {"__float__": "inf", "x": 1}, "c": {(1, "x"): [], 2.5: {}, None: ()},
             "d": {True: "yes", 0: "no"}, "e": [[], {}, (), ""]}
    save_state(tmp_path / "s.safetensors", state)
    assert_same_structure(load_state(tmp_path / "s.safetensors"), state)


def test_metadata_is_strict_json(tmp_path):
    save_state(tmp_path / "s.safetensors", {"best": math.inf, "corr": math.nan, "t": torch.zeros(2)})
    from safetensors import safe_open

    with safe_open(str(tmp_path / "s.safetensors"), framework="pt") as handle:
        encoded = strict_json(handle.metadata()[STATE_KEY])
    assert encoded == {"best": {"__float__": "inf"}, "corr": {"__float__": "nan"}, "t": {"__tensor__": "0"}}


def test_checkpoint_keeps_trainer_state_and_writes_nan_free_json(tmp_path):
    model, optimizer = trained_optimizer()
    counters = {"epoch": 1, "global_step": 3, "best_mae": math.inf, "best_step": None,
                "history": [{"step": 3, "split": "valid", "mae": 1.2, "corr": math.nan}]}
    tensors = {"optimizer": optimizer.state_dict(), "rng": rng_state()}
    trainer_state = {**counters, "tensors": tensors}
    save_checkpoint(tmp_path / "ckpt", model, {"lr": 1e-2, "note": math.nan}, {"mae": 1.2, "corr": math.nan},
                    trainer_state)
    assert trainer_state["tensors"] is tensors  # the caller's dict is left as it was
    saved_counters, saved_tensors = load_trainer_state(tmp_path / "ckpt")
    assert_same_structure(saved_counters, counters)
    assert_same_structure(saved_tensors, tensors)
    assert strict_json((tmp_path / "ckpt" / METRICS_FILE).read_text()) == {"mae": 1.2, "corr": None}
    assert not list((tmp_path / "ckpt" / TRAINER_STATE_DIR).glob("*.pt"))
    fresh = TinyReadout()
    load_weights(tmp_path / "ckpt", fresh)
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters()))


# ---------------------------------------------------------------- nothing loaded runs code


def checkpoint_dir(tmp_path: Path) -> Path:
    model, _ = trained_optimizer(steps=0)
    save_checkpoint(tmp_path / "ckpt", model, {}, None, {"epoch": 0, "tensors": {"rng": rng_state()}})
    return tmp_path / "ckpt"


def test_old_torch_pickle_trainer_state_is_refused_unread(tmp_path):
    directory = checkpoint_dir(tmp_path)
    state_dir = directory / TRAINER_STATE_DIR
    (state_dir / TRAINER_STATE_FILE).unlink()
    torch.save({"optimizer": Payload(tmp_path / "ran")}, state_dir / LEGACY_TRAINER_STATE_FILE)
    (state_dir / "state.json").write_text("{}")
    with pytest.raises(ValueError, match=f"{LEGACY_TRAINER_STATE_FILE}.*old torch-pickle format"):
        load_trainer_state(directory)
    assert not (tmp_path / "ran").exists()


def test_a_pickle_in_place_of_a_safetensors_file_is_refused(tmp_path):
    directory = checkpoint_dir(tmp_path)
    marker = tmp_path / "ran"
    torch.save({"tensors": Payload(marker)}, directory / TRAINER_STATE_DIR / TRAINER_STATE_FILE)
    with pytest.raises(ValueError, match="not a state file"):
        load_trainer_state(directory)
    torch.save({"weight": Payload(marker)}, directory / "trainable.safetensors")
    with pytest.raises(Exception, match="(?i)header|invalid|deserializ"):
        load_weights(directory, TinyReadout())
    assert not marker.exists()


def test_metadata_and_tensor_bytes_that_carry_a_payload_stay_data(tmp_path):
    """A state file is JSON plus raw bytes: a pickle hidden in either comes back as data."""
    marker = tmp_path / "ran"
    payload = pickle.dumps(Payload(marker))
    forged = {"state": {"py/reduce": [{"py/function": "posix.system"}, {"py/tuple": [f"touch {marker}"]}],
                        "__reduce__": "os.system", "blob": payload.decode("latin-1"), "bytes": {"__tensor__": "0"}},
              "tensors": {}}
    path = tmp_path / "forged.safetensors"
    save_file({"0": torch.tensor(list(payload), dtype=torch.uint8)}, str(path),
              metadata={STATE_KEY: json.dumps(forged)})
    loaded = load_state(path)
    assert loaded["state"]["__reduce__"] == "os.system" and loaded["state"]["blob"] == payload.decode("latin-1")
    assert bytes(loaded["state"]["bytes"].tolist()) == payload
    assert not marker.exists()
    save_file({}, str(path), metadata={STATE_KEY: json.dumps({"t": {"__tensor__": "7"}})})
    with pytest.raises(ValueError, match="damaged state"):
        load_state(path)
