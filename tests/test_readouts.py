"""The omni readouts on a tiny Qwen2.5-Omni Thinker: every modality mix trains, padding does not
matter, the discriminative path never runs the lm_head, and training lowers the loss."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from omni_msa.assemble import assemble
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.inputs import last_token_positions
from omni_msa.train import train

from conftest import tiny_run_config

MODALITY_MIXES = {
    "text": ({"text"}, False),
    "text+audio": ({"text", "audio"}, False),
    "text+video": ({"text", "vision"}, False),
    "video with audio in video": ({"text", "audio", "vision"}, True),
}


@pytest.mark.parametrize("quantization", ["none", "4bit"])
@pytest.mark.parametrize("readout", ["discriminative", "generative"])
@pytest.mark.parametrize("mix", list(MODALITY_MIXES))
def test_training_step_runs_for_every_modality_mix(tiny_thinker_dir, synthetic_samples, tmp_path, mix, readout,
                                                   quantization):
    keep, audio_in_video = MODALITY_MIXES[mix]
    cfg = tiny_run_config(tiny_thinker_dir, tmp_path, readout=readout, quantization=quantization,
                          use_audio_in_video=audio_in_video)
    assembled = assemble(cfg)
    protocol = MissingnessProtocol(keep=keep)
    items = [assembled.builder.prepare(s, protocol.draw(s.id)) for s in synthetic_samples[:3]]
    assert {item.group for item in items} == {"+".join(m for m in ("text", "audio", "vision") if m in keep)}
    batch = assembled.builder.collate(items, with_answers=readout == "generative", padding_side="right")
    if "vision" in keep:
        assert "pixel_values_videos" in batch.model_inputs
    if "audio" in keep:
        assert "input_features" in batch.model_inputs
    assert batch.forward_kwargs.get("use_audio_in_video", False) == audio_in_video
    trainable = [p for p in assembled.readout.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    loss = assembled.readout(batch)
    loss.backward()
    assert torch.isfinite(loss)
    torch.optim.SGD(trainable, lr=0.1).step()
    assert any(not torch.equal(b, p) for b, p in zip(before, trainable)), "a step must change the weights"
    if quantization == "4bit":
        kinds = {type(m).__name__ for m in assembled.readout.backbone.modules()}
        assert "Linear4bit" in kinds


def test_last_token_positions_for_both_padding_sides():
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert last_token_positions(left).tolist() == [3, 3]
    assert last_token_positions(right).tolist() == [1, 3]


def test_discriminative_padding_invariance_and_no_lm_head(tiny_thinker_dir, synthetic_samples, tmp_path):
    cfg = tiny_run_config(tiny_thinker_dir, tmp_path)
    assembled = assemble(cfg)
    readout = assembled.readout.eval()
    calls = []
    lm_head = readout.backbone.get_base_model().lm_head
    handle = lm_head.register_forward_hook(lambda *args: calls.append(1))
    protocol = MissingnessProtocol()
    items = [assembled.builder.prepare(s, protocol.draw(s.id)) for s in synthetic_samples[:4]]
    lengths = {int(assembled.builder.collate([i]).model_inputs["attention_mask"].sum()) for i in items}
    assert len(lengths) > 1, "the samples must differ in length for padding to matter"
    left = readout.predict(assembled.builder.collate(items, padding_side="left")).values
    right = readout.predict(assembled.builder.collate(items, padding_side="right")).values
    alone = torch.cat([readout.predict(assembled.builder.collate([i])).values for i in items])
    handle.remove()
    assert torch.allclose(left, right, atol=1e-5)
    assert torch.allclose(left, alone, atol=1e-5)
    assert calls == [], "the discriminative readout must never run the lm_head"
    other = assembled.builder.prepare(synthetic_samples[4], protocol.draw(synthetic_samples[4].id))
    assert not torch.allclose(readout.predict(assembled.builder.collate([other])).values, alone[:1]), \
        "a different input must give a different prediction"


def test_generative_targets_cover_the_answer_only(tiny_thinker_dir, synthetic_samples, tmp_path):
    assembled = assemble(tiny_run_config(tiny_thinker_dir, tmp_path, readout="generative"))
    protocol = MissingnessProtocol(keep={"text"})
    items = [assembled.builder.prepare(s, protocol.draw(s.id)) for s in synthetic_samples[:3]]
    tokenizer = assembled.builder.tokenizer
    for side in ("left", "right"):
        batch = assembled.builder.collate(items, with_answers=True, padding_side=side)
        for row, item in enumerate(items):
            targets = batch.lm_labels[row][batch.lm_labels[row] != -100]
            assert tokenizer.decode(targets) == f"{item.label:.1f}".replace("-0.0", "0.0") + "<|im_end|>"


@pytest.mark.parametrize("readout", ["discriminative", "generative"])
def test_fifty_steps_lower_the_training_loss(tiny_thinker_dir, tmp_path, readout):
    text_only = MissingnessProtocol(keep={"text"})  # every modality mix is stepped above; this is about learning
    cfg = replace(tiny_run_config(tiny_thinker_dir, tmp_path, readout=readout, epochs=100, max_steps=50,
                                  eval_every_steps=50, lr=1e-2),
                  train_missing=text_only, eval_missing=text_only)
    summary = train(cfg, show_progress=False)
    losses = [row["loss"] for row in summary["history"] if row["split"] == "train"]
    assert len(losses) == 50
    first, last = np.mean(losses[:8]), np.mean(losses[-8:])
    assert last < 0.6 * first, (first, last)
