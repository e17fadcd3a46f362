"""The encoder-output cache (omni_msa.encoder_cache) on the tiny Thinker: the same losses, LoRA
gradients and predictions as without it, the towers skipped on hits and run on misses only,
masked clips missing, complete clips hitting, and new encoder weights invalidating entries."""

from collections import Counter
from dataclasses import replace

import pytest
import torch

from omni_msa.assemble import assemble
from omni_msa.backbone import LoraSettings, decoder_of
from omni_msa.data.missing import MissingnessProtocol
from omni_msa.encoder_cache import AUDIO, VIDEO

from conftest import tiny_run_config

TOLERANCE = 1e-6
ALL = {"text", "audio", "vision"}
MIXES = {  # name: (kept modalities, audio in video, towers that run)
    "video": ({"text", "vision"}, False, {VIDEO}),
    "audio": ({"text", "audio"}, False, {AUDIO}),
    "audio in video": (ALL, True, {AUDIO, VIDEO}),
    "all three": (ALL, False, {AUDIO, VIDEO}),
}


def build(model_dir, out, *, cache=True, readout="generative", use_audio_in_video=False, **config):
    cfg = tiny_run_config(model_dir, out, readout=readout, use_audio_in_video=use_audio_in_video)
    return assemble(replace(cfg, backbone=replace(cfg.backbone, encoder_cache=cache), **config))


class TowerCalls:
    """How many times each tower runs, and on how many media items in all."""

    def __init__(self, assembled):
        thinker = decoder_of(assembled.readout.backbone)
        self.calls, self.items = Counter(), Counter()
        thinker.audio_tower.register_forward_pre_hook(self._hook(AUDIO, "feature_lens"), with_kwargs=True)
        thinker.visual.register_forward_pre_hook(self._hook(VIDEO, "grid_thw"), with_kwargs=True)

    def _hook(self, modality, lengths):
        def count(module, args, kwargs):
            self.calls[modality] += 1
            self.items[modality] += len(kwargs[lengths])
        return count

    def take(self):
        """Calls and items since the last take."""
        taken = (dict(self.calls), dict(self.items))
        self.calls.clear()
        self.items.clear()
        return taken


def prepared(assembled, samples, protocol):
    return [assembled.builder.prepare(s, protocol.draw(s.id)) for s in samples]


def loss_and_grads(assembled, batch):
    readout = assembled.readout.train()
    readout.zero_grad()
    loss = readout(batch)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in readout.parameters() if p.requires_grad]


def hidden(assembled, batch):
    """The decoder's last hidden states: what the discriminative readout reads."""
    with torch.no_grad():
        return decoder_of(assembled.readout.backbone)(**batch.model_inputs, **batch.forward_kwargs).last_hidden_state


def assert_close(a, b):
    assert torch.allclose(a, b, atol=TOLERANCE, rtol=0), float((a - b).abs().max())


@pytest.mark.parametrize("mix", list(MIXES))
def test_cached_losses_gradients_and_predictions_equal_uncached(tiny_thinker_dir, synthetic_samples, tmp_path, mix):
    keep, audio_in_video, towers = MIXES[mix]
    plain = build(tiny_thinker_dir, tmp_path, cache=False, use_audio_in_video=audio_in_video)
    cached = build(tiny_thinker_dir, tmp_path, use_audio_in_video=audio_in_video)
    assert plain.encoder_cache is None and cached.encoder_cache is not None
    calls = TowerCalls(cached)
    items = prepared(cached, synthetic_samples[:3], MissingnessProtocol(keep=keep))
    batch = cached.builder.collate(items, with_answers=True)
    for expected_calls in ({t: 1 for t in towers}, {}):  # the first pass fills the cache, the second hits it
        loss, grads = loss_and_grads(plain, batch)
        cached_loss, cached_grads = loss_and_grads(cached, batch)
        assert calls.take()[0] == expected_calls
        assert_close(cached_loss, loss)
        assert len(grads) == len(cached_grads) > 0
        for grad, cached_grad in zip(grads, cached_grads):
            assert_close(cached_grad, grad)
    assert cached.encoder_cache.counts() == {"hits": {t: 3 for t in towers}, "misses": {t: 3 for t in towers}}

    prompts = cached.builder.collate(items)
    assert_close(hidden(cached, prompts), hidden(plain, prompts))
    with torch.no_grad():
        expected, got = plain.readout.eval().predict(prompts), cached.readout.eval().predict(prompts)
    assert got.texts == expected.texts and got.statuses == expected.statuses
    assert torch.equal(got.values.isnan(), expected.values.isnan())
    assert calls.take()[0] == {}, "the prompts' media are the training batch's: every tower call is a hit"


def test_a_batch_of_hits_and_misses_runs_the_towers_on_the_misses_only(tiny_thinker_dir, synthetic_samples, tmp_path):
    plain = build(tiny_thinker_dir, tmp_path, cache=False, readout="discriminative")
    cached = build(tiny_thinker_dir, tmp_path, readout="discriminative")
    calls = TowerCalls(cached)
    complete = MissingnessProtocol()
    hidden(cached, cached.builder.collate(prepared(cached, synthetic_samples[:2], complete)))
    calls.take()
    mixed = cached.builder.collate(prepared(cached, [synthetic_samples[i] for i in (2, 0, 3, 1)], complete))
    assert_close(hidden(cached, mixed), hidden(plain, mixed))
    assert calls.take() == ({AUDIO: 1, VIDEO: 1}, {AUDIO: 2, VIDEO: 2})
    with torch.no_grad():
        assert_close(cached.readout.eval().predict(mixed).values, plain.readout.eval().predict(mixed).values)
    assert calls.take()[0] == {}


def test_a_masked_clip_misses_a_complete_clip_hits_and_a_dropped_one_needs_no_entry(tiny_thinker_dir,
                                                                                     synthetic_samples, tmp_path):
    cached = build(tiny_thinker_dir, tmp_path, readout="discriminative")
    calls, cache = TowerCalls(cached), cached.encoder_cache
    samples = synthetic_samples[:3]

    def run(protocol):
        hidden(cached, cached.builder.collate(prepared(cached, samples, protocol)))
        return calls.take()[1]

    assert run(MissingnessProtocol()) == {AUDIO: 3, VIDEO: 3}
    entries = {m: len(list((cache.root / m).iterdir())) for m in (AUDIO, VIDEO)}
    assert entries == {AUDIO: 3, VIDEO: 3}
    assert run(MissingnessProtocol(intra_rate=0.5, seed=1)) == {AUDIO: 3, VIDEO: 3}, "masked afresh: misses"
    assert run(MissingnessProtocol()) == {}, "complete again: hits"
    before = cache.counts()
    assert run(MissingnessProtocol(keep={"text", "audio"})) == {}
    assert cache.counts()["hits"][AUDIO] == before["hits"][AUDIO] + 3
    assert cache.counts()["hits"][VIDEO] == before["hits"][VIDEO], "a dropped modality is not looked up"
    assert len(list((cache.root / VIDEO).iterdir())) == 6


def test_new_encoder_weights_invalidate_entries_and_the_same_weights_share_them(tiny_thinker_dir, synthetic_samples,
                                                                                 tmp_path):
    first = build(tiny_thinker_dir, tmp_path, readout="discriminative")
    batch = first.builder.collate(prepared(first, synthetic_samples[:2], MissingnessProtocol()))
    before = hidden(first, batch)
    second = build(tiny_thinker_dir, tmp_path, readout="discriminative")  # as another process would
    calls = TowerCalls(second)
    assert_close(hidden(second, batch), before)
    assert calls.take()[0] == {}, "the same weights: the first model's entries serve the second"

    towers = decoder_of(second.readout.backbone)
    fingerprint = second.encoder_cache.fingerprint(towers.audio_tower)
    with torch.no_grad():
        towers.audio_tower.proj.weight.mul_(1.5)
    assert second.encoder_cache.fingerprint(towers.audio_tower) != fingerprint
    changed = hidden(second, batch)
    assert calls.take() == ({AUDIO: 1}, {AUDIO: 2}), "new audio weights miss; the vision entries still hit"
    assert not torch.allclose(changed, before)
    plain = build(tiny_thinker_dir, tmp_path, cache=False, readout="discriminative")
    with torch.no_grad():
        decoder_of(plain.readout.backbone).audio_tower.proj.weight.mul_(1.5)
    assert_close(changed, hidden(plain, batch))


def test_an_unreadable_entry_is_a_miss_and_is_rewritten(tiny_thinker_dir, synthetic_samples, tmp_path):
    cached = build(tiny_thinker_dir, tmp_path, readout="discriminative")
    batch = cached.builder.collate(prepared(cached, synthetic_samples[:1], MissingnessProtocol(keep={"text", "audio"})))
    before = hidden(cached, batch)
    (entry,) = (cached.encoder_cache.root / AUDIO).iterdir()
    entry.write_bytes(entry.read_bytes()[:20])
    calls = TowerCalls(cached)
    assert_close(hidden(cached, batch), before)
    assert calls.take()[1] == {AUDIO: 1}
    assert_close(hidden(cached, batch), before)
    assert calls.take()[1] == {}, "rewritten: a hit"


def test_off_or_adapted_towers_run_every_time(tiny_thinker_dir, synthetic_samples, tmp_path):
    off = build(tiny_thinker_dir, tmp_path / "off", readout="discriminative", cache=False)
    # LoRA on the audio tower's attention as well as on the language model's projections
    lora = LoraSettings(r=4, alpha=8, dropout=0.0,
                        target_modules=r"model\.(language_model\.layers\.\d+\.self_attn|audio_tower\.layers\.\d+\.self_attn)"
                                       r"\.(q_proj|v_proj)")
    adapted = build(tiny_thinker_dir, tmp_path / "adapted", readout="discriminative", lora=lora)
    for assembled, cached_towers in ((off, set()), (adapted, {VIDEO})):
        calls = TowerCalls(assembled)
        batch = assembled.builder.collate(prepared(assembled, synthetic_samples[:2], MissingnessProtocol()))
        for _ in range(2):
            hidden(assembled, batch)
        ran = calls.take()[0]
        assert {t for t in (AUDIO, VIDEO) if ran.get(t) == 2} == {AUDIO, VIDEO} - cached_towers
    assert off.encoder_cache is None and not (tmp_path / "off" / "media_cache" / "encoder_outputs").exists()
    assert not (adapted.encoder_cache.root / AUDIO).exists()


def test_concurrent_writers_of_one_key_leave_one_complete_entry(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from omni_msa.encoder_cache import EncoderOutputCache

    caches = [EncoderOutputCache(tmp_path) for _ in range(4)]  # one per process sharing the directory
    output = torch.arange(24, dtype=torch.float32).reshape(6, 4)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda cache: cache.store(AUDIO, "k", output), caches * 4))
    assert [p.name for p in (tmp_path / AUDIO).iterdir()] == ["k.safetensors"]
    assert torch.equal(caches[0].load(AUDIO, "k", 6, torch.device("cpu")), output)
    assert caches[0].load(AUDIO, "k", 5, torch.device("cpu")) is None, "an entry of another length is a miss"


def test_image_features_are_cached_per_image_like_videos(tiny_thinker_dir, tmp_path):
    cached = build(tiny_thinker_dir, tmp_path, readout="discriminative")
    thinker = decoder_of(cached.readout.backbone)
    original = thinker.get_image_features.__wrapped__  # the model's own method
    grids = torch.tensor([[1, 4, 4], [1, 2, 4]])
    pixels = torch.randn(int(grids.prod(-1).sum()), 3 * 2 * 14 * 14, generator=torch.Generator().manual_seed(0))
    expected = original(pixels, grids, return_dict=True).pooler_output
    with torch.no_grad():
        for _ in range(2):  # a miss, then a hit
            got = thinker.get_image_features(pixel_values=pixels, image_grid_thw=grids, return_dict=True).pooler_output
            assert len(got) == 2 and all(torch.allclose(g, e, atol=TOLERANCE, rtol=0) for g, e in zip(got, expected))
    assert cached.encoder_cache.counts() == {"hits": {"image": 2}, "misses": {"image": 2}}
