"""Checkpoints: reloading gives the same predictions, and a killed-and-resumed run ends with the
same weights and predictions as an uninterrupted one."""

from dataclasses import replace

import torch
from safetensors.torch import load_file

from omni_msa.assemble import assemble
from omni_msa.backbone import LoraSettings
from omni_msa.checkpoint import TRAINABLE_FILE, save_checkpoint
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.score import load_scorer
from omni_msa.train import LAST_DIR, train

from conftest import tiny_run_config


def test_reloaded_checkpoint_predicts_like_the_trained_model(tiny_thinker_dir, synthetic_samples, tmp_path):
    cfg = tiny_run_config(tiny_thinker_dir, tmp_path)
    assembled = assemble(cfg)
    protocol = MissingnessProtocol()
    items = [assembled.builder.prepare(s, protocol.draw(s.id)) for s in synthetic_samples[:4]]
    batch = assembled.builder.collate(items, padding_side="right")
    params = [p for p in assembled.readout.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    for _ in range(3):
        assembled.readout(batch).backward()
        optimizer.step()
        optimizer.zero_grad()
    assembled.readout.eval()
    expected = assembled.readout.predict(batch).values
    save_checkpoint(tmp_path / "ckpt", assembled.readout, cfg.to_dict(), {"note": "test"})
    reloaded, reloaded_cfg = load_scorer(tmp_path / "ckpt")
    assert reloaded_cfg == cfg
    untrained = assemble(cfg).readout.eval().predict(batch).values
    assert not torch.allclose(untrained, expected, atol=1e-4), "training must have changed the predictions"
    assert torch.allclose(reloaded.readout.predict(batch).values, expected, atol=1e-6)


def test_resumed_run_equals_uninterrupted_run(tiny_thinker_dir, tmp_path):
    def config(out):
        cfg = tiny_run_config(tiny_thinker_dir, out, epochs=10, max_steps=9, grad_accum=2)
        # dropout on, so the resumed run also needs the restored RNG state to match
        return replace(cfg, lora=LoraSettings(r=4, alpha=8, dropout=0.2),
                       train_missing=MissingnessProtocol(inter_rate=0.5, intra_rate="uniform"))

    uninterrupted = train(config(tmp_path / "a"), show_progress=False)
    stopped = train(config(tmp_path / "b"), stop_after_steps=4, show_progress=False)
    assert stopped == {"stopped_at_step": 4}
    resumed = train(config(tmp_path / "b"), show_progress=False)
    weights_a = load_file(str(tmp_path / "a" / LAST_DIR / TRAINABLE_FILE))
    weights_b = load_file(str(tmp_path / "b" / LAST_DIR / TRAINABLE_FILE))
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name
    losses = lambda s: [(r["step"], r["loss"]) for r in s["history"] if r["split"] == "train"]  # noqa: E731
    assert losses(resumed) == losses(uninterrupted)
    valid = lambda s: [r["mae"] for r in s["history"] if r["split"] == "valid"]  # noqa: E731
    assert valid(resumed) == valid(uninterrupted)
    assert uninterrupted["steps"] == resumed["steps"] == 9
