"""The readouts over the answer grid (generative_expected, its zero-shot twin, generative_raft): the
one-pass trie scoring equals scoring every candidate by its own forward pass over the training
sequence (prompt + answer + end of turn), for the tiny Thinker (text, and video with audio in
video) and a tiny Llama with the byte-level tokenizer and with one that merges characters; padding
does not matter; the statistics of a known distribution; RAFT lowers its loss through LoRA, under
gradient checkpointing as well."""

from dataclasses import replace

import pytest
import torch
from tokenizers import pre_tokenizers

from omni_msa.assemble import assemble
from omni_msa.backbone import unwrap
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.inputs import InputBuilder
from omni_msa.prompt import PromptSettings
from omni_msa.readouts import ReadoutContext, ReadoutSettings, get_readout
from omni_msa.readouts.answer_grid import grid_answers, grid_from_sequences, summarise
from omni_msa.tiny import CHAT_TEMPLATE, build_tokenizer

from conftest import tiny_run_config

MOSI_ANSWERS = [f"{step / 10:.1f}".replace("-0.0", "0.0") for step in range(-30, 31)]
# Merges of the second test tokenizer: "-2.5" is ["-2", ".5"], "1.3" is ["1.", "3"], "1.5" is ["1", ".5"].
MERGES = [("-", "2"), (".", "5"), ("1", ".")]
THINKER_MIXES = {"text": ({"text"}, False), "video with audio in video": ({"text", "audio", "vision"}, True)}


def to_double(batch):
    batch.model_inputs = {k: v.double() if torch.is_floating_point(v) else v for k, v in batch.model_inputs.items()}
    return batch


def brute_force_log_probs(readout, builder, item):
    """Each candidate scored by its own forward pass over the training sequence, no cache, no trie."""
    model = unwrap(readout.backbone)
    scores = []
    for text in readout.grid.texts:
        batch = to_double(builder.collate([replace(item, label=float(text))], with_answers=True))
        log_probs = model(**batch.model_inputs, **batch.forward_kwargs).logits[0, :-1].log_softmax(-1)
        targets = batch.lm_labels[0, 1:]
        answer = targets != -100
        scores.append(log_probs[answer].gather(-1, targets[answer][:, None]).sum())
    return torch.stack(scores)


def merging_tokenizer():
    """The byte-level test tokenizer with `MERGES`, applied over the whole text (no regex split,
    which would keep digits apart)."""
    base = build_tokenizer()
    vocab = {**base.get_vocab(), **{a + b: len(base) + i for i, (a, b) in enumerate(MERGES)}}
    tokenizer = type(base)(vocab=vocab, merges=list(MERGES), eos_token="<|im_end|>", pad_token="<|endoftext|>",
                           unk_token="<|endoftext|>", chat_template=CHAT_TEMPLATE)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    return tokenizer


def llama_readout(tokenizer, kind="generative_expected_zero_shot"):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         initializer_range=0.3)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    builder = InputBuilder(tokenizer, multimodal=False, prompt=PromptSettings())
    ctx = ReadoutContext(backbone=model, settings=ReadoutSettings(kind=kind), label_range=(-3.0, 3.0),
                         builder=builder)
    return get_readout(kind).build(ctx), builder


@pytest.fixture(params=list(THINKER_MIXES))
def thinker(request, tiny_thinker_dir, synthetic_samples, tmp_path):
    """The generative_expected readout on the tiny Thinker (float64, random non-zero LoRA) and
    four prepared samples of the mix, of different lengths."""
    keep, audio_in_video = THINKER_MIXES[request.param]
    assembled = assemble(tiny_run_config(tiny_thinker_dir, tmp_path, readout="generative_expected",
                                         use_audio_in_video=audio_in_video))
    torch.manual_seed(1)
    for name, param in assembled.readout.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.2)
    readout = assembled.readout.double().eval()
    items = [assembled.builder.prepare(s, MissingnessProtocol(keep=keep).draw(s.id)) for s in synthetic_samples[:4]]
    return readout, assembled.builder, items


@pytest.fixture(params=["bytes", "merges"])
def llama(request, synthetic_samples):
    tokenizer = build_tokenizer() if request.param == "bytes" else merging_tokenizer()
    readout, builder = llama_readout(tokenizer)
    items = [builder.prepare(s, MissingnessProtocol().draw(s.id)) for s in synthetic_samples[:4]]
    return readout.double(), builder, items


def test_the_grid_is_every_answer_the_model_is_trained_to_write(thinker):
    readout, builder, items = thinker
    assert list(readout.grid.texts) == MOSI_ANSWERS and "-0.0" not in readout.grid.texts
    assert grid_answers(PromptSettings(label_low=0.0, label_high=1.0, decimals=2))[:3] == ["0.00", "0.01", "0.02"]
    batch = builder.collate(items, with_answers=True, padding_side="right")
    for row, item in enumerate(items):
        k = readout.grid.index_of(item.label)
        tokens = readout.grid.token[k][readout.grid.valid[k] > 0]
        assert torch.equal(tokens, batch.lm_labels[row][batch.lm_labels[row] != -100]), "the training target"


def test_merging_tokenizer_merges_the_answers():
    tokenizer = merging_tokenizer()
    assert tokenizer.tokenize("-2.5") == ["-2", ".5"] and tokenizer.tokenize("1.3") == ["1.", "3"]
    readout, _ = llama_readout(tokenizer)
    assert sorted(set(readout.grid.token_counts.tolist())) == [3.0, 4.0, 5.0]


def test_trie_scores_equal_one_forward_pass_per_candidate_on_the_thinker(thinker):
    readout, builder, items = thinker
    assert len({int(builder.collate([i]).model_inputs["attention_mask"].sum()) for i in items}) > 1
    with torch.no_grad():
        trie = readout.log_probs(to_double(builder.collate(items, padding_side="left")))
        for row, item in enumerate(items):
            brute = brute_force_log_probs(readout, builder, item)
            assert torch.allclose(trie[row], brute, atol=1e-5), (trie[row] - brute).abs().max()
            values = readout.grid.values.double()
            assert torch.allclose(trie[row].softmax(-1) @ values, brute.softmax(-1) @ values, atol=1e-5)


def test_trie_scores_equal_one_forward_pass_per_candidate_on_a_causal_lm(llama):
    readout, builder, items = llama
    with torch.no_grad():
        trie = readout.log_probs(builder.collate(items, padding_side="left"))
        for row, item in enumerate(items):
            brute = brute_force_log_probs(readout, builder, item)
            assert torch.allclose(trie[row], brute, atol=1e-5), (trie[row] - brute).abs().max()


def test_left_right_padding_and_one_at_a_time_agree_on_the_thinker(thinker):
    assert_padding_does_not_matter(*thinker)


def test_left_right_padding_and_one_at_a_time_agree_on_a_causal_lm(llama):
    assert_padding_does_not_matter(*llama)


def assert_padding_does_not_matter(readout, builder, items):
    with torch.no_grad():
        left = readout.log_probs(to_double(builder.collate(items, padding_side="left")))
        right = readout.log_probs(to_double(builder.collate(items, padding_side="right")))
        alone = torch.cat([readout.log_probs(to_double(builder.collate([i]))) for i in items])
    assert torch.allclose(left, right, atol=1e-5) and torch.allclose(left, alone, atol=1e-5)
    out = readout.predict(to_double(builder.collate(items)))
    assert out.statuses == ["ok"] * 4 and out.texts is None
    assert set(out.extra) == {"std", "grid_mass", "low80", "high80"}
    assert ((out.extra["grid_mass"] > 0) & (out.extra["grid_mass"] <= 1)).all() and (out.extra["std"] > 0).all()
    assert set(out.values.tolist()) <= set(readout.grid.values.tolist())


def test_statistics_of_a_known_distribution():
    values = torch.tensor([-1.0, 0.0, 1.0, 2.0])
    probs = torch.tensor([[0.1, 0.3, 0.2, 0.4], [0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.0, 1.0]])
    summary = summarise((probs * 0.5).log(), values)
    assert torch.allclose(summary.mean, torch.tensor([0.9, 0.5, 2.0]))
    assert summary.median.tolist() == [1.0, 0.0, 2.0]  # the smallest value whose cumulative probability is >= 0.5
    assert torch.allclose(summary.std, torch.tensor([(0.1 * 3.61 + 0.3 * 0.81 + 0.2 * 0.01 + 0.4 * 1.21) ** 0.5,
                                                     1.25 ** 0.5, 0.0]))
    assert torch.allclose(summary.grid_mass, torch.full((3,), 0.5))
    assert summary.high80.tolist() == [2.0, 2.0, 2.0] and summary.low80.tolist()[1:] == [-1.0, 2.0]


def test_the_statistic_setting_chooses_median_or_mean(synthetic_samples):
    readout, builder = llama_readout(build_tokenizer())
    batch = builder.collate([builder.prepare(s, MissingnessProtocol().draw(s.id)) for s in synthetic_samples[:3]])
    with torch.no_grad():
        summary = summarise(readout.log_probs(batch), readout.grid.values)
    assert torch.equal(readout.predict(batch).values, summary.median)
    readout.settings = ReadoutSettings(kind="generative_expected_zero_shot", statistic="mean")
    assert torch.equal(readout.predict(batch).values, summary.mean)


def test_trie_handles_candidates_that_share_nothing_or_everything():
    grid = grid_from_sequences(PromptSettings(), ["1", "2", "3"], [(5, 9), (6, 7, 9), (6, 8, 9)])
    assert grid.node_tokens.tolist() == [5, 6, 7, 8] and grid.node_depth.tolist() == [1, 1, 2, 2]
    assert grid.source.tolist() == [[0, 1, 0], [0, 2, 3], [0, 2, 4]]
    assert grid.node_ancestry.tolist() == [[True, False, False, False], [False, True, False, False],
                                           [False, True, True, False], [False, True, False, True]]


@pytest.mark.parametrize("checkpointing", [False, True])
def test_raft_steps_lower_its_loss_through_lora(tiny_thinker_dir, synthetic_samples, tmp_path, checkpointing):
    cfg = tiny_run_config(tiny_thinker_dir, tmp_path, readout="generative_raft")
    cfg = replace(cfg, backbone=replace(cfg.backbone, gradient_checkpointing=checkpointing),
                  readout=ReadoutSettings(kind="generative_raft", loss="mse"))
    assembled = assemble(cfg)
    readout = assembled.readout.train()
    items = [assembled.builder.prepare(s, MissingnessProtocol(keep={"text"}).draw(s.id)) for s in synthetic_samples[:4]]
    batch = assembled.builder.collate(items, with_answers=assembled.entry.with_answers, padding_side="right")
    trainable = {name: p for name, p in readout.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    optimizer = torch.optim.Adam(trainable.values(), lr=1e-2)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = readout(batch)
        loss.backward()
        if not losses:
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in trainable.items() if "lora_B" in n)
        losses.append(loss.item())
        optimizer.step()
    assert losses[-1] < 0.7 * losses[0], losses


def test_raft_trains_and_scores_through_the_trainer_unchanged(tiny_thinker_dir, synthetic_samples, tmp_path):
    """The trainer calls forward on right-padded batches without answers; the best checkpoint
    scores with the std and grid mass in every per-sample row."""
    from omni_msa.score import load_scorer, score_file
    from omni_msa.scoring_io import read_predictions
    from omni_msa.train import BEST_DIR, train

    text_only = MissingnessProtocol(keep={"text"})
    cfg = replace(tiny_run_config(tiny_thinker_dir, tmp_path, readout="generative_raft", max_steps=4,
                                  eval_every_steps=4), train_missing=text_only, eval_missing=text_only)
    summary = train(cfg, show_progress=False)
    losses = [row["loss"] for row in summary["history"] if row["split"] == "train"]
    assert len(losses) == 4 and all(loss == loss for loss in losses)
    if not torch.cuda.is_available():
        assert summary["speed_settings"] == {"device": "cpu", "compute_dtype": "float32", "attention": "sdpa",
                                             "gradient_checkpointing": False, "length_grouping": True}
    assembled, scored_cfg = load_scorer(tmp_path / BEST_DIR)
    result = score_file(assembled, scored_cfg, synthetic_samples[:5], tmp_path / "preds.jsonl", protocol=text_only)
    rows = read_predictions(tmp_path / "preds.jsonl")
    assert result["n"] == 5 and all(0 < row["extra"]["grid_mass"] <= 1 and row["extra"]["std"] > 0 for row in rows)
