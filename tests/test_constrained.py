"""The constrained generative readout: greedy decoding through its logits processor only ever writes a
grid answer, every grid answer can be written, the processor is exactly greedy over the allowed
tokens (checked against trying every token), and the readout's answers all parse, zero-shot and on
a generatively trained model. Two vocabularies: the tiny byte-level tokenizer (one token per
character) and a hand-made one whose tokens merge characters ("-2", ".5", "3.0", ...)."""

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_msa.data.missing import MissingnessProtocol
from omni_msa.inputs import InputBuilder
from omni_msa.parse import ParseStatus, parse_score
from omni_msa.prompt import PromptSettings
from omni_msa.readouts import ReadoutContext, ReadoutSettings
from omni_msa.readouts.constrained import AnswerConstraint, answer_grid, build_constrained, token_texts
from omni_msa.tiny import build_tokenizer

from conftest import tiny_run_config

MOSI = PromptSettings()                                   # [-3, 3], one decimal
SIMS = PromptSettings(label_low=-1.0, label_high=1.0, decimals=2)
TOKENIZER = build_tokenizer()
STOP = TOKENIZER.convert_tokens_to_ids("<|im_end|>")
PAD = TOKENIZER.pad_token_id


def tokenizer_decode(ids):
    return TOKENIZER.decode(ids, skip_special_tokens=True)


# The hand-made vocabulary: id 0 pads, id 1 stops (both decode to ""); merged tokens, a leading-space
# token, "-0.0" (never an answer) and words the answers never contain.
MERGED_TEXTS = ["", "", *"-.0123456789", "-2", ".5", "3.0", "-3", "0.0", "1.", "2.5", "-0", "-0.0", "10", " 2",
                "..", "x", "<|im_end|>"]


def merged_decode(ids):
    return "".join(MERGED_TEXTS[i] for i in torch.as_tensor(ids).tolist())


VOCABULARIES = {  # name: (token texts, decode of ids, stop id, pad id)
    "byte-level": (token_texts(TOKENIZER), tokenizer_decode, STOP, PAD),
    "merged": (MERGED_TEXTS, merged_decode, 1, 0),
}


def constraint_for(vocabulary, prompt=MOSI):
    texts, decode, stop, pad = VOCABULARIES[vocabulary]
    grid = answer_grid(prompt, (prompt.label_low, prompt.label_high))
    return AnswerConstraint(grid, texts, [stop]), decode, stop, pad, len(texts)


def drive(constraint, decode, stop, pad, vocab, scores_of, rows, prompt_length, on_step=None):
    """Greedy decoding as `generate` runs it on a left-padded batch of equal prompt length: the
    processor on the full sequences, argmax, finished rows padded. Returns the generated ids."""
    processor = constraint.processor(decode, prompt_length)
    prompt = torch.randint(2, vocab, (rows, prompt_length), generator=torch.Generator().manual_seed(rows))
    prompt[0, :prompt_length // 2] = pad                    # left padding
    ids, finished = prompt, torch.zeros(rows, dtype=torch.bool)
    for _ in range(constraint.max_tokens):
        scores = scores_of(rows, vocab)
        processed = processor(ids, scores.clone())
        if on_step is not None:
            on_step(ids[:, prompt_length:], scores, processed)
        chosen = torch.where(finished, pad, processed.argmax(dim=-1))
        ids = torch.cat([ids, chosen[:, None]], dim=1)
        finished |= chosen == stop
    assert finished.all(), "every row must end within the constraint's token budget"
    return ids[:, prompt_length:]


def random_scores(seed, stop, stop_bias):
    generator = torch.Generator().manual_seed(seed)

    def scores_of(rows, vocab):
        scores = torch.randn(rows, vocab, generator=generator) * 10 ** torch.rand(1, generator=generator).item()
        scores[:, stop] += stop_bias        # a model that wants to stop at once must still finish a number
        return scores
    return scores_of


def test_the_grid_is_every_value_written_as_trained():
    grid = answer_grid(MOSI, (-3.0, 3.0))
    assert len(grid) == 61 and grid[0] == "-3.0" and grid[-1] == "3.0" and "0.0" in grid and "-0.0" not in grid
    assert grid == sorted({MOSI.answer(k / 10) for k in range(-30, 31)}, key=float)
    sims = answer_grid(SIMS, (-1.0, 1.0))
    assert len(sims) == 201 and sims[:2] == ["-1.00", "-0.99"] and "0.00" in sims and "-0.00" not in sims
    assert answer_grid(MOSI, (-0.25, 0.25)) == ["-0.2", "-0.1", "0.0", "0.1", "0.2"]  # ends off the grid


@pytest.mark.parametrize("vocabulary", list(VOCABULARIES))
@settings(max_examples=1000, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), stop_bias=st.sampled_from([0.0, 100.0]), rows=st.integers(1, 4),
       prompt_length=st.integers(2, 9), sims=st.booleans())
def test_greedy_decoding_under_random_logits_always_writes_a_grid_answer(vocabulary, seed, stop_bias, rows,
                                                                          prompt_length, sims):
    prompt = SIMS if sims else MOSI
    constraint, decode, stop, pad, vocab = constraint_for(vocabulary, prompt)
    generated = drive(constraint, decode, stop, pad, vocab, random_scores(seed, stop, stop_bias), rows, prompt_length)
    for row in generated:
        text = decode(row)
        parsed = parse_score(text, prompt.label_low, prompt.label_high)
        assert parsed.status == ParseStatus.OK and text in constraint.answers, text
        assert prompt.answer(parsed.value) == text


def segmentations(text, pieces):
    """Every way to write `text` as a sequence of (id, piece)."""
    if not text:
        yield []
        return
    for i, piece in pieces:
        if piece and text.startswith(piece):
            for rest in segmentations(text[len(piece):], pieces):
                yield [i, *rest]


@pytest.mark.parametrize("vocabulary", list(VOCABULARIES))
def test_every_grid_answer_can_be_written_in_every_way_the_vocabulary_spells_it(vocabulary):
    texts, decode, stop, _ = VOCABULARIES[vocabulary]
    constraint, *_ = constraint_for(vocabulary)
    usable = [(i, t) for i, t in enumerate(texts) if t and i != stop]
    for answer in answer_grid(MOSI, (-3.0, 3.0)):
        ways = list(segmentations(answer, usable))
        assert ways, answer
        if vocabulary == "byte-level":
            assert ways == [TOKENIZER(answer, add_special_tokens=False)["input_ids"]]  # as it was trained
        for way in ways:
            for n, token in enumerate(way):
                allowed = constraint.allowed(decode(way[:n]))
                assert token in allowed and stop not in allowed, (answer, way, n)
            assert stop in constraint.allowed(decode(way)), (answer, way)
    assert constraint.allowed("") and stop not in constraint.allowed("")


def brute_force_allowed(constraint, decode, stop, generated, vocab):
    """Try every token: a stop ends a whole answer; any other token must lengthen the decoded text
    and leave a prefix of an answer."""
    text = decode(generated)
    allowed = set()
    for token in range(vocab):
        if token == stop:
            if text in constraint.answers:
                allowed.add(token)
            continue
        longer = decode(torch.cat([generated, torch.tensor([token])]))
        if len(longer) > len(text) and longer in constraint.prefixes:
            allowed.add(token)
    return allowed


@pytest.mark.parametrize("vocabulary", list(VOCABULARIES))
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), stop_bias=st.sampled_from([0.0, 100.0]))
def test_the_processor_is_greedy_over_exactly_the_tokens_that_keep_a_grid_prefix(vocabulary, seed, stop_bias):
    constraint, decode, stop, pad, vocab = constraint_for(vocabulary)

    def check(generated, scores, processed):
        for row in range(len(generated)):
            if (generated[row] == stop).any():
                continue                     # finished: generate pads this row whatever is chosen
            brute = brute_force_allowed(constraint, decode, stop, generated[row], scores.shape[1])
            kept = set(torch.isfinite(processed[row]).nonzero().flatten().tolist())
            assert kept == brute
            index = torch.tensor(sorted(brute))
            assert torch.equal(processed[row, index], scores[row, index])
            assert int(processed[row].argmax()) == int(index[scores[row, index].argmax()])

    drive(constraint, decode, stop, pad, vocab, random_scores(seed, stop, stop_bias), 2, 4, on_step=check)


def test_a_decoding_budget_too_small_for_the_longest_answer_is_refused():
    builder = InputBuilder(TOKENIZER, multimodal=False, prompt=MOSI)
    ctx = ReadoutContext(backbone=None, settings=ReadoutSettings(kind="generative_constrained", max_new_tokens=4),
                         label_range=(-3.0, 3.0), builder=builder)
    with pytest.raises(ValueError, match=r"max_new_tokens=4 is too small .*'-3.0' can take 5 tokens"):
        build_constrained(ctx)
    with pytest.raises(ValueError, match=r"no single-character token for \['7'\]"):
        AnswerConstraint(["1.7"], ["", "1", "."], [0])


def predict_texts(assembled, samples, keep):
    protocol = MissingnessProtocol(keep=keep)
    items = [assembled.builder.prepare(s, protocol.draw(s.id)) for s in samples]
    out = assembled.readout.predict(assembled.builder.collate(items, padding_side="left"))
    alone = [assembled.readout.predict(assembled.builder.collate([item])).texts[0] for item in items]
    return out, alone


@pytest.mark.parametrize("keep", [{"text"}, {"text", "audio"}])
def test_zero_shot_answers_all_parse_through_predict(tiny_thinker_dir, synthetic_samples, tmp_path, keep):
    from omni_msa.assemble import assemble

    assembled = assemble(tiny_run_config(tiny_thinker_dir, tmp_path, readout="generative_constrained_zero_shot"))
    lengths = {len(s.text) for s in synthetic_samples[:8]}
    assert len(lengths) > 1, "the prompts must differ in length for left padding to matter"
    out, alone = predict_texts(assembled, synthetic_samples[:8], keep)
    grid = answer_grid(assembled.builder.prompt, (-3.0, 3.0))
    assert out.statuses == ["ok"] * 8 and all(text in grid for text in out.texts)
    assert out.values.tolist() == pytest.approx([float(text) for text in out.texts])
    assert out.texts == alone, "a left-padded batch must decode as each sample alone"


def test_a_generatively_trained_model_loads_and_answers_on_the_grid(tiny_thinker_dir, synthetic_samples, tmp_path):
    from omni_msa.assemble import assemble

    cfg = tiny_run_config(tiny_thinker_dir, tmp_path, readout="generative")
    generative = assemble(cfg)
    protocol = MissingnessProtocol(keep={"text"})
    batch = generative.builder.collate([generative.builder.prepare(s, protocol.draw(s.id))
                                        for s in synthetic_samples[:4]], with_answers=True, padding_side="right")
    optimizer = torch.optim.AdamW([p for p in generative.readout.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        generative.readout(batch).backward()
        optimizer.step()
    constrained = assemble(replace(cfg, readout=ReadoutSettings(kind="generative_constrained")))
    assert constrained.entry.reads == "generative" and constrained.entry.trained
    constrained.readout.load_state_dict(generative.readout.state_dict())   # strict: the same module tree
    out, alone = predict_texts(constrained, synthetic_samples[:6], {"text"})
    assert out.statuses == ["ok"] * 6 and out.texts == alone
