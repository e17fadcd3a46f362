"""The dev split carved from train by video id: deterministic, video-disjoint, what the run selects on."""

from __future__ import annotations

import random

import pytest

from omni_msa.config import config_from_dict
from omni_msa.data.record import DataError, Sample, video_of
from omni_msa.data.splits import carve_dev
from omni_msa.train import load_samples, run_data_fingerprint


def samples(videos: int = 20, clips: int = 3) -> list[Sample]:
    return [Sample(id=f"vid{v:02d}$_${c}", split="train", label=0.0, text="x") for v in range(videos)
            for c in range(clips)]


def test_dev_takes_whole_videos_the_same_way_whatever_the_order():
    train, dev = carve_dev(samples(), 0.2, seed=0)
    dev_videos = {video_of(s.id) for s in dev}
    assert len(dev_videos) == 4 and len(dev) == 12 and len(train) == 48
    assert dev_videos.isdisjoint(video_of(s.id) for s in train), "no video on both sides"
    shuffled = samples()
    random.Random(3).shuffle(shuffled)
    assert {s.id for s in carve_dev(shuffled, 0.2, seed=0)[1]} == {s.id for s in dev}
    others = [{video_of(s.id) for s in carve_dev(samples(), 0.2, seed=k)[1]} for k in range(1, 6)]
    assert any(o != dev_videos for o in others), "the seed picks the videos"
    assert len({video_of(s.id) for s in carve_dev(samples(3), 0.01, seed=0)[1]}) == 1, "at least one video"
    assert len({video_of(s.id) for s in carve_dev(samples(3), 0.99, seed=0)[0]}) == 1, "never every video"
    with pytest.raises(DataError, match="at least 2 training videos"):
        carve_dev(samples(1), 0.5, seed=0)
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        carve_dev(samples(), 1.0, seed=0)


def test_a_run_with_a_dev_split_selects_on_it_and_never_on_valid(tmp_path):
    manifest = tmp_path / "m.csv"
    rows = [f"vid{v:02d}$_${c},train,{v % 5 - 2},words of clip {v} {c}" for v in range(10) for c in range(2)]
    rows += [f"val{v}$_$0,valid,1.0,a valid clip {v}" for v in range(4)]
    manifest.write_text("id,split,label,text\n" + "\n".join(rows) + "\n")
    raw = {"output_dir": str(tmp_path / "run"), "backbone": {"name_or_path": "tiny-thinker"},
           "data": {"train": str(manifest), "valid": str(manifest)}}
    plain = config_from_dict(raw)
    with_dev = config_from_dict({**raw, "data": {**raw["data"], "dev_fraction": 0.3}})
    train, selection, _ = load_samples(with_dev)
    assert len(train) == 14 and len(selection) == 6 and all(s.id.startswith("vid") for s in selection)
    assert {video_of(s.id) for s in train}.isdisjoint(video_of(s.id) for s in selection)
    assert [s.id for s in load_samples(plain)[1]] == [f"val{v}$_$0" for v in range(4)]
    assert with_dev.data.selection_split == "dev" and plain.data.selection_split == "valid"
    assert run_data_fingerprint(with_dev) != run_data_fingerprint(plain), "a run on other samples is another run"
    with pytest.raises(ValueError, match="dev_fraction must be in"):
        config_from_dict({**raw, "data": {**raw["data"], "dev_fraction": 0.0}})
